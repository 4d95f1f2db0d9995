"""Task metrics from scikit-learn, and which direction is better for each. Ray-free."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from ray_mlops.config import Task

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "calibration_error", "rmse", "mae", "wmape"})
CALIBRATION_BINS = 10


def default_primary_metric(task: Task, n_classes: int | None) -> str:
    """roc_auc for binary, f1_macro for multiclass, rmse for regression."""
    if task == "regression":
        return "rmse"
    return "roc_auc" if n_classes == 2 else "f1_macro"


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is an improvement."""
    return metric not in LOWER_IS_BETTER


def is_improvement(metric: str, candidate: float, incumbent: float) -> bool:
    """Strictly better in the metric's own direction."""
    return candidate > incumbent if higher_is_better(metric) else candidate < incumbent


def label_indices(y_true: np.ndarray, labels: list[str]) -> np.ndarray:
    """Position of each true label in ``labels``; -1 for a label the model never saw."""
    position = {label: i for i, label in enumerate(labels)}
    return np.array([position.get(y, -1) for y in y_true], dtype=np.int64)


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]
) -> dict[str, float]:
    """Metrics of class probabilities ``(n, n_classes)``, in the order of ``labels``.

    Binary: accuracy, precision, recall and f1 of the positive class ``labels[1]``, f1_macro,
    roc_auc, pr_auc (average precision), log_loss, brier and calibration_error (expected
    calibration error of the positive-class probability). Multiclass: accuracy, f1_macro,
    f1_weighted, precision_macro, recall_macro, roc_auc (one-vs-rest) and log_loss.

    Rows whose true label the model never saw count as errors, not as missing, in the metrics
    of predicted classes; the probability metrics (roc_auc, pr_auc, log_loss, brier,
    calibration_error) are undefined for them and use the other rows. A metric that is
    undefined on these rows (roc_auc when a class is absent) is left out rather than NaN.

    Args:
        y_true: True labels, as strings.
        probabilities: One column per entry of ``labels``.
        labels: The model's classes, in its order.

    Returns:
        Metric name -> value.
    """
    y_index = label_indices(y_true, labels)
    predicted = probabilities.argmax(axis=1)
    classes = range(len(labels))
    result = {
        "accuracy": float(np.mean(predicted == y_index)) if len(y_index) else float("nan"),
        "f1_macro": _f1(y_index, predicted, classes, "macro"),
    }
    if len(labels) == 2:
        # labels=[1] scores the positive class alone; unseen true labels (-1) that were
        # predicted positive still count as false positives.
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_index, predicted, labels=[1], average=None, zero_division=0
        )
        result |= {"precision": float(precision[0]), "recall": float(recall[0])}
        result["f1"] = float(f1[0])
    else:
        result["f1_weighted"] = _f1(y_index, predicted, classes, "weighted")
        result["precision_macro"] = float(
            skm.precision_score(
                y_index, predicted, labels=classes, average="macro", zero_division=0
            )
        )
        result["recall_macro"] = float(
            skm.recall_score(y_index, predicted, labels=classes, average="macro", zero_division=0)
        )
    known = y_index >= 0
    if not known.any():
        return result
    p, yk = probabilities[known], y_index[known]
    present = np.unique(yk)
    result["log_loss"] = float(skm.log_loss(yk, p, labels=classes))
    if len(labels) == 2:
        positive = p[:, 1]
        if len(present) == 2:
            result["roc_auc"] = float(skm.roc_auc_score(yk, positive))
            result["pr_auc"] = float(skm.average_precision_score(yk, positive))
        result["brier"] = float(skm.brier_score_loss(yk, positive, pos_label=1))
        result["calibration_error"] = expected_calibration_error(yk == 1, positive)
    elif len(present) == len(labels):
        # One-vs-rest AUC needs every class among the true labels; sklearn gives NaN otherwise.
        result["roc_auc"] = float(skm.roc_auc_score(yk, p, multi_class="ovr", labels=classes))
    return result


def per_class_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class (binary and multiclass).

    Args:
        y_true: True labels, as strings; an unseen label is a false positive of the class
            predicted for it.
        probabilities: One column per entry of ``labels``.
        labels: The model's classes, in its order.

    Returns:
        Label -> {"precision", "recall", "f1", "support"}.
    """
    y_index = label_indices(y_true, labels)
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_index, predicted, labels=range(len(labels)), average=None, zero_division=0
    )
    return {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def expected_calibration_error(
    y_positive: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Expected calibration error over equal-width probability bins, weighted by bin count.

    Bins are ``[0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]`` for 10 bins; each contributes
    ``|observed positive rate - mean predicted probability|`` times its share of the rows.

    Args:
        y_positive: Whether each row is of the positive class.
        probability: Predicted probability of the positive class.
        bins: Number of bins.

    Returns:
        The error, in [0, 1]; NaN when there are no rows.
    """
    if len(probability) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # side="right" puts a probability equal to an inner edge in the bin it opens.
    which = np.searchsorted(edges[1:-1], probability, side="right")
    observed = np.asarray(y_positive, dtype=np.float64)
    error = 0.0
    for b in np.unique(which):
        members = which == b
        gap = abs(observed[members].mean() - probability[members].mean())
        error += gap * members.sum() / len(probability)
    return float(error)


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R2 and WMAPE (a fraction: 0.12 is 12%).

    WMAPE is left out when every true value is 0, where no percentage error is defined.

    Example:
        >>> got = regression_metrics(np.array([0.0, 0.0, 4.0]), np.array([1.0, 0.0, 3.0]))
        >>> got["wmape"], got["mae"]
        (0.5, 0.6666666666666666)
    """
    y = y_true.astype(np.float64)
    result = {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
        "mae": float(skm.mean_absolute_error(y, predicted)),
        "r2": float(skm.r2_score(y, predicted)),
    }
    wmape = weighted_absolute_percentage_error(y, predicted)
    if wmape is not None:
        result["wmape"] = wmape
    return result


def weighted_absolute_percentage_error(y_true: np.ndarray, predicted: np.ndarray) -> float | None:
    """``sum(|y - p|) / sum(|y|)``; None when every ``y`` is 0.

    Plain MAPE divides each error by its own ``y``: one true 0 (a count target, demand, sales)
    makes it infinite, or 1e15 with scikit-learn's epsilon. WMAPE, the MAD/mean ratio that
    demand forecasting uses for intermittent series, divides the total error by the total
    volume instead, so it stays defined with zeros and weighs rows by their size. SMAPE was
    the other candidate: it is undefined where ``y`` and the prediction are both 0, and it
    punishes over- and under-prediction unequally.

    Example:
        >>> weighted_absolute_percentage_error(np.array([0.0, 10.0]), np.array([2.0, 8.0]))
        0.4
    """
    volume = float(np.abs(y_true).sum())
    if volume == 0.0:
        return None
    return float(np.abs(np.asarray(y_true, np.float64) - predicted).sum() / volume)


def _f1(y_index: np.ndarray, predicted: np.ndarray, classes: range, average: str) -> float:
    return float(skm.f1_score(y_index, predicted, labels=classes, average=average, zero_division=0))
