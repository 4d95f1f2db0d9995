"""The columns of a packaged model's prediction frame. Imports nothing heavy (no torch).

``prediction`` holds the label (or regression value); a classifier adds one
``probability_<label>`` column per class.
"""

from __future__ import annotations

import pandas as pd

PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"


def probability_labels(predictions: pd.DataFrame) -> list[str]:
    """The classes of a prediction frame, in its column order (empty for regression)."""
    return [
        c.removeprefix(PROBABILITY_PREFIX)
        for c in predictions.columns
        if c.startswith(PROBABILITY_PREFIX)
    ]
