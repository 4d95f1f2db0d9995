"""Checks of a pipeline config that need neither Ray nor MLflow, so a bad input fails fast.

Kept apart from :mod:`ray_mlops.pipeline`, whose imports (torch, MLflow, Ray) take seconds:
the command line runs these before importing it.
"""

from __future__ import annotations

from ray_mlops.config import LoadedConfig
from ray_mlops.data.source import resolve_source
from ray_mlops.errors import ConfigError
from ray_mlops.features.fit import check_feature_columns
from ray_mlops.local_state import check_job_tracking
from ray_mlops.workspace import Workspace


def preflight(loaded: LoadedConfig, workspace: Workspace) -> None:
    """Check that the data path matches a file, the features name columns of the data, and
    that a run inside a Ray Job does not track into the job's throw-away copy; then create
    ``.ray-mlops/``, marked ignored by git and Ray's uploads, where the run writes local state.

    Raises:
        ray_mlops.errors.DataError: the data path matches no file.
        ray_mlops.errors.ConfigError: feature settings name columns the data section lacks,
            or a Ray Job would write its MLflow store into its uploaded working directory.
    """
    check_job_tracking(loaded.pipeline.tracking.tracking_uri)
    resolve_source(loaded.pipeline.data.path, loaded.base_dir)
    check_feature_columns(loaded.pipeline.data, loaded.pipeline.features)
    # The embedded store lives there; by default the storage (checkpoints, quarantine) too.
    workspace.ensure_home()
    try:
        workspace.ensure_storage()
    except OSError as exc:
        raise ConfigError(
            f"workspace.storage {workspace.storage} cannot be reached: {exc}"
        ) from None
