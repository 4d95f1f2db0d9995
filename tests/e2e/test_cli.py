"""The `ray-mlops` command as a user runs it: exit codes, messages, and a real Ray Job."""

import contextlib
import http.server
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.conftest import free_port, registered_checkpoints, write_config

CLI = [sys.executable, "-m", "ray_mlops"]


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120):
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = _cli("--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("run", "train", "data", "serve", "predict", "submit"):
        assert command in done.stdout


def test_bad_config_exits_2_naming_the_key_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "name: demo\ndata: {path: x.csv, target: y, numeric: [a]}\ntrain: {epochs: lots, gpus: 2}\n"
    )
    done = _cli("run", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert "train.epochs" in done.stderr and "given: 'lots'" in done.stderr
    assert "train.gpus: unknown key" in done.stderr and "num_workers" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_data_file_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)  # sample.csv is not there
    done = _cli("run", str(config), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert done.returncode == 1
    assert "data file not found: sample.csv" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".ray-mlops").exists()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A real `ray start --head` cluster on 127.0.0.1, stopped with its process group."""
    dashboard = free_port()
    # Short: Ray's unix socket paths under it must stay within 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            # Free ports for the agents too: the defaults (52365, ...) may be held by another
            # Ray on this machine, and a head without its job agent refuses every submission.
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--num-cpus=2",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            # Ray 2.60 starts with token auth on: a 401 means the dashboard is up.
            if requests.get(f"{address}/api/version", timeout=2).status_code < 500:
                break
        except requests.ConnectionError:
            pass
        time.sleep(1)
    else:
        os.killpg(head.pid, signal.SIGTERM)
        pytest.fail("ray start --head did not come up within 120 s")
    yield address
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        # `ray start --block` takes about 30 s to stop its processes one by one; a test
        # cluster has nothing to save, and its whole process group goes at once.
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(config: Path, address: str, tracking_uri: str) -> subprocess.CompletedProcess[str]:
    """``ray-mlops submit CONFIG`` from the config's folder, tracking into ``tracking_uri``."""
    return _cli(
        "submit",
        config.name,
        "--address",
        address,
        cwd=config.parent,
        env={"MLFLOW_TRACKING_URI": tracking_uri},
        timeout=600,
    )


def test_submit_runs_the_pipeline_as_a_ray_job(
    ray_cluster: str, workspace: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "sample.csv").write_bytes((workspace / "sample.csv").read_bytes())
    config = write_config(project, {"name": "adult-job", "train": {"epochs": 1}})
    tracking_uri = f"sqlite:///{tmp_path / 'job-mlflow.db'}"
    done = _submit(config, ray_cluster, tracking_uri)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stderr
    assert "register" in done.stdout, "the job's own progress lines are streamed"
    champion = MlflowClient(tracking_uri).get_model_version_by_alias("adult-job", "champion")
    assert str(champion.version) == "1"


class _AgentlessJobsApi(http.server.BaseHTTPRequestHandler):
    """A dashboard whose Jobs API answers submissions as a cluster without a ready agent."""

    def do_GET(self) -> None:
        import ray

        body = json.dumps({"ray_version": ray.__version__, "version": "4"}).encode()
        self.send_response(200)  # /api/version, and "the package is already uploaded"
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = b"No available agent to submit job, please try again later."
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_submit_a_jobs_api_error_is_one_line_naming_the_address(
    workspace: Path, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AgentlessJobsApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    shutil.copy(workspace / "sample.csv", tmp_path / "sample.csv")
    config = write_config(tmp_path)
    try:
        done = _cli("submit", config.name, "--address", address, "--agent-wait", "3", cwd=tmp_path)
    finally:
        server.shutdown()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "no job agent ready yet; retrying for up to 3 s" in done.stdout
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: Ray Jobs API at {address}: submitting the job (retried for 3 s) failed: "
        "HTTP 500: No available agent to submit job, please try again later."
    ], done.stderr


