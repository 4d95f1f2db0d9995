"""ray-mlops: one config file, the whole ML lifecycle on Ray, tracked in MLflow.

The names below are what a user calls from Python; the CLI calls the same functions.
They are imported lazily so that a packaged model, which ships parts of this package,
loads without importing Ray or MLflow's tracking stack.

Example:
    >>> import ray_mlops
    >>> ray_mlops.__version__
    '0.1.0'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["PipelineResult", "load_config", "run_pipeline"]

if TYPE_CHECKING:
    from ray_mlops.config import load_config
    from ray_mlops.pipeline import PipelineResult, run_pipeline


def __getattr__(name: str) -> Any:
    if name == "load_config":
        from ray_mlops.config import load_config

        return load_config
    if name in ("run_pipeline", "PipelineResult"):
        from ray_mlops import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'ray_mlops' has no attribute {name!r}")
