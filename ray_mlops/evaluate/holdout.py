"""Score a model on the test split: the same rows for the candidate and the champion."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ray_mlops.config import Task
from ray_mlops.evaluate.metrics import classification_metrics, regression_metrics
from ray_mlops.models.predictor import PREDICTION_COLUMN, PROBABILITY_PREFIX


def score_predictions(
    task: Task, target: pd.Series, predictions: pd.DataFrame, labels: list[str] | None
) -> dict[str, float]:
    """Metrics of a prediction frame (as the packaged model returns it) against ``target``."""
    if task == "regression":
        return regression_metrics(
            target.to_numpy(dtype=np.float64), predictions[PREDICTION_COLUMN].to_numpy()
        )
    assert labels is not None
    probabilities = predictions[[f"{PROBABILITY_PREFIX}{label}" for label in labels]].to_numpy()
    return classification_metrics(target.astype("string").to_numpy(), probabilities, labels)


def score_model(
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    holdout: pd.DataFrame,
    task: Task,
    target: str,
    feature_columns: list[str],
) -> dict[str, float]:
    """Run ``predict`` on the holdout's feature columns and score it.

    The class list comes from the model's own probability columns, so a champion trained on
    different data is judged on its own terms.
    """
    predictions = predict(holdout[feature_columns])
    labels = None
    if task == "classification":
        labels = [
            c.removeprefix(PROBABILITY_PREFIX)
            for c in predictions.columns
            if c.startswith(PROBABILITY_PREFIX)
        ]
    return score_predictions(task, holdout[target], predictions, labels)
