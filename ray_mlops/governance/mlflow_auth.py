"""Roles from MLflow's own permissions, when the tracking server runs its basic-auth app.

``mlflow server --app-name basic-auth`` authenticates every request and keeps permissions
per user and resource. The actor is then the authenticated user; an MLflow admin is
``admin``, and on a registered model MANAGE gives ``trainer``, ``approver`` and
``deployer``, EDIT gives ``trainer``, READ (or USE) gives ``viewer``. A model that is not
registered yet may be trained by anyone the server authenticates (its creator gets MANAGE).

Two REST calls, made with the caller's own credentials (``$MLFLOW_TRACKING_USERNAME`` and
``$MLFLOW_TRACKING_PASSWORD``, as every MLflow client sends them): the current user, which
also tells whether the server runs the auth app at all (a plain server answers 404), and
the user's effective permission on the model. The routes are those of
``mlflow.server.auth.routes`` (``GET_CURRENT_USER``, ``GET_USER_PERMISSION``), spelt here
because importing that module loads the whole server (seconds).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from ray_mlops.errors import TrackingError
from ray_mlops.governance.roles import APPROVER, DEPLOYER, TRAINER, VIEWER

__all__ = [
    "CURRENT_USER_ROUTE",
    "MODEL_ROUTE",
    "USER_PERMISSION_ROUTE",
    "MlflowIdentity",
    "mlflow_roles",
    "server_identity",
]

CURRENT_USER_ROUTE = "/api/2.0/mlflow/users/current"
USER_PERMISSION_ROUTE = "/api/3.0/mlflow/users/permissions/get"
MODEL_ROUTE = "/api/2.0/mlflow/registered-models/get"

PERMISSION_ROLES: dict[str, frozenset[str]] = {
    "MANAGE": frozenset({TRAINER, APPROVER, DEPLOYER}),
    "EDIT": frozenset({TRAINER}),
    "USE": frozenset({VIEWER}),
    "READ": frozenset({VIEWER}),
}
"""Roles a permission on a registered model gives (others, e.g. DENY: none)."""


@dataclass(frozen=True)
class MlflowIdentity:
    """Who the tracking server's auth app says the caller is.

    Attributes:
        tracking_uri: The server.
        username: The authenticated user; None when the server refused the credentials.
        is_admin: Whether the user is an MLflow admin.
    """

    tracking_uri: str
    username: str | None
    is_admin: bool = False


def _get(tracking_uri: str, route: str, params: dict[str, str] | None = None) -> Any:
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    return http_request(get_default_host_creds(tracking_uri), route, "GET", params=params)


def server_identity(tracking_uri: str) -> MlflowIdentity | None:
    """The authenticated user of an http(s) tracking server running MLflow's auth app.

    Asked once per process, server and credentials.

    Returns:
        None when the URI is no server, or the server runs without auth (everyone is
        anonymous there); otherwise the identity (``username`` None: not authenticated).

    Raises:
        TrackingError: the server answered something neither auth nor no-auth explains.
    """
    if not tracking_uri.lower().startswith(("http://", "https://")):
        return None
    return _identity(tracking_uri, _credentials_key())


def _credentials_key() -> str:
    """A digest of the credentials MLflow's client sends (the cache never holds them)."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
    joined = "\0".join(os.environ.get(name, "") for name in names)
    return hashlib.sha256(joined.encode()).hexdigest()


@functools.cache
def _identity(tracking_uri: str, _credentials: str) -> MlflowIdentity | None:
    response = _get(tracking_uri, CURRENT_USER_ROUTE)
    if response.status_code == 404:
        return None
    if response.status_code == 401:
        return MlflowIdentity(tracking_uri, None)
    if response.status_code != 200:
        raise TrackingError(
            f"{tracking_uri}{CURRENT_USER_ROUTE} answered HTTP {response.status_code}: "
            "cannot tell who is acting"
        )
    try:
        user = response.json()["user"]
        return MlflowIdentity(tracking_uri, str(user["username"]), bool(user.get("is_admin")))
    except (ValueError, KeyError, TypeError):  # a page, not the auth app's answer
        return None


def model_permission(identity: MlflowIdentity, model: str) -> str:
    """The user's effective permission on a registered model (``MANAGE``, ``READ``, ...)."""
    response = _get(
        identity.tracking_uri,
        USER_PERMISSION_ROUTE,
        {
            "username": identity.username or "",
            "resource_type": "registered_model",
            "resource_id": model,
        },
    )
    if response.status_code != 200:
        return "NO_PERMISSIONS"
    return str(response.json().get("permission", "NO_PERMISSIONS"))


def _model_exists(identity: MlflowIdentity, model: str) -> bool:
    response = _get(identity.tracking_uri, MODEL_ROUTE, {"name": model})
    return response.status_code != 404


def mlflow_roles(identity: MlflowIdentity, model: str | None) -> tuple[frozenset[str], str]:
    """The roles MLflow's permissions give the user on ``model``, and what they came from.

    Args:
        identity: From :func:`server_identity`.
        model: The registered model acted on; None for actions on no model (serving
            keys), which only an MLflow admin may take.

    Returns:
        The roles, and a note such as ``"EDIT on registered model adult"``.
    """
    if identity.username is None:
        return frozenset(), "not authenticated"
    if identity.is_admin:
        return frozenset({"admin"}), "MLflow admin"
    if model is None:
        return frozenset({VIEWER}), "authenticated, not an MLflow admin"
    permission = model_permission(identity, model)
    roles = PERMISSION_ROLES.get(permission, frozenset())
    if TRAINER not in roles and permission != "DENY" and not _model_exists(identity, model):
        return roles | {TRAINER}, f"registered model {model} does not exist yet"
    return roles, f"{permission} on registered model {model}"
