"""Apply a fitted :class:`FeatureState` to a pandas frame, vectorised.

This is the one implementation used by Ray Data batches in training and by single requests
in serving, so the two cannot drift apart. It imports neither Ray nor MLflow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ray_mlops.features.state import FeatureState


def transform_features(frame: pd.DataFrame, state: FeatureState) -> np.ndarray:
    """Encode raw rows as a float32 matrix of shape ``(len(frame), state.n_features)``.

    Numeric columns are imputed then scaled; categorical columns are one-hot encoded over the
    kept categories plus an ``<other>`` and a ``<missing>`` slot.

    Example:
        >>> from ray_mlops.features.state import CategoricalState, NumericState
        >>> state = FeatureState(
        ...     numeric={"x": NumericState(fill=1.0, center=1.0, scale=2.0)},
        ...     categorical={"c": CategoricalState(categories=["a", "b"])},
        ... )
        >>> transform_features(pd.DataFrame({"x": [3.0, None], "c": ["b", "z"]}), state)
        array([[1., 0., 1., 0., 0.],
               [0., 0., 0., 1., 0.]], dtype=float32)
    """
    n_rows = len(frame)
    out = np.zeros((n_rows, state.n_features), dtype=np.float32)
    for i, (column, num) in enumerate(state.numeric.items()):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        values = np.where(np.isnan(values), num.fill, values)
        out[:, i] = (values - num.center) / num.scale
    offset = len(state.numeric)
    rows = np.arange(n_rows)
    for column, cat in state.categorical.items():
        raw = frame[column]
        codes = pd.Categorical(raw.astype("string"), categories=cat.categories).codes
        slot = np.where(codes >= 0, codes, len(cat.categories))
        slot = np.where(raw.isna().to_numpy(), len(cat.categories) + 1, slot)
        out[rows, offset + slot] = 1.0
        offset += len(cat.categories) + 2
    return out


def encode_labels(target: pd.Series, state: FeatureState) -> np.ndarray:
    """Targets as model outputs: class indices (int64) or a standardised float32."""
    if state.labels is None:
        values = pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float64)
        return ((values - state.target_center) / state.target_scale).astype(np.float32)
    codes = pd.Categorical(target.astype("string"), categories=state.labels).codes
    return codes.astype(np.int64)
