"""Tag names a registered model version carries, importable without MLflow.

The catalog commands (``ray-mlops models list|show|search``) read these from the registry
without importing MLflow, whose import alone takes seconds. :mod:`ray_mlops.tracking`
re-exports them with the rest of the run layout; spell them from there everywhere else.
"""

from __future__ import annotations

TAG_CONFIG_HASH = "ray_mlops.config_hash"
TAG_FINGERPRINT = "ray_mlops.dataset_fingerprint"
# The gate's verdict and failed rules, and the version's model card.
TAG_GATE = "ray_mlops.gate"
TAG_GATE_REASONS = "ray_mlops.gate_reasons"
TAG_CARD = "ray_mlops.model_card"
# One tag per test metric: ``ray_mlops.metric.roc_auc`` = "0.8996"; the primary metric's name.
TAG_METRIC_PREFIX = "ray_mlops.metric."
# The metric the version was judged by, once more on its own: ``test_roc_auc`` = "0.899637".
TAG_PRIMARY_PREFIX = "test_"
