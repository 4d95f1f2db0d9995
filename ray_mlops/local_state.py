"""The project's local state folder (``.ray-mlops/``) and the checks that keep it out of Ray Jobs.

``.ray-mlops/`` holds the embedded MLflow store, checkpoints, quarantine and capture files of
one working directory. Two things go wrong when a pipeline runs as a Ray Job with the project
as its working directory (``ray job submit --working-dir .``): the folder is uploaded with the
code, and a relative SQLite store or file artifacts are written into the job's unpacked copy,
which is thrown away, so the user's store never sees the run. This module marks the folder
as ignored (Ray's packaging reads ``.gitignore`` and ``.rayignore`` in every folder it
uploads) and refuses such a run before any work. It imports neither MLflow nor Ray.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ray_mlops.errors import ConfigError

DEFAULT_HOME = ".ray-mlops"
# ``*`` in the folder's own ignore files: git and Ray's working_dir upload skip all of it.
_IGNORE_EVERYTHING = (
    "# Written by ray-mlops: this folder is local state (MLflow store, checkpoints,\n"
    "# quarantine). Never committed, never uploaded with a Ray Job's working_dir.\n*\n"
)
_IGNORE_FILES = (".gitignore", ".rayignore")
# The variable Ray's job supervisor sets for a job's entrypoint (runtime_env, metadata).
_JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"
_LOCAL_SCHEMES = ("sqlite:///", "file://", "file:")


def ensure_home(base: Path) -> Path:
    """Create ``.ray-mlops/`` under ``base`` (the workspace's root), marked ignored.

    Returns:
        The folder's absolute path.
    """
    home = (base / DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    for name in _IGNORE_FILES:
        marker = home / name
        if not marker.exists():
            marker.write_text(_IGNORE_EVERYTHING)
    return home


def resolve_tracking_uri(configured: str | None, base: Path) -> str:
    """The tracking URI: the config's, else ``$MLFLOW_TRACKING_URI``, else embedded SQLite.

    The embedded default lives under ``.ray-mlops/`` in ``base`` (the workspace's root) and is
    absolute, so Ray workers started elsewhere write to the same database.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{ensure_home(base) / 'mlflow.db'}"


def job_working_dir() -> Path | None:
    """The unpacked working directory when this process is a Ray Job's entrypoint.

    Returns None outside a job, and in a job submitted without a ``working_dir`` (whose
    working directory is a real folder of the node, not a copy).
    """
    raw = os.environ.get(_JOB_CONFIG_VARIABLE)
    if not raw:
        return None
    try:
        runtime_env = json.loads(raw).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return None
    if not runtime_env.get("working_dir"):
        return None
    return Path.cwd().resolve()


def local_store_path(tracking_uri: str) -> Path | None:
    """The filesystem path of a SQLite or file tracking store (as written, maybe relative).

    Returns None for servers and databases (``http://``, ``postgresql://``, ``databricks``).

    Example:
        >>> local_store_path("sqlite:///.ray-mlops/mlflow.db")
        PosixPath('.ray-mlops/mlflow.db')
        >>> local_store_path("http://mlflow:5000") is None
        True
    """
    for scheme in _LOCAL_SCHEMES:
        if tracking_uri.startswith(scheme):
            return Path(tracking_uri.removeprefix(scheme))
    if "://" in tracking_uri or tracking_uri == "databricks":
        return None
    return Path(tracking_uri)


def check_job_tracking(configured: str | None) -> None:
    """Refuse a run inside a Ray Job that would track into the job's throw-away copy.

    Args:
        configured: ``tracking.tracking_uri`` of the config (None: not set).

    Raises:
        ConfigError: this is a Ray Job with an uploaded working directory, and the tracking
            store (the config's, ``$MLFLOW_TRACKING_URI``, or the embedded default) is a
            SQLite file or file store inside that copy.
    """
    copy = job_working_dir()
    if copy is None:
        return
    uri = (
        configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_HOME}/mlflow.db"
    )
    path = local_store_path(uri)
    if path is None or not (copy / path).resolve().is_relative_to(copy):
        return
    raise ConfigError(
        f"tracking.tracking_uri: this run is a Ray Job whose working directory is an uploaded "
        f"copy ({copy}); the MLflow store {uri!r} would be written into that copy and lost "
        "with it, so your own store would never see this run or its model version. Fix: set "
        "tracking.tracking_uri (or MLFLOW_TRACKING_URI in the job's runtime_env env_vars) to "
        "an MLflow server (http://HOST:5000) or an absolute path the cluster shares "
        "(sqlite:////shared/mlflow.db), or submit with 'ray-mlops submit CONFIG --address "
        "http://HEAD:8265', which passes your store to the job"
    )
