"""Score a model on the test split: the same rows for the candidate and the champion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ray_mlops.config import Task
from ray_mlops.evaluate.metrics import classification_metrics, regression_metrics
from ray_mlops.features.primitives import datetime_values
from ray_mlops.models.predictor import PREDICTION_COLUMN, PROBABILITY_PREFIX, probability_labels

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel
    from mlflow.types import Schema


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


def conform_to_signature(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The signature's columns, typed as a JSON client sends them (floats; str or None).

    Raises:
        KeyError: ``frame`` lacks a column the signature names.
    """
    typed = pd.DataFrame(index=frame.index)
    for spec in schema.inputs:
        values = frame[spec.name]
        kind = str(spec.type).lower()
        if "string" in kind:
            text = values.astype("string").astype(object)
            typed[spec.name] = text.where(values.notna(), None)
        elif "datetime" in kind:
            typed[spec.name] = datetime_values(values)
        else:
            typed[spec.name] = values.astype("float64")
    return typed


def score_model(
    model: PyFuncModel, holdout: pd.DataFrame, task: Task, target: str
) -> dict[str, float]:
    """Score a packaged model on the holdout, feeding it the columns its signature names.

    Candidate and champion get the same rows; each takes its own input columns and its own
    class list, so a champion trained on other features is still judged on these rows.

    Raises:
        KeyError: the holdout lacks a column the model needs.
    """
    schema = model.metadata.get_input_schema()
    predictions = pd.DataFrame(model.predict(conform_to_signature(holdout, schema)))
    labels = probability_labels(predictions) if task == "classification" else None
    return score_predictions(task, holdout[target], predictions, labels)
