"""Metrics on slices of the holdout: each categorical value, numeric bucket and named query."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ray_mlops.config import Task
from ray_mlops.evaluate.holdout import score_predictions

MISSING = "(missing)"


@dataclass
class SliceResult:
    """One slice of the holdout and the task metrics on its rows.

    Attributes:
        name: ``sex=Female``, ``age in [17, 28)`` or the configured name of a query slice.
        column: The column the slice is cut from; ``None`` for a query slice.
        rows: Holdout rows in the slice.
        metrics: Metric name -> value; empty when the slice is too small to judge.
        too_small: Fewer rows than the minimum, so no metrics.
    """

    name: str
    column: str | None
    rows: int
    metrics: dict[str, float]
    too_small: bool


def slice_metrics(
    holdout: pd.DataFrame,
    target: str,
    predictions: pd.DataFrame,
    task: Task,
    labels: list[str] | None,
    *,
    categorical: list[str],
    numeric: list[str],
    defined: dict[str, str],
    numeric_buckets: int = 4,
    min_rows: int = 30,
) -> list[SliceResult]:
    """Task metrics on every slice of the holdout.

    Slices: one per value of each categorical column (missing values are the value
    ``(missing)``), one per quantile bucket of each numeric column (``pandas.qcut`` edges;
    tied edges merge buckets; missing values get a slice of their own), and one per entry of
    ``defined``, a ``DataFrame.query`` expression.

    Args:
        holdout: The holdout rows, with the target column.
        target: Name of the target column.
        predictions: The model's prediction frame for ``holdout``, row for row (by position).
        task: ``classification`` or ``regression``.
        labels: The model's classes (classification), ``None`` for regression.
        categorical: Columns sliced by value.
        numeric: Columns sliced by quantile bucket.
        defined: Slice name -> pandas query expression.
        numeric_buckets: Quantile buckets per numeric column.
        min_rows: Slices with fewer rows are listed without metrics.

    Returns:
        The slices: categorical ones, then numeric, then defined, in the order named.

    Raises:
        ValueError: A defined slice's expression cannot be evaluated, or the prediction frame
            has another number of rows than the holdout.
    """
    if len(predictions) != len(holdout):
        raise ValueError(f"{len(predictions)} prediction rows for {len(holdout)} holdout rows")
    # Positional masks: the holdout's index may be anything, predictions are row for row.
    frame = holdout.reset_index(drop=True)
    scored = predictions.reset_index(drop=True)
    masks: list[tuple[str, str | None, np.ndarray]] = []
    for column in categorical:
        masks += _categorical_masks(frame[column], column)
    for column in numeric:
        masks += _numeric_masks(frame[column], column, numeric_buckets)
    for name, expression in defined.items():
        masks.append((name, None, _query_mask(frame, name, expression)))

    results = []
    for slice_name, source, mask in masks:
        rows = int(mask.sum())
        too_small = rows < max(min_rows, 1)
        metrics = (
            {} if too_small else score_predictions(task, frame[target][mask], scored[mask], labels)
        )
        results.append(SliceResult(slice_name, source, rows, metrics, too_small))
    return results


def _categorical_masks(values: pd.Series, column: str) -> list[tuple[str, str | None, np.ndarray]]:
    # Largest groups first, as a report reads them; missing values are a group too.
    text = values.astype("string").fillna(MISSING)
    return [
        (f"{column}={value}", column, (text == value).to_numpy(dtype=bool))
        for value in text.value_counts(sort=True).index
    ]


def _numeric_masks(
    values: pd.Series, column: str, buckets: int
) -> list[tuple[str, str | None, np.ndarray]]:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    present = numbers.notna().to_numpy()
    masks: list[tuple[str, str | None, np.ndarray]] = []
    if present.any():
        if numbers[present].nunique() == 1:
            value = numbers[present].iloc[0]
            masks.append((f"{column}={_number(value)}", column, present))
        else:
            # qcut only for the edges: buckets are then closed on the left ([17, 28)), and
            # the last one on both sides, which reads naturally for integers such as ages.
            _, edges = pd.qcut(numbers[present], buckets, retbins=True, duplicates="drop")
            which = np.searchsorted(edges[1:-1], numbers.to_numpy(), side="right")
            for b in range(len(edges) - 1):
                closing = "]" if b == len(edges) - 2 else ")"
                name = f"{column} in [{_number(edges[b])}, {_number(edges[b + 1])}{closing}"
                masks.append((name, column, present & (which == b)))
    if not present.all():
        masks.append((f"{column}={MISSING}", column, ~present))
    return masks


def _query_mask(frame: pd.DataFrame, name: str, expression: str) -> np.ndarray:
    try:
        selected = frame.query(expression)
    except Exception as exc:
        # Whatever a user's expression does wrong (syntax, unknown column, type), it is
        # a configuration error of this slice.
        raise ValueError(
            f"slice {name!r}: cannot evaluate the query {expression!r}: {type(exc).__name__}: {exc}"
        ) from exc
    # frame has a RangeIndex, so the selected index labels are positions.
    mask = np.zeros(len(frame), dtype=bool)
    mask[selected.index.to_numpy()] = True
    return mask


def _number(value: float) -> str:
    return f"{value:.6g}"
