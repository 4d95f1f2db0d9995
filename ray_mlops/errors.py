"""Errors a user can act on. The CLI prints their message and exits non-zero, without a traceback."""

from __future__ import annotations


class RayMlopsError(Exception):
    """Base class of every error that names what is wrong and where."""

    exit_code: int = 1


class ConfigError(RayMlopsError):
    """The pipeline config is missing, unparseable or invalid (exit code 2)."""

    exit_code = 2


class DataError(RayMlopsError):
    """The data named by the config cannot be read or does not match it."""


class RegistryError(RayMlopsError):
    """A registered model or alias the command needs does not exist."""


class ResumeError(RayMlopsError):
    """``--resume`` found nothing to continue, or the config or data changed since."""


class TrackingError(RayMlopsError):
    """The MLflow tracking server did not answer, after the retries ``tracking`` allows."""


class AccessDenied(RayMlopsError):
    """The actor lacks the role an action needs, or four-eyes forbids it (exit code 4)."""

    exit_code = 4


class SignatureError(RayMlopsError):
    """A model's files do not match their signature, or its signer is not trusted (exit code 5)."""

    exit_code = 5


class PoisonedDataError(DataError):
    """The new data changed beyond the poisoning limits against the previous version (exit code 6)."""

    exit_code = 6


class AuditError(RayMlopsError):
    """The audit log cannot be written, or its chain is broken (exit code 7)."""

    exit_code = 7
