"""The local multi-node cluster itself: separate hosts, the services, and the faults it injects.

Ordered cheapest and least disruptive first; the node failure comes last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import CHECKOUT, LocalCluster

# Runs as a Ray job on the head: one task pinned to each node, node1's first.
PRIVATE_TMP_JOB = """
import json, os, pathlib, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

marker, checkout, node_ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

@ray.remote(num_cpus=0)
def probe(write):
    path = pathlib.Path("/tmp") / marker
    if write:
        path.write_text("written on this node")
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "sees_marker": path.exists(),
        "gloo": os.environ.get("GLOO_SOCKET_IFNAME"),
        "s3": os.environ.get("AWS_ENDPOINT_URL"),
        "checkout_writable": os.access(checkout, os.W_OK),
    }

def on(name, write=False):
    pinned = NodeAffinitySchedulingStrategy(node_ids[name], soft=False)
    return ray.get(probe.options(scheduling_strategy=pinned).remote(write))

ray.init()
seen = {"node1": on("node1", write=True), "node2": on("node2"), "head": on("head")}
seen["driver_sees_marker"] = (pathlib.Path("/tmp") / marker).exists()
print("RESULT " + json.dumps(seen))
"""

# Runs in node1's network namespace, without any S3 credentials: artifacts go through MLflow.
MLFLOW_CLIENT = """
import json, pathlib, sys, tempfile
from mlflow import MlflowClient

