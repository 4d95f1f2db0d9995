"""Feature pipeline: fitted on the train split, applied by one implementation everywhere.

Fitting (``ray_mlops.features.fit``) needs Ray; the state and the transform do not, so a
packaged model carries only those.
"""

from ray_mlops.features.state import (
    CategoricalState,
    CrossState,
    DatetimeState,
    FeatureState,
    NumericState,
)
from ray_mlops.features.transform import encode_labels, transform_features

__all__ = [
    "CategoricalState",
    "CrossState",
    "DatetimeState",
    "FeatureState",
    "NumericState",
    "encode_labels",
    "transform_features",
]
