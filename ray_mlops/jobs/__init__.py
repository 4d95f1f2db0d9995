"""Running the pipeline as a Ray Job on a cluster: ``submit_pipeline`` is what ``ray-mlops
submit`` calls."""

from ray_mlops.exports import lazy_exports

__all__ = ["submit_pipeline"]

__getattr__ = lazy_exports(__name__, {"submit_pipeline": "submit"})
