import numpy as np
from sklearn import metrics as skm

from ray_mlops.evaluate.metrics import (
    classification_metrics,
    default_primary_metric,
    is_improvement,
    regression_metrics,
)


def test_binary_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(y * 0.6 + rng.uniform(0, 0.4, 300), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    labels = ["a", "b"]
    got = classification_metrics(np.array(labels)[y], proba, labels)
    assert got["roc_auc"] == skm.roc_auc_score(y, p1)
    assert got["accuracy"] == skm.accuracy_score(y, proba.argmax(1))
    assert got["log_loss"] == skm.log_loss(y, proba)
    assert got["f1_macro"] == skm.f1_score(y, proba.argmax(1), average="macro")


def test_regression_metrics_match_scikit_learn() -> None:
    y = np.array([1.0, 2.0, 4.0])
    pred = np.array([1.5, 2.0, 3.0])
    got = regression_metrics(y, pred)
    assert got["rmse"] == np.sqrt(skm.mean_squared_error(y, pred))
    assert got["r2"] == skm.r2_score(y, pred)
    assert got["wmape"] == 1.5 / 7.0


def test_wmape_is_defined_with_zero_targets_where_mape_explodes() -> None:
    y = np.array([0.0, 0.0, 3.0, 1.0])
    pred = np.array([0.5, 0.0, 2.0, 1.0])
    assert skm.mean_absolute_percentage_error(y, pred) > 1e14  # what the issue saw
    assert regression_metrics(y, pred)["wmape"] == 1.5 / 4.0


def test_direction_of_improvement() -> None:
    assert is_improvement("roc_auc", 0.9, 0.8) and not is_improvement("roc_auc", 0.8, 0.8)
    assert is_improvement("rmse", 1.0, 2.0) and not is_improvement("log_loss", 0.5, 0.4)
    assert default_primary_metric("classification", 2) == "roc_auc"
    assert default_primary_metric("classification", 3) == "f1_macro"
    assert default_primary_metric("regression", None) == "rmse"
