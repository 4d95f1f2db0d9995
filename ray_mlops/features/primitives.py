"""Column-level operations shared by fitting and transforming, so both see identical values.

Vectorised over numpy and pandas; Ray-free, so a packaged model carries this module.

Example:
    >>> import pandas as pd
    >>> signed_log1p(np.array([-1.0, 0.0, np.e - 1])).round(3).tolist()
    [-0.693, 0.0, 1.0]
    >>> as_strings(pd.Series([1, None, 2.5])).tolist()
    ['1', None, '2.5']
    >>> stable_hash(np.array(["a", "b"], dtype=object), 32).tolist()
    [16, 31]
"""

from __future__ import annotations

import functools
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# pandas' default key, pinned: changing it would silently re-bucket every fitted model.
HASH_KEY = "0123456789123456"
CROSS_SEPARATOR = "\x1f"
MISSING_VALUE = "<missing>"

# A column as the transform takes it: a pandas Series, or a numpy array (a served request).
Column: TypeAlias = pd.Series | np.ndarray

# Up to this many values, category_codes looks values up in a dict (see there).
_SMALL_BATCH = 512

_DATETIME_PARTS = ("year", "month", "day", "dayofweek", "hour", "minute")


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: compresses both tails and keeps 0 at 0; NaN stays NaN."""
    return np.sign(values) * np.log1p(np.abs(values))


def as_numbers(values: Column) -> np.ndarray:
    """Float64 values with NaN for missing or non-numeric entries."""
    if values.dtype == np.float64:
        # The usual case (a served request, a Ray Data batch): no conversion to pay per call.
        return np.array(values, dtype=np.float64, copy=True)
    if isinstance(values, np.ndarray):
        values = pd.Series(values)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def as_strings(values: Column) -> np.ndarray:
    """Values as a new object array of ``str``, ``None`` where missing.

    Fitting and transforming both go through this. Whole floats read as integers (``1.0`` is
    ``"1"``): an integer column with missing values arrives as floats in a batch, while a
    request sends ``1``.
    """
    if pd.api.types.infer_dtype(values, skipna=True) == "string":
        # The usual case skips the conversion: a request pays per call, not per row. The copy
        # is explicit since to_numpy(copy=True) may still return a view of an object column.
        if isinstance(values, np.ndarray):
            strings = np.array(values, dtype=object, copy=True)
            strings[pd.isna(strings)] = None
            return strings
        return np.array(values.to_numpy(dtype=object, na_value=None), dtype=object, copy=True)
    if isinstance(values, np.ndarray):
        values = pd.Series(values)
    strings = values.astype("string").to_numpy(dtype=object, na_value=None)
    if values.dtype.kind == "f":
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(numbers) & (numbers == np.trunc(numbers)) & (abs(numbers) < 2**53)
        strings[whole] = numbers[whole].astype(np.int64).astype(str)
    return strings


def arrow_strings(values: Column) -> pa.ChunkedArray | None:
    """The values' Arrow string data, without a copy, when pandas holds them so; else None.

    Ray Data's pandas batches hold text this way (pandas' ``str`` dtype on pyarrow storage).
    Arrow kernels on it skip the object array of ``as_strings``, which dominated encoding
    (about 0.6 us a value; ``pc.index_in`` takes 0.03).
    """
    dtype = values.dtype
    arrow_backed = isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
    if isinstance(dtype, pd.ArrowDtype):
        arrow_backed = pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(
            dtype.pyarrow_dtype
        )
    if not arrow_backed or not isinstance(values, pd.Series):
        return None
    array = pa.array(values)
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def category_codes(
    values: Column, categories: list[str], fill: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index of each value in ``categories`` (-1 if absent) and whether it is missing.

    Values are compared as ``as_strings`` gives them; ``fill`` replaces missing values first
    (then nothing is missing). Arrow-backed text goes through ``pc.index_in``, anything else
    through ``pd.Categorical``: the results are the same.
    """
    arrow = arrow_strings(values)
    if arrow is not None:
        if fill is not None:
            arrow = pc.fill_null(arrow, pa.scalar(fill, arrow.type))
        missing = np.asarray(arrow.is_null().to_numpy(), dtype=bool)
        found = pc.index_in(arrow, value_set=pa.array(categories, type=arrow.type))
        return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64), missing
    strings = as_strings(values)
    missing = np.asarray(pd.isna(strings), dtype=bool)
    if fill is not None:
        strings[missing] = fill
        missing = np.zeros(len(strings), dtype=bool)
    if len(strings) <= _SMALL_BATCH:
        # A served request: a dict lookup per value beats building a Categorical (~1 ms).
        lookup = _category_lookup(tuple(categories))
        codes = np.fromiter(
            (lookup.get(s, -1) for s in strings), dtype=np.int64, count=len(strings)
        )
    else:
        codes = pd.Categorical(strings, categories=categories).codes.astype(np.int64)
    return codes, missing


@functools.lru_cache(maxsize=1024)
def _category_lookup(categories: tuple[str, ...]) -> dict[str, int]:
    return {category: index for index, category in enumerate(categories)}


def stable_hash(values: np.ndarray, buckets: int) -> np.ndarray:
    """Bucket index in ``[0, buckets)`` of each string, the same in every process and platform.

    Uses pandas' SipHash of the UTF-8 bytes with a fixed key, never Python's salted ``hash()``.
    """
    hashed = pd.util.hash_array(
        np.asarray(values, dtype=object), encoding="utf8", hash_key=HASH_KEY, categorize=True
    )
    return (hashed % np.uint64(buckets)).astype(np.int64)


def datetime_values(values: Column) -> pd.Series:
    """Times as tz-naive UTC ``datetime64``; NaT where missing or not ISO 8601.

    Naive inputs are read as UTC. Strings are parsed as ISO 8601 element by element in C, so
    a row parses the same alone as in any batch (format inference would look at the batch).
    """
    if isinstance(values, np.ndarray):
        values = pd.Series(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype) or values.dtype.kind == "M":
        stamps = pd.to_datetime(values, utc=True)
    else:
        stamps = pd.to_datetime(
            values.astype("string"), utc=True, errors="coerce", format="ISO8601"
        )
    return stamps.dt.tz_convert(None)


def datetime_parts(values: Column, parts: list[str]) -> dict[str, np.ndarray]:
    """Each requested part (year, month, day, dayofweek, hour, minute) as float64, NaN if missing."""
    unknown = sorted(set(parts) - set(_DATETIME_PARTS))
    if unknown:
        raise ValueError(f"unknown datetime parts {unknown}; known: {list(_DATETIME_PARTS)}")
    stamps = datetime_values(values).dt
    return {
        part: getattr(stamps, part).to_numpy(dtype=np.float64, na_value=np.nan) for part in parts
    }
