"""A model's answers for a batch of rows, as arrays: cheap to slice per request. Ray-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ray_mlops.models.outputs import PREDICTION_COLUMN, PROBABILITY_PREFIX, probability_labels


@dataclass(frozen=True)
class Scores:
    """A model's answers for some rows: predictions and, for a classifier, probabilities.

    Attributes:
        predictions: One label (or regression value) per row.
        probabilities: ``(rows, len(labels))`` float64, or None for regression.
        labels: The classes, in the probabilities' column order; None for regression.
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None
    labels: list[str] | None

    def __len__(self) -> int:
        return len(self.predictions)

    def rows(self, start: int, stop: int) -> Scores:
        """The answers for rows ``start:stop`` (views, no copy)."""
        probabilities = None if self.probabilities is None else self.probabilities[start:stop]
        return Scores(self.predictions[start:stop], probabilities, self.labels)

    def body(self) -> dict[str, Any]:
        """``predictions`` and, for classifiers, ``probabilities`` as a list of {label: p}."""
        body: dict[str, Any] = {"predictions": self.predictions.tolist()}
        if self.probabilities is not None and self.labels is not None:
            labels = self.labels
            body["probabilities"] = [
                dict(zip(labels, row, strict=True)) for row in self.probabilities.tolist()
            ]
        return body

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Scores:
        """From a pyfunc model's prediction frame."""
        labels = probability_labels(frame) or None
        probabilities = None
        if labels is not None:
            columns = [f"{PROBABILITY_PREFIX}{label}" for label in labels]
            probabilities = frame[columns].to_numpy(dtype=np.float64)
        return cls(frame[PREDICTION_COLUMN].to_numpy(), probabilities, labels)
