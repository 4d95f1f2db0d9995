"""Training with TorchTrainer on the session's Ray: learning, reproducibility, early stopping,
every head, user models, both ingest paths, and recovery from a killed worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from ray_mlops.config import PipelineConfig, parse_config
from ray_mlops.data.stage import PreparedData, prepare_data
from ray_mlops.features.fit import fit_feature_state
from ray_mlops.features.state import FeatureState
from ray_mlops.models.from_config import make_spec
from ray_mlops.train.trainer import TrainingOutcome, train_model
from tests.conftest import registered_checkpoints

ROOT = Path(__file__).resolve().parents[2]
FEATURES = {
    "numeric": ["age", "education_num", "capital_gain", "hours_per_week"],
    "categorical": ["workclass", "education", "marital_status", "occupation", "sex"],
}


def _config(**sections: Any) -> PipelineConfig:
    raw: dict[str, Any] = {
        "name": "training-test",
        "data": {
            "path": "sample.csv",
            "target": "income",
            "id_column": "person_id",
            **FEATURES,
            "quarantine": {"conflicting_labels": False},
        },
        "model": {"hidden_sizes": [16], "dropout": 0.1},
        "train": {"num_workers": 2, "epochs": 3, "batch_size": 64, "learning_rate": 0.01},
    }
    for name, values in sections.items():
        if name in raw and isinstance(values, dict):
            raw[name] = {**raw[name], **values}
        else:
            raw[name] = values
    return parse_config(raw)


@dataclass
class Prepared:
    cfg: PipelineConfig
    data: PreparedData
    state: FeatureState


_cache: dict[str, Prepared] = {}


def _prepare(cfg: PipelineConfig, workspace: Path) -> Prepared:
    key = cfg.data.model_dump_json() + cfg.task
    if key not in _cache:
        data = prepare_data(cfg.data, cfg.task, workspace, workspace / "quarantine")
        state = fit_feature_state(data.splits["train"], cfg.data, cfg.features, cfg.task)
        _cache[key] = Prepared(cfg, data, state)
    return _cache[key]


@pytest.fixture
def train(
    ray_session: None, workspace: Path, tmp_path: Path
) -> Callable[..., tuple[TrainingOutcome, list[dict[str, float]]]]:
    """Train a config; return the outcome and the per-epoch metrics logged to MLflow."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("training", artifact_location=str(tmp_path / "art"))

    def run(
        cfg: PipelineConfig, name: str = "run"
    ) -> tuple[TrainingOutcome, list[dict[str, float]]]:
        prepared = _prepare(cfg, workspace)
        state = prepared.state
        spec = make_spec(
            cfg.model, cfg.task, state.n_features, len(state.labels or []) or None, ROOT / "configs"
        )
        run_id = client.create_run(experiment).info.run_id
        outcome = train_model(
            cfg,
            prepared.data.splits["train"],
            prepared.data.splits["validation"],
            state,
            spec,
            storage_path=tmp_path / "results",
            run_name=f"{name}-{run_id}",
            tracking_uri=tracking_uri,
            run_id=run_id,
        )
        return outcome, _epoch_history(client, run_id)

    return run


def _epoch_history(client: MlflowClient, run_id: str) -> list[dict[str, float]]:
    """Per-epoch metrics as logged by rank 0, ordered by epoch."""
    by_epoch: dict[int, dict[str, float]] = {}
    for key in ("train_loss", "val_loss", "val_accuracy", "val_rmse", "restarts"):
        for metric in client.get_metric_history(run_id, key):
            by_epoch.setdefault(metric.step, {})[key] = metric.value
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


# Small batches and a wider network make an epoch last long enough to kill a worker in it.
FAULT_TRAIN = {"epochs": 5, "batch_size": 8, "max_failures": 2}
FAULT_MODEL = {"hidden_sizes": [128, 128], "dropout": 0.1}
_baseline: dict[str, Any] = {}


@pytest.fixture
def baseline(train: Callable[..., Any]) -> tuple[TrainingOutcome, list[dict[str, float]]]:
    """One uninterrupted run of the fault test's config, shared by the tests that compare."""
    if "run" not in _baseline:
        _baseline["run"] = train(_config(train=FAULT_TRAIN, model=FAULT_MODEL), name="clean")
    return _baseline["run"]  # type: ignore[no-any-return]


def test_loss_decreases_and_runs_are_reproducible(
    train: Callable[..., Any], baseline: tuple[TrainingOutcome, list[dict[str, float]]]
) -> None:
    first, history = baseline
    losses = [row["train_loss"] for row in history]
    assert max(losses[1:]) < losses[0] and losses[-1] < 0.9 * losses[0], losses
    assert history[-1]["val_accuracy"] > 0.78
    assert first.ingest == "resident" and first.epochs_run == 5 and first.restarts == 0

    second, again = train(_config(train=FAULT_TRAIN, model=FAULT_MODEL), name="again")
    assert again == history  # same seed, same shards, same order: identical metrics
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, second.network.state_dict()[name])


