"""A model version's monitoring reference, built from its train sample and holdout. Ray-free."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ray_mlops.config import parse_config
from ray_mlops.data.profile import CategoricalProfile
from ray_mlops.errors import DataError
from ray_mlops.monitor.reference import build_reference

LABELS = ["<=50K", ">50K"]


def _data(task: str = "classification"):
    return parse_config(
        {
            "name": "adult",
            "task": task,
            "data": {
                "path": "unused.csv",
                "target": "income",
                "numeric": ["age"],
                "categorical": ["job"],
                "contract": {"age": {"dtype": "float", "min": 17, "max": 90}},
            },
        }
    ).data


def _frames(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    sample = pd.DataFrame({"age": rng.normal(40, 10, n), "job": rng.choice(["a", "b"], n)})
    p_high = rng.random(n)
    holdout = sample.assign(income=np.where(rng.random(n) < p_high**2, ">50K", "<=50K"))
    predictions = pd.DataFrame(
        {
            "prediction": np.where(p_high >= 0.5, ">50K", "<=50K"),
            "probability_<=50K": 1 - p_high,
            "probability_>50K": p_high,
        }
    )
    return sample, holdout, predictions, p_high


def test_a_classifier_reference_holds_samples_counts_bounds_and_a_calibrator() -> None:
    sample, holdout, predictions, p_high = _frames()
    reference = build_reference(_data(), sample, holdout, predictions, labels=LABELS)
    assert np.array_equal(reference.numeric["age"], sample["age"].to_numpy())
    assert reference.categorical["job"] == sample["job"].value_counts().to_dict()
    assert reference.categorical_other == {"job": 0}
    assert reference.bounds == {"age": (17.0, 90.0)}
    assert reference.positive == ">50K" and list(reference.labels or []) == LABELS
    assert reference.prediction_counts == predictions["prediction"].value_counts().to_dict()
    # The served probabilities overstate P(>50K) (labels follow p**2): the calibrator lowers them.
    assert reference.calibrator is not None
    calibrated = reference.calibrator.apply(
        predictions[["probability_<=50K", "probability_>50K"]].to_numpy()
    )
    assert calibrated[:, 1].mean() < p_high.mean() - 0.1


def test_the_profile_gives_the_complete_categorical_counts() -> None:
    sample, holdout, predictions, _ = _frames()
    profile = type(
        "P",
        (),
        {
            "categorical": {
                "job": CategoricalProfile(10_000, 0, 3, [("a", 6000), ("b", 3000)], 1000, None)
            }
        },
    )()
    reference = build_reference(
        _data(), sample, holdout, predictions, labels=LABELS, profile=profile
    )
    assert reference.categorical["job"] == {"a": 6000, "b": 3000}
    assert reference.categorical_other["job"] == 1000


def test_a_regressor_reference_keeps_the_holdout_predictions_as_scores() -> None:
    sample, holdout, _, _ = _frames()
    served = pd.DataFrame({"prediction": np.linspace(0, 1, len(holdout))})
    reference = build_reference(_data("regression"), sample, holdout, served, labels=None)
    assert reference.labels is None and reference.calibrator is None
    assert np.allclose(reference.scores, served["prediction"].to_numpy())


def test_missing_columns_and_misaligned_predictions_are_refused() -> None:
    sample, holdout, predictions, _ = _frames()
    with pytest.raises(DataError, match=r"\['job'\]"):
        build_reference(_data(), sample.drop(columns="job"), holdout, predictions, labels=LABELS)
    with pytest.raises(DataError, match="399 holdout predictions for 400"):
        build_reference(_data(), sample, holdout, predictions.iloc[1:], labels=LABELS)
    with pytest.raises(DataError, match="probability_>50K"):
        build_reference(
            _data(), sample, holdout, predictions.drop(columns="probability_>50K"), labels=LABELS
        )
