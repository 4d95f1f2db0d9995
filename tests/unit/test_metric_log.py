"""The training loop's MLflow logger (a writer thread) on a real MLflow store (SQLite)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ray_mlops.train.metric_log import MetricLogger


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("metric-log")).info.run_id
    return uri, run_id


def test_every_queued_step_is_written_by_flush(store: tuple[str, str]) -> None:
    uri, run_id = store
    logger = MetricLogger(uri, run_id)
    # 700 steps of 2 metrics: more than one log_batch may carry (1000 metrics).
    for step in range(700):
        logger.log({"train_loss_step": 1.0 / (step + 1), "learning_rate": 0.01}, step)
    logger.log({"val_loss": 0.25, "epoch": 0}, 0)
    logger.flush()
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, "train_loss_step")
    assert sorted(m.step for m in history) == list(range(700))
    assert {m.step: m.value for m in history}[3] == pytest.approx(0.25)
    assert len(client.get_metric_history(run_id, "learning_rate")) == 700
    assert client.get_run(run_id).data.metrics["val_loss"] == 0.25
    assert logger.seconds > 0


def test_the_loop_does_not_wait_for_mlflow(
    store: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, run_id = store
    # Opening the store is held until the test says so, as a slow import or store would be.
    opened = threading.Event()
    opened_in: list[threading.Thread] = []
    original_init = MlflowClient.__init__

    def slow_init(self: MlflowClient, *args: object, **kwargs: object) -> None:
        opened_in.append(threading.current_thread())
        opened.wait(timeout=30)
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MlflowClient, "__init__", slow_init)
    logger = MetricLogger(uri, run_id)
    for step in range(50):
        logger.log({"train_loss_step": float(step)}, step)
    # Every log() returned while the store was still opening, in the writer's thread.
    deadline = time.monotonic() + 30
    while not opened_in and time.monotonic() < deadline:
        time.sleep(0.01)
    assert opened_in and opened_in[0] is not threading.main_thread()
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:  # nothing written yet
        assert db.execute("select count(*) from metrics").fetchone() == (0,)
    opened.set()
    logger.flush()
    monkeypatch.undo()
    assert len(MlflowClient(uri).get_metric_history(run_id, "train_loss_step")) == 50


def test_a_failed_write_is_raised_by_flush_naming_the_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MetricLogger(uri, "no-such-run")
    logger.log({"epoch": 0}, 0)
    with pytest.raises(RuntimeError, match="MLflow run no-such-run failed"):
        logger.flush()


def test_without_a_run_nothing_is_started_or_written(tmp_path: Path) -> None:
    logger = MetricLogger(None, None)
    logger.log({"epoch": 0}, 0)
    logger.flush()
    assert logger.seconds == 0.0
    assert not (tmp_path / "mlflow.db").exists()


def test_steps_not_yet_written_are_listed_and_a_replay_fills_only_the_gap(
    store: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed with epochs still queued: the checkpoint's list brings them back."""
    uri, run_id = store
    first = MetricLogger(uri, run_id)
    first.log({"epoch": 0, "train_loss": 0.5}, 0)
    first.flush()
    assert first.unwritten() == []

    # The next attempt's store stays closed, as if the worker died before the writer wrote.
    opened = threading.Event()
    original_init = MlflowClient.__init__

    def held_init(self: MlflowClient, *args: object, **kwargs: object) -> None:
        opened.wait(timeout=30)
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MlflowClient, "__init__", held_init)
    dying = MetricLogger(uri, run_id)
    dying.log({"epoch": 1, "train_loss": 0.4}, 1)
    dying.log({"epoch": 2, "train_loss": 0.3}, 2)
    carried = dying.unwritten()
    assert [step for _, step, _ in carried] == [1, 2]
    opened.set()
    dying.flush()  # in a real kill nothing is written; here epoch 1 and 2 both are
    monkeypatch.undo()

    # The restarted rank 0 replays what the checkpoint carried, plus one older step already
    # stored: identical metrics (key, value, step, timestamp) are not stored twice.
    restarted = MetricLogger(uri, run_id)
    restarted.replay(carried[:1] + carried)
    restarted.log({"epoch": 3, "train_loss": 0.2}, 3)
    restarted.flush()
    history = MlflowClient(uri).get_metric_history(run_id, "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.4), (2, 0.3), (3, 0.2)]
    assert {m.step: m.timestamp for m in history}[2] == carried[1][2]


def test_a_replay_writes_steps_the_store_never_saw(store: tuple[str, str]) -> None:
    uri, run_id = store
    logger = MetricLogger(uri, run_id)
    logger.replay([({"epoch": 4.0, "val_loss": 0.125}, 4, 1_790_000_000_000)])
    logger.flush()
    (metric,) = MlflowClient(uri).get_metric_history(run_id, "val_loss")
    assert (metric.step, metric.value, metric.timestamp) == (4, 0.125, 1_790_000_000_000)