def test_early_stopping_and_best_checkpoint_follow_the_selection_metric(
    train: Callable[..., Any],
) -> None:
    # No change of accuracy can be an improvement of 10: stop after `patience` stalls.
    cfg = _config(
        train={
            "epochs": 8,
            "selection_metric": "val_accuracy",
            "early_stopping": {"patience": 2, "min_delta": 10.0},
        }
    )
    outcome, history = train(cfg)
    assert outcome.stopped_early and outcome.epochs_run == 3 and len(history) == 3
    best = max(range(len(history)), key=lambda i: (history[i]["val_accuracy"], -i))
    assert int(outcome.best_metrics["epoch"]) == best
    assert outcome.best_metrics["val_accuracy"] == pytest.approx(history[best]["val_accuracy"])


def test_multiclass_head_trains(train: Callable[..., Any]) -> None:
    categorical = [c for c in FEATURES["categorical"] if c != "marital_status"]
    cfg = _config(
        data={"target": "marital_status", "categorical": categorical},
        train={"epochs": 3, "optimizer": "sgd", "learning_rate": 0.05},
    )
    outcome, history = train(cfg)
    assert outcome.spec.head == "multiclass" and outcome.spec.n_outputs >= 5
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[-1]["val_accuracy"] > 0.5


def test_regression_head_trains_from_streamed_batches(train: Callable[..., Any]) -> None:
    numeric = [c for c in FEATURES["numeric"] if c != "hours_per_week"]
    cfg = _config(
        task="regression",
        data={"target": "hours_per_week", "numeric": numeric},
        train={
            "epochs": 3,
            "selection_metric": "val_rmse",
            "schedule": {"name": "cosine"},
            "ingest": "stream",
        },
    )
    outcome, history = train(cfg)
    assert outcome.ingest == "stream"
    assert outcome.spec.head == "regression" and outcome.spec.n_outputs == 1
    # RMSE in hours per week: below the target's spread (about 12 hours) once it learns.
    assert history[-1]["val_rmse"] < 12.0
    assert history[-1]["val_rmse"] < history[0]["val_rmse"]


def test_user_model_plugs_in(train: Callable[..., Any]) -> None:
    cfg = _config(
        model={
            "type": "custom",
            "builder": "models/residual_mlp.py:build",
            "options": {"width": 16, "blocks": 1},
        },
        train={"epochs": 2, "num_workers": 1, "cpus_per_worker": 2},  # a single worker, too
    )
    outcome, history = train(cfg)
    assert outcome.spec.kind == "custom"
    assert any(type(m).__name__ == "ResidualBlock" for m in outcome.network.modules())
    assert history[-1]["val_accuracy"] > 0.75


def _train_workers(started_after: float) -> list[psutil.Process]:
    """Live Ray Train worker processes created after ``started_after`` (a Unix time)."""
    workers = []
    for process in psutil.process_iter(["cmdline", "create_time", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if (
            cmdline.startswith("ray::RayTrainWorker")
            and process.info["create_time"] >= started_after
            and process.info["status"] != psutil.STATUS_ZOMBIE
        ):
            workers.append(process)
    return workers


def test_killed_worker_resumes_from_last_checkpoint(
    train: Callable[..., Any],
    baseline: tuple[TrainingOutcome, list[dict[str, float]]],
    tmp_path: Path,
) -> None:
    """SIGKILL a training worker mid-run: Ray Train restarts the group from the last
    checkpoint, and the result matches an uninterrupted run with the same seed."""
    killed: list[int] = []
    started = time.time()

    def kill_after_checkpoints() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            # Once Ray Train has registered a checkpoint, a restart has something to resume.
            if registered_checkpoints(tmp_path / "results", "fault-*") >= 1:
                workers = _train_workers(started)
                if workers:
                    os.kill(workers[-1].pid, signal.SIGKILL)
                    killed.append(workers[-1].pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_after_checkpoints, daemon=True)
    killer.start()
    recovered, history = train(_config(train=FAULT_TRAIN, model=FAULT_MODEL), name="fault")
    killer.join(timeout=5)
    assert killed, "the test never saw a checkpoint and a worker to kill"
    assert recovered.restarts >= 1, "training should have restarted from a checkpoint"
    assert recovered.epochs_run == 5 and history[-1]["restarts"] >= 1
    assert len(history) == 5, "every epoch logged, none twice over from a fresh start"

    _clean, clean_history = baseline
    assert history[-1]["val_loss"] == pytest.approx(clean_history[-1]["val_loss"], rel=0.02)
