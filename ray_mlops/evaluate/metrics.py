"""Task metrics from scikit-learn, and which direction is better for each. Ray-free."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from ray_mlops.config import Task

LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


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


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]
) -> dict[str, float]:
    """Accuracy, F1, ROC-AUC and log loss of class probabilities ``(n, n_classes)``.

    Rows whose true label the model never saw count as errors, not as missing.
    """
    y_index = np.array([labels.index(y) if y in labels else -1 for y in y_true])
    predicted = probabilities.argmax(axis=1)
    known = y_index >= 0
    result = {
        "accuracy": float(np.mean(predicted == y_index)),
        "f1_macro": float(
            skm.f1_score(y_index, predicted, average="macro", labels=range(len(labels)))
        ),
    }
    if known.any() and len(np.unique(y_index[known])) > 1:
        p, yk = probabilities[known], y_index[known]
        if len(labels) == 2:
            result["roc_auc"] = float(skm.roc_auc_score(yk, p[:, 1]))
        else:
            result["roc_auc"] = float(
                skm.roc_auc_score(yk, p, multi_class="ovr", labels=range(len(labels)))
            )
        result["log_loss"] = float(skm.log_loss(yk, p, labels=range(len(labels))))
    return result


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R2."""
    y = y_true.astype(np.float64)
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
        "mae": float(skm.mean_absolute_error(y, predicted)),
        "r2": float(skm.r2_score(y, predicted)),
    }