client = MlflowClient(tracking_uri=sys.argv[1])
experiment = client.create_experiment(sys.argv[2])
run = client.create_run(experiment)
client.log_metric(run.info.run_id, "loss", 0.25)
note = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
note.write_text("from node1")
client.log_artifact(run.info.run_id, str(note))
client.set_terminated(run.info.run_id)
print(json.dumps({"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri}))
"""

# Runs in node1's network namespace: one S3 request before the cut, one during, then retries
# every 0.2 s until one succeeds. Waits on stdin for the cut to begin.
S3_PROBE = """
import json, sys, time
import boto3
from botocore.config import Config

s3 = boto3.client("s3", config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))

def attempt():
    try:
        s3.head_object(Bucket=sys.argv[1], Key=sys.argv[2])
        return "ok"
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]

print(json.dumps({"before": attempt()}), flush=True)
sys.stdin.readline()
during = attempt()
recovered = None
deadline = time.time() + 30
while time.time() < deadline:
    if attempt() == "ok":
        recovered = time.time()
        break
    time.sleep(0.2)
print(json.dumps({"during": during, "recovered_at": recovered}), flush=True)
"""

DATASET_KEY = "datasets/adult/adult.csv.gz"


def _s3(cluster: LocalCluster) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=cluster.s3_endpoint,
        aws_access_key_id=cluster.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cluster.env["AWS_SECRET_ACCESS_KEY"],
        region_name=cluster.env["AWS_DEFAULT_REGION"],
    )


def test_three_alive_nodes_on_three_addresses(local_cluster: LocalCluster) -> None:
    alive = [node for node in local_cluster.ray_nodes() if node["state"] == "ALIVE"]
    assert sorted(str(node["node_ip"]) for node in alive) == sorted(
        node.ip for node in local_cluster.nodes.values()
    )
    assert len({node.ip for node in local_cluster.nodes.values()}) == 3
    heads = [node for node in alive if node["is_head_node"]]
    assert [node["node_ip"] for node in heads] == [local_cluster.head_ip]


def test_up_again_says_so(local_cluster: LocalCluster) -> None:
    result = local_cluster.command("up")
    assert "already up" in result.stdout


def test_bucket_holds_the_dataset(local_cluster: LocalCluster) -> None:
    head = _s3(local_cluster).head_object(Bucket=local_cluster.bucket, Key=DATASET_KEY)
    assert (
        head["ContentLength"] == (CHECKOUT / "ray_mlops/datasets/adult/adult.csv.gz").stat().st_size
    )


def test_nodes_have_private_tmp_and_their_own_interface(local_cluster: LocalCluster) -> None:
    marker = f"cluster-test-{uuid.uuid4().hex}"
    ids = local_cluster.node_ids()
    output = local_cluster.submit(PRIVATE_TMP_JOB, marker, str(CHECKOUT), json.dumps(ids))
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    seen = json.loads(line.removeprefix("RESULT "))

    for name in ("node1", "node2", "head"):
        assert seen[name]["node_id"] == ids[name]
        assert seen[name]["gloo"] == local_cluster.nodes[name].interface
        assert seen[name]["s3"] == local_cluster.s3_endpoint
        assert seen[name]["checkout_writable"] is False
    assert seen["node1"]["sees_marker"] is True
    assert seen["node2"]["sees_marker"] is False
    assert seen["head"]["sees_marker"] is False
    assert seen["driver_sees_marker"] is False
    assert not Path("/tmp", marker).exists()  # nor on the host


def test_mlflow_from_a_node_stores_in_postgres_and_s3(local_cluster: LocalCluster) -> None:
    import psycopg2

    env = {key: value for key, value in local_cluster.env.items() if not key.startswith("AWS_")}
    result = local_cluster.in_node(
        "node1",
        [
            sys.executable,
            "-c",
            MLFLOW_CLIENT,
            local_cluster.tracking_uri,
            f"cluster-{uuid.uuid4().hex}",
        ],
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["artifact_uri"].startswith("mlflow-artifacts:")

    with (
        psycopg2.connect(
            host=local_cluster.head_ip,
            port=local_cluster.postgres_port,
            dbname="mlflow",
            user="mlflow",
            passfile=str(local_cluster.pgpass),
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (run["run_id"],))
        assert cursor.fetchall() == [("FINISHED",)]
        cursor.execute("SELECT key, value FROM metrics WHERE run_uuid = %s", (run["run_id"],))
        assert cursor.fetchall() == [("loss", 0.25)]

    listed = _s3(local_cluster).list_objects_v2(Bucket=local_cluster.bucket, Prefix="mlflow/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(key.endswith(f"{run['run_id']}/artifacts/note.txt") for key in keys), keys


def test_cut_s3_refuses_then_recovers(local_cluster: LocalCluster) -> None:
    probe = subprocess.Popen(
        ["ip", "netns", "exec", str(local_cluster.nodes["node1"].netns), sys.executable, "-c",
         S3_PROBE, local_cluster.bucket, DATASET_KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=local_cluster.env,
    )  # fmt: skip
    assert probe.stdin is not None and probe.stdout is not None
    try:
        assert json.loads(probe.stdout.readline()) == {"before": "ok"}
        before_cut = time.time()
        local_cluster.cut_s3(3)
        cut_on = time.time()
        probe.stdin.write("go\n")
        probe.stdin.flush()
        seen = json.loads(probe.stdout.readline())
    finally:
        probe.kill()
        probe.wait()
    assert seen["during"] != "ok"
    assert "EndpointConnectionError" in seen["during"] or "Connection" in seen["during"]
    assert seen["recovered_at"] is not None
    # Unreachable for the whole cut, reachable again soon after it.
    assert seen["recovered_at"] - before_cut >= 2.8
    assert seen["recovered_at"] - cut_on <= 3 + 3


def test_mlflow_restart_keeps_the_runs(local_cluster: LocalCluster) -> None:
    import requests
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=local_cluster.tracking_uri)
    name = f"restart-{uuid.uuid4().hex}"
    experiment = client.create_experiment(name)
    local_cluster.stop_mlflow()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{local_cluster.tracking_uri}/health", timeout=5)
    local_cluster.start_mlflow()
    restarted = client.get_experiment_by_name(name)
    assert restarted is not None and restarted.experiment_id == experiment


def test_killed_node_is_dead_soon_and_comes_back(local_cluster: LocalCluster) -> None:
    node1 = local_cluster.nodes["node1"]
    before = local_cluster.node_ids()
    started = time.monotonic()
    local_cluster.kill_node("node1")
    assert (
        subprocess.run(
            ["ip", "netns", "pids", str(node1.netns)], capture_output=True, text=True
        ).stdout.split()
        == []
    )

    # Ray's default health checks take 15 s or more; the cluster's take about 5.
    while True:
        states = {str(node["node_id"]): node["state"] for node in local_cluster.ray_nodes()}
        if states[before["node1"]] == "DEAD":
            break
        assert time.monotonic() - started < 12, "node1 not reported dead within 12 s"
        time.sleep(0.3)
    assert local_cluster.node_ids().keys() == {"head", "node2"}

    local_cluster.start_node("node1")
    after = local_cluster.node_ids()
    assert after.keys() == {"head", "node1", "node2"}
    assert after["node1"] != before["node1"]
    assert after["node2"] == before["node2"]
