"""One window of served traffic judged against the model's reference. Ray-free.

:func:`evaluate_window` takes the decoded records of a window (a pandas frame of the input
columns, the served prediction, the class probabilities and the joined labels, which the
reader builds with Ray Data) and a :class:`Reference`, and gives the
:class:`~ray_mlops.monitor.result.WindowResult` every output reads: drift of each input
column and of the predictions (decided together, Benjamini-Hochberg plus effect-size
floors), performance estimated from the probabilities (CBPE), realised performance and
fairness on the labelled rows, and the limits broken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ray_mlops.data.drift import (
    ColumnDrift,
    categorical_drift,
    decide,
    numeric_drift,
    prediction_class_drift,
    prediction_score_drift,
)
from ray_mlops.errors import DataError
from ray_mlops.models.outputs import PREDICTION_COLUMN, PROBABILITY_PREFIX
from ray_mlops.monitor.estimate import (
    Calibrator,
    EstimatedPerformance,
    RealisedPerformance,
    estimate_performance,
    realised_performance,
)
from ray_mlops.monitor.result import Breach, WindowResult

# A window frame names the served outputs as the packaged model's prediction frame does.
PREDICTION = PREDICTION_COLUMN
LABEL = "label"
"""Column of the joined ground truth (None where no label arrived)."""


@dataclass(frozen=True)
class Reference:
    """What a model version's traffic is compared with, from its training data and holdout.

    Attributes:
        numeric: Input column -> a sample of its training values (NaN for missing).
        categorical: Input column -> category counts in the training data.
        categorical_other: Input column -> training rows outside the listed categories (a
            profile keeps only its top categories); 0 when the counts are complete.
        bounds: Input column -> the contract's (min, max), either end None.
        labels: A classifier's classes, in its order; None for a regressor.
        prediction_counts: Predicted class -> count on the holdout (classifiers).
        scores: The model's output on the holdout: (n, k) probabilities for a classifier,
            (n,) predictions for a regressor.
        calibrator: Fitted on the holdout's probabilities and labels (classifiers).
        positive: A binary classifier's positive class.
    """

    numeric: Mapping[str, np.ndarray] = field(default_factory=dict)
    categorical: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    categorical_other: Mapping[str, int] = field(default_factory=dict)
    bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    labels: Sequence[str] | None = None
    prediction_counts: Mapping[str, int] = field(default_factory=dict)
    scores: np.ndarray | None = None
    calibrator: Calibrator | None = None
    positive: str | None = None


@dataclass(frozen=True)
class Limits:
    """The thresholds a window is held to (``monitor`` section of the config).

    Attributes:
        alpha: False discovery rate of the per-window drift tests.
        min_distance: Distance name -> smallest distance that counts as drift.
        min_rows: Fewer records than this: the window is not tested.
        minimums: Metric -> lowest allowed estimated or realised value.
        maximums: Metric -> highest allowed estimated or realised value.
        max_demographic_parity_difference: Realised, per sensitive column.
        max_equalized_odds_difference: Realised, per sensitive column.
    """

    alpha: float = 0.05
    min_distance: Mapping[str, float] = field(default_factory=dict)
    min_rows: int = 200
    minimums: Mapping[str, float] = field(default_factory=dict)
    maximums: Mapping[str, float] = field(default_factory=dict)
    max_demographic_parity_difference: float | None = None
    max_equalized_odds_difference: float | None = None


@dataclass(frozen=True)
class Window:
    """The decoded records of one window and where they came from.

    Attributes:
        model: Registered model name.
        start: Window start (UTC, inclusive).
        end: Window end (UTC, exclusive).
        frame: One row per captured record: the input columns, :data:`PREDICTION`,
            ``probability_<label>`` columns (classifiers) and :data:`LABEL`.
        versions: Model versions that answered, oldest first.
    """

    model: str
    start: datetime
    end: datetime
    frame: pd.DataFrame
    versions: tuple[str, ...] = ()


def evaluate_window(
    window: Window,
    reference: Reference,
    limits: Limits,
    *,
    sensitive: Sequence[str] = (),
) -> WindowResult:
    """Drift, estimated and realised performance, fairness and broken limits of one window.

    Args:
        window: The window's decoded records.
        reference: The serving model version's reference.
        limits: The monitor's thresholds.
        sensitive: Input columns whose groups are compared on the labelled rows.

    Returns:
        The window's result; untested (no drift, no estimate) below ``limits.min_rows``.

    Raises:
        DataError: A reference column missing from the window's records.
    """
    frame = window.frame
    rows = len(frame)
    labelled = _labelled(frame)
    untested = WindowResult(
        model=window.model,
        versions=window.versions,
        start=window.start,
        end=window.end,
        rows=rows,
        labelled_rows=int(labelled.sum()),
        tested=False,
    )
    if rows < limits.min_rows:
        return untested
    inputs = _input_drift(frame, reference)
    outputs = _prediction_drift(frame, reference)
    decided = decide([*inputs, *outputs], alpha=limits.alpha, min_distance=limits.min_distance)
    columns, predictions = tuple(decided[: len(inputs)]), tuple(decided[len(inputs) :])
    probabilities = _probabilities(frame, reference)
    estimated = (
        estimate_performance(
            probabilities,
            list(reference.labels),
            calibrator=reference.calibrator,
            positive=reference.positive,
        )
        if probabilities is not None and reference.labels
        else None
    )
    realised, fairness = None, {}
    if probabilities is not None and reference.labels and labelled.any():
        truth = frame.loc[labelled, LABEL].astype(str).to_numpy()
        realised = realised_performance(
            probabilities[labelled.to_numpy()],
            truth,
            list(reference.labels),
            positive=reference.positive,
        )
        fairness = _fairness(
            frame[labelled], probabilities[labelled.to_numpy()], reference, sensitive
        )
    result = replace(
        untested,
        tested=True,
        columns=columns,
        predictions=predictions,
        estimated=estimated,
        realised=realised,
        fairness=fairness,
    )
    breaches = _breaches(result, limits)
    return replace(result, breaches=tuple(breaches))


def _labelled(frame: pd.DataFrame) -> pd.Series:
    if LABEL not in frame:
        return pd.Series(False, index=frame.index)
    return frame[LABEL].notna()


def _input_drift(frame: pd.DataFrame, reference: Reference) -> list[ColumnDrift]:
    missing = [c for c in [*reference.numeric, *reference.categorical] if c not in frame]
    if missing:
        raise DataError(
            f"the window's records lack the reference columns {missing}: the model served "
            "other inputs than it was trained on"
        )
    found = []
    for column, values in reference.numeric.items():
        current = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        found.append(numeric_drift(column, values, current, bounds=reference.bounds.get(column)))
    for column, counts in reference.categorical.items():
        current = frame[column].astype(object).where(frame[column].notna(), None).tolist()
        found.append(
            categorical_drift(
                column,
                counts,
                current,
                reference_other=reference.categorical_other.get(column, 0),
            )
        )
    return found


def _prediction_drift(frame: pd.DataFrame, reference: Reference) -> list[ColumnDrift]:
    found = []
    if reference.prediction_counts and PREDICTION in frame:
        found.append(
            prediction_class_drift(reference.prediction_counts, frame[PREDICTION].astype(str))
        )
    if reference.scores is None:
        return found
    if reference.labels:
        current = _probabilities(frame, reference)
        if current is not None:
            positive = (
                list(reference.labels).index(reference.positive or reference.labels[1])
                if len(reference.labels) == 2
                else None
            )
            found.append(prediction_score_drift(reference.scores, current, positive_index=positive))
    elif PREDICTION in frame:
        served = pd.to_numeric(frame[PREDICTION], errors="coerce").to_numpy(dtype=float)
        found.append(numeric_drift("predicted_value", reference.scores, served, kind="prediction"))
    return found


def _probabilities(frame: pd.DataFrame, reference: Reference) -> np.ndarray | None:
    if not reference.labels:
        return None
    columns = [f"{PROBABILITY_PREFIX}{label}" for label in reference.labels]
    if any(c not in frame for c in columns):
        return None
    return frame[columns].to_numpy(dtype=float)


def _fairness(
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    reference: Reference,
    sensitive: Sequence[str],
) -> dict[str, dict[str, float | None]]:
    from ray_mlops.evaluate.fairness import fairness_metrics

    columns = [c for c in sensitive if c in frame]
    if not columns:
        return {}
    labels = list(reference.labels or [])
    predictions = pd.DataFrame(
        probabilities, columns=[f"{PROBABILITY_PREFIX}{label}" for label in labels]
    )
    found = fairness_metrics(
        frame.reset_index(drop=True), LABEL, predictions, "classification", labels, columns
    )
    return {
        column: {
            "demographic_parity_difference": _finite(result.demographic_parity_difference),
            "equalized_odds_difference": _finite(result.equalized_odds_difference),
        }
        for column, result in found.items()
    }


def _breaches(result: WindowResult, limits: Limits) -> list[Breach]:
    found = [
        Breach(
            "drift",
            c.column,
            c.distance,
            None,
            f"{c.kind} column {c.column!r} drifted: {c.distance_name} {_fmt(c.distance)}, "
            f"adjusted p {_fmt(c.adjusted_p)}, PSI {_fmt(c.psi)}",
        )
        for c in (*result.columns, *result.predictions)
        if c.drifted
    ]
    for signal, performance in (("estimated", result.estimated), ("realised", result.realised)):
        found += _metric_breaches(signal, performance, limits, result)
    for column, measures in result.fairness.items():
        for measure, limit in (
            ("demographic_parity_difference", limits.max_demographic_parity_difference),
            ("equalized_odds_difference", limits.max_equalized_odds_difference),
        ):
            value = measures.get(measure)
            if limit is not None and value is not None and value > limit:
                found.append(
                    Breach(
                        "fairness",
                        f"{column}:{measure}",
                        value,
                        limit,
                        f"{measure} over {column!r} is {value:.3f}, above the limit {limit}",
                    )
                )
    return found


def _metric_breaches(
    signal: Any,
    performance: EstimatedPerformance | RealisedPerformance | None,
    limits: Limits,
    result: WindowResult,
) -> list[Breach]:
    if performance is None:
        return []
    if signal == "realised" and result.labelled_rows < limits.min_rows:
        return []  # a handful of labels says nothing yet
    found = []
    for metric, value in performance.metrics.items():
        low, high = limits.minimums.get(metric), limits.maximums.get(metric)
        if value is None:
            continue
        if low is not None and value < low:
            found.append(
                Breach(signal, metric, value, low, f"{signal} {metric} {value:.4f} is below {low}")
            )
        if high is not None and value > high:
            found.append(
                Breach(
                    signal, metric, value, high, f"{signal} {metric} {value:.4f} is above {high}"
                )
            )
    return found


def _finite(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
