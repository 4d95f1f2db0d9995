"""The lifecycle on the local 3-node cluster: the same configs, submitted as Ray Jobs.

Data is read from S3, training spreads over the nodes, checkpoints and Tune state land in the
object store, runs, versions and artifacts in the tracking server (PostgreSQL + S3), and the
champion moves. A config that only one node could serve (a local storage folder, a SQLite
tracking store) is refused before any work starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import CHECKOUT, LocalCluster

pytestmark = pytest.mark.cluster

EXPERIMENT = "adult-income"
MODEL = "adult-income"


JOB_EXCLUDES = [".venv", ".git", ".ray-mlops", "**/__pycache__", ".mypy_cache", ".gpu"]


def ray_job_argv(
    cluster: LocalCluster,
    *ray_mlops_args: str,
    working_dir: Path = CHECKOUT,
    env_vars: dict[str, str] | None = None,
    flags: tuple[str, ...] = (),
) -> list[str]:
    """Plain ``ray job submit`` of ``python -m ray_mlops ARGS``, as a user writes it: the folder
    as working directory, the tracking server in the job's environment."""
    runtime_env = {
        "working_dir": str(working_dir),
        "excludes": JOB_EXCLUDES,
        "env_vars": {"MLFLOW_TRACKING_URI": cluster.tracking_uri, **(env_vars or {})},
    }
    return [
        "ray", "job", "submit", *flags, "--address", cluster.dashboard,
        "--runtime-env-json", json.dumps(runtime_env),
        "--", "python", "-m", "ray_mlops", *ray_mlops_args,
    ]  # fmt: skip


