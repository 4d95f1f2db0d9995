"""Feature pipeline: fitted on the train split, applied by one implementation everywhere."""

from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
from ray_mlops.features.transform import encode_labels, transform_features

__all__ = [
    "CategoricalState",
    "FeatureState",
    "NumericState",
    "encode_labels",
    "transform_features",
]
