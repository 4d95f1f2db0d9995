"""Faults on the local 3-node cluster, each injected for real while work runs.

- a worker node SIGKILLed mid-training: Ray Train restarts the worker group from the last
  checkpoint on the nodes left; every epoch logged once; the model as good as without the kill;
- a node SIGKILLed mid-search: the search completes and no finished trial runs again;
- a node SIGKILLed under serving load: at least 99.9% of requests succeed (HAProxy retries a
  request whose replica vanished: ``serve.proxy: haproxy``), the replica comes back on a live
  node, and both replicas' capture is in the object store;
- the MLflow server SIGKILLed and restarted mid-training: the run completes, every metric once;
- the object store refusing connections while checkpoints are written: the S3 client retries
  with backoff (``ray_mlops.storage.S3_ATTEMPTS``); training goes on without a restart.

Each test leaves the cluster as it found it (three nodes, every service up). The file runs
after test_lifecycle.py. The store-cut run, which trains without a restart, is the reference
for the killed one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cluster.conftest import CHECKOUT, LocalCluster
from tests.cluster.test_lifecycle import (
    mlflow_client,
    newest_pipeline,
    ray_job_argv,
    s3_keys,
    variant,
)

pytestmark = pytest.mark.cluster

ROW = {
    "age": 39,
    "workclass": "State-gov",
    "education": "Bachelors",
    "education_num": 13,
    "marital_status": "Never-married",
    "occupation": "Adm-clerical",
    "relationship": "Not-in-family",
    "race": "White",
    "sex": "Male",
    "capital_gain": 2174,
    "capital_loss": 0,
    "hours_per_week": 40,
    "native_country": "United-States",
}


def submit_in_background(cluster: LocalCluster, config: Path, cwd: Path) -> subprocess.Popen[str]:
    """``ray-mlops submit CONFIG``, left running; its output is read when it ends."""
    return subprocess.Popen(
        [sys.executable, "-m", "ray_mlops", "submit", str(config), "--address", cluster.dashboard],
        cwd=cwd,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(job: subprocess.Popen[str], timeout: float = 900) -> str:
    """Wait for the submitted job; its output, after checking it succeeded."""
    out, _ = job.communicate(timeout=timeout)
    assert job.returncode == 0, out[-5000:]
    return out


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def train_epochs_logged(cluster: LocalCluster, since_ms: int) -> Callable[[], int]:
    """How many epochs the train stage of the newest run since ``since_ms`` has logged."""

    def count() -> int:
        try:
            _, stages = newest_pipeline(cluster, since_ms)
        except (AssertionError, StopIteration):
            return 0
        if "train" not in stages:
            return 0
        run_id = stages["train"].info.run_id
        return len(mlflow_client(cluster).get_metric_history(run_id, "epoch"))

    return count


def alive_actors(cluster: LocalCluster, class_prefix: str) -> list[dict[str, Any]]:
    """Alive actors whose class starts with ``class_prefix``, from the dashboard's state API."""
    token = Path(cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    response = requests.get(
        f"{cluster.dashboard}/api/v0/actors",
        params={
            "limit": 10000,
            "detail": 1,
            "filter_keys": "state",
            "filter_values": "ALIVE",
            "filter_predicates": "=",
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()
    actors = response.json()["data"]["result"]["result"]
    return [a for a in actors if str(a.get("class_name", "")).startswith(class_prefix)]


def worker_node_of(cluster: LocalCluster, actors: list[dict[str, Any]]) -> str | None:
    """The name of a worker node (not the head) hosting one of ``actors``."""
    by_id = {node_id: name for name, node_id in cluster.node_ids().items()}
    for actor in actors:
        name = by_id.get(str(actor.get("node_id")))
        if name is not None and name != "head":
            return name
    return None


@contextmanager
def node_killed_then_restored(cluster: LocalCluster, name: str) -> Iterator[None]:
    """SIGKILL worker node ``name`` now; start it again when the block ends."""
    cluster.kill_node(name)
    try:
        yield
    finally:
        cluster.start_node(name)


def assert_each_epoch_once(cluster: LocalCluster, train_run_id: str) -> list[int]:
    """Every per-epoch and per-step metric of the train stage is stored once; the epochs."""
    client = mlflow_client(cluster)
    epochs = sorted(m.step for m in client.get_metric_history(train_run_id, "epoch"))
    assert epochs == list(range(len(epochs))), epochs  # each epoch once, none missing
    for key in ("val_loss", "train_loss"):
        steps = sorted(m.step for m in client.get_metric_history(train_run_id, key))
        assert steps == epochs, (key, steps)
    step_metrics = [m.step for m in client.get_metric_history(train_run_id, "train_loss_step")]
    assert len(step_metrics) == len(set(step_metrics))
    return epochs


# Long enough (20 quick epochs, no early stop) for a fault to land mid-training.
LONG = {"train.epochs": 20, "train.early_stopping.patience": 100}


@pytest.fixture(scope="module")
def long_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/cluster.yaml with :data:`LONG`, alone in a folder: the job's working directory
    (its data is in S3)."""
    return variant(tmp_path_factory.mktemp("faults"), "cluster.yaml", **LONG)


@dataclass(frozen=True)
class StoreCutRun:
    """The run of :func:`long_config` during which the object store refused connections."""

    since_ms: int
    cut_at: float
    parent: Any
    stages: dict[str, Any]


@pytest.fixture(scope="module")
def store_cut_run(local_cluster: LocalCluster, long_config: Path) -> StoreCutRun:
    """:func:`long_config` on the cluster, the object store cut for 10 s after the first
    epoch. Its uploads are retried without restarting the worker group (asserted by
    :func:`test_an_object_store_refusing_connections_during_checkpoints_is_retried`), so its
    model is also the uninterrupted reference of the killed run: one job serves both, which
    keeps the suite inside its time budget."""
    since = int(time.time() * 1000)
    job = submit_in_background(local_cluster, long_config, long_config.parent)
    wait_for(train_epochs_logged(local_cluster, since), 600, "the first epoch")
    cut_at = time.time()
    local_cluster.cut_s3(10)  # longer than an epoch: a checkpoint upload meets the cut
    finish(job)
    parent, stages = newest_pipeline(local_cluster, since)
    return StoreCutRun(since, cut_at, parent, stages)


def checkpoint_registered(cluster: LocalCluster, since_ms: int) -> Callable[[], bool]:
    """Whether Ray Train has registered a checkpoint of the newest train stage (its
    checkpoint manager's snapshot is in the object store)."""

    def registered() -> bool:
        try:
            _, stages = newest_pipeline(cluster, since_ms)
        except (AssertionError, StopIteration):
            return False
        if "train" not in stages:
            return False
        prefix = f"runs/ray_results/adult-income-{stages['train'].info.run_id}/"
        return any(k.endswith("checkpoint_manager_snapshot.json") for k in s3_keys(cluster, prefix))

    return registered


def test_a_worker_node_killed_mid_training_costs_a_restart_not_the_run(
    local_cluster: LocalCluster, long_config: Path, store_cut_run: StoreCutRun
) -> None:
    since = int(time.time() * 1000)
    job = submit_in_background(local_cluster, long_config, long_config.parent)
    wait_for(checkpoint_registered(local_cluster, since), 600, "a registered checkpoint")
    victim = wait_for(
        lambda: worker_node_of(local_cluster, alive_actors(local_cluster, "RayTrainWorker")),
        60,
        "a training worker on a worker node",
    )
    with node_killed_then_restored(local_cluster, victim):
        finish(job)
    parent, stages = newest_pipeline(local_cluster, since)
    train_run = stages["train"].info.run_id
    epochs = assert_each_epoch_once(local_cluster, train_run)
    assert len(epochs) == LONG["train.epochs"]
    client = mlflow_client(local_cluster)
    resumed = client.get_metric_history(train_run, "resumed_from_epoch")
    assert resumed and min(m.value for m in resumed) >= 0, "no resume from a checkpoint"
    auc = float(parent.data.metrics["test_roc_auc"])
    # The reference: the same config trained without a restart (the store-cut run).
    reference = float(store_cut_run.parent.data.metrics["test_roc_auc"])
    assert abs(auc - reference) <= 0.02 * reference, (auc, reference)
    assert client.get_model_version_by_alias("adult-income", "champion") is not None


def test_a_node_killed_mid_search_leaves_finished_trials_alone(
    local_cluster: LocalCluster,
) -> None:
    since = int(time.time() * 1000)
    job = subprocess.Popen(
        ray_job_argv(local_cluster, "tune", "configs/cluster_search.yaml"),
        env=local_cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = mlflow_client(local_cluster)

    def finished_trials() -> list[Any]:
        experiment = client.get_experiment_by_name("adult-income-search")
        if experiment is None:
            return []
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.start_time >= {since} and tags.`ray_mlops.trial_id` != ''",
        )
        return [r for r in runs if r.info.status == "FINISHED" and r.info.end_time]

    before = wait_for(lambda: finished_trials() if len(finished_trials()) >= 2 else [], 600,
                      "two finished trials")  # fmt: skip
    victim = worker_node_of(local_cluster, alive_actors(local_cluster, "ImplicitFunc")) or "node1"
    killed_at = int(time.time() * 1000)
    with node_killed_then_restored(local_cluster, victim):
        finish(job)
    parent, stages = newest_pipeline(local_cluster, since, experiment="adult-income-search")
    assert parent.info.status == "FINISHED"
    trials = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{stages['search'].info.run_id}'",
    )
    assert len(trials) == 6
    for trial in trials:
        epochs = [m.step for m in client.get_metric_history(trial.info.run_id, "epoch")]
        assert len(epochs) == len(set(epochs)), f"trial {trial.info.run_name} logged twice"
    for done in before:  # finished before the kill: nothing of it ran afterwards
        history = client.get_metric_history(done.info.run_id, "val_loss")
        assert history and max(m.timestamp for m in history) < killed_at, done.info.run_name
        assert client.get_run(done.info.run_id).info.end_time == done.info.end_time


def _load(url: str, total: int, concurrency: int, at: int, action: Callable[[], None]) -> dict:
    """``total`` predictions from ``concurrency`` clients; ``action`` runs when request
    number ``at`` is sent. Status counts (``error`` for no answer at all)."""
    lock = threading.Lock()
    sent = [0]
    codes: dict[str, int] = {}
    fired: list[threading.Thread] = []

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if sent[0] >= total:
                    return
                sent[0] += 1
                number = sent[0]
            if number == at:
                fired.append(threading.Thread(target=action))
                fired[-1].start()
            try:
                code = str(session.post(url, json={"records": [ROW]}, timeout=30).status_code)
            except requests.RequestException:
                code = "error"
            with lock:
                codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads + fired:
        thread.join()
    return codes


def test_a_node_killed_under_serving_load_loses_under_one_request_in_a_thousand(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    from ray_mlops.settings_env import HA_PROXY_SETTINGS
    from tests.conftest import free_port

    port = free_port()
    served = CHECKOUT / "configs" / f"_serve_{port}.yaml"  # inside the uploaded folder
    shutil.move(variant(tmp_path, "cluster.yaml", **{"serve.port": port}), served)

    # Serve starts its proxies with the job's environment: HAProxy, which retries a request
    # whose replica went away on another one. The head shares this machine's network with the
    # suite's own model servers: HAProxy's pages and Serve's fallback proxy on free ports.
    serve_env = {
        **HA_PROXY_SETTINGS,
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
    }
    job_id = f"serve-{port}"
    url = f"http://{local_cluster.head_ip}:{port}/v1/models/adult-income:predict"
    try:
        subprocess.run(
            ray_job_argv(
                local_cluster,
                "serve",
                f"configs/{served.name}",
                env_vars=serve_env,
                flags=("--no-wait", "--submission-id", job_id),
            ),
            env=local_cluster.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

        def answers() -> bool:
            try:
                return requests.post(url, json={"records": [ROW]}, timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, 300, "the model server to answer", every=2)
        replicas = wait_for(
            lambda: r if len(r := alive_actors(local_cluster, "ServeReplica")) == 2 else None,
            120,
            "two replicas",
        )
        by_id = {node_id: name for name, node_id in local_cluster.node_ids().items()}
        homes = {by_id[str(r["node_id"])] for r in replicas}
        assert len(homes) == 2, homes  # on different nodes
        victim = next(iter(sorted(homes - {"head"})))
        lost = next(r for r in replicas if by_id[str(r["node_id"])] == victim)

        def capture_writers() -> set[str]:
            keys = s3_keys(local_cluster, "runs/capture/")
            return {key.rsplit("/", 1)[-1].rsplit("-", 1)[0] for key in keys}

        def both_captured() -> bool:  # traffic until each replica has written a file
            for _ in range(20):
                requests.post(url, json={"records": [ROW]}, timeout=10)
            suffixes = {f"part-{str(r['name']).rsplit('#', 1)[-1]}" for r in replicas}
            return suffixes <= capture_writers()

        wait_for(both_captured, 180, "both replicas' capture in the object store", every=1)
        total = 4000
        codes = _load(
            url, total, concurrency=4, at=1000, action=lambda: local_cluster.kill_node(victim)
        )
        assert sum(codes.values()) == total
        assert codes.get("200", 0) >= 0.999 * total, codes
        # The replica comes back, on a live node.
        back = wait_for(
            lambda: r if len(r := alive_actors(local_cluster, "ServeReplica")) == 2 else None,
            180,
            "the lost replica to come back",
        )
        live = set(local_cluster.node_ids().values())
        assert all(str(r["node_id"]) in live for r in back)
        assert lost["actor_id"] not in {r["actor_id"] for r in back}
        # Both replicas' capture is in the object store (files part-<replica>-...).
        time.sleep(3)  # the survivors' last flush (flush_interval_s: 1)
        writers = capture_writers()
        suffix = str(lost["name"]).rsplit("#", 1)[-1]
        assert f"part-{suffix}" in writers, (suffix, writers)
        assert len(writers) >= 2, writers
    finally:
        subprocess.run(
            ["ray", "job", "stop", job_id, "--address", local_cluster.dashboard],
            env=local_cluster.env,
            capture_output=True,
            timeout=120,
        )
        served.unlink(missing_ok=True)
        if len(local_cluster.node_ids()) < 3:
            for name in ("node1", "node2"):
                if name not in local_cluster.node_ids():
                    local_cluster.start_node(name)


def test_the_tracking_server_killed_and_restarted_mid_training_loses_no_metric(
    local_cluster: LocalCluster, long_config: Path
) -> None:
    since = int(time.time() * 1000)
    job = submit_in_background(local_cluster, long_config, long_config.parent)
    wait_for(train_epochs_logged(local_cluster, since), 600, "the first epoch")
    local_cluster.stop_mlflow()
    try:
        time.sleep(8)  # down for longer than an epoch: rank 0 and the driver wait for it
    finally:
        local_cluster.start_mlflow()
    finish(job)
    parent, stages = newest_pipeline(local_cluster, since)
    assert parent.info.status == "FINISHED"
    assert all(run.info.status == "FINISHED" for run in stages.values())
    epochs = assert_each_epoch_once(local_cluster, stages["train"].info.run_id)
    assert len(epochs) == LONG["train.epochs"]


def test_an_object_store_refusing_connections_during_checkpoints_is_retried(
    local_cluster: LocalCluster, store_cut_run: StoreCutRun
) -> None:
    parent, stages, cut_at = store_cut_run.parent, store_cut_run.stages, store_cut_run.cut_at
    train_run = stages["train"].info.run_id
    assert len(assert_each_epoch_once(local_cluster, train_run)) == LONG["train.epochs"]
    client = mlflow_client(local_cluster)
    # The uploads were retried, not failed: no restart of the worker group.
    assert not client.get_metric_history(train_run, "resumed_from_epoch")
    assert max(m.value for m in client.get_metric_history(train_run, "restarts")) == 0
    # Training was under way through the whole cut: an epoch ended before the store
    # came back and another after it, so a checkpoint upload met the cut (it either
    # went through on a retry or held the epoch until the store answered).
    ends = sorted(m.timestamp / 1000 for m in client.get_metric_history(train_run, "epoch"))
    assert ends[0] <= cut_at + 10 <= ends[-1], (cut_at, ends)
    checkpoint = stages["train"].data.tags["ray_mlops.checkpoint"]
    assert checkpoint.startswith("s3://") and parent.info.status == "FINISHED"
