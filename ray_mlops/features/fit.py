"""Fit the feature pipeline on the train split with Ray Data aggregations (one pass)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ray_mlops.config import (
    CategoricalFeature,
    DataConfig,
    FeaturesConfig,
    NumericFeature,
    Task,
)
from ray_mlops.errors import ConfigError, DataError
from ray_mlops.features.primitives import (
    arrow_strings,
    as_numbers,
    as_strings,
    datetime_parts,
    signed_log1p,
)
from ray_mlops.features.state import (
    CategoricalState,
    CrossState,
    DatetimeState,
    FeatureState,
    NumericState,
)

if TYPE_CHECKING:
    import ray.data

_ROWS = "rows"
_TARGET = "target"


def check_feature_columns(data: DataConfig, features: FeaturesConfig) -> None:
    """Check that the features section names only columns of the right kind in ``data``.

    Raises:
        ConfigError: one line per problem, each naming its key path and the allowed columns.
    """
    problems = [
        f"features.numeric_columns.{column}: not a numeric column of data.numeric "
        f"({_listing(data.numeric)})"
        for column in features.numeric_columns
        if column not in data.numeric
    ]
    problems += [
        f"features.categorical_columns.{column}: not a categorical column of data.categorical "
        f"({_listing(data.categorical)})"
        for column in features.categorical_columns
        if column not in data.categorical
    ]
    for i, cross in enumerate(features.crosses):
        unknown = [column for column in cross if column not in data.categorical]
        if unknown:
            problems.append(
                f"features.crosses.{i}: {', '.join(map(repr, unknown))} not categorical "
                f"column(s) of data.categorical ({_listing(data.categorical)})"
            )
    if problems:
        raise ConfigError("invalid features config\n" + "\n".join(f"  - {p}" for p in problems))


def fit_feature_state(
    train: ray.data.Dataset, data: DataConfig, features: FeaturesConfig, task: Task
) -> FeatureState:
    """Fit imputation values, scales, buckets, kept categories and the label map on ``train``.

    A ``map_batches`` derives what the statistics are taken of (log1p values, datetime parts,
    categories as strings) with the same code the transform uses; then one aggregation
    computes them all, per block and combined on the driver (``aggregate_blocks``, no
    shuffle), so the driver sees only summaries. Exact quantiles (median, robust scaling,
    quantile buckets) gather one copy of that column's values inside the aggregation, as
    Ray's ``Quantile`` does; other statistics stream.

    Raises:
        ConfigError: ``features`` names columns that are not of the right kind in ``data``.
        DataError: the train split is empty, or a column has nothing to fit on.
    """
    from ray_mlops.data.aggregate import aggregate_blocks

    check_feature_columns(data, features)
    inputs = _FitInputs.plan(data, features, task)
    stats = aggregate_blocks(
        train.map_batches(inputs, batch_format="pandas"), *_aggregations(inputs, features)
    )
    return _state_from(stats, data, features, task)


def fit_feature_state_frame(
    train: pd.DataFrame, data: DataConfig, features: FeaturesConfig, task: Task
) -> FeatureState:
    """:func:`fit_feature_state` on rows already in this process, without Ray tasks.

    The same statistics by the same aggregations, so the result is identical; used inside
    search trials, which hold the CPUs Ray Data tasks would wait for.
    """
    from ray_mlops.data.aggregate import aggregate_table

    check_feature_columns(data, features)
    inputs = _FitInputs.plan(data, features, task)
    stats = aggregate_table(inputs(train), *_aggregations(inputs, features))
    return _state_from(stats, data, features, task)


def _state_from(
    stats: dict[str, Any], data: DataConfig, features: FeaturesConfig, task: Task
) -> FeatureState:
    rows = stats.get(_ROWS)
    if not rows:
        raise DataError("the train split is empty: nothing to fit the feature pipeline on")
    return FeatureState(
        numeric={c: _numeric_state(c, features.numeric_spec(c), stats) for c in data.numeric},
        categorical={
            c: _categorical_state(c, features.categorical_spec(c), stats, rows)
            for c in data.categorical
        },
        datetime={c: _datetime_state(c, features.datetime_parts, stats) for c in data.datetime},
        crosses=[CrossState(list(cross), features.cross_buckets) for cross in features.crosses],
        **_target_state(data.target, task, stats),
    )


def _num(column: str) -> str:
    return f"num:{column}"


def _cat(column: str) -> str:
    return f"cat:{column}"


def _dt(column: str, part: str) -> str:
    return f"dt:{column}.{part}"


@dataclass(frozen=True)
class _FitInputs:
    """The columns the statistics are taken of, derived batch by batch (a Ray Data UDF).

    Numeric values after log1p, categories as strings, datetime parts as numbers, the target;
    missing values become Arrow nulls, which every aggregation skips.
    """

    numeric: dict[str, bool]
    categorical: list[str]
    datetime: dict[str, list[str]]
    target: str
    classification: bool

    @classmethod
    def plan(cls, data: DataConfig, features: FeaturesConfig, task: Task) -> _FitInputs:
        counted = [
            c
            for c in data.categorical
            if features.categorical_spec(c).encode != "hashing"
            or features.categorical_spec(c).impute == "most_frequent"
        ]
        return cls(
            numeric={c: features.numeric_spec(c).log1p for c in data.numeric},
            categorical=counted,
            datetime={c: list(features.datetime_parts) for c in data.datetime},
            target=data.target,
            classification=task == "classification",
        )

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        columns: dict[str, pa.Array] = {}
        for column, log1p in self.numeric.items():
            values = as_numbers(batch[column])
            columns[_num(column)] = _numbers(signed_log1p(values) if log1p else values)
        for column in self.categorical:
            columns[_cat(column)] = _strings(batch[column])
        for column, parts in self.datetime.items():
            for part, values in datetime_parts(batch[column], parts).items():
                columns[_dt(column, part)] = _numbers(values)
        target = batch[self.target]
        columns[_TARGET] = _strings(target) if self.classification else _numbers(as_numbers(target))
        return pa.table(columns)


def _strings(values: pd.Series) -> pa.ChunkedArray | pa.Array:
    """The values as ``as_strings`` gives them, as Arrow strings (no copy when they are)."""
    arrow = arrow_strings(values)
    if arrow is not None:
        return arrow.cast(pa.string())
    return pa.array(as_strings(values), type=pa.string())


def _numbers(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.float64(), from_pandas=True)


def _aggregations(inputs: _FitInputs, features: FeaturesConfig) -> list[Any]:
    from ray.data.aggregate import Count, Max, Mean, Min, Std, ValueCounter

    from ray_mlops.features._aggregations import Quantiles

    def moments(name: str) -> list[Any]:
        return [
            Mean(name, alias_name=f"{name}|mean"),
            Std(name, ddof=0, alias_name=f"{name}|std"),
        ]

    aggs: list[Any] = [Count(alias_name=_ROWS)]
    for column in inputs.numeric:
        spec, name = features.numeric_spec(column), _num(column)
        aggs += moments(name)
        aggs += [Min(name, alias_name=f"{name}|min"), Max(name, alias_name=f"{name}|max")]
        if _quantiles_needed(spec):
            aggs.append(Quantiles(name, _quantiles_needed(spec), alias_name=f"{name}|quantiles"))
        if spec.impute == "most_frequent":
            aggs.append(ValueCounter(name, alias_name=f"{name}|counts"))
    aggs += [ValueCounter(_cat(c), alias_name=f"{_cat(c)}|counts") for c in inputs.categorical]
    for column, parts in inputs.datetime.items():
        for part in parts:
            aggs += moments(_dt(column, part))
    if inputs.classification:
        aggs.append(ValueCounter(_TARGET, alias_name=f"{_TARGET}|counts"))
    else:
        aggs += moments(_TARGET)
    return aggs


def _quantiles_needed(spec: NumericFeature) -> list[float]:
    qs: set[float] = set()
    if spec.impute == "median":
        qs.add(0.5)
    if spec.scale == "robust":
        qs.update((0.25, 0.5, 0.75))
    if isinstance(spec.buckets, int):
        qs.update(i / spec.buckets for i in range(1, spec.buckets))
    return sorted(qs)


def _numeric_state(column: str, spec: NumericFeature, stats: dict[str, Any]) -> NumericState:
    name = _num(column)
    mean = stats[f"{name}|mean"]
    if mean is None:
        raise DataError(f"numeric column {column!r} has no values in the train split")
    quantile = dict(zip(_quantiles_needed(spec), stats.get(f"{name}|quantiles") or [], strict=True))
    if spec.impute == "mean":
        fill = mean
    elif spec.impute == "median":
        fill = quantile[0.5]
    elif spec.impute == "most_frequent":
        fill = float(_ranked(_value_counts(stats[f"{name}|counts"]))[0])
    else:
        fill = _in_model_space([spec.fill_value], spec.log1p)[0]
    if spec.scale == "standard":
        center, scale = mean, _positive(stats[f"{name}|std"])
    elif spec.scale == "minmax":
        low, high = stats[f"{name}|min"], stats[f"{name}|max"]
        center, scale = low, _positive(high - low)
    elif spec.scale == "robust":
        center, scale = quantile[0.5], _positive(quantile[0.75] - quantile[0.25])
    else:
        center, scale = 0.0, 1.0
    edges: list[float] | None = None
    if isinstance(spec.buckets, int):
        edges = sorted({float(quantile[i / spec.buckets]) for i in range(1, spec.buckets)})
    elif spec.buckets is not None:
        edges = _in_model_space(spec.buckets, spec.log1p)
    return NumericState(
        fill=float(fill),
        center=float(center),
        scale=scale,
        log1p=spec.log1p,
        bucket_edges=edges,
    )


def _in_model_space(values: list[float], log1p: bool) -> list[float]:
    """Values given in a column's own units, where the transform compares them."""
    array = np.asarray(values, dtype=np.float64)
    return (signed_log1p(array) if log1p else array).tolist()


