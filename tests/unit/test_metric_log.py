"""The training loop's MLflow logger (a writer thread) on a real MLflow store (SQLite)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

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


def _closed_port_uri() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray_mlops import settings_env
    from ray_mlops.config import TrackingConfig

    tracking = TrackingConfig(retries=0, retry_backoff_s=0)
    for key in settings_env.tracking_env(tracking):
        monkeypatch.setenv(key, "placeholder")  # restored after the test
    settings_env.apply_tracking(tracking)


def test_a_writer_that_found_no_server_keeps_its_steps_and_says_so(no_retries: None) -> None:
    from ray_mlops.errors import TrackingError

    uri = _closed_port_uri()
    logger = MetricLogger(uri, "some-run")
    logger.raise_if_failed()  # nothing failed yet: returns at once
    logger.log({"epoch": 0.0, "val_loss": 0.5}, 0)
    deadline = time.monotonic() + 30
    with pytest.raises(TrackingError, match=f"server at {uri} .training's rank 0, run some-run."):
        while time.monotonic() < deadline:
            logger.raise_if_failed()
            time.sleep(0.05)
    # Still listed, for the checkpoint that a restarted worker replays from.
    assert [step for _, step, _ in logger.unwritten()] == [0]
    with pytest.raises(TrackingError):  # and raised again, not forgotten
        logger.flush()


def _tiny_loop(train: Any, tracking_uri: str, run_id: str, **extra: Any) -> tuple[Any, Any]:
    """Settings of a 3-feature, 64-row classification loop on one CPU worker, and its shard."""
    import torch

    from ray_mlops.config import ModelConfig
    from ray_mlops.models.from_config import make_spec
    from ray_mlops.train.ingest import ResidentShard
    from ray_mlops.train.loop import LoopSettings

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(64, 3, generator=generator)
    shard = ResidentShard(features, (features[:, 0] > 0).long())
    settings = LoopSettings(
        train=train,
        spec_json=make_spec(
            ModelConfig(hidden_sizes=[4]), "classification", 3, 2, Path(".")
        ).to_json(),
        feature_state_json="{}",
        task="classification",
        ingest="resident",
        train_rows_per_worker=64,
        target_scale=1.0,
        tracking_uri=tracking_uri,
        run_id=run_id,
        **extra,
    )
    return settings, shard


class _RecordingSession:
    """Where the loop runs in this test: rank 0 on the CPU, reports kept."""

    rank = 0

    def __init__(self, shards: dict[str, object]) -> None:
        import torch

        self.device = torch.device("cpu")
        self.shards = shards
        self.unlogged: list[list[int]] = []  # per report: the steps its checkpoint carries

    def prepare_model(self, network: object) -> object:
        return network

    def get_checkpoint(self) -> None:
        return None

    def open_shard(self, name: str, ingest: str, prefetch_batches: int) -> object:
        return self.shards[name]

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        import torch

        from ray_mlops.train.checkpoint import TRAINING_STATE_FILE

        assert checkpoint_dir is not None
        state = torch.load(checkpoint_dir / TRAINING_STATE_FILE, weights_only=True)
        carried = state["progress"]["unlogged_metrics"]
        self.unlogged.append([step for values, step, _ in carried if "val_loss" in values])


def test_the_loop_ends_after_a_checkpoint_that_carries_every_unstored_epoch(
    no_retries: None,
) -> None:

    from ray_mlops.config import TrackingConfig, TrainConfig
    from ray_mlops.errors import TrackingError
    from ray_mlops.train.loop import run_loop

    settings, shard = _tiny_loop(
        TrainConfig(num_workers=1, epochs=100, batch_size=16, log_every_n_steps=0),
        _closed_port_uri(),
        "some-run",
        # Travels with the loop's settings and is applied where the loop runs.
        tracking=TrackingConfig(retries=0, retry_backoff_s=0),
    )
    session = _RecordingSession({"train": shard, "validation": shard})
    with pytest.raises(TrackingError):
        run_loop(settings, session)  # type: ignore[arg-type]
    reported = len(session.unlogged)
    # It stopped at an epoch's end, long before the last, and that checkpoint carries every
    # epoch so far: none was stored, and a restart from it replays them all.
    assert 1 <= reported < 100
    assert session.unlogged[-1] == list(range(reported))


class _KilledOnceSession(_RecordingSession):
    """Rank 0 whose first attempt dies after logging epoch ``kill_after`` but before its
    checkpoint is kept; the second attempt resumes from the last checkpoint kept."""

    def __init__(self, shards: dict[str, object], keep: Path, kill_after: int) -> None:
        super().__init__(shards)
        self.keep = keep
        self.kill_after = kill_after
        self.kept: Path | None = None
        self.attempt = 1

    def get_checkpoint(self) -> object | None:  # type: ignore[override]
        import contextlib

        kept = self.kept
        if kept is None:
            return None

        class _Kept:
            def as_directory(self) -> contextlib.AbstractContextManager[str]:
                return contextlib.nullcontext(str(kept))

        return _Kept()

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        import shutil

        assert checkpoint_dir is not None
        if self.attempt == 1 and metrics["epoch"] == self.kill_after:
            raise RuntimeError("node killed before the checkpoint was kept")
        target = self.keep / f"epoch-{int(metrics['epoch'])}"
        shutil.copytree(checkpoint_dir, target)
        self.kept = target


def test_epochs_an_attempt_logged_after_its_last_checkpoint_are_not_logged_again(
    store: tuple[str, str], tmp_path: Path
) -> None:

    from ray_mlops.config import TrainConfig
    from ray_mlops.train.loop import run_loop

    uri, run_id = store
    settings, shard = _tiny_loop(
        TrainConfig(num_workers=1, epochs=5, batch_size=16, log_every_n_steps=2), uri, run_id
    )
    session = _KilledOnceSession({"train": shard, "validation": shard}, tmp_path, kill_after=2)
    with pytest.raises(RuntimeError, match="node killed"):
        run_loop(settings, session)  # type: ignore[arg-type]
    client = MlflowClient(uri)
    deadline = time.monotonic() + 10  # the killed attempt's writer stored epoch 2 meanwhile
    while len(client.get_metric_history(run_id, "epoch")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(m.step for m in client.get_metric_history(run_id, "epoch")) == [0, 1, 2]
    session.attempt = 2
    run_loop(settings, session)  # type: ignore[arg-type]  # resumes at epoch 2
    epochs = [m.step for m in client.get_metric_history(run_id, "epoch")]
    assert sorted(epochs) == [0, 1, 2, 3, 4]  # epoch 2 trained twice, logged once
    steps = [m.step for m in client.get_metric_history(run_id, "train_loss_step")]
    assert len(steps) == len(set(steps)) and max(steps) == 5 * 4  # 4 steps an epoch
    assert [m.value for m in client.get_metric_history(run_id, "resumed_from_epoch")] == [1.0]
