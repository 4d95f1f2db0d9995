"""benchmarks/tune_efficiency.py without Ray: per-seed statistics, time to target from epoch
logs, the same-space check, the per-trial overhead, and the Optuna baselines run tiny."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "baselines"))

import tune_efficiency as bench  # noqa: E402
import tune_optuna  # noqa: E402


def test_time_to_target_is_the_first_epoch_at_or_below_it_from_the_spawn() -> None:
    log = [
        [105.0, "b", 0, 0.40],
        [103.0, "a", 0, 0.35],
        [109.0, "a", 1, 0.30],
        [104.0, "c", 0, 0.5],
    ]
    assert bench.time_to(log, 0.35, start=100.0) == pytest.approx(3.0)
    assert bench.time_to(log, 0.31, start=100.0) == pytest.approx(9.0)
    assert bench.time_to(log, 0.20, start=100.0) is None


def test_the_target_pools_full_length_trials_only() -> None:
    trials = [
        {"epochs": 9, "best": 0.31},
        {"epochs": 1, "best": 0.20},  # stopped after one epoch: left out
        {"epochs": 9, "best": 0.35},
        {"epochs": 9, "best": None},
    ]
    bests = bench.full_length_bests(trials, epochs=9)
    assert bests == [0.31, 0.35]
    assert bench.pooled_target([0.1 * k for k in range(11)], 0.1) == pytest.approx(0.1)


def test_per_seed_gives_both_statistics_and_counts_unreached_seeds_as_slowest() -> None:
    ours = [10.0, 10.0, 30.0, 2.0, None, None]
    baseline = [20.0, 5.0, 10.0, 20.0, 4.0, None]
    result = bench.per_seed(ours, baseline)
    # Ratios: 0.5, 2, 3, 0.1, inf (ours never reached); the last seed, neither: left out.
    assert result["per_seed_ratios"] == pytest.approx([0.5, 2.0, 3.0, 0.1, None], nan_ok=True)
    assert result["median_of_per_seed_ratios"] == pytest.approx(2.0)
    assert result["ours"]["median"] == pytest.approx(20.0)  # 2, 10, 10, 30, inf, inf
    assert result["baseline"]["median"] == pytest.approx(15.0)  # 4, 5, 10, 20, 20, inf
    assert result["ratio_of_medians"] == pytest.approx(20.0 / 15.0)
    assert result["seeds_ours_reached"] == 4 and result["seeds_baseline_reached"] == 5
    assert result["per_seed_ratio_min"] == pytest.approx(0.1)
    assert result["per_seed_ratio_max"] is None  # infinite
    assert result["seeds_ours_faster"] == 2
    assert result["both_reached_ratio_range"] == pytest.approx([0.1, 3.0])
    never = bench.per_seed([None, None, 1.0], [1.0, 1.0, None])
    assert never["ours"]["median"] is None and never["median_of_per_seed_ratios"] is None


def test_the_baselines_points_lie_in_the_search_space() -> None:
    mlp = {
        "train.learning_rate": 0.01,
        "train.batch_size": 256,
        "train.weight_decay": 1e-4,
        "model.type": "mlp",
        "model.hidden_sizes": "[128, 64]",
        "model.dropout": 0.2,
    }
    linear = {k: v for k, v in mlp.items() if not k.startswith("model.") or k == "model.type"}
    linear["model.type"] = "linear"
    assert bench.in_space(mlp, bench.WIDE_SPACE)
    assert bench.in_space(mlp | {"model.hidden_sizes": [128, 64]}, bench.WIDE_SPACE)
    assert bench.in_space(linear, bench.WIDE_SPACE)
    assert not bench.in_space(mlp | {"train.learning_rate": 2.0}, bench.WIDE_SPACE)
    assert not bench.in_space(mlp | {"model.hidden_sizes": "[100]"}, bench.WIDE_SPACE)
    assert not bench.in_space(linear | {"model.dropout": 0.1}, bench.WIDE_SPACE)  # not its branch
    assert not bench.in_space(
        {k: v for k, v in mlp.items() if k != "model.dropout"}, bench.WIDE_SPACE
    )


def test_the_baselines_space_is_the_benchmarks() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        params = tune_optuna.suggest(trial)
        assert params == trial.params
        assert bench.in_space(params, bench.WIDE_SPACE), params
        study.tell(trial, 0.0)
    assert {t.params["model.type"] for t in study.trials} == {"mlp", "linear"}


def test_the_baselines_network_is_ray_mlops_own() -> None:
    from ray_mlops.models.factory import build_model
    from ray_mlops.models.spec import ModelSpec

    params = {"model.type": "mlp", "model.hidden_sizes": "[16, 8]", "model.dropout": 0.3}
    spec = ModelSpec(
        n_inputs=7, n_outputs=1, head="binary", kind="mlp", hidden_sizes=[16, 8], dropout=0.3
    )
    for theirs, ours in (
        (params, spec),
        (
            {"model.type": "linear"},
            ModelSpec(n_inputs=7, n_outputs=1, head="binary", kind="linear"),
        ),
    ):
        torch.manual_seed(0)
        baseline = tune_optuna.build(theirs, 7)
        torch.manual_seed(0)
        reference = build_model(ours)
        assert str(baseline) == str(reference)
        for a, b in zip(
            baseline.state_dict().values(), reference.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b)


def test_per_trial_overhead_is_the_steady_interval_between_results() -> None:
    # Start-up until the first result (100 -> 110) is left out: 4 more trials in 2 s.
    log = [[110.0, "a", 0, 1.0], [110.4, "b", 0, 1.0], [111.5, "c", 0, 1.0], [112.0, "d", 0, 1.0],
           [111.0, "e", 0, 1.0]]  # fmt: skip
    assert bench.steady_per_trial(log) == pytest.approx(0.5)


def test_same_loss_is_judged_against_the_baselines_seed_spread() -> None:
    inside = bench.same_loss_check({}, 0.3105, [0.3100, 0.3110, 0.3090])
    assert inside["within_spread"]
    near = bench.same_loss_check({}, 0.3120, [0.3100, 0.3110])  # within 1% beyond the spread
    assert near["within_spread"]
    assert not bench.same_loss_check({}, 0.3200, [0.3100, 0.3110])["within_spread"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("tune") / "problem.npz"
    np.savez(path, x_train=x[:64], y_train=y[:64], x_val=x[64:], y_val=y[64:])
    return path


def _answer(argv: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script", ["tune_optuna.py", "tune_optuna_pruned.py"])
def test_a_baseline_runs_two_trials_of_one_epoch_and_prints_its_json(
    script: str, data: Path
) -> None:
    extra = ["--workers", "2"] if script == "tune_optuna_pruned.py" else []
    answer = _answer(
        [str(BENCH / "baselines" / script), "--data", str(data), "--trials", "2", "--epochs", "1",
         "--startup-trials", "1", *extra]
    )  # fmt: skip
    assert 2 <= len(answer["trials"]) <= 3  # MaxTrialsCallback: a worker may start one more
    assert len(answer["log"]) == sum(t["epochs"] for t in answer["trials"])
    assert all(len(row) == 4 and math.isfinite(row[3]) for row in answer["log"])
    assert answer["best_val_loss"] == pytest.approx(min(row[3] for row in answer["log"]))
    assert answer["started_at"] <= answer["imported_at"] <= answer["log"][0][0]
    if extra:
        assert len(answer["workers_optimize_at"]) == 2
