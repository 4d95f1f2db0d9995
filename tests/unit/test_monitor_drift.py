"""Drift statistics of one monitored window: tests, distances, PSI and the false-alarm control.

Expected values come from direct scipy calls on the same samples, from hand computation, or
from seeded samples of known distributions; nothing needs Ray.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from ray_mlops.data.drift import (
    PSI_EPSILON,
    ColumnDrift,
    categorical_drift,
    decide,
    drift_share,
    numeric_drift,
    population_stability_index,
    prediction_class_drift,
    prediction_score_drift,
    profile_reference,
)
from ray_mlops.data.profile import CategoricalProfile
from ray_mlops.errors import ConfigError, DataError

MIX = {"a": 0.6, "b": 0.3, "c": 0.1}


def _close(value: float | None) -> object:
    assert value is not None
    return pytest.approx(value, rel=1e-12, abs=1e-12)


def _counts(rng: np.random.Generator, n: int, mix: dict[str, float]) -> dict[str, int]:
    drawn = rng.choice(len(mix), size=n, p=list(mix.values()))
    return dict(zip(mix, np.bincount(drawn, minlength=len(mix)).tolist(), strict=True))


# --- PSI -----------------------------------------------------------------------------------


def test_psi_matches_a_hand_computed_example() -> None:
    # (0.4 - 0.5) ln(0.4 / 0.5) + (0.4 - 0.3) ln(0.4 / 0.3) + 0 for the unchanged bin
    expected = 0.1 * math.log(0.5 / 0.4) + 0.1 * math.log(0.4 / 0.3)
    assert population_stability_index([0.5, 0.3, 0.2], [0.4, 0.4, 0.2]) == _close(expected)
    assert expected == pytest.approx(0.0510826, abs=1e-7)
    # Counts are divided by their totals, so they give the same index.
    assert population_stability_index([50, 30, 20], [8, 8, 4]) == _close(expected)
    assert population_stability_index([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]) == 0.0


def test_psi_raises_empty_bins_to_epsilon() -> None:
    # The empty reference bin counts as PSI_EPSILON; the shares are not renormalised.
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    assert PSI_EPSILON == 1e-4
    assert population_stability_index([0.5, 0.5, 0.0], [0.5, 0.25, 0.25]) == _close(expected)


@pytest.mark.parametrize(
    ("reference", "current"),
    [([0.5, 0.5], [1.0]), ([], []), ([0.5, -0.1], [0.5, 0.5]), ([0.0, 0.0], [0.5, 0.5])],
)
def test_psi_rejects_bad_shares(reference: list[float], current: list[float]) -> None:
    with pytest.raises(DataError, match="PSI"):
        population_stability_index(reference, current)


def test_numeric_psi_uses_the_reference_deciles() -> None:
    # Deciles of 1..100 put ten values in each bin; the current window 1..50 fills the first
    # five bins with a fifth each and leaves five empty (raised to epsilon).
    drift = numeric_drift("x", np.arange(1.0, 101.0), np.arange(1.0, 51.0))
    expected = 5 * 0.1 * math.log(0.2 / 0.1) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert drift.psi == _close(expected)


def test_numeric_psi_merges_duplicate_edges() -> None:
    # 50 zeros and 1..50: the deciles 0.1-0.4 are all 0 and merge, leaving the bins
    # (<0), [0, 0.5), [0.5, 10.4), [10.4, 20.3), [20.3, 30.2), [30.2, 40.1), [40.1, inf)
    # with reference shares 0, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1. An all-zero window fills one bin.
    reference = np.concatenate([np.zeros(50), np.arange(1.0, 51.0)])
    drift = numeric_drift("x", reference, np.zeros(40))
    expected = 0.5 * math.log(1.0 / 0.5) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert drift.psi == _close(expected)
    assert numeric_drift("x", reference, reference).psi == 0.0


# --- numeric -------------------------------------------------------------------------------


def test_numeric_test_and_distance_equal_direct_scipy_calls() -> None:
    rng = np.random.default_rng(1)
    reference, current = rng.normal(3.0, 2.0, 1500), rng.gamma(2.0, 1.5, 900)
    drift = numeric_drift("x", reference, current)
    ks = stats.ks_2samp(reference, current)
    assert (drift.test, drift.kind, drift.distance_name) == (
        "ks",
        "numeric",
        "wasserstein_normalised",
    )
    assert drift.statistic == _close(ks.statistic)
    assert drift.p_value == _close(ks.pvalue)
    expected = stats.wasserstein_distance(reference, current) / np.std(reference)
    assert drift.distance == _close(expected)
    assert (drift.n_reference, drift.n_current, drift.missing_share) == (1500, 900, 0.0)
    assert drift.out_of_range_share is None and drift.unseen_share is None
    assert (drift.adjusted_p, drift.drifted) == (None, False)


def test_wasserstein_normalisation_is_in_reference_standard_deviations() -> None:
    rng = np.random.default_rng(2)
    reference, noise = rng.normal(0.0, 1.0, 20_000), rng.normal(0.0, 1.0, 20_000)
    # W(N(0, s), N(0.5 s, s)) = 0.5 s: half a standard deviation whatever the scale.
    for scale in (1.0, 1000.0):
        drift = numeric_drift("x", scale * reference, scale * (noise + 0.5))
        assert drift.distance == pytest.approx(0.5, abs=0.03)
    small = numeric_drift("x", reference, noise + 0.5)
    large = numeric_drift("x", 1000.0 * reference, 1000.0 * (noise + 0.5))
    assert large.distance == pytest.approx(small.distance, rel=1e-9)


def test_missing_and_out_of_range_shares() -> None:
    rng = np.random.default_rng(3)
    reference = np.concatenate([rng.uniform(0.0, 10.0, 500), [np.nan] * 20])
    values = rng.uniform(0.0, 10.0, 80)
    current = np.concatenate([values, [-1.0, 11.0, 12.0, 10.0, 0.0], [np.nan] * 15])
    drift = numeric_drift("x", reference, [*current[:-1], None], bounds=(0.0, 10.0))
    assert drift.missing_share == _close(15 / 100)
    assert drift.out_of_range_share == _close(3 / 85)  # bounds are inclusive: 10 and 0 are in
    assert (drift.n_reference, drift.n_current) == (500, 85)
    # Missing values are left out of the test.
    tested = np.concatenate([values, [-1.0, 11.0, 12.0, 10.0, 0.0]])
    assert drift.statistic == _close(stats.ks_2samp(reference[:500], tested).statistic)
    assert numeric_drift("x", reference, current, bounds=(None, 10.0)).out_of_range_share == (
        _close(2 / 85)
    )


def test_constant_reference() -> None:
    same = numeric_drift("x", np.full(300, 3.0), np.full(100, 3.0))
    assert (same.statistic, same.p_value, same.distance, same.psi) == (0.0, 1.0, 0.0, 0.0)
    # A constant reference has no spread: the distance uses the pooled spread of both windows.
    current = np.array([3.0] * 50 + [4.0] * 50)
    moved = numeric_drift("x", np.full(300, 3.0), current)
    pooled = np.std(np.concatenate([np.full(300, 3.0), current]))
    assert moved.distance == _close(0.5 / pooled)
    assert moved.distance is not None and math.isfinite(moved.distance)
    assert moved.psi is not None and math.isfinite(moved.psi)
    assert decide([moved])[0].drifted


def test_empty_current_window_is_untested_and_never_drifts() -> None:
    reference = np.arange(100.0)
    all_missing = numeric_drift("x", reference, [np.nan] * 30, bounds=(0.0, 1.0))
    assert all_missing.missing_share == 1.0
    assert (all_missing.p_value, all_missing.distance, all_missing.psi) == (None, None, None)
    assert all_missing.out_of_range_share is None and not all_missing.tested
    no_rows = numeric_drift("x", reference, np.array([]))
    assert no_rows.missing_share is None and no_rows.n_current == 0
    drifted = numeric_drift("y", reference, reference + 1000.0)
    decided = decide([all_missing, no_rows, drifted])
    assert [c.drifted for c in decided] == [False, False, True]
    assert [c.adjusted_p for c in decided[:2]] == [None, None]
    # The one tested column is adjusted alone: BH of a single p-value is the p-value.
    assert decided[2].adjusted_p == _close(drifted.p_value)
    assert json.dumps(decided[0].to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("reference", "current", "match"),
    [
        ([np.nan, np.nan], [1.0], "reference has no non-missing"),
        ([1.0, 2.0], [1.0, np.inf], "1 infinite current"),
        ([[1.0, 2.0]], [1.0], "must be 1-D"),
        ([1.0, 2.0], ["a", "b"], "not numeric"),
    ],
)
def test_numeric_bad_windows_raise(reference: object, current: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        numeric_drift("age", reference, current)


def test_numeric_bad_settings_raise() -> None:
    with pytest.raises(ConfigError, match="psi_bins"):
        numeric_drift("age", [1.0, 2.0], [1.0], psi_bins=1)
    with pytest.raises(ConfigError, match="low above high"):
        numeric_drift("age", [1.0, 2.0], [1.0], bounds=(5.0, 1.0))


# --- categorical ---------------------------------------------------------------------------


def test_categorical_test_and_distance_equal_direct_scipy_calls() -> None:
    reference = {"a": 600, "b": 300, "c": 100}
    current = {"a": 250, "b": 200, "c": 30, "d": 12, "e": 8}
    drift = categorical_drift("city", reference, current)
    # Cells a, b, c and the pooled <unseen> cell (d + e).
    table = np.array([[600, 300, 100, 0], [250, 200, 30, 20]])
    chi2 = stats.chi2_contingency(table, correction=False)
    assert (drift.test, drift.kind, drift.distance_name) == (
        "chi2",
        "categorical",
        "jensen_shannon",
    )
    assert drift.statistic == _close(chi2.statistic)
    assert drift.p_value == _close(chi2.pvalue)
    assert drift.distance == _close(jensenshannon(table[0], table[1], base=2))
    assert drift.psi == _close(population_stability_index(table[0], table[1]))
    assert drift.unseen_share == _close(20 / 500)
    assert (drift.n_reference, drift.n_current, drift.missing_share) == (1000, 500, 0.0)


def test_values_and_counts_give_the_same_result() -> None:
    values = ["a"] * 40 + ["b"] * 35 + ["z"] * 5 + [None] * 7 + [float("nan")] * 3
    from_values = categorical_drift("city", {"a": 50, "b": 50}, np.array(values, dtype=object))
    from_counts = categorical_drift(
        "city", {"a": 50, "b": 50}, {"a": 40, "b": 35, "z": 5, None: 10}
    )
    assert from_values == from_counts
    assert from_values.missing_share == _close(10 / 90)
    assert from_values.unseen_share == _close(5 / 80)
    # Categories compare as strings, as the profile names them.
    assert categorical_drift("n", {"1": 5, "2": 5}, [1, 2, 1, 2]).unseen_share == 0.0


def test_changed_mix_and_unseen_category_are_flagged() -> None:
    rng = np.random.default_rng(4)
    reference = _counts(rng, 5000, MIX)
    stable = categorical_drift("stable", reference, _counts(rng, 2000, MIX))
    mix = categorical_drift("mix", reference, _counts(rng, 2000, {"a": 0.5, "b": 0.35, "c": 0.15}))
    unseen = categorical_drift(
        "unseen", reference, _counts(rng, 2000, {"a": 0.57, "b": 0.28, "c": 0.1, "new": 0.05})
    )
    decided = {c.column: c for c in decide([stable, mix, unseen])}
    assert not decided["stable"].drifted
    assert decided["mix"].drifted and decided["unseen"].drifted
    assert decided["mix"].unseen_share == 0.0
    assert decided["unseen"].unseen_share == pytest.approx(0.05, abs=0.015)


def test_reference_from_a_truncated_profile_pools_the_rest() -> None:
    profile = CategoricalProfile(
        count=1000,
        missing=3,
        distinct=5,
        top=[("a", 600), ("b", 300)],
        other_count=100,
        target_association=None,
    )
    counts, other = profile_reference(profile)
    assert (counts, other) == ({"a": 600, "b": 300}, 100)
    drift = categorical_drift(
        "city", counts, {"a": 50, "b": 30, "c": 15, "d": 5}, reference_other=other
    )
    # c and d may be among the profile's rest: they share its <other> cell, unseen is unknown.
    table = np.array([[600, 300, 100], [50, 30, 20]])
    assert drift.statistic == _close(stats.chi2_contingency(table, correction=False).statistic)
    assert drift.unseen_share is None and drift.n_reference == 1000


def test_categorical_edge_cases() -> None:
    # One category on both sides: nothing to tell apart (dof 0).
    single = categorical_drift("flag", {"yes": 10}, ["yes"] * 4)
    assert (single.statistic, single.p_value, single.distance, single.psi) == (0.0, 1.0, 0.0, 0.0)
    empty = categorical_drift("flag", {"yes": 10, "no": 5}, [None, None])
    assert (empty.p_value, empty.missing_share, empty.unseen_share) == (None, 1.0, None)
    assert categorical_drift("flag", {"yes": 10}, {}).missing_share is None
    with pytest.raises(DataError, match="reference has no values"):
        categorical_drift("flag", {"yes": 0}, ["yes"])
    with pytest.raises(DataError, match="non-negative integer"):
        categorical_drift("flag", {"yes": -1, "no": 3}, ["yes"])
    with pytest.raises(DataError, match="not a string"):
        categorical_drift("flag", {"yes": 3}, "yes")


# --- decision ------------------------------------------------------------------------------


def test_adjusted_p_values_equal_scipy_benjamini_hochberg() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=800)
    columns = [numeric_drift(f"x{i}", reference, rng.normal(0.05 * i, 1.0, 300)) for i in range(8)]
    columns.append(categorical_drift("c", {"a": 60, "b": 40}, {"a": 20, "b": 30}))
    decided = decide(columns, alpha=0.05)
    expected = stats.false_discovery_control([c.p_value for c in columns], method="bh")
    assert [c.adjusted_p for c in decided] == pytest.approx(list(expected), rel=1e-12)
    assert [c.drifted for c in decided] == [bool(p <= 0.05) for p in expected]
    assert [c.p_value for c in decided] == [c.p_value for c in columns]  # inputs untouched
    assert all(c.adjusted_p is None for c in columns)


def test_half_a_standard_deviation_shift_on_2000_rows_is_flagged() -> None:
    rng = np.random.default_rng(6)
    columns = [
        numeric_drift(
            f"x{i}", rng.normal(10.0, 4.0, 2000), rng.normal(10.0 + 2.0 * (i == 3), 4.0, 2000)
        )
        for i in range(10)
    ]
    decided = decide(columns, alpha=0.05, min_distance={"wasserstein_normalised": 0.1})
    assert [c.column for c in decided if c.drifted] == ["x3"]
    assert decided[3].distance == pytest.approx(0.5, abs=0.1)
    assert drift_share(decided) == 0.1


def test_distance_floor_ignores_tiny_shifts_of_large_windows() -> None:
    rng = np.random.default_rng(7)
    # A shift of 0.03 standard deviations: the KS test on 200k rows rejects it, the floor not.
    tiny = numeric_drift("x", rng.normal(size=200_000), rng.normal(0.03, 1.0, 200_000))
    assert tiny.p_value is not None and tiny.distance is not None
    assert tiny.p_value < 1e-6 and tiny.distance < 0.1
    assert decide([tiny])[0].drifted
    floored = decide([tiny], min_distance={"wasserstein_normalised": 0.1})[0]
    assert not floored.drifted and floored.adjusted_p == _close(tiny.p_value)
    # A floor for the other distance does not apply to this column.
    assert decide([tiny], min_distance={"jensen_shannon": 0.5})[0].drifted


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"min_distance": {"numeric": 0.1}}, "unknown distance"),
        ({"min_distance": {"jensen_shannon": -0.1}}, "non-negative"),
    ],
)
def test_decide_rejects_bad_settings(settings: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        decide([], **settings)  # type: ignore[arg-type]


def test_stable_stream_false_alarm_rate_is_controlled() -> None:
    """200 windows of 10 columns (7 numeric, 3 categorical), every one from the reference's
    distribution, each window against its own reference sample.

    With no drift anywhere, every alarm is false, and Benjamini-Hochberg bounds the chance
    that a window raises any alarm by alpha; for independent continuous p-values it equals
    alpha (Simes' equality). The measured rate is therefore a binomial sample around alpha
    (0.05 here; 0.055-0.06 at other seeds), and "measured <= alpha" would hold at about half
    of all seeds: the test asserts what is true at every seed, that the count is consistent
    with a rate at most alpha and far below the rate of the uncorrected tests.
    """
    rng = np.random.default_rng(8)
    alpha, windows = 0.05, 200
    corrected = uncorrected = 0
    for _ in range(windows):
        columns = [
            numeric_drift(f"x{i}", rng.normal(size=600), rng.normal(size=200)) for i in range(7)
        ]
        columns += [
            categorical_drift(f"c{j}", _counts(rng, 600, MIX), _counts(rng, 200, MIX))
            for j in range(3)
        ]
        corrected += any(c.drifted for c in decide(columns, alpha=alpha))
        uncorrected += any(c.p_value is not None and c.p_value <= alpha for c in columns)
    # One-sided binomial test of "rate > alpha" at the 5% level: not rejected (16 alarms or
    # more in 200 windows, a rate of 0.08, would reject it).
    assert stats.binomtest(corrected, windows, alpha, alternative="greater").pvalue > 0.05
    # The control is what holds it there: ten raw tests alarm in about 40% of the windows.
    assert uncorrected / windows > 0.25
    assert corrected / windows < uncorrected / windows / 4


# --- predictions ---------------------------------------------------------------------------


def test_prediction_helpers() -> None:
    rng = np.random.default_rng(9)
    reference = rng.dirichlet([2.0, 1.0, 1.0], 1000)
    current = rng.dirichlet([1.0, 1.0, 1.0], 1000)
    top = prediction_score_drift(reference, current)
    assert top.kind == "prediction" and top.column == "predicted_score"
    direct = stats.ks_2samp(reference.max(axis=1), current.max(axis=1))
    assert top.statistic == _close(direct.statistic)
    positive = prediction_score_drift(reference, current, positive_index=0)
    assert positive.statistic == _close(stats.ks_2samp(reference[:, 0], current[:, 0]).statistic)
    assert positive.out_of_range_share == 0.0
    assert prediction_score_drift([0.2, 0.8], [0.5, 1.2]).out_of_range_share == 0.5
    with pytest.raises(DataError, match="positive_index 3"):
        prediction_score_drift(reference, current, positive_index=3)
    labels = prediction_class_drift({"0": 700, "1": 300}, ["0"] * 50 + ["1"] * 50)
    assert (labels.kind, labels.test, labels.column) == ("prediction", "chi2", "predicted_class")
    # Outputs do not count in the share of drifted input columns.
    decided = decide([labels, top])
    assert decided[0].drifted and drift_share(decided) is None


def test_to_dict_is_json_safe() -> None:
    drift = ColumnDrift(
        column="x",
        kind="numeric",
        test="ks",
        statistic=float("nan"),
        p_value=None,
        distance=float("inf"),
        distance_name="wasserstein_normalised",
        psi=np.float64(0.25),  # numpy floats become plain floats
        n_reference=10,
        n_current=0,
        missing_share=1.0,
    )
    as_dict = drift.to_dict()
    assert (as_dict["statistic"], as_dict["distance"], as_dict["psi"]) == (None, None, 0.25)
    assert type(as_dict["psi"]) is float
    real = decide([numeric_drift("x", np.arange(50.0), np.arange(10.0, 60.0), bounds=(0, 55))])[0]
    assert set(real.to_dict()) == {f.name for f in real.__dataclass_fields__.values()}
    json.dumps(real.to_dict(), allow_nan=False)
