"""A real ``mlflow server`` (SQLite backend) killed with SIGKILL and started again on the same
port: metrics logged across the restart are stored once each, none lost, with the timestamps
they were logged with; a server down for longer than ``tracking`` allows ends the run with one
message, in the time the settings imply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from ray_mlops import settings_env
from ray_mlops.config import TrackingConfig
from ray_mlops.errors import TrackingError
from ray_mlops.tracking import PipelineTracker, RunHandle, retry_window_s, tracking_failure
from ray_mlops.train.metric_log import MetricLogger
from tests.conftest import free_port, write_config


class MlflowServer:
    """``mlflow server`` in its own process group, on one port for its whole life."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it; :meth:`wait_ready` waits until it answers."""
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", "1"]
        command += ["--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}"]
        command += ["--artifacts-destination", str(self.folder / "artifacts")]
        # No job runner process: one less import of MLflow at every start.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=log, start_new_session=True
            )

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.uri}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            assert self.process is not None and self.process.poll() is None, (
                self.folder / "server.log"
            ).read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the server and its uvicorn worker: no shutdown, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def ensure_up(self) -> None:
        if self.process is None:
            self.start()
        self.wait_ready()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    started = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    started.start()
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def live(server: MlflowServer) -> MlflowServer:
    server.ensure_up()
    return server


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Apply a ``tracking`` section to this process, as the driver and rank 0 do."""

    def apply(tracking: TrackingConfig) -> None:
        for key in settings_env.tracking_env(tracking):
            monkeypatch.setenv(key, "placeholder")  # restored after the test
        settings_env.apply_tracking(tracking)

    yield apply


def _new_run(uri: str, experiment: str) -> str:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    return str(client.create_run(experiment_id).info.run_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_a_batch_sent_again_is_stored_once(live: MlflowServer) -> None:
    """What a retried log_batch relies on: the server skips a metric it already has."""
    run_id = _new_run(live.uri, "resent")
    run = RunHandle(MlflowClient(live.uri), run_id)
    batch = [Metric("loss", 0.5, 1_790_000_000_000, 0), Metric("loss", 0.25, 1_790_000_000_500, 1)]
    run.record_metric_entries(batch)
    run.record_metric_entries(batch)
    history = MlflowClient(live.uri).get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.25)]


def test_steps_logged_while_the_server_restarts_are_stored_exactly_once(
    live: MlflowServer, retries: object
) -> None:
    retries(TrackingConfig())  # type: ignore[operator]
    run_id = _new_run(live.uri, "restart")
    logger = MetricLogger(live.uri, run_id)
    logged: dict[int, tuple[int, int]] = {}  # step -> when log() was called (ms)

    def log(step: int) -> None:
        before = _now_ms()
        logger.log({"loss": 1.0 / (step + 1), "learning_rate": 0.01}, step)
        logged[step] = (before, _now_ms())

    step = 0

    def log_for(seconds: float) -> None:
        nonlocal step
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            log(step)
            step += 1
            time.sleep(0.005)

    log_for(1.0)  # the writer is busy storing batches when the kill comes
    live.kill()
    live.start()
    queued = 0
    while not live.answers():  # logging on while the server is away
        log(step)
        step += 1
        queued = max(queued, len(logger.unwritten()))
        time.sleep(0.02)
    log_for(0.5)
    logger.flush()

    client = MlflowClient(live.uri)
    for key in ("loss", "learning_rate"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(step)), key  # once each
    for metric in client.get_metric_history(run_id, "loss"):
        before, after = logged[metric.step]
        assert before <= metric.timestamp <= after  # stamped when logged, not when written
        assert metric.value == pytest.approx(1.0 / (metric.step + 1))
    assert queued > 10, "the outage never held the writer up"


def test_the_cli_ends_with_one_message_and_exit_1_when_no_server_answers(
    tmp_path: Path, adult_sample: pd.DataFrame
) -> None:
    adult_sample.to_csv(tmp_path / "sample.csv", index=False)
    nobody = f"http://127.0.0.1:{free_port()}"
    tracking = {"tracking_uri": nobody, "retries": 2, "retry_backoff_s": 1}
    config = write_config(tmp_path, {"tracking": tracking})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "train", str(config), "--resume"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith(
        f"error: cannot reach the MLflow tracking server at {nobody}: connection refused"
    )
    assert "2 retries, at most about" in line
    assert took < 60


def test_a_training_workers_tracking_error_is_found_in_ray_trains_failure() -> None:
    from ray.train.v2.api.exceptions import WorkerGroupError

    raised = TrackingError("cannot reach the MLflow tracking server at http://x:5000 ...")
    failed = WorkerGroupError("rank 0 failed", {0: raised})
    try:
        raise RuntimeError("training failed") from failed
    except RuntimeError as error:
        assert tracking_failure(error) is raised


def test_training_goes_on_through_a_server_restart_and_logs_every_epoch_once(
    ray_session: None,
    live: MlflowServer,
    tmp_path: Path,
    adult_sample: pd.DataFrame,
    retries: object,
) -> None:
    from rich.console import Console

    from ray_mlops.config import load_config
    from ray_mlops.mlflow_names import TAG_STAGE
    from ray_mlops.pipeline import run_pipeline
    from ray_mlops.workspace import Workspace

    retries(TrackingConfig())  # type: ignore[operator]  # the pipeline's; restored after
    adult_sample.to_csv(tmp_path / "sample.csv", index=False)
    epochs = 5
    config = write_config(
        tmp_path,
        {
            "name": "restarted-server",
            "tracking": {"tracking_uri": live.uri},
            "train": {
                "num_workers": 2,
                "epochs": epochs,
                "batch_size": 32,
                "learning_rate": 0.01,
                "log_every_n_steps": 10,
                "early_stopping": {"patience": epochs},
            },
        },
    )
    client = MlflowClient(live.uri)
    stored_at_kill: list[int] = []

    def kill_after_the_first_epoch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            experiment = client.get_experiment_by_name("restarted-server")
            runs = experiment and client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`{TAG_STAGE}` = 'train'"
            )
            if runs and (epochs_stored := client.get_metric_history(runs[0].info.run_id, "epoch")):
                stored_at_kill.append(len(epochs_stored))
                live.kill()
                live.start()
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_after_the_first_epoch, daemon=True)
    killer.start()
    result = run_pipeline(
        load_config(config), Console(quiet=True), command="train", workspace=Workspace(tmp_path)
    )
    killer.join(timeout=5)
    live.wait_ready()

    assert stored_at_kill and stored_at_kill[0] < epochs, "the server was not killed mid-training"
    assert result.training is not None and result.training.epochs_run == epochs
    train_run = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`{TAG_STAGE}` = 'train'"
    )[0]
    for key in ("epoch", "train_loss", "val_loss", "val_accuracy"):
        history = client.get_metric_history(train_run.info.run_id, key)
        assert sorted(m.step for m in history) == list(range(epochs)), key
    steps = [m.step for m in client.get_metric_history(train_run.info.run_id, "train_loss_step")]
    assert steps and len(steps) == len(set(steps))
    assert train_run.info.status == "FINISHED"


def test_a_server_down_longer_than_the_retries_ends_the_run_with_one_message(
    live: MlflowServer, retries: object
) -> None:
    tracking = TrackingConfig(retries=3, retry_backoff_s=1, request_timeout_s=5)
    retries(tracking)  # type: ignore[operator]
    tracker = PipelineTracker(live.uri, "gives-up")
    tracker.start_parent("gives-up", {})
    started = 0.0
    with (
        pytest.raises(TrackingError) as raised,
        tracker.closing_parent(),
        tracker.stage("train") as stage_run_id,
    ):
        logger = MetricLogger(live.uri, stage_run_id)
        live.kill()  # and not started again: the last test of the module
        started = time.monotonic()
        logger.log({"epoch": 0.0, "val_loss": 0.5}, 0)
        logger.flush()
    took = time.monotonic() - started
    # One call's retries (tries at 0, 0, 2 and 6 s, plus jitter), and no more: neither the
    # stage run nor the parent waited again to record a status the server cannot take
    # (they stay RUNNING, which --resume takes for unfinished).
    assert retry_window_s(3, 1, 0.0) <= took <= retry_window_s(3, 1, 1.0) + 3
    message = str(raised.value)
    assert message.startswith(
        f"cannot reach the MLflow tracking server at {live.uri} (training's rank 0, run "
        f"{stage_run_id}): connection refused; gave up after "
    )
    assert "(3 retries, backoff factor 1 s, 5 s per request)" in message
    assert f"curl {live.uri}/health" in message and "tracking.retries" in message
    assert "\n" not in message and "Traceback" not in message
