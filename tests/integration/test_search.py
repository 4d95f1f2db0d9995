"""Searches on real Ray Tune and MLflow (SQLite): nested trial runs, leaderboard, registry."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from ray_mlops.config import load_config, parse_config
from ray_mlops.mlflow_names import TAG_BEST_TRIAL, TAG_TRIAL_ID, TAG_TRIAL_STATUS
from ray_mlops.pipeline import PipelineResult, run_pipeline
from ray_mlops.search.space import suggest
from ray_mlops.workspace import Workspace
from tests.conftest import write_config

pytestmark = pytest.mark.usefixtures("ray_session")

SEARCH: dict[str, Any] = {
    "num_samples": 4,
    "trial_cpus": 1,
    "max_concurrent": 2,
    "scheduler": "asha",
    "grace_period": 1,
    "reduction_factor": 2,
    "startup_trials": 2,
    "space": {
        "train.learning_rate": {"loguniform": [1e-3, 5e-2]},
        "model.type": {
            "choice": ["mlp", "linear"],
            "when": {"mlp": {"model.hidden_sizes": {"choice": [[8], [16]]}}},
        },
        "features.categorical.encode": {"choice": ["onehot", "ordinal"]},
    },
}


def _tune(workspace: Path, tracking_uri: str, name: str, **search: Any) -> PipelineResult:
    config = write_config(
        workspace,
        {
            "name": name,
            "tracking": {"tracking_uri": tracking_uri},
            "train": {"epochs": 4, "batch_size": 128},
            "search": {**SEARCH, **search},
        },
    )
    return run_pipeline(
        load_config(config), Console(quiet=True), command="tune", workspace=Workspace(workspace)
    )


def _search_run(client: MlflowClient, result: PipelineResult) -> Any:
    stages = client.search_runs(
        [result.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    return next(r for r in stages if r.data.tags.get("ray_mlops.stage") == "search")


@pytest.fixture(scope="module")
def searched(workspace: Path, tracking_uri: str) -> PipelineResult:
    return _tune(workspace, tracking_uri, "adult-search")


def test_every_trial_is_a_nested_run_with_its_params_and_metric_history(
    searched: PipelineResult, tracking_uri: str
) -> None:
    client = MlflowClient(tracking_uri)
    search_run = _search_run(client, searched)
    trials = client.search_runs(
        [searched.experiment_id], f"tags.mlflow.parentRunId = '{search_run.info.run_id}'"
    )
    assert len(trials) == 4
    assert len({t.data.tags[TAG_TRIAL_ID] for t in trials}) == 4
    for trial in trials:
        params = trial.data.params
        assert "train.learning_rate" in params and "model.type" in params
        assert ("model.hidden_sizes" in params) == (params["model.type"] == "mlp")
        assert trial.info.status == "FINISHED"
        # Trials log nothing themselves (the search's driver does): no logging time to report.
        assert "logging_seconds" not in trial.data.metrics
        history = client.get_metric_history(trial.info.run_id, "val_loss")
        epochs = [m.step for m in history]
        assert epochs == list(range(len(epochs))) and epochs
        status = trial.data.tags[TAG_TRIAL_STATUS]
        assert (status == "pruned") == (len(epochs) < 4)
    best = [t for t in trials if t.data.tags[TAG_BEST_TRIAL] == "true"]
    assert len(best) == 1
    best_loss = min(m.value for m in client.get_metric_history(best[0].info.run_id, "val_loss"))
    for trial in trials:
        losses = client.get_metric_history(trial.info.run_id, "val_loss")
        assert min(m.value for m in losses) >= best_loss
    assert search_run.data.metrics["best_val_loss"] == pytest.approx(best_loss)


def test_leaderboard_is_logged_ranked_and_the_best_model_is_registered(
    searched: PipelineResult, tracking_uri: str, workspace: Path
) -> None:
    client = MlflowClient(tracking_uri)
    search_run = _search_run(client, searched)
    path = client.download_artifacts(search_run.info.run_id, "search/leaderboard.csv")
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    assert len(rows) == 4
    losses = [float(r["val_loss"]) for r in rows]
    assert losses == sorted(losses)
    assert {r["status"] for r in rows} <= {"completed", "pruned", "stopped early"}
    html = Path(client.download_artifacts(search_run.info.run_id, "search/leaderboard.html"))
    assert "data:image/png;base64," in html.read_text()
    assert searched.model_version == "1" and searched.promoted
    assert searched.search.trials == 4
    # Every trial kept one checkpoint once it ended: the one of its best epoch.
    trials = list((workspace / ".ray-mlops" / "ray_results").glob("adult-search-search-*/run_*"))
    assert len(trials) == 4
    for trial in trials:
        epochs = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        best = min(range(len(epochs)), key=lambda i: epochs[i]["val_loss"])
        assert [p.name for p in trial.glob("checkpoint_*")] == [f"checkpoint_{best:06d}"]
    version = client.get_model_version(searched.model_name, "1")
    assert version.run_id == searched.run_id


def test_time_budget_stops_the_search_on_time(workspace: Path, tracking_uri: str) -> None:
    import time

    started = time.perf_counter()
    # No trial limit: the budget alone ends the search.
    result = _tune(
        workspace,
        tracking_uri,
        "adult-search-budget",
        num_samples=None,
        time_budget_s=20,
        scheduler="none",
    )
    elapsed = time.perf_counter() - started
    assert result.search.trials >= 2
    # Data, search start-up, evaluation and registration come on top of the budget.
    assert elapsed < 20 + 60


def test_tpe_finds_the_optimum_of_a_synthetic_objective() -> None:
    cfg = parse_config(
        {
            "name": "s",
            "data": {"path": "d.csv", "target": "y", "numeric": ["a"]},
            "search": {
                "space": {
                    "train.learning_rate": {"loguniform": [1e-4, 1.0]},
                    "model.type": {"choice": ["mlp", "linear"]},
                }
            },
        }
    )

    def objective(trial: optuna.trial.Trial) -> float:
        suggest(trial, cfg.search.space)
        lr = trial.params["train.learning_rate"]
        penalty = 0.0 if trial.params["model.type"] == "linear" else 1.0
        return float((lr - 0.01) ** 2 + penalty)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    study.optimize(objective, n_trials=40)
    assert study.best_params["model.type"] == "linear"
    assert study.best_params["train.learning_rate"] == pytest.approx(0.01, abs=0.01)


def test_multi_worker_trials_run_a_torch_trainer_each(workspace: Path, tracking_uri: str) -> None:
    result = _tune(
        workspace,
        tracking_uri,
        "adult-search-ddp",
        num_samples=2,
        trial_workers=2,
        trial_cpus=0.5,
        max_concurrent=None,
        scheduler="none",
        space={"train.learning_rate": {"loguniform": [1e-3, 5e-2]}},
    )
    assert result.search.trials == 2
    client = MlflowClient(tracking_uri)
    search_run = _search_run(client, result)
    trials = client.search_runs(
        [result.experiment_id], f"tags.mlflow.parentRunId = '{search_run.info.run_id}'"
    )
    assert len(trials) == 2
    for trial in trials:
        # Each epoch logged once (forwarded to Tune by the worker group, logged by the driver).
        history = client.get_metric_history(trial.info.run_id, "val_loss")
        assert [m.step for m in history] == [0, 1, 2, 3]
    # Every trial ran as its own Ray Train run with 2 workers, kept beside the search.
    trainers = Path(workspace, ".ray-mlops", "ray_results").glob(
        "adult-search-ddp-search-*-trainers"
    )
    runs = [d for root in trainers for d in root.iterdir() if d.is_dir()]
    assert len(runs) == 2
    # The registered model is the best trial's checkpoint from its Train run.
    assert result.model_version == "1"
    checkpoint = client.get_run(search_run.info.run_id).data.tags["ray_mlops.checkpoint"]
    assert any(checkpoint.startswith(str(r.resolve())) for r in runs)


def test_automl_with_a_plugin_family_gives_a_leaderboard_and_a_registered_model(
    workspace: Path, tracking_uri: str
) -> None:
    plugin = Path(__file__).parents[2] / "configs" / "models" / "residual_mlp.py"
    result = _tune(
        workspace,
        tracking_uri,
        "adult-automl",
        mode="automl",
        plugins=[f"{plugin}:build"],
        num_samples=6,
        # All trials from the seeded sampler's start-up draws: the same families every run.
        startup_trials=6,
        seed=3,
        space={"train.batch_size": {"choice": [128, 256]}},
    )
    client = MlflowClient(tracking_uri)
    search_run = _search_run(client, result)
    board = pd.read_csv(client.download_artifacts(search_run.info.run_id, "search/leaderboard.csv"))
    assert len(board) == 6
    # The ready space was searched: families (the plug-in among them), encodings, scaling.
    assert {"mlp", "custom"} <= set(board["param:model.type"])
    assert set(board.loc[board["param:model.type"] == "custom", "param:model.builder"]) == {
        f"{plugin}:build"
    }
    assert board["param:features.categorical.encode"].nunique() > 1
    assert set(board["param:train.batch_size"]) <= {128, 256}  # the config's override
    assert list(board["val_loss"].dropna()) == sorted(board["val_loss"].dropna())
    # The best trial's model went through evaluation and registration like a trained one.
    assert result.model_version == "1"
    version = client.get_model_version("adult-automl", "1")
    assert version.run_id == result.run_id
    best = board.iloc[0]
    assert search_run.data.params.get("search.mode") == "automl"
    assert search_run.data.metrics["best_val_loss"] == pytest.approx(best["val_loss"])
