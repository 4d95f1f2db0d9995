"""Schedules, early stopping, resident shards, checkpoints and settings, without Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from ray_mlops.config import ScheduleConfig, TrainConfig, parse_config
from ray_mlops.errors import ConfigError
from ray_mlops.features.state import FeatureState, NumericState
from ray_mlops.models.factory import build_model
from ray_mlops.models.predictor import TabularPredictor
from ray_mlops.models.spec import ModelSpec
from ray_mlops.train.checkpoint import Progress, restore_checkpoint, write_checkpoint
from ray_mlops.train.ingest import ResidentShard
from ray_mlops.train.optim import EarlyStopping, build_optimizer, build_scheduler, lr_multiplier

CPU = torch.device("cpu")


def test_warmup_then_cosine_decays_to_the_floor() -> None:
    schedule = ScheduleConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.1)
    factor = lr_multiplier(schedule, steps_per_epoch=10, epochs=5)
    rising = [factor(step) for step in range(10)]
    assert rising == sorted(rising) and rising[0] == pytest.approx(0.1) and rising[-1] == 1.0
    decaying = [factor(step) for step in range(10, 50)]
    assert decaying == sorted(decaying, reverse=True)
    assert decaying[0] == pytest.approx(1.0) and decaying[-1] == pytest.approx(0.1)


def test_step_schedule_multiplies_by_gamma_every_step_epochs() -> None:
    factor = lr_multiplier(ScheduleConfig(name="step", step_epochs=2, gamma=0.5), 4, 6)
    assert [factor(epoch * 4) for epoch in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_scheduler_drives_the_optimizer_learning_rate() -> None:
    train = TrainConfig(learning_rate=0.1, schedule=ScheduleConfig(name="linear"), epochs=2)
    network = torch.nn.Linear(2, 1)
    optimizer = build_optimizer(network.parameters(), train, CPU)
    scheduler = build_scheduler(optimizer, train, steps_per_epoch=5)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert isinstance(optimizer, torch.optim.AdamW)


@pytest.mark.parametrize(
    ("mode", "values", "stops_at"),
    [("min", [1.0, 0.8, 0.79, 0.81, 0.9], 3), ("max", [0.5, 0.6, 0.6, 0.55], 3)],
)
def test_early_stopping_counts_epochs_without_min_delta_improvement(
    mode: str, values: list[float], stops_at: int
) -> None:
    stopper = EarlyStopping(mode=mode, patience=2, min_delta=0.05)  # type: ignore[arg-type]
    decisions = [stopper.update(v) for v in values]
    assert decisions.index(True) == stops_at
    resumed = EarlyStopping(mode=mode, patience=2, min_delta=0.05)  # type: ignore[arg-type]
    partial = EarlyStopping(mode=mode, patience=2, min_delta=0.05)  # type: ignore[arg-type]
    for value in values[:2]:
        partial.update(value)
    resumed.load_state_dict(partial.state_dict())
    assert [resumed.update(v) for v in values[2:]] == decisions[2:]


def test_early_stopping_off_never_stops() -> None:
    stopper = EarlyStopping(mode="min", patience=None, min_delta=0.0)
    assert not any(stopper.update(v) for v in [1, 2, 3, 4, 5])


def test_resident_shard_shuffles_reproducibly_and_covers_every_row() -> None:
    shard = ResidentShard(torch.arange(100.0).reshape(50, 2), torch.arange(50))
    first = torch.cat([y for _, y in shard.batches(8, shuffle_seed=7)])
    again = torch.cat([y for _, y in shard.batches(8, shuffle_seed=7)])
    other = torch.cat([y for _, y in shard.batches(8, shuffle_seed=8)])
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert sorted(first.tolist()) == list(range(50))
    features = torch.cat([x for x, _ in shard.batches(8, shuffle_seed=7)])
    assert torch.equal(features[:, 0], first.float() * 2)  # rows stay whole
    in_order = torch.cat([y for _, y in shard.batches(8, shuffle_seed=None)])
    assert torch.equal(in_order, torch.arange(50))


def _feature_state() -> FeatureState:
    return FeatureState(
        numeric={"a": NumericState(fill=2.5, center=2.5, scale=1.0)}, labels=["n", "y"]
    )


def test_checkpoint_restores_training_state_and_is_a_predictor_directory(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = _feature_state()
    spec = ModelSpec(n_inputs=state.n_features, n_outputs=1, head="binary", hidden_sizes=[4])
    train = TrainConfig(schedule=ScheduleConfig(name="cosine"), epochs=3)
    network = build_model(spec)
    optimizer = build_optimizer(network.parameters(), train, CPU)
    scheduler = build_scheduler(optimizer, train, steps_per_epoch=2)
    for _ in range(3):
        network(torch.randn(5, state.n_features)).sum().backward()
        optimizer.step()
        scheduler.step()
    progress = Progress(
        epoch=1,
        global_step=3,
        early_stopping={"best": 0.5, "epochs_without_improvement": 1},
        unlogged_metrics=[({"train_loss": 0.4, "epoch": 1.0}, 1, 1_790_000_000_000)],
    )
    write_checkpoint(
        tmp_path, network, optimizer, scheduler, progress, spec.to_json(), state.to_json()
    )

    fresh = build_model(spec)
    fresh_optimizer = build_optimizer(fresh.parameters(), train, CPU)
    fresh_scheduler = build_scheduler(fresh_optimizer, train, steps_per_epoch=2)
    restored = restore_checkpoint(tmp_path, fresh, fresh_optimizer, fresh_scheduler)
    assert restored == progress
    assert fresh_scheduler.last_epoch == 3
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, fresh.state_dict()[name])
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], exp_avg)

    predictor = TabularPredictor.from_directory(tmp_path)
    out = predictor.predict(pd.DataFrame({"a": [1.5, 3.5]}))
    assert list(out.columns) == ["prediction", "probability_n", "probability_y"]
    assert math.isclose(float(out.iloc[0, 1] + out.iloc[0, 2]), 1.0)


def test_selection_metric_must_fit_the_task() -> None:
    raw = {
        "name": "demo",
        "task": "regression",
        "data": {"path": "x.csv", "target": "y", "numeric": ["a"]},
        "train": {"selection_metric": "val_accuracy"},
    }
    with pytest.raises(ConfigError, match=r"val_accuracy.*choose one of.*val_rmse"):
        parse_config(raw)


def test_custom_model_needs_a_builder() -> None:
    raw = {
        "name": "demo",
        "data": {"path": "x.csv", "target": "y", "numeric": ["a"]},
        "model": {"type": "custom"},
    }
    with pytest.raises(ConfigError, match=r"model: .*needs a builder"):
        parse_config(raw)
