"""Fit the feature pipeline on the train split with Ray Data aggregations (one pass)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ray_mlops.config import DataConfig, FeaturesConfig, Task
from ray_mlops.errors import DataError
from ray_mlops.features.state import CategoricalState, FeatureState, NumericState

if TYPE_CHECKING:
    import ray.data


def fit_feature_state(
    train: ray.data.Dataset, data: DataConfig, features: FeaturesConfig, task: Task
) -> FeatureState:
    """Compute imputation values, scales, kept categories and the label map on ``train``.

    All statistics come from a single distributed ``Dataset.aggregate`` call, so the driver
    only ever sees the summaries, never the rows.
    """
    from ray.data.aggregate import Count, Max, Mean, Min, Quantile, Std, ValueCounter

    aggs: list[Any] = [Count()]
    for column in data.numeric:
        aggs += [Mean(column), Std(column, ddof=0), Min(column), Max(column)]
        if features.numeric_impute == "median":
            aggs.append(Quantile(column, q=0.5))
    aggs += [ValueCounter(column) for column in data.categorical]
    if task == "classification":
        aggs.append(ValueCounter(data.target))
    else:
        aggs += [Mean(data.target), Std(data.target, ddof=0)]
    stats = train.aggregate(*aggs)
    if not stats["count()"]:
        raise DataError("the train split is empty: nothing to fit the feature pipeline on")

    numeric = {c: _numeric_state(c, stats, features) for c in data.numeric}
    categorical = {
        c: CategoricalState(_top_categories(stats[f"value_counter({c})"], features.max_categories))
        for c in data.categorical
    }
    if task == "classification":
        labels = sorted(_top_categories(stats[f"value_counter({data.target})"], None))
        if len(labels) < 2:
            raise DataError(
                f"target {data.target!r} has {len(labels)} class(es) in the train split; "
                "classification needs at least 2"
            )
        return FeatureState(numeric=numeric, categorical=categorical, labels=labels)
    return FeatureState(
        numeric=numeric,
        categorical=categorical,
        target_center=_finite(stats[f"mean({data.target})"], 0.0),
        target_scale=_positive(stats[f"std({data.target})"]),
    )


def _numeric_state(column: str, stats: dict[str, Any], features: FeaturesConfig) -> NumericState:
    mean = stats[f"mean({column})"]
    if mean is None:
        raise DataError(f"numeric column {column!r} has no values in the train split")
    fill = {
        "mean": mean,
        "median": stats.get(f"quantile({column})"),
        "zero": 0.0,
    }[features.numeric_impute]
    if features.numeric_scale == "standard":
        center, scale = mean, _positive(stats[f"std({column})"])
    elif features.numeric_scale == "minmax":
        low, high = stats[f"min({column})"], stats[f"max({column})"]
        center, scale = low, _positive(high - low)
    else:
        center, scale = 0.0, 1.0
    return NumericState(fill=float(_finite(fill, mean)), center=float(center), scale=scale)


def _top_categories(counts: dict[str, list[Any]], limit: int | None) -> list[str]:
    """Most frequent non-null values first (ties by value), as strings."""
    pairs = [
        (str(value), count)
        for value, count in zip(counts["values"], counts["counts"], strict=True)
        if value is not None and not (isinstance(value, float) and math.isnan(value))
    ]
    pairs.sort(key=lambda pair: (-pair[1], pair[0]))
    return [value for value, _ in pairs[:limit]]


def _finite(value: Any, default: float) -> float:
    return float(value) if value is not None and math.isfinite(value) else default


def _positive(value: Any) -> float:
    """A usable divisor: constant columns scale by 1 instead of dividing by zero."""
    return float(value) if value is not None and math.isfinite(value) and value > 0 else 1.0
