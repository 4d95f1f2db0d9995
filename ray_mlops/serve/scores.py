"""A model's answers for a batch of rows, as arrays: cheap to slice per request. Ray-free."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ray_mlops.models.outputs import PREDICTION_COLUMN, PROBABILITY_PREFIX, probability_labels
from ray_mlops.serve.schema import RequestError, RequestRows

_MAX_ERRORS = 50


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

    def non_finite_rows(self) -> list[int]:
        """Rows whose prediction (regression) or probabilities are NaN or infinite."""
        bad = np.zeros(len(self), dtype=bool)
        if self.predictions.dtype.kind in "fc":
            bad |= ~np.isfinite(self.predictions)
        if self.probabilities is not None:
            bad |= ~np.isfinite(self.probabilities).all(axis=1)
        return np.flatnonzero(bad).tolist()

    def check_finite(self, rows: RequestRows, where: Callable[[int, str], list[Any]]) -> None:
        """Refuse an answer that JSON cannot carry, naming the inputs that caused it.

        A finite input can still overflow the model's arithmetic (``1e300`` in a float32
        network is infinite, and softmax of infinities is NaN). That is the input's doing,
        so it is a 422 naming each such row's largest numeric value, not a 500.

        Args:
            rows: The request's checked rows, in the order of these answers.
            where: The ``loc`` of a value from its row and column.

        Raises:
            RequestError: 422, one error per row without a finite answer.
        """
        bad = self.non_finite_rows()
        if not bad:
            return
        numeric = [c for c in rows.schema.numeric if c in rows.columns]
        errors = []
        for row in bad[:_MAX_ERRORS]:
            values = {c: float(rows.columns[c][row]) for c in numeric}
            sized = {c: abs(v) for c, v in values.items() if v == v}
            column = max(sized, key=sized.__getitem__) if sized else None
            errors.append(
                {
                    "loc": where(row, column) if column else ["body"],
                    "msg": f"row {row}: the model has no finite answer"
                    + (f"; its largest value is {column}={values[column]:g}" if column else ""),
                }
            )
        raise RequestError(
            422,
            f"no finite answer for {len(bad)} row(s): a value this large overflows the "
            f"model's arithmetic ({errors[0]['msg']})",
            errors,
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Scores:
        """From a pyfunc model's prediction frame."""
        labels = probability_labels(frame) or None
        probabilities = None
        if labels is not None:
            columns = [f"{PROBABILITY_PREFIX}{label}" for label in labels]
            probabilities = frame[columns].to_numpy(dtype=np.float64)
        return cls(frame[PREDICTION_COLUMN].to_numpy(), probabilities, labels)
