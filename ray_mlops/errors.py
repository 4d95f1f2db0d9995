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
