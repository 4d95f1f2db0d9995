"""Who is acting: the name every audit record and every permission check uses.

Example:
    >>> key_actor("dashboard")
    'key:dashboard'
"""

from __future__ import annotations

import getpass
import os

__all__ = ["KEY_PREFIX", "current_actor", "key_actor"]

KEY_PREFIX = "key:"


def current_actor(tracking_uri: str | None = None) -> str:
    """The actor of this process.

    The authenticated tracking-server user (``$MLFLOW_TRACKING_USERNAME``) when the tracking
    URI is http(s), since that is the identity the server checked; else ``$RAY_MLOPS_USER``;
    else the OS login; else ``"unknown"`` (a container without a passwd entry).

    Args:
        tracking_uri: The run's tracking URI. None: ``$MLFLOW_TRACKING_URI``.
    """
    uri = tracking_uri if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.lower().startswith(("http://", "https://")):
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        if user:
            return user
    explicit = os.environ.get("RAY_MLOPS_USER")
    if explicit:
        return explicit
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def key_actor(name: str) -> str:
    """The actor of a serving API key: ``key:<name>``."""
    return f"{KEY_PREFIX}{name}"
