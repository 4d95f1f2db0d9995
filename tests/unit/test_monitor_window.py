"""A window of records judged against a reference: drift, estimates, realised quality, limits.

Ray-free: synthetic traffic from a known model (P(yes) = logistic(2 x1)), labels drawn from
those probabilities, so the estimate and the realised metrics can be compared.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from ray_mlops.errors import DataError
from ray_mlops.monitor.estimate import fit_calibrator
from ray_mlops.monitor.window import Limits, Reference, Window, evaluate_window

LABELS = ["no", "yes"]
START = datetime(2026, 12, 5, tzinfo=timezone.utc)
MIX = {"a": 0.5, "b": 0.3, "c": 0.2}


def _draw(rng: np.random.Generator, n: int, shift: float = 0.0, mix: dict[str, float] = MIX):
    x1 = rng.normal(shift, 1.0, n)
    colour = rng.choice(list(mix), n, p=list(mix.values()))
    p_yes = 1 / (1 + np.exp(-2 * x1))
    label = np.where(rng.random(n) < p_yes, "yes", "no")
    return x1, colour, np.column_stack([1 - p_yes, p_yes]), label


def _reference(seed: int = 0) -> Reference:
    rng = np.random.default_rng(seed)
    x1, colour, probabilities, label = _draw(rng, 5000)
    predicted = np.where(probabilities[:, 1] >= 0.5, "yes", "no")
    return Reference(
        numeric={"x1": x1},
        categorical={"colour": dict(pd.Series(colour).value_counts())},
        bounds={"x1": (-6.0, 6.0)},
        labels=LABELS,
        prediction_counts=dict(pd.Series(predicted).value_counts()),
        scores=probabilities,
        calibrator=fit_calibrator(probabilities, (label == "yes").astype(int), LABELS),
        positive="yes",
    )


def _window(seed: int, n: int = 2000, labelled: float = 1.0, **drift) -> Window:
    rng = np.random.default_rng(seed)
    x1, colour, probabilities, label = _draw(rng, n, **drift)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "colour": colour,
            "prediction": np.where(probabilities[:, 1] >= 0.5, "yes", "no"),
            "probability_no": probabilities[:, 0],
            "probability_yes": probabilities[:, 1],
            "label": np.where(rng.random(n) < labelled, label, None),
        }
    )
    return Window("m", START, START + timedelta(hours=1), frame, ("3",))


LIMITS = Limits(min_distance={"wasserstein_normalised": 0.1, "jensen_shannon": 0.1})


def test_a_stable_window_flags_nothing_and_estimates_close_to_the_realised_quality() -> None:
    result = evaluate_window(_window(1), _reference(), LIMITS)
    assert result.tested and result.rows == 2000 and result.labelled_rows == 2000
    assert result.drifted_columns == [] and not result.alarmed
    assert {c.column for c in result.columns} == {"x1", "colour"}
    assert result.estimated is not None and result.realised is not None
    gap = result.estimated.metrics["accuracy"] - result.realised.metrics["accuracy"]
    assert abs(gap) < 0.03


def test_a_half_sigma_mean_shift_is_flagged_and_named() -> None:
    result = evaluate_window(_window(2, shift=0.5), _reference(), LIMITS)
    assert "x1" in result.drifted_columns and "colour" not in result.drifted_columns
    drift = [b for b in result.breaches if b.signal == "drift"]
    assert any(b.name == "x1" and "'x1' drifted" in b.message for b in drift)
    # Same concept, shifted inputs: the estimate still follows the realised accuracy.
    assert result.estimated is not None and result.realised is not None
    gap = result.estimated.metrics["accuracy"] - result.realised.metrics["accuracy"]
    assert abs(gap) < 0.03


def test_a_changed_category_mix_and_an_unseen_category_are_flagged() -> None:
    changed = evaluate_window(_window(3, mix={"a": 0.2, "b": 0.3, "c": 0.5}), _reference(), LIMITS)
    assert changed.drifted_columns == ["colour"]
    unseen = evaluate_window(
        _window(4, mix={"a": 0.4, "b": 0.2, "c": 0.1, "violet": 0.3}), _reference(), LIMITS
    )
    colour = next(c for c in unseen.columns if c.column == "colour")
    assert colour.drifted and colour.unseen_share == pytest.approx(0.3, abs=0.03)


def test_a_window_below_min_rows_is_not_tested() -> None:
    result = evaluate_window(_window(5, n=50, shift=3.0), _reference(), LIMITS)
    assert not result.tested and result.columns == () and not result.alarmed


def test_limits_on_estimated_and_realised_metrics_and_no_realised_without_labels() -> None:
    strict = Limits(min_distance=LIMITS.min_distance, minimums={"accuracy": 0.99})
    result = evaluate_window(_window(6), _reference(), strict)
    assert {b.signal for b in result.breaches} == {"estimated", "realised"}
    unlabelled = evaluate_window(_window(7, labelled=0.0), _reference(), strict)
    assert unlabelled.realised is None and unlabelled.labelled_rows == 0
    assert {b.signal for b in unlabelled.breaches} == {"estimated"}


def test_a_fairness_limit_on_the_labelled_rows() -> None:
    window = _window(8)
    frame = window.frame
    # Group "g1" gets every positive decision, "g2" none: demographic parity difference 1.
    frame["group"] = np.where(frame["prediction"] == "yes", "g1", "g2")
    limits = Limits(max_demographic_parity_difference=0.2)
    result = evaluate_window(window, _reference(), limits, sensitive=["group"])
    parity = result.fairness["group"]["demographic_parity_difference"]
    assert parity == pytest.approx(1.0)
    assert [b.name for b in result.breaches if b.signal == "fairness"] == [
        "group:demographic_parity_difference"
    ]


def test_a_window_without_a_reference_column_is_refused_by_name() -> None:
    window = _window(9)
    with pytest.raises(DataError, match=r"\['colour'\]"):
        evaluate_window(
            Window("m", START, START, window.frame.drop(columns="colour")), _reference(), LIMITS
        )
