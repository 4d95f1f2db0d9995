"""The promotion gate on synthetic predictions: each rule can pass or fail on its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ray_mlops.config import GateConfig
from ray_mlops.evaluate.metrics import classification_metrics
from ray_mlops.promotion.gate import ScoredModel, binary_roc_auc, bootstrap_improvement, run_gate

LABELS = ["no", "yes"]
N = 2000


def _truth(seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(np.where(rng.random(N) < 0.4, "yes", "no"))


def _predictions(truth: pd.Series, skill: float, seed: int) -> pd.DataFrame:
    """Probabilities that separate the classes by ``skill`` (0: coin flips)."""
    rng = np.random.default_rng(seed)
    signal = np.where(truth.to_numpy() == "yes", 1.0, -1.0) * skill + rng.normal(0, 1, N)
    p = 1 / (1 + np.exp(-signal))
    return pd.DataFrame(
        {
            "prediction": np.where(p > 0.5, "yes", "no"),
            "probability_no": 1 - p,
            "probability_yes": p,
        }
    )


def _scored(label: str, truth: pd.Series, predictions: pd.DataFrame, **kw: object) -> ScoredModel:
    metrics = classification_metrics(
        truth.to_numpy(), predictions[["probability_no", "probability_yes"]].to_numpy(), LABELS
    )
    return ScoredModel(label=label, predictions=predictions, metrics=metrics, **kw)  # type: ignore[arg-type]


def test_clearly_better_candidate_passes_and_worse_one_fails() -> None:
    truth = _truth()
    strong = _scored("candidate", truth, _predictions(truth, 2.0, 1))
    weak = _scored("champion v1", truth, _predictions(truth, 0.5, 2))
    gate = GateConfig(bootstrap_samples=300)
    better = run_gate(gate, "classification", "roc_auc", truth, strong, weak)
    assert better.passed, better.failures()
    margin = next(r for r in better.rules if r.rule.startswith("beats champion"))
    assert margin.measured is not None and margin.measured > 0.1  # CI lower bound of the gain
    worse = run_gate(gate, "classification", "roc_auc", truth, weak, strong)
    assert not worse.passed
    assert any("beats champion on roc_auc" in f for f in worse.failures())


def test_a_candidate_equal_within_noise_is_not_promoted() -> None:
    truth = _truth()
    champion = _scored("champion v1", truth, _predictions(truth, 1.0, 3))
    # Same skill, other noise: a different model of the same quality.
    twin = _scored("candidate", truth, _predictions(truth, 1.0, 4))
    result = run_gate(
        GateConfig(bootstrap_samples=300), "classification", "roc_auc", truth, twin, champion
    )
    low, _mean, high = bootstrap_improvement(
        "classification", "roc_auc", truth, twin.predictions, champion.predictions, samples=300
    )
    assert low < 0 < high  # the interval straddles zero: noise
    assert not result.passed
    assert result.verdict == "failed"


def test_margin_must_be_exceeded_by_the_interval_not_the_point_estimate() -> None:
    truth = _truth()
    a = _scored("candidate", truth, _predictions(truth, 1.3, 5))
    b = _scored("champion v1", truth, _predictions(truth, 1.0, 6))
    low, mean, _ = bootstrap_improvement(
        "classification", "roc_auc", truth, a.predictions, b.predictions, samples=300
    )
    assert low > 0
    # A margin between the lower bound and the mean: the point estimate clears it, the
    # interval does not, so the gate refuses.
    margin = (low + mean) / 2
    result = run_gate(
        GateConfig(bootstrap_samples=300, margin=margin), "classification", "roc_auc", truth, a, b
    )
    assert not result.passed


def test_slice_rule_fails_alone() -> None:
    truth = _truth()
    strong = _predictions(truth, 2.0, 1)
    weak = _predictions(truth, 0.5, 2)
    candidate = _scored("candidate", truth, strong, slices={"sex=F": 0.70, "sex=M": 0.95})
    champion = _scored("champion v1", truth, weak, slices={"sex=F": 0.80, "sex=M": 0.70})
    result = run_gate(
        GateConfig(bootstrap_samples=200, slice_tolerance=0.05),
        "classification",
        "roc_auc",
        truth,
        candidate,
        champion,
    )
    failed = [r for r in result.rules if not r.passed]
    assert [r.rule for r in failed] == ["no slice worse than champion's by more than 0.05"]
    assert failed[0].measured == pytest.approx(0.10)
    assert "sex=F" in failed[0].detail
    # Within the tolerance, the same slices pass.
    loose = run_gate(
        GateConfig(bootstrap_samples=200, slice_tolerance=0.2),
        "classification",
        "roc_auc",
        truth,
        candidate,
        champion,
    )
    assert loose.passed


def test_fairness_rule_fails_alone() -> None:
    truth = _truth()
    candidate = _scored(
        "candidate",
        truth,
        _predictions(truth, 2.0, 1),
        fairness={
            "sex": {"demographic_parity_difference": 0.25, "equalized_odds_difference": 0.05},
            "race": {"demographic_parity_difference": 0.08, "equalized_odds_difference": 0.04},
        },
    )
    champion = _scored("champion v1", truth, _predictions(truth, 0.5, 2))
    result = run_gate(
        GateConfig(
            bootstrap_samples=200,
            max_demographic_parity_difference=0.1,
            max_equalized_odds_difference=0.1,
        ),
        "classification",
        "roc_auc",
        truth,
        candidate,
        champion,
    )
    failed = [r for r in result.rules if not r.passed]
    assert [r.rule for r in failed] == ["max demographic_parity_difference"]
    assert failed[0].measured == pytest.approx(0.25) and "sex" in failed[0].detail


def test_minimums_latency_and_size_rules() -> None:
    truth = _truth()
    candidate = _scored(
        "candidate", truth, _predictions(truth, 2.0, 1), latency_p95_ms=3.0, size_mb=12.0
    )
    gate = GateConfig(
        minimums={"roc_auc": 0.9999},
        maximums={"log_loss": 5.0},
        latency_p95_ms=2.0,
        max_size_mb=20.0,
    )
    result = run_gate(gate, "classification", "roc_auc", truth, candidate, None)
    by_rule = {r.rule: r.passed for r in result.rules}
    assert by_rule == {
        "minimum roc_auc": False,
        "maximum log_loss": True,
        "beats champion on roc_auc": True,  # no champion yet
        "no slice worse than champion's by more than 0.05": True,
        "latency p95 (single row)": False,
        "model size": True,
    }
    with pytest.raises(ValueError, match=r"gate.minimums.rmse: not a test metric"):
        run_gate(
            GateConfig(minimums={"rmse": 1.0}), "classification", "roc_auc", truth, candidate, None
        )


def test_gate_result_round_trips_and_renders() -> None:
    truth = _truth()
    candidate = _scored("candidate", truth, _predictions(truth, 2.0, 1))
    result = run_gate(
        GateConfig(minimums={"roc_auc": 0.9999}),
        "classification",
        "roc_auc",
        truth,
        candidate,
        None,
    )
    from ray_mlops.promotion.gate import GateResult

    again = GateResult.from_dict(__import__("json").loads(result.to_json()))
    assert again.verdict == result.verdict == "failed"
    assert [r.rule for r in again.rules] == [r.rule for r in result.rules]
    table = result.to_markdown()
    assert "| minimum roc_auc |" in table and "FAIL" in table


def test_regression_bootstrap_uses_rmse_direction() -> None:
    rng = np.random.default_rng(0)
    y = pd.Series(rng.normal(size=N))
    good = pd.DataFrame({"prediction": y + rng.normal(0, 0.1, N)})
    bad = pd.DataFrame({"prediction": y + rng.normal(0, 1.0, N)})
    low, mean, _ = bootstrap_improvement("regression", "rmse", y, good, bad, samples=200)
    assert low > 0 and mean > 0.5  # lower rmse is an improvement


@pytest.mark.parametrize("seed", range(5))
def test_rank_auc_is_sklearns_with_ties_and_imbalance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 600))
    positive = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    positive[:2] = [0, 1]  # both classes present, as the bootstrap ensures
    # Scores rounded to two decimals: many ties, which count half as ROC AUC does.
    scores = np.round(rng.random(n) * 0.5 + 0.4 * positive, 2)
    assert binary_roc_auc(positive, scores) == pytest.approx(roc_auc_score(positive, scores))


def test_rules_carry_a_kind_and_the_decision_finds_the_margin_by_it() -> None:
    """The alias decision quotes the margin rule found by its kind, not by its wording."""
    from ray_mlops.promotion.record import decision_of

    truth = _truth()
    strong = _scored("candidate", truth, _predictions(truth, 2.0, 1))
    weak = _scored("champion v1", truth, _predictions(truth, 0.5, 2))
    gate = GateConfig(
        bootstrap_samples=300,
        minimums={"roc_auc": 0.5},
        maximums={"log_loss": 5.0},
        slice_tolerance=None,
    )
    result = run_gate(gate, "classification", "roc_auc", truth, strong, weak)
    assert [r.kind for r in result.rules] == ["minimum", "maximum", "margin"]
    margin = next(r for r in result.rules if r.kind == "margin")
    margin.rule = "reworded for readers"  # wording is free to change
    assert decision_of(result).reason == f"gate passed: {margin.detail}"
    assert result.to_dict()["rules"][2]["kind"] == "margin"
