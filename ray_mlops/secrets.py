"""Secrets out of everything ray-mlops writes or prints: the one home of redaction.

What a user may configure that is a credential: a password in a URI's userinfo
(``postgresql://mlflow:PASS@db/mlflow``), a token in a URI's query string
(``https://hooks.example/notify?token=...``), and the credentials MLflow, the object store
and Ray read from the environment (:data:`SECRET_ENV`). Serving API keys never need this:
the config holds only their SHA-256 and nothing logs request headers.

Everything that leaves the process with a URI or the config in it (MLflow params, tags and
the logged ``config.yaml``, the exported Serve config, reports, error messages) passes
through :func:`redact_uri`, :func:`redact_text` or :func:`redact_config` first. Standard
library only, so every layer may use it.

Example:
    >>> redact_uri("postgresql://mlflow:hunter2@db:5432/mlflow")
    'postgresql://mlflow:***@db:5432/mlflow'
    >>> redact_uri("https://hooks.example/notify?token=abc&channel=ml")
    'https://hooks.example/notify?token=***&channel=ml'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

#: What a secret is replaced with.
REDACTED = "***"

#: Environment variables that hold a credential: their values are never written anywhere.
SECRET_ENV: tuple[str, ...] = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "RAY_AUTH_TOKEN",
    "RAY_MLOPS_WEBHOOK_URL",
)

# A query parameter whose name says it carries a credential (token=, api_key=, sig=,
# X-Amz-Signature=, password=, ...); its value is redacted, the name kept.
_SECRET_PARAM = re.compile(
    r"token|key|secret|passw|pwd|sig|credential|auth|session|code", re.IGNORECASE
)
# A URI inside free text: scheme://, then anything up to whitespace, a quote or a bracket.
_URI_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# Secret values shorter than this are not searched for in text (a 1-character "secret"
# would blank out every occurrence of that character).
_MIN_SECRET_CHARS = 6


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its userinfo and its secret query values replaced.

    A user name alone is kept (``mlflow@db``), as are the scheme, host, port and path.

    Args:
        uri: Any URI or URL; a string that is not one comes back unchanged.

    Returns:
        The URI safe to log, print, export or record in MLflow.

    Example:
        >>> redact_uri("s3://bucket/prefix?X-Amz-Signature=abc")
        's3://bucket/prefix?X-Amz-Signature=***'
    """
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unbalanced [ in a host: not a URI we can take apart
        return REDACTED if "@" in uri else uri
    if not parts.scheme or "://" not in uri:
        return uri
    # Edited in place, not rebuilt: urlunsplit would turn sqlite://// into sqlite://.
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{REDACTED}@{host}"
        uri = uri.replace(parts.netloc, netloc, 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(_SECRET_PARAM.search(name) for name, _ in pairs):
        query = urlencode(
            [(name, REDACTED if _SECRET_PARAM.search(name) else value) for name, value in pairs],
            safe="*",
        )
        uri = uri.replace(f"?{parts.query}", f"?{query}", 1)
    return uri


def address_of(uri: str) -> str:
    """Where ``uri`` points, for a message: no userinfo, query string or fragment at all.

    Example:
        >>> address_of("https://u:pw@hooks.example:8443/notify?token=abc")
        'https://hooks.example:8443/notify'
    """
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else uri.partition("?")[0]


def is_redacted(uri: str) -> bool:
    """Whether ``uri`` is the redacted form of a URI that carried a secret."""
    return REDACTED in uri


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The credentials set in the environment (:data:`SECRET_ENV`), longest first.

    Args:
        environ: The environment to read; default: this process's.
    """
    env = os.environ if environ is None else environ
    values = {env.get(name, "").strip() for name in SECRET_ENV}
    return sorted((v for v in values if len(v) >= _MIN_SECRET_CHARS), key=len, reverse=True)


def redact_text(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every URI redacted and every credential of the environment replaced.

    For messages and reports built from things a library said (an exception's text may
    quote a URL with its token).

    Args:
        text: Free text.
        environ: The environment whose :data:`SECRET_ENV` values are blanked out;
            default: this process's.

    Example:
        >>> redact_text("cannot reach https://u:pw@host/x", environ={})
        'cannot reach https://u:***@host/x'
    """
    text = _URI_IN_TEXT.sub(lambda match: redact_uri(match.group(0)), text)
    for value in secret_values(environ):
        text = text.replace(value, REDACTED)
    return text


def redact_config(document: Any) -> Any:
    """A config document (``model_dump(mode="json")``) with every URI in it redacted.

    Args:
        document: Mappings, lists and scalars, as dumped to JSON.

    Returns:
        A copy in which each string that is a URI went through :func:`redact_uri`.

    Example:
        >>> redact_config({"tracking": {"tracking_uri": "postgresql://u:pw@db/m"}, "epochs": 3})
        {'tracking': {'tracking_uri': 'postgresql://u:***@db/m'}, 'epochs': 3}
    """
    if isinstance(document, Mapping):
        return {key: redact_config(value) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [redact_config(value) for value in document]
    if isinstance(document, str) and "://" in document:
        return redact_uri(document)
    return document
