"""Performance of a classifier estimated from its probabilities, before labels arrive. Ray-free.

Confidence-based performance estimation (CBPE, as NannyML does it): when the predicted
probabilities are calibrated, a row predicted as class ``j`` with probability ``c`` is right
with probability ``c``, so the expected confusion counts of a window are sums of
probabilities, and the metrics follow from them. The estimate stays right when the inputs
shift (covariate shift) as long as the relation between inputs and labels does not (no
concept drift): that is the drift it cannot see, and what the realised metrics, once labels
are joined, are for.

The expected confusion matrix is the one sum the window needs (cell [t, j]: the calibrated
probability of class ``t`` summed over the rows predicted ``j``); scikit-learn then scores it
as k*k weighted rows, so precision, recall, F1 and their averages follow the conventions
(zero_division, averaging) that :func:`ray_mlops.evaluate.metrics.classification_metrics`
uses for the realised metrics. The expected ROC AUC is NannyML's: down the scores, each row
is a fractional positive (its calibrated probability) and a fractional negative (the rest);
the trapezoid area under that curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from ray_mlops.errors import DataError
from ray_mlops.evaluate.fairness import MISSING
from ray_mlops.evaluate.metrics import classification_metrics

BINARY_METRICS = ("accuracy", "precision", "recall", "f1", "f1_macro", "roc_auc")
MULTICLASS_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_weighted",
    "roc_auc",
)
CALIBRATION_METHOD = "isotonic"
# Softmax in float32 over many classes does not sum to 1 exactly; beyond this it is not a
# probability row, and the expected counts (which assume rows of total 1) would be wrong.
ROW_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class Calibrator:
    """Isotonic calibration of a classifier's probabilities, one class against the rest.

    CBPE's estimates are right only for calibrated probabilities: a model whose 0.9 is right
    70% of the time would be estimated 20 points too good. Fit this on labelled reference
    predictions the model did not train on (its validation or holdout rows), store it with
    the model version (:meth:`to_dict` is JSON), and pass it to :func:`estimate_performance`.

    Binary: one isotonic map of P(``labels[1]``); P(``labels[0]``) is its complement.
    Multiclass: one map per class, then each row is divided by its sum (a row that every map
    sends to 0 keeps its uncalibrated probabilities, the only ones it has).

    Attributes:
        labels: The model's classes, in the order of its probability columns.
        x_thresholds: Per calibrated class, the isotonic fit's increasing input knots.
        y_thresholds: Per calibrated class, the calibrated probability at each knot.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.1, 0.9]])
        >>> calibrator = fit_calibrator(p, np.array([0, 1, 0, 1]), ["no", "yes"])
        >>> calibrator.apply(p)[:, 1].tolist()
        [0.0, 0.5, 0.5, 1.0]
    """

    labels: tuple[str, ...]
    x_thresholds: tuple[np.ndarray, ...]
    y_thresholds: tuple[np.ndarray, ...]

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the same shape, rows summing to 1.

        Args:
            probabilities: ``(n, len(labels))`` model probabilities.

        Returns:
            The calibrated probabilities, float64.

        Raises:
            DataError: The array is not ``(n, len(labels))`` probabilities.
        """
        p = _probability_matrix(probabilities, list(self.labels), "calibrator input")
        # np.interp clamps to the end knots: IsotonicRegression(out_of_bounds="clip").predict.
        columns = [np.interp(p[:, j], x, y) for j, x, y in self._maps()]
        if len(self.labels) == 2:
            return np.column_stack([1.0 - columns[0], columns[0]])
        calibrated = np.column_stack(columns)
        total = calibrated.sum(axis=1, keepdims=True)
        return np.divide(calibrated, total, out=p.copy(), where=total > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: the method, the labels and each calibrated class's knots."""
        return {
            "method": CALIBRATION_METHOD,
            "labels": list(self.labels),
            "classes": [
                {"label": self.labels[j], "x": x.tolist(), "y": y.tolist()}
                for j, x, y in self._maps()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """The calibrator that :meth:`to_dict` wrote.

        Args:
            data: The stored form.

        Returns:
            A calibrator whose :meth:`apply` gives the same values as the one stored.

        Raises:
            DataError: The form is not a stored isotonic calibrator.
        """
        try:
            if data["method"] != CALIBRATION_METHOD:
                raise DataError(f"calibrator: method {data['method']!r} is not 'isotonic'")
            labels = tuple(str(label) for label in data["labels"])
            knots = [
                (np.asarray(c["x"], float), np.asarray(c["y"], float)) for c in data["classes"]
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"calibrator: malformed stored form ({error!r})") from error
        expected = 1 if len(labels) == 2 else len(labels)
        if len(labels) < 2 or len(knots) != expected:
            raise DataError(
                f"calibrator: {len(knots)} calibrated classes for labels {list(labels)}, "
                f"expected {expected}"
            )
        for j, (x, y) in enumerate(knots):
            increasing = x.ndim == 1 and len(x) > 0 and bool(np.all(np.diff(x) > 0))
            if not increasing or x.shape != y.shape or not np.isfinite(y).all():
                raise DataError(
                    f"calibrator: classes[{j}] needs increasing knots 'x' and as many finite 'y'"
                )
        return cls(labels, tuple(x for x, _ in knots), tuple(y for _, y in knots))

    def _maps(self) -> zip[tuple[int, np.ndarray, np.ndarray]]:
        """(probability column, knots, calibrated values) of each calibrated class."""
        columns = range(1, 2) if len(self.labels) == 2 else range(len(self.labels))
        return zip(columns, self.x_thresholds, self.y_thresholds, strict=True)


def fit_calibrator(probabilities: np.ndarray, y_index: np.ndarray, labels: list[str]) -> Calibrator:
    """Fit isotonic calibration on labelled reference predictions.

    Args:
        probabilities: ``(n, len(labels))`` probabilities of reference rows the model did not
            train on.
        y_index: Each row's true class as a position in ``labels``
            (:func:`ray_mlops.evaluate.metrics.label_indices`); -1, a label the model never
            saw, is a row of none of its classes.
        labels: The model's classes, in its order.

    Returns:
        The fitted calibrator.

    Raises:
        DataError: No rows, rows that are not probabilities, or a length mismatch.
    """
    p = _probability_matrix(probabilities, labels, "calibration reference")
    y = np.asarray(y_index)
    if len(p) == 0:
        raise DataError("calibration reference: no rows to fit the calibrator on")
    if y.shape != (len(p),):
        raise DataError(f"calibration reference: {y.shape[0]} labels for {len(p)} rows")
    columns = range(1, 2) if len(labels) == 2 else range(len(labels))
    fits = [
        IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            p[:, j], (y == j).astype(np.float64)
        )
        for j in columns
    ]
    return Calibrator(
        tuple(labels),
        tuple(np.asarray(fit.X_thresholds_, float) for fit in fits),
        tuple(np.asarray(fit.y_thresholds_, float) for fit in fits),
    )


@dataclass(frozen=True)
class EstimatedPerformance:
    """Expected metrics of one window, from its predicted probabilities alone.

    An empty window is not an error (a quiet hour has no traffic): it gives ``n_rows`` 0 and
    every metric None, with the same metric names as any other window of the model.

    Attributes:
        n_rows: Rows in the window.
        metrics: Metric name -> expected value; names as
            :func:`ray_mlops.evaluate.metrics.classification_metrics` gives them (binary:
            ``BINARY_METRICS``, multiclass: ``MULTICLASS_METRICS``). None where undefined:
            roc_auc when the probabilities expect no positives or no negatives.
        positive: Binary: the class whose precision, recall and F1 these are; else None.
        threshold: Binary: a row is predicted positive when P(positive) exceeds it; else None.
        expected_confusion: Binary: expected ``tp``, ``fp``, ``fn``, ``tn`` (sums of
            probabilities); None for multiclass and for an empty window.
    """

    n_rows: int
    metrics: dict[str, float | None]
    positive: str | None
    threshold: float | None
    expected_confusion: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (no NaN)."""
        return {
            "n_rows": self.n_rows,
            "positive": self.positive,
            "threshold": self.threshold,
            "metrics": {name: _finite(value) for name, value in self.metrics.items()},
            "expected_confusion": self.expected_confusion,
        }


@dataclass(frozen=True)
class RealisedPerformance:
    """Metrics of the labelled rows of a window, named as the estimate names them.

    Attributes:
        n_labelled: Rows with a joined label.
        metrics: Every metric of
            :func:`~ray_mlops.evaluate.metrics.classification_metrics`, plus None for an
            estimated metric it leaves out (roc_auc with one class among the labels); every
            value None when no row is labelled.
    """

    n_labelled: int
    metrics: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (no NaN)."""
        return {
            "n_labelled": self.n_labelled,
            "metrics": {name: _finite(value) for name, value in self.metrics.items()},
        }


def estimate_performance(
    probabilities: np.ndarray,
    labels: list[str],
    *,
    calibrator: Calibrator | None = None,
    positive: str | None = None,
    threshold: float = 0.5,
) -> EstimatedPerformance:
    """Expected accuracy, precision, recall, F1 and ROC AUC of a window (CBPE).

    The model's decision and ranking come from ``probabilities`` as served; the chance that
    each row belongs to each class comes from ``calibrator.apply(probabilities)``, or from
    ``probabilities`` themselves when no calibrator is given, which is right only for a
    calibrated model. Binary: the expected confusion matrix at ``threshold`` and the expected
    ROC AUC (NannyML's). Multiclass: the predicted class is the most probable one;
    ``positive`` and ``threshold`` do not apply.

    The defaults (positive ``labels[1]``, threshold 0.5) are the served decision, the one
    :func:`realised_performance` scores; another threshold estimates a decision rule the
    model does not serve.

    Args:
        probabilities: ``(n, len(labels))`` predicted probabilities of the window.
        labels: The model's classes, in its order.
        calibrator: Fitted on the model's labelled reference predictions.
        positive: Binary: the class scored as positive; ``labels[1]`` by default.
        threshold: Binary: P(positive) above which a row is predicted positive.

    Returns:
        The estimate; all metrics None for an empty window.

    Raises:
        DataError: Rows that are not probabilities, an unknown ``positive``, a threshold
            outside [0, 1], or a calibrator fitted for other labels.

    Example:
        >>> p = np.array([[0.1, 0.9], [0.8, 0.2]])
        >>> round(estimate_performance(p, ["no", "yes"]).metrics["accuracy"], 6)
        0.85
    """
    raw = _probability_matrix(probabilities, labels, "window")
    binary = len(labels) == 2
    positive_index = _positive_index(labels, positive) if binary else None
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold {threshold} is outside [0, 1]")
    if calibrator is not None and list(calibrator.labels) != list(labels):
        raise DataError(
            f"calibrator was fitted for labels {list(calibrator.labels)}, not {list(labels)}"
        )
    names = BINARY_METRICS if binary else MULTICLASS_METRICS
    positive_label = labels[positive_index] if positive_index is not None else None
    cut = threshold if binary else None
    if len(raw) == 0:
        return EstimatedPerformance(0, dict.fromkeys(names), positive_label, cut, None)
    calibrated = calibrator.apply(raw) if calibrator is not None else raw
    if positive_index is None:
        return EstimatedPerformance(
            len(raw), _multiclass_estimate(raw, calibrated), None, None, None
        )
    metrics, confusion = _binary_estimate(raw, calibrated, positive_index, threshold)
    return EstimatedPerformance(len(raw), metrics, positive_label, cut, confusion)


def realised_performance(
    probabilities: np.ndarray,
    y_true_labels: np.ndarray,
    labels: list[str],
    *,
    positive: str | None = None,
) -> RealisedPerformance:
    """The labelled rows' metrics, by :func:`~ray_mlops.evaluate.metrics.classification_metrics`.

    Args:
        probabilities: ``(n, len(labels))`` probabilities the model served for the rows.
        y_true_labels: The joined true labels, as strings, row for row.
        labels: The model's classes, in its order.
        positive: Binary: the class scored as positive; ``labels[1]`` by default.

    Returns:
        The realised metrics, with the names of :func:`estimate_performance`'s.

    Raises:
        DataError: Rows that are not probabilities, a length mismatch, or an unknown
            ``positive``.
    """
    p = _probability_matrix(probabilities, labels, "labelled window")
    y = np.asarray(y_true_labels, dtype=object)
    if y.shape != (len(p),):
        raise DataError(f"labelled window: {y.shape[0]} labels for {len(p)} rows")
    names = BINARY_METRICS if len(labels) == 2 else MULTICLASS_METRICS
    if len(p) == 0:
        return RealisedPerformance(0, dict.fromkeys(names))
    order = list(range(len(labels)))
    if len(labels) == 2 and _positive_index(labels, positive) == 0:
        # classification_metrics scores the last of two classes as positive.
        order = [1, 0]
    measured = classification_metrics(y, p[:, order], [labels[i] for i in order])
    metrics: dict[str, float | None] = dict.fromkeys(names)
    metrics.update(measured)
    return RealisedPerformance(len(p), metrics)


def estimate_by_group(
    probabilities: np.ndarray,
    labels: list[str],
    groups: Sequence[Any] | np.ndarray,
    *,
    calibrator: Calibrator | None = None,
    positive: str | None = None,
    threshold: float = 0.5,
) -> dict[str, EstimatedPerformance]:
    """:func:`estimate_performance` within each group of a sensitive column.

    Groups are named as :func:`ray_mlops.evaluate.fairness.fairness_metrics` names them
    (values as strings, missing ones ``(missing)``), so each estimate sits beside that
    group's realised fairness metrics once labels arrive.

    Args:
        probabilities: ``(n, len(labels))`` predicted probabilities of the window.
        labels: The model's classes, in its order.
        groups: The sensitive column's value for each row.
        calibrator: As for :func:`estimate_performance`.
        positive: As for :func:`estimate_performance`.
        threshold: As for :func:`estimate_performance`.

    Returns:
        Group -> its estimate, in sorted group order.

    Raises:
        DataError: ``groups`` is not one value per row, or as :func:`estimate_performance`.
    """
    p = _probability_matrix(probabilities, labels, "window")
    keys = pd.Series(np.asarray(groups, dtype=object)).astype("string").fillna(MISSING)
    if len(keys) != len(p):
        raise DataError(f"window: {len(keys)} group values for {len(p)} rows")
    return {
        str(group): estimate_performance(
            p[rows], labels, calibrator=calibrator, positive=positive, threshold=threshold
        )
        for group, rows in keys.groupby(keys, sort=True).indices.items()
    }


def _binary_estimate(
    raw: np.ndarray, calibrated: np.ndarray, positive: int, threshold: float
) -> tuple[dict[str, float | None], dict[str, float]]:
    score = raw[:, positive]
    chance = calibrated[:, positive]
    # Class 1 of the expected counts is the positive class, whatever its column.
    counts = _expected_counts(np.column_stack([1.0 - chance, chance]), (score > threshold) * 1)
    truth, decision, weight = _cells(counts)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        truth, decision, labels=[1], sample_weight=weight, average=None, zero_division=0
    )
    metrics: dict[str, float | None] = {
        "accuracy": float(skm.accuracy_score(truth, decision, sample_weight=weight)),
        "precision": float(precision[0]),
        "recall": float(recall[0]),
        "f1": float(f1[0]),
        "f1_macro": _weighted_f1(truth, decision, weight, 2, "macro"),
        "roc_auc": _expected_roc_auc(score, chance),
    }
    (tn, fp), (fn, tp) = counts
    confusion = {"tp": float(tp), "fp": float(fp), "fn": float(fn), "tn": float(tn)}
    return metrics, confusion


def _multiclass_estimate(raw: np.ndarray, calibrated: np.ndarray) -> dict[str, float | None]:
    k = raw.shape[1]
    truth, decision, weight = _cells(_expected_counts(calibrated, raw.argmax(axis=1)))
    average = {"labels": range(k), "sample_weight": weight, "average": "macro", "zero_division": 0}
    # One-vs-rest, as the realised roc_auc: the macro mean of each class's AUC.
    per_class = [_expected_roc_auc(raw[:, j], calibrated[:, j]) for j in range(k)]
    defined = [auc for auc in per_class if auc is not None]
    return {
        "accuracy": float(skm.accuracy_score(truth, decision, sample_weight=weight)),
        "precision_macro": float(skm.precision_score(truth, decision, **average)),
        "recall_macro": float(skm.recall_score(truth, decision, **average)),
        "f1_macro": _weighted_f1(truth, decision, weight, k, "macro"),
        "f1_weighted": _weighted_f1(truth, decision, weight, k, "weighted"),
        "roc_auc": float(np.mean(defined)) if len(defined) == k else None,
    }


def _expected_counts(chance: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """CBPE's expected confusion matrix: [true t, predicted j] = sum of P(t) over rows predicted j."""
    k = chance.shape[1]
    return np.stack([np.bincount(predicted, weights=chance[:, t], minlength=k) for t in range(k)])


def _cells(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The confusion matrix as k*k weighted rows (true class, predicted class, count).

    sklearn's metrics of these rows are its metrics of any labelled set with these counts, so
    the expected metrics follow sklearn's conventions (zero_division, averaging) at the cost
    of k*k rows, not one per row and class of the window.
    """
    k = len(counts)
    truth, decision = np.divmod(np.arange(k * k), k)
    return truth, decision, counts.ravel()


def _expected_roc_auc(score: np.ndarray, chance: np.ndarray) -> float | None:
    """NannyML's expected ROC AUC: the ROC curve with each row a fractional positive.

    Down the scores, each row adds its calibrated probability to the expected true positives
    and its complement to the false positives; the curve has one point per distinct score
    (rows that tie enter together, as in sklearn's roc_curve) and the trapezoid area under it
    is the estimate. None when the probabilities expect no positives or no negatives.
    """
    order = np.argsort(score, kind="stable")[::-1]
    ranked, fractional = score[order], chance[order]
    true_positives = np.cumsum(fractional)
    false_positives = np.cumsum(1.0 - fractional)
    if true_positives[-1] <= 0.0 or false_positives[-1] <= 0.0:
        return None
    last_of_each_score = np.append(np.flatnonzero(np.diff(ranked)), len(ranked) - 1)
    tpr = np.append(0.0, true_positives[last_of_each_score]) / true_positives[-1]
    fpr = np.append(0.0, false_positives[last_of_each_score]) / false_positives[-1]
    return float(skm.auc(fpr, tpr))


def _weighted_f1(
    truth: np.ndarray, decision: np.ndarray, weight: np.ndarray, k: int, average: str
) -> float:
    return float(
        skm.f1_score(
            truth,
            decision,
            labels=range(k),
            sample_weight=weight,
            average=average,
            zero_division=0,
        )
    )


def _probability_matrix(probabilities: np.ndarray, labels: list[str], where: str) -> np.ndarray:
    if len(labels) < 2:
        raise DataError(f"{where}: a classifier needs at least 2 labels, got {list(labels)}")
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(labels):
        raise DataError(
            f"{where}: probabilities of shape {p.shape}, expected (n, {len(labels)}) "
            f"for labels {list(labels)}"
        )
    bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (p > 1).any(axis=1)
    bad |= np.abs(p.sum(axis=1) - 1.0) > ROW_SUM_TOLERANCE
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: {int(bad.sum())} of {len(p)} rows are not probabilities in [0, 1] "
            f"summing to 1 (first: row {first})"
        )
    return p


def _positive_index(labels: list[str], positive: str | None) -> int:
    if positive is None:
        return 1
    if positive not in labels:
        raise DataError(f"positive class {positive!r} is not one of the labels {list(labels)}")
    return labels.index(positive)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
