"""The driver-side trial log (TrialRuns) on a real MLflow store, with Tune's callback calls."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from ray_mlops.config import parse_config
from ray_mlops.mlflow_names import TAG_TRIAL_ID
from ray_mlops.search.trial_runs import TrialRuns, epoch_metrics

SPACE = parse_config(
    {
        "name": "s",
        "data": {"path": "d.csv", "target": "y", "numeric": ["a"]},
        "search": {
            "space": {
                "train.learning_rate": {"loguniform": [1e-4, 1e-1]},
                "model.hidden_sizes": {"choice": [[8], [16, 8]]},
            }
        },
    }
).search.space


@dataclass
class Trial:
    """What the callback reads of a Tune trial."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    local_path: str | None = None  # where Tune keeps the trial's result.json

    def __str__(self) -> str:
        return f"run_trial_{self.trial_id}"


def _result(epoch: int, loss: float) -> dict[str, Any]:
    # A Tune result: the loop's metrics and Tune's own bookkeeping.
    return {
        "epoch": epoch,
        "val_loss": loss,
        "stopped_early": 0.0,
        "training_iteration": epoch + 1,
        "time_total_s": 1.5,
        "trial_id": "t1",
        "done": False,
        "checkpoint_dir_name": "checkpoint_000000",
        "config": {"x": 1},
    }


@pytest.fixture
def store(tmp_path: Path) -> tuple[MlflowClient, str, str]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("search", artifact_location=str(tmp_path / "a"))
    parent = client.create_run(experiment, run_name="search").info.run_id
    return client, experiment, parent


def _callback(store: tuple[MlflowClient, str, str]) -> TrialRuns:
    client, experiment, parent = store
    return TrialRuns(client.tracking_uri, experiment, parent, SPACE)


def test_each_trial_is_a_nested_run_with_its_values_and_epoch_history(
    store: tuple[MlflowClient, str, str],
) -> None:
    client, experiment, parent = store
    runs = _callback(store)
    trials = [
        Trial("t1", {"train.learning_rate": 0.01, "model.hidden_sizes": "[16, 8]"}),
        Trial("t2", {"train.learning_rate": 0.001, "model.hidden_sizes": "[8]"}),
    ]
    for trial in trials:
        runs.on_trial_start(0, trials, trial)
    # Results of concurrent trials interleave.
    for epoch in range(3):
        for offset, trial in enumerate(trials):
            runs.on_trial_result(0, trials, trial, _result(epoch, 1.0 - 0.1 * epoch + offset))
    runs.on_experiment_end(trials)

    nested = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags[TAG_TRIAL_ID] for r in nested) == ["t1", "t2"]
    first = next(r for r in nested if r.data.tags[TAG_TRIAL_ID] == "t1")
    # Values under their config paths, choices decoded back to config values.
    assert first.data.params == {"train.learning_rate": "0.01", "model.hidden_sizes": "[16, 8]"}
    history = client.get_metric_history(first.info.run_id, "val_loss")
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 1.0), (1, 0.9), (2, 0.8)]
    # Tune's bookkeeping stays in Tune's files.
    assert set(first.data.metrics) == {"epoch", "val_loss", "stopped_early"}


def test_a_resumed_search_continues_the_same_runs_and_logs_each_epoch_once(
    store: tuple[MlflowClient, str, str], tmp_path: Path
) -> None:
    client, experiment, parent = store
    trial = Trial("t1", {"train.learning_rate": 0.01, "model.hidden_sizes": "[8]"}, str(tmp_path))
    results = [_result(epoch, 1.0 - 0.1 * epoch) for epoch in range(4)]
    before = _callback(store)
    before.on_trial_start(0, [trial], trial)
    before.on_trial_result(0, [trial], trial, results[0])
    before.flush()
    before.wait()  # stored before the kill (a killed driver's writes in flight are lost)
    # Epoch 1 is still in the buffer when the driver is killed; Tune's result.json has it.
    before.on_trial_result(0, [trial], trial, results[1])
    (tmp_path / "result.json").write_text(
        "".join(json.dumps(r) + "\n" for r in results[:2]) + '{"epoch": 2, "val_lo'
    )

    # Tune pickles its callbacks with the experiment state; a resumed search unpickles them.
    after = pickle.loads(pickle.dumps(_callback(store)))
    after.on_trial_start(0, [trial], trial)
    # Restored from the checkpoint of epoch 1, the trial goes on with epoch 2. Then it fails
    # and Tune restarts it from the checkpoint of epoch 2: epoch 3 is reported twice.
    for result in (results[2], results[3], results[3]):
        after.on_trial_result(0, [trial], trial, result)
    after.on_experiment_end([trial])

    nested = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(nested) == 1
    history = client.get_metric_history(nested[0].info.run_id, "val_loss")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [
        (0, 1.0),
        (1, 0.9),
        (2, 0.8),
        (3, 0.7),
    ]


def test_epoch_metrics_keep_the_loops_numbers_only() -> None:
    result = {**_result(2, 0.5), "checkpoint_path": "/tmp/x", "stopped_early": True}
    assert epoch_metrics(result) == {"epoch": 2.0, "val_loss": 0.5}