def ray_mlops_submit(
    cluster: LocalCluster, config: Path, *, timeout: float = 900, cwd: Path = CHECKOUT
) -> subprocess.CompletedProcess[str]:
    """``ray-mlops submit CONFIG --address DASHBOARD`` from the checkout, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ray_mlops", "submit", str(config), "--address", cluster.dashboard],
        cwd=cwd,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def variant(folder: Path, source: str, **changes: Any) -> Path:
    """A copy of ``configs/SOURCE`` inside ``folder`` with ``changes`` (dotted keys) applied."""
    doc = yaml.safe_load((CHECKOUT / "configs" / source).read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = folder / source
    path.write_text(yaml.safe_dump(doc))
    return path


def mlflow_client(cluster: LocalCluster) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(cluster.tracking_uri)


def s3_keys(cluster: LocalCluster, prefix: str) -> list[str]:
    """Every key under ``prefix`` in the cluster's bucket."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=cluster.s3_endpoint,
        aws_access_key_id=cluster.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cluster.env["AWS_SECRET_ACCESS_KEY"],
        region_name=cluster.env["AWS_DEFAULT_REGION"],
    )
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=cluster.bucket, Prefix=prefix
    ):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def newest_pipeline(cluster: LocalCluster, since_ms: int, experiment: str = EXPERIMENT) -> Any:
    """The newest pipeline (parent) run started after ``since_ms``, and its stage runs."""
    client = mlflow_client(cluster)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in the tracking server"
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.start_time >= {since_ms}",
        order_by=["attributes.start_time DESC"],
    )
    parent = next(r for r in runs if r.data.tags.get("ray_mlops.stage") == "pipeline")
    stages = {
        r.data.tags["ray_mlops.stage"]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    return parent, stages


def test_a_local_storage_or_a_sqlite_store_is_refused_before_any_work(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    since = int(time.time() * 1000)
    local = variant(tmp_path, "cluster.yaml", **{"workspace.storage": "/tmp/ray-mlops-local"})
    refused = ray_mlops_submit(local_cluster, local, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    out = refused.stdout + refused.stderr
    assert "workspace.storage is /tmp/ray-mlops-local" in out, out[-3000:]
    assert "2 of the 3 nodes" in out and "storage: s3://my-bucket/ray-mlops" in out
    sqlite = variant(
        tmp_path, "cluster.yaml", **{"tracking.tracking_uri": "sqlite:////tmp/cluster-mlflow.db"}
    )
    refused = ray_mlops_submit(local_cluster, sqlite, cwd=tmp_path)
    out = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "a store on one machine's disk" in out, out[-3000:]
    assert "this Ray cluster has 3 nodes" in out
    # Refused before any work: no run reached the tracking server.
    found = mlflow_client(local_cluster).get_experiment_by_name(EXPERIMENT)
    if found is not None:
        assert not mlflow_client(local_cluster).search_runs(
            [found.experiment_id], filter_string=f"attributes.start_time >= {since}"
        )


def test_the_pipeline_runs_as_a_job_over_the_nodes_with_state_in_s3_and_the_server(
    local_cluster: LocalCluster,
) -> None:
    since = int(time.time() * 1000)
    done = ray_mlops_submit(local_cluster, Path("configs/cluster.yaml"))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    parent, stages = newest_pipeline(local_cluster, since)
    assert parent.info.status == "FINISHED"
    assert {"data", "features", "train", "evaluate", "register"} <= set(stages)
    # Data from S3, read on the cluster.
    assert stages["data"].data.tags["ray_mlops.data_source"].startswith("s3://ray-mlops/")
    # Two workers, on two different nodes of this cluster.
    workers = stages["train"].data.tags["ray_mlops.worker_nodes"].split(",")
    assert len(workers) == 2 and len(set(workers)) == 2, workers
    assert set(workers) <= set(local_cluster.node_ids().values())
    # Checkpoints in the object store, under workspace.storage.
    checkpoint = stages["train"].data.tags["ray_mlops.checkpoint"]
    assert checkpoint.startswith("s3://ray-mlops/runs/ray_results/"), checkpoint
    key = checkpoint.removeprefix(f"s3://{local_cluster.bucket}/")
    assert any(k.startswith(key + "/") for k in s3_keys(local_cluster, key)), checkpoint
    # Runs, the version and its artifacts in the tracking server; the champion moved.
    client = mlflow_client(local_cluster)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id in {parent.info.run_id, *(s.info.run_id for s in stages.values())}
    artifact_keys = s3_keys(local_cluster, "mlflow/")
    assert any(champion.run_id in key for key in artifact_keys), "model files not in S3"
    epochs = client.get_metric_history(stages["train"].info.run_id, "epoch")
    assert sorted(m.step for m in epochs) == list(range(len(epochs)))  # each epoch once


def test_a_search_submitted_with_ray_job_submit_spreads_its_trials_over_the_nodes(
    local_cluster: LocalCluster,
) -> None:
    since = int(time.time() * 1000)
    done = subprocess.run(
        ray_job_argv(local_cluster, "tune", "configs/cluster_search.yaml"),
        env=local_cluster.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    parent, stages = newest_pipeline(local_cluster, since, experiment="adult-income-search")
    assert parent.info.status == "FINISHED" and "search" in stages
    client = mlflow_client(local_cluster)
    trials = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{stages['search'].info.run_id}'",
    )
    assert len(trials) == 6
    nodes = {t.data.tags.get("ray_mlops.trial_node") for t in trials}
    ips = {node.ip for node in local_cluster.nodes.values()}
    assert None not in nodes and nodes <= ips and len(nodes) >= 2, nodes
    # Tune's experiment state and the trials' checkpoints are in the object store.
    best = stages["search"].data.tags["ray_mlops.checkpoint"]
    assert best.startswith("s3://ray-mlops/runs/ray_results/adult-income-search-search-"), best
    experiment_dir = best.removeprefix(f"s3://{local_cluster.bucket}/").split("/")[:3]
    keys = s3_keys(local_cluster, "/".join(experiment_dir) + "/")
    assert any(k.rsplit("/", 1)[-1].startswith("experiment_state") for k in keys), keys[:20]


# Runs as a Ray job after the pipeline: on every node, any SQLite file under its private /tmp
# (where Ray keeps jobs' working directories and workers' files).
SQLITE_PROBE = """
import json, pathlib, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

checkout = sys.argv[1]  # bind-mounted read-only into every node: the code, not the nodes' files

@ray.remote(num_cpus=0)
def sqlite_files():
    found = []
    for path in pathlib.Path("/tmp").rglob("*"):
        if str(path).startswith(checkout + "/"):
            continue
        try:
            if path.is_file() and path.open("rb").read(16) == b"SQLite format 3\\x00":
                found.append(str(path))
        except OSError:
            pass
    return found

ray.init()
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
found = ray.get([
    sqlite_files.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
    for n in nodes
])
print("RESULT " + json.dumps(dict(zip(nodes, found))))
"""


def test_no_node_of_the_cluster_holds_a_sqlite_file_after_the_pipeline(
    local_cluster: LocalCluster,
) -> None:
    # After test_the_pipeline_runs_as_a_job...: its workers logged over the network only.
    out = local_cluster.submit(SQLITE_PROBE, str(CHECKOUT))
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    found = json.loads(line.removeprefix("RESULT "))
    assert len(found) == 3
    assert not any(found.values()), found


def test_bad_rows_of_s3_data_are_quarantined_into_the_object_store(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    import gzip

    import boto3

    # The bundled data with 40 rows whose age is not a number, as a new object in the bucket.
    lines = gzip.decompress((CHECKOUT / "ray_mlops/datasets/adult/adult.csv.gz").read_bytes())
    rows = lines.decode().splitlines()
    header = rows[0].split(",")
    age = header.index("age")
    for i in range(1, 41):
        cells = rows[i].split(",")
        cells[age] = "unknown"
        rows[i] = ",".join(cells)
    s3 = boto3.client(
        "s3",
        endpoint_url=local_cluster.s3_endpoint,
        aws_access_key_id=local_cluster.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=local_cluster.env["AWS_SECRET_ACCESS_KEY"],
        region_name=local_cluster.env["AWS_DEFAULT_REGION"],
    )
    key = "datasets/adult-with-bad-rows/adult.csv"
    s3.put_object(Bucket=local_cluster.bucket, Key=key, Body="\n".join(rows).encode())
    since = int(time.time() * 1000)
    config = variant(tmp_path, "cluster.yaml", **{"data.path": f"s3://ray-mlops/{key}"})
    done = subprocess.run(
        ray_job_argv(local_cluster, "data", config.name, working_dir=tmp_path),
        env=local_cluster.env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    _, stages = newest_pipeline(local_cluster, since)
    where = stages["data"].data.tags["ray_mlops.quarantine_path"]
    assert where.startswith("s3://ray-mlops/runs/quarantine/"), where
    keys = s3_keys(local_cluster, where.removeprefix("s3://ray-mlops/") + "/")
    assert any(k.endswith(".parquet") for k in keys), keys
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    filesystem = pafs.S3FileSystem(
        endpoint_override=local_cluster.s3_endpoint,
        access_key=local_cluster.env["AWS_ACCESS_KEY_ID"],
        secret_key=local_cluster.env["AWS_SECRET_ACCESS_KEY"],
        region=local_cluster.env["AWS_DEFAULT_REGION"],
    )
    table = ds.dataset(where.removeprefix("s3://"), filesystem=filesystem).to_table()
    assert table.num_rows == 40
