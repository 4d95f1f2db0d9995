"""A batch's answers, sliced back to its requests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ray_mlops.serve.scores import Scores

FRAME = pd.DataFrame(
    {
        "prediction": np.array(["no", "yes", "no"], dtype=object),
        "probability_no": [0.9, 0.2, 0.6],
        "probability_yes": [0.1, 0.8, 0.4],
    }
)


def test_a_prediction_frame_becomes_arrays() -> None:
    scores = Scores.from_frame(FRAME)
    assert scores.labels == ["no", "yes"] and len(scores) == 3
    assert scores.predictions.tolist() == ["no", "yes", "no"]
    assert scores.probabilities is not None
    np.testing.assert_array_equal(scores.probabilities[:, 1], [0.1, 0.8, 0.4])


def test_each_request_gets_its_own_rows() -> None:
    scores = Scores.from_frame(FRAME)
    first, rest = scores.rows(0, 1), scores.rows(1, 3)
    assert first.body() == {"predictions": ["no"], "probabilities": [{"no": 0.9, "yes": 0.1}]}
    assert rest.body()["predictions"] == ["yes", "no"]
    assert rest.body()["probabilities"][1] == {"no": 0.6, "yes": 0.4}


def test_regression_has_no_probabilities() -> None:
    scores = Scores.from_frame(pd.DataFrame({"prediction": [1.5, -2.0]}))
    assert scores.labels is None and scores.probabilities is None
    assert scores.rows(1, 2).body() == {"predictions": [-2.0]}