def test_submit_a_failed_job_prints_the_reason_and_the_end_of_its_log(
    ray_cluster: str, workspace: Path, tmp_path: Path
) -> None:
    # A data file that .gitignore keeps out of the upload: found here, missing in the job.
    shutil.copy(workspace / "sample.csv", tmp_path / "sample.csv")
    (tmp_path / ".gitignore").write_text("sample.csv\n")
    config = write_config(tmp_path, {"name": "adult-failing-job"})
    done = _submit(config, ray_cluster, f"sqlite:///{tmp_path / 'job-mlflow.db'}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    status = next(line for line in done.stderr.splitlines() if line.startswith("job "))
    assert "FAILED: Job entrypoint command failed with exit code 1" in status, done.stderr
    tail = done.stderr.split("lines of the job's log:", 1)[1]
    assert "error: data file not found: sample.csv" in tail
    assert "ray job logs" in tail


def test_plain_ray_job_submit_uploads_no_local_state_and_refuses_a_copied_store(
    ray_cluster: str, workspace: Path, tmp_path: Path
) -> None:
    shutil.copy(workspace / "sample.csv", tmp_path / "sample.csv")
    config = write_config(tmp_path, {"name": "adult-plain-job"})
    # The user's local state, as a first command leaves it: .ray-mlops/ with the store.
    listed = _cli("models", "list", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert listed.returncode == 0, listed.stderr
    assert (tmp_path / ".ray-mlops" / "mlflow.db").is_file()
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    show_upload = "import pathlib; print('UPLOADED', sorted(map(str, pathlib.Path().rglob('*'))))"
    entrypoint = f"python -c {shlex.quote(show_upload)} && python -m ray_mlops run {config.name}"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"),
            "job",
            "submit",
            "--address",
            ray_cluster,
            "--working-dir",
            ".",
            # No store from the cluster's environment: the config's default applies.
            "--runtime-env-json",
            json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": ""}}),
            "--",
            "sh",
            "-c",
            entrypoint,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    output = done.stdout + done.stderr
    uploaded = next(line for line in output.splitlines() if line.startswith("UPLOADED"))
    assert "sample.csv" in uploaded and config.name in uploaded
    assert ".ray-mlops/" not in uploaded and ".venv" not in uploaded, uploaded
    assert "tracking.tracking_uri: this run is a Ray Job" in output, output[-3000:]
    assert "ray-mlops submit CONFIG" in output
    assert "Traceback" not in output
    assert done.returncode != 0, "refused before any work: the job fails"


def test_models_show_and_lineage_of_a_pipeline_version(
    trained: Any, tracking_uri: str, workspace: Path
) -> None:
    version = str(trained.model_version)
    show = _cli("models", "show", trained.model_name, "--tracking-uri", tracking_uri, cwd=workspace)
    assert show.returncode == 0, show.stderr
    header = next(line for line in show.stdout.splitlines() if "primary metric" in line)
    column = [cell.strip() for cell in header.split("┃")].index("primary metric")
    row = next(line for line in show.stdout.splitlines() if f"│ {version} " in line)
    score = trained.test_metrics[trained.primary_metric]
    assert row.split("│")[column].strip() == f"{trained.primary_metric} {score:.4f}"

    chain = _cli(
        "models",
        "lineage",
        trained.model_name,
        version,
        "--tracking-uri",
        tracking_uri,
        cwd=workspace,
    )
    assert chain.returncode == 0, chain.stderr
    schema = next(line for line in chain.stdout.splitlines() if "schema:" in line)
    # The contract's types, not the text every column is read as.
    assert "age: float" in schema and "workclass: string" in schema, schema


def _kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL a command and every process it started (its local Ray included)."""
    import psutil

    parent = psutil.Process(process.pid)
    for child in [*parent.children(recursive=True), parent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.wait(timeout=30)


def _kill_when(
    command: str, config: Path, ready: Callable[[], bool], settle_s: float = 0.0
) -> None:
    """Start ``ray-mlops COMMAND CONFIG`` on its own local Ray, SIGKILL it once ``ready()``.

    Fails, with the end of the command's log, if it ended before that.
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log_path = config.parent / "first.log"
    with log_path.open("w") as log:
        first = subprocess.Popen(
            [*CLI, command, str(config)], cwd=config.parent, stdout=log, stderr=log, env=env
        )
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and first.poll() is None and not ready():
                time.sleep(0.05)
            time.sleep(settle_s)
            assert first.poll() is None, log_path.read_text()[-3000:]
        finally:
            _kill_tree(first)


def _resume(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    """``ray-mlops COMMAND CONFIG --resume`` on a fresh local Ray: it must resume and succeed."""
    done = _cli(
        command, str(config), "--resume", cwd=config.parent, env={"RAY_ADDRESS": ""}, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming run" in done.stderr
    return done


def _summary_value(output: str, label: str) -> str:
    """The value beside ``label`` in the run summary's table."""
    row = next(line for line in output.splitlines() if f"│ {label} " in line)
    return row.split("│")[2].strip()


def test_resume_without_an_interrupted_run_says_so(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).parents[2] / "configs" / "quickstart.yaml", tmp_path / "q.yaml")
    (tmp_path / "q.yaml").write_text(
        (tmp_path / "q.yaml")
        .read_text()
        .replace("../ray_mlops", str(Path(__file__).parents[2] / "ray_mlops"))
    )
    done = _cli("train", "q.yaml", "--resume", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert done.returncode == 1
    assert "--resume: no unfinished 'train' run of pipeline 'adult-income'" in done.stderr
    assert "Traceback" not in done.stderr


def test_killed_train_command_resumes_instead_of_starting_over(
    tmp_path: Path, adult_sample: pd.DataFrame
) -> None:
    adult_sample.to_csv(tmp_path / "sample.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = write_config(
        tmp_path,
        {
            "train": {"epochs": 6, "batch_size": 8, "num_workers": 2},
            "model": {"hidden_sizes": [128, 128], "dropout": 0.1},
            "tracking": {"tracking_uri": uri},
        },
    )
    results = tmp_path / ".ray-mlops" / "ray_results"
    # Killed once two epochs are checkpointed: mid-training, with something to resume.
    _kill_when("train", config, lambda: registered_checkpoints(results) >= 2)
    # Local state marked ignored (git, Ray job uploads) though tracking goes elsewhere.
    assert (tmp_path / ".ray-mlops" / ".rayignore").read_text().splitlines()[-1] == "*"
    assert (tmp_path / ".ray-mlops" / ".gitignore").is_file()
    # The pipeline's first run has no earlier schema to compare with (it said "unchanged").
    assert "schema recorded (first run)" in (tmp_path / "first.log").read_text()
    resumed = _resume("train", config)
    assert "schema unchanged" in resumed.stderr
    # Paths in the summary whole when stderr is not a terminal (they were cut with "…").
    assert "…" not in resumed.stderr
    assert Path(_summary_value(resumed.stderr, "best checkpoint")).is_dir()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("adult-test")
    parents = client.search_runs([experiment.experiment_id], "tags.`ray_mlops.stage` = 'pipeline'")
    assert len(parents) == 1, "resumed in the same parent run, not a new one"
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["ray_mlops.resumes"] == "1"
    trains = client.search_runs(
        [experiment.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`ray_mlops.stage` = 'train'",
    )
    assert len(trains) == 1, "the train stage run was reopened, not duplicated"
    train_run = trains[0].info.run_id
    resumed_from = client.get_metric_history(train_run, "resumed_from_epoch")
    assert len(resumed_from) == 1 and resumed_from[0].value >= 1
    epochs = sorted(m.step for m in client.get_metric_history(train_run, "val_loss"))
    assert epochs[0] == 0 and epochs.count(0) == 1, "epoch 0 was not trained twice"
    assert sorted(set(epochs)) == list(range(6))
    assert client.list_artifacts(parent.info.run_id, "model"), "the packaged model was logged"


def _finished_trials(experiments: Path, epochs: int) -> set[str]:
    """Trial folders of Tune whose result log has all ``epochs`` epochs."""
    done = set()
    for log in experiments.glob("*-search-*/*/result.json"):
        with contextlib.suppress(OSError):
            if len(log.read_text().splitlines()) >= epochs:
                done.add(log.parent.name)
    return done


TUNE_TRIALS = 6


def test_killed_tune_command_resumes_without_repeating_finished_trials(
    tmp_path: Path, adult_sample: pd.DataFrame
) -> None:
    adult_sample.to_csv(tmp_path / "sample.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = write_config(
        tmp_path,
        {
            # Small batches: trials of a few seconds, so the kill lands mid-search.
            "train": {"epochs": 3, "batch_size": 8},
            "tracking": {"tracking_uri": uri},
            "search": {
                # Enough trials that the kill lands before the last one ends.
                "num_samples": TUNE_TRIALS,
                "max_concurrent": 1,
                "scheduler": "none",
                "startup_trials": 2,
                "space": {"train.learning_rate": {"loguniform": [1e-3, 5e-2]}},
            },
        },
    )
    experiments = tmp_path / ".ray-mlops" / "ray_results"
    finished_before: set[str] = set()

    def two_trials_finished() -> bool:
        finished_before.update(_finished_trials(experiments, 3))
        return len(finished_before) >= 2

    # Killed once two trials have finished and Tune has had time to record them
    # (TUNE_GLOBAL_CHECKPOINT_S=1: the experiment state holds them as finished by then). A
    # trial that ends in the last second before the kill is not in it yet and repeats its
    # last epoch on resume (Tune's contract), so only these are checked.
    _kill_when("tune", config, two_trials_finished, settle_s=1.5)
    assert 2 <= len(finished_before) < TUNE_TRIALS
    _resume("tune", config)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("adult-test")
    searches = client.search_runs([experiment.experiment_id], "tags.`ray_mlops.stage` = 'search'")
    assert len(searches) == 1, "the search run was reopened, not duplicated"
    trials = client.search_runs(
        [experiment.experiment_id],
        f"tags.`mlflow.parentRunId` = '{searches[0].info.run_id}'",
    )
    # TUNE_TRIALS in all: the study went on from where it was, not from the start.
    assert len(trials) == TUNE_TRIALS
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "val_loss")]
        # A finished trial was not trained again: each epoch logged exactly once.
        assert sorted(steps) == [0, 1, 2], trial.data.tags
    # The trial folders finished before the kill are still the same, untouched trials.
    assert finished_before <= _finished_trials(experiments, 3)
    for name in finished_before:
        lines = (next(experiments.glob(f"*-search-*/{name}")) / "result.json").read_text()
        assert len(lines.splitlines()) == 3
    board = client.download_artifacts(searches[0].info.run_id, "search/leaderboard.csv")
    assert len(pd.read_csv(board)) == TUNE_TRIALS


def test_labels_ingest_stores_a_good_file_and_refuses_a_bad_one_whole(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    good = tmp_path / "labels.csv"
    good.write_text("request_id,label,record_index\nr1,>50K,0\nr1,<=50K,1\nr2,<=50K,0\n")
    done = _cli("labels", "ingest", str(good), "-c", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "stored 3 labels" in done.stderr
    stored = pd.read_parquet(tmp_path / ".ray-mlops" / "labels")
    assert sorted(zip(stored["request_id"], stored["record_index"], strict=True)) == [
        ("r1", 0), ("r1", 1), ("r2", 0),
    ]  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,label\nr3,>50K\n,<=50K\n")
    done = _cli("labels", "ingest", str(bad), "-c", str(config), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    # The message names the file, the line and the column; nothing of the file is stored.
    assert "bad.csv" in done.stderr and "line 3" in done.stderr and "request_id" in done.stderr
    assert len(pd.read_parquet(tmp_path / ".ray-mlops" / "labels")) == 3


def test_monitor_refuses_a_bad_window_and_a_model_not_served_yet(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/m.db"}})
    done = _cli("monitor", str(config), "--since", "soon", cwd=tmp_path)
    assert done.returncode == 2 and "'soon' is neither a time" in done.stderr
    done = _cli("monitor", str(config), "--since", "1h", "--until", "2h", cwd=tmp_path)
    assert done.returncode == 2 and "is not before --until" in done.stderr
    done = _cli("monitor", str(config), "--since", "2h", cwd=tmp_path, timeout=180)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no 'champion' alias" in done.stderr and "run the pipeline first" in done.stderr
