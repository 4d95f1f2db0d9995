"""Apply a fitted :class:`FeatureState` to a pandas frame, vectorised.

This is the one implementation used by Ray Data batches in training and by single requests
in serving, so the two cannot drift apart. It imports neither Ray nor MLflow, and loops over
columns only, never over rows.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TypeAlias

import numpy as np
import pandas as pd

from ray_mlops.features.primitives import (
    CROSS_SEPARATOR,
    MISSING_VALUE,
    Column,
    arrow_strings,
    as_numbers,
    as_strings,
    category_codes,
    datetime_parts,
    signed_log1p,
    stable_hash,
)
from ray_mlops.features.state import (
    CategoricalState,
    CrossState,
    DatetimeState,
    FeatureState,
    NumericState,
)

# Raw rows: a DataFrame, or one Series or numpy array per column.
Columns: TypeAlias = pd.DataFrame | Mapping[str, Column]


def transform_features(frame: Columns, state: FeatureState) -> np.ndarray:
    """Encode raw rows as a float32 matrix of shape ``(rows, state.n_features)``.

    ``frame`` is a DataFrame, or a mapping of column name to Series or numpy array (what a
    served request becomes; it skips building a DataFrame).

    Slots follow :attr:`FeatureState.output_columns`: numeric columns (scaled value, then any
    bucket one-hot), categorical columns, datetime parts, then crosses.

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
    out = np.zeros((row_count(frame), state.n_features), dtype=np.float32)
    offset = 0
    for column, num in state.numeric.items():
        offset += _encode_numeric(frame[column], num, out[:, offset:])
    for column, cat in state.categorical.items():
        offset += _encode_categorical(frame[column], cat, out[:, offset:])
    for column, dt in state.datetime.items():
        offset += _encode_datetime(frame[column], dt, out[:, offset:])
    for cross in state.crosses:
        offset += _encode_cross(frame, cross, out[:, offset:])
    return out


def row_count(frame: Columns) -> int:
    """Rows of a DataFrame or of a mapping of equally long columns."""
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    return len(next(iter(frame.values()))) if frame else 0


def encode_labels(target: pd.Series, state: FeatureState) -> np.ndarray:
    """Targets as model outputs: class indices (int64) or a standardised float32."""
    if state.labels is None:
        values = pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float64)
        return ((values - state.target_center) / state.target_scale).astype(np.float32)
    text = target if arrow_strings(target) is not None else target.astype("string")
    return category_codes(text, state.labels)[0]


def _onehot(out: np.ndarray, slots: np.ndarray) -> None:
    out[np.arange(len(slots)), slots] = 1.0


def _encode_numeric(values: Column, num: NumericState, out: np.ndarray) -> int:
    numbers = as_numbers(values)
    if num.log1p:
        numbers = signed_log1p(numbers)
    numbers = np.where(np.isnan(numbers), num.fill, numbers)
    out[:, 0] = (numbers - num.center) / num.scale
    if num.bucket_edges is not None:
        _onehot(out[:, 1:], np.searchsorted(num.bucket_edges, numbers, side="right"))
    return num.width


def _encode_categorical(values: Column, cat: CategoricalState, out: np.ndarray) -> int:
    if cat.encode == "hashing":
        strings = as_strings(values)
        missing = pd.isna(strings)
        strings[missing] = MISSING_VALUE if cat.fill is None else cat.fill
        _onehot(out, stable_hash(strings, cat.hash_buckets))
        return cat.hash_buckets
    k = len(cat.categories)
    codes, missing = category_codes(values, cat.categories, cat.fill)
    codes = np.where(missing, k + 1, np.where(codes >= 0, codes, k))
    if cat.encode == "ordinal":
        out[:, 0] = codes / (k + 1)
        return 1
    _onehot(out, codes)
    return k + 1 + (cat.fill is None)


def _encode_datetime(values: Column, dt: DatetimeState, out: np.ndarray) -> int:
    parts = datetime_parts(values, dt.parts)
    for i, (part, center, scale) in enumerate(zip(dt.parts, dt.centers, dt.scales, strict=True)):
        scaled = (parts[part] - center) / scale
        out[:, i] = np.where(np.isnan(scaled), 0.0, scaled)
    return len(dt.parts)


def _encode_cross(frame: Columns, cross: CrossState, out: np.ndarray) -> int:
    values = [_strings_or_missing(frame[column]) for column in cross.columns]
    joined = functools.reduce(lambda left, right: left + CROSS_SEPARATOR + right, values)
    _onehot(out, stable_hash(joined, cross.buckets))
    return cross.buckets


def _strings_or_missing(values: Column) -> np.ndarray:
    strings = as_strings(values)
    strings[pd.isna(strings)] = MISSING_VALUE
    return strings
