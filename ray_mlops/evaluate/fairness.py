"""Group fairness of predictions over sensitive columns, with fairlearn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
)
from sklearn import metrics as skm

from ray_mlops.config import Task
from ray_mlops.evaluate.metrics import label_indices
from ray_mlops.models.predictor import PREDICTION_COLUMN, PROBABILITY_PREFIX

MISSING = "(missing)"


@dataclass
class FairnessResult:
    """How the model's behaviour differs between the groups of one sensitive column.

    Attributes:
        column: The sensitive column.
        demographic_parity_difference: Classification: largest gap in the rate of predicting
            a class between two groups (binary: the positive class; multiclass: the largest
            one-vs-rest gap over the classes). ``None`` for regression.
        equalized_odds_difference: Classification: the larger of the true- and false-positive
            rate gaps between groups, as fairlearn defines it (multiclass: the largest
            one-vs-rest value). ``None`` for regression.
        mae_difference: Regression: largest gap in mean absolute error between two groups.
            ``None`` for classification.
        groups: Group value -> metric -> value. Classification: count, accuracy,
            selection_rate, true_positive_rate, false_positive_rate (multiclass: one
            ``selection_rate_<label>`` per class and macro one-vs-rest rates). Regression:
            count, mae, rmse. A rate with no rows to define it (no positives) is NaN.
    """

    column: str
    demographic_parity_difference: float | None
    equalized_odds_difference: float | None
    mae_difference: float | None
    groups: dict[str, dict[str, float]]


def fairness_metrics(
    holdout: pd.DataFrame,
    target: str,
    predictions: pd.DataFrame,
    task: Task,
    labels: list[str] | None,
    sensitive: list[str],
) -> dict[str, FairnessResult]:
    """Group metrics and disparities of the predictions for each sensitive column.

    The predicted class is the most probable one (as in the task metrics). A true label the
    model never saw is of no class: a negative for every one-vs-rest rate, an error for
    accuracy. Missing values of a sensitive column form the group ``(missing)``.

    Args:
        holdout: The holdout rows, with the target and sensitive columns.
        target: Name of the target column.
        predictions: The model's prediction frame for ``holdout``, row for row (by position).
        task: ``classification`` or ``regression``.
        labels: The model's classes (classification), ``None`` for regression.
        sensitive: Columns whose groups are compared.

    Returns:
        Sensitive column -> its result, in the order given.
    """
    frame = holdout.reset_index(drop=True)
    scored = predictions.reset_index(drop=True)
    results = {}
    for column in sensitive:
        groups = frame[column].astype("string").fillna(MISSING).to_numpy(dtype=object)
        if task == "regression":
            results[column] = _regression(column, frame[target], scored, groups)
        else:
            assert labels is not None
            results[column] = _classification(column, frame[target], scored, labels, groups)
    return results


def _classification(
    column: str, target: pd.Series, predictions: pd.DataFrame, labels: list[str], groups: np.ndarray
) -> FairnessResult:
    probabilities = predictions[[f"{PROBABILITY_PREFIX}{label}" for label in labels]].to_numpy()
    y_index = label_indices(target.astype("string").to_numpy(), labels)
    predicted = probabilities.argmax(axis=1)
    # Binary: the positive class alone; multiclass: every class against the rest.
    classes = [1] if len(labels) == 2 else list(range(len(labels)))
    parity, odds = [], []
    for k in classes:
        y_k, p_k = (y_index == k).astype(int), (predicted == k).astype(int)
        parity.append(demographic_parity_difference(y_k, p_k, sensitive_features=groups))
        odds.append(equalized_odds_difference(y_k, p_k, sensitive_features=groups))

    metrics: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "count": count,
        "accuracy": skm.accuracy_score,
    }
    if len(labels) == 2:
        metrics["selection_rate"] = partial(_selection_rate, k=1)
        metrics["true_positive_rate"] = partial(_positive_rate, k=1, among_positives=True)
        metrics["false_positive_rate"] = partial(_positive_rate, k=1, among_positives=False)
    else:
        for k, label in enumerate(labels):
            metrics[f"selection_rate_{label}"] = partial(_selection_rate, k=k)
        metrics["true_positive_rate"] = partial(_macro_rate, classes=classes, among_positives=True)
        metrics["false_positive_rate"] = partial(
            _macro_rate, classes=classes, among_positives=False
        )
    frame = MetricFrame(
        metrics=metrics, y_true=y_index, y_pred=predicted, sensitive_features=groups
    )
    return FairnessResult(
        column=column,
        demographic_parity_difference=float(max(parity)),
        equalized_odds_difference=float(max(odds)),
        mae_difference=None,
        groups=_by_group(frame),
    )


def _regression(
    column: str, target: pd.Series, predictions: pd.DataFrame, groups: np.ndarray
) -> FairnessResult:
    frame = MetricFrame(
        metrics={
            "count": count,
            "mae": skm.mean_absolute_error,
            "rmse": skm.root_mean_squared_error,
        },
        y_true=target.to_numpy(dtype=np.float64),
        y_pred=predictions[PREDICTION_COLUMN].to_numpy(dtype=np.float64),
        sensitive_features=groups,
    )
    return FairnessResult(
        column=column,
        demographic_parity_difference=None,
        equalized_odds_difference=None,
        mae_difference=float(frame.difference(method="between_groups")["mae"]),
        groups=_by_group(frame),
    )


def _by_group(frame: MetricFrame) -> dict[str, dict[str, float]]:
    table = frame.by_group
    return {
        str(group): {
            str(metric): int(value) if metric == "count" else float(value)
            for metric, value in row.items()
        }
        for group, row in table.iterrows()
    }


def _selection_rate(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    return float(np.mean(y_pred == k)) if len(y_pred) else float("nan")


def _positive_rate(y_true: np.ndarray, y_pred: np.ndarray, k: int, among_positives: bool) -> float:
    """True-positive rate of class ``k`` (or its false-positive rate); NaN if undefined.

    fairlearn's own rate functions report 0 for a group with no positives, which would read
    as a model that misses them all; NaN says there is nothing to measure.
    """
    rows = (y_true == k) if among_positives else (y_true != k)
    return float(np.mean(y_pred[rows] == k)) if rows.any() else float("nan")


def _macro_rate(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[int], among_positives: bool
) -> float:
    rates = [_positive_rate(y_true, y_pred, k, among_positives) for k in classes]
    defined = [r for r in rates if not np.isnan(r)]
    return float(np.mean(defined)) if defined else float("nan")