def _categorical_state(
    column: str, spec: CategoricalFeature, stats: dict[str, Any], rows: int
) -> CategoricalState:
    counts = _value_counts(stats.get(f"{_cat(column)}|counts"))
    fill: str | None = None
    if spec.impute == "constant":
        fill = spec.fill_value
    elif spec.impute == "most_frequent":
        if not counts:
            raise DataError(
                f"categorical column {column!r} has no values in the train split to take the "
                "most frequent of"
            )
        fill = _ranked(counts)[0]
    if fill is not None:
        # Categories are ranked on the imputed column, as the transform will see it.
        counts[fill] = counts.get(fill, 0) + rows - sum(counts.values())
    categories = [] if spec.encode == "hashing" else _ranked(counts)[: spec.max_categories]
    return CategoricalState(
        categories=categories, encode=spec.encode, fill=fill, hash_buckets=spec.hash_buckets
    )


def _datetime_state(column: str, parts: Sequence[str], stats: dict[str, Any]) -> DatetimeState:
    centers = [stats[f"{_dt(column, part)}|mean"] for part in parts]
    if centers[0] is None:
        raise DataError(
            f"datetime column {column!r} has no values in the train split that parse as "
            "ISO 8601 times"
        )
    scales = [_positive(stats[f"{_dt(column, part)}|std"]) for part in parts]
    return DatetimeState(parts=list(parts), centers=[float(c) for c in centers], scales=scales)


