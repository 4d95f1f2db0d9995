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