def _target_state(target: str, task: Task, stats: dict[str, Any]) -> dict[str, Any]:
    if task == "regression":
        mean = stats[f"{_TARGET}|mean"]
        return {
            "target_center": float(mean) if mean is not None and math.isfinite(mean) else 0.0,
            "target_scale": _positive(stats[f"{_TARGET}|std"]),
        }
    labels = sorted(_value_counts(stats[f"{_TARGET}|counts"]))
    if len(labels) < 2:
        raise DataError(
            f"target {target!r} has {len(labels)} class(es) in the train split; "
            "classification needs at least 2"
        )
    return {"labels": labels}


def _value_counts(counts: dict[str, list[Any]] | None) -> dict[Any, int]:
    """A ValueCounter result as ``{value: count}``, nulls left out."""
    if not counts:
        return {}
    return {
        value: int(count)
        for value, count in zip(counts["values"], counts["counts"], strict=True)
        if value is not None and not (isinstance(value, float) and math.isnan(value))
    }


def _ranked(counts: dict[Any, int]) -> list[Any]:
    """Values by decreasing count; ties by value, so the result does not depend on blocks."""
    return sorted(counts, key=lambda value: (-counts[value], value))


def _positive(value: Any) -> float:
    """A usable divisor: constant columns scale by 1 instead of dividing by zero."""
    return float(value) if value is not None and math.isfinite(value) and value > 0 else 1.0


def _listing(columns: list[str]) -> str:
    return f"columns: {', '.join(columns)}" if columns else "none listed"
