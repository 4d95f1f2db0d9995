"""What the cluster path costs: the quick start as a Ray Job on the local 3-node cluster
against ``ray-mlops run`` on one node, same config and data, in the same run.

- one node (the baseline a user already has): ``ray-mlops run`` of the quick start in a fresh
  folder: a local Ray, MLflow on SQLite, checkpoints on the local disk;
- cluster (the candidate): ``ray-mlops submit configs/cluster.yaml`` to the local cluster of
  ``make cluster-up`` (a head and two worker nodes, each its own network and mount namespace):
  data read from S3 (moto), checkpoints and Tune state in S3, runs, versions and artifacts in
  an MLflow server on PostgreSQL and S3, training on 2 workers spread over the nodes.

Both sides run the same pipeline on the same rows (the config differs only in where things
live); the script checks that both read the same rows with the same dataset fingerprint, trained
the same number of epochs, and that their test ROC AUC agree within 0.01. Per stage, the wall
time comes from the stage's MLflow run (start to end); the total is the command's wall time,
start-up included (a local Ray's start for one node; the upload, the job's start and its
connection to the cluster for the cluster), and the time outside the stages is reported as
start-up. The sides are interleaved, and each figure is the median over ``--repetitions`` with
its spread. Goal: the cluster at most 1.5x one node in total.

Usage (the cluster must be up: ``make cluster-up``):
    python benchmarks/cluster_overhead.py --out benchmarks/results/cluster_overhead-cpu2.json
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(ROOT))

from _report import compare, emit, goal, header, rounded, summary  # noqa: E402

GOAL_RATIO = 1.5
STAGES = ("data", "features", "train", "evaluate", "register")
DATA = REPO / "ray_mlops" / "datasets" / "adult" / "adult.csv.gz"


def cluster_env(state: Path) -> dict[str, str]:
    """The environment ``cluster.env`` of the local cluster exports (addresses, keys)."""
    env = dict(os.environ)
    for line in (state / "cluster.env").read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def stage_seconds(tracking_uri: str, experiment: str, started_ms: int) -> dict[str, Any]:
    """The newest pipeline run since ``started_ms``: seconds per stage, rows, fingerprint,
    epochs and test ROC AUC (the same work check)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {tracking_uri}"
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.start_time >= {started_ms}",
        order_by=["attributes.start_time ASC"],
    )
    parent = next(r for r in runs if r.data.tags.get("ray_mlops.stage") == "pipeline")
    stages = {
        r.data.tags["ray_mlops.stage"]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    seconds = {
        name: (run.info.end_time - run.info.start_time) / 1000
        for name, run in stages.items()
        if run.info.end_time
    }
    data, train = stages["data"].data, stages["train"].data
    return {
        "stages": seconds,
        "rows": data.tags.get("ray_mlops.rows"),
        "fingerprint": data.tags.get("ray_mlops.dataset_fingerprint"),
        "epochs": len(client.get_metric_history(stages["train"].info.run_id, "train_loss")),
        "roc_auc": parent.data.metrics.get("test_roc_auc"),
        "worker_nodes": train.tags.get("ray_mlops.worker_nodes", ""),
    }


def run_one_node(folder: Path) -> dict[str, Any]:
    """``ray-mlops run`` of the quick start in a fresh folder (local Ray, SQLite)."""
    work = Path(tempfile.mkdtemp(prefix="one-node-", dir=folder))
    doc = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    doc["data"]["path"] = str(DATA)
    config = work / "quickstart.yaml"
    config.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    started_ms = int(time.time() * 1000)
    begin = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "run", str(config)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    total = time.perf_counter() - begin
    if done.returncode != 0:
        raise SystemExit(f"one-node run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    measured = stage_seconds(
        f"sqlite:///{work / '.ray-mlops' / 'mlflow.db'}", doc["name"], started_ms
    )
    return {"total": total, **measured}


def run_cluster(env: dict[str, str]) -> dict[str, Any]:
    """``ray-mlops submit configs/cluster.yaml`` to the local cluster."""
    started_ms = int(time.time() * 1000)
    begin = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_mlops",
            "submit",
            "configs/cluster.yaml",
            "--address",
            env["RAY_ADDRESS"],
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    total = time.perf_counter() - begin
    if done.returncode != 0:
        raise SystemExit(f"cluster run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    doc = yaml.safe_load((REPO / "configs" / "cluster.yaml").read_text())
    measured = stage_seconds(env["MLFLOW_TRACKING_URI"], doc["name"], started_ms)
    return {"total": total, **measured}


def check_same_work(one: dict[str, Any], cluster: dict[str, Any]) -> None:
    """Both sides read the same rows, trained as long, and score alike."""
    for key in ("rows", "fingerprint", "epochs"):
        if one[key] != cluster[key]:
            raise SystemExit(f"not the same work: {key} {one[key]} (one node) vs {cluster[key]}")
    if abs(float(one["roc_auc"]) - float(cluster["roc_auc"])) > 0.01:
        raise SystemExit(f"test ROC AUC differ: {one['roc_auc']} vs {cluster['roc_auc']}")
    if len(set(filter(None, cluster["worker_nodes"].split(",")))) < 2:
        raise SystemExit(f"the cluster trained on one node: {cluster['worker_nodes']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=REPO / "cluster" / "local" / ".state")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 repetition")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (args.state / "cluster.env").is_file():
        raise SystemExit(f"no local cluster at {args.state}: run `make cluster-up` first")
    env = cluster_env(args.state)
    repetitions = 1 if args.quick else args.repetitions
    sides: dict[str, list[dict[str, Any]]] = {"one_node": [], "cluster": []}
    with tempfile.TemporaryDirectory(prefix="cluster-overhead-") as tmp:
        for repetition in range(repetitions):
            for side in ("one_node", "cluster") if repetition % 2 == 0 else ("cluster", "one_node"):
                result = run_one_node(Path(tmp)) if side == "one_node" else run_cluster(env)
                sides[side].append(result)
                print(
                    f"[{repetition + 1}/{repetitions}] {side}: {result['total']:.1f} s", flush=True
                )
            check_same_work(sides["one_node"][-1], sides["cluster"][-1])
    figures: dict[str, Any] = {}
    for side, results in sides.items():
        stages = {
            stage: summary([r["stages"][stage] for r in results if stage in r["stages"]])
            for stage in STAGES
            if any(stage in r["stages"] for r in results)
        }
        startup = [r["total"] - sum(r["stages"].values()) for r in results]
        figures[side] = {
            "total_s": summary([r["total"] for r in results]),
            "startup_s": summary(startup),
            "stages_s": stages,
        }
    totals = compare(
        [r["total"] for r in sides["cluster"]],
        [r["total"] for r in sides["one_node"]],
        higher_is_better=False,
    )
    ratio = totals["ratio_of_medians"]
    without = [
        sum(c["stages"].values()) / sum(o["stages"].values())
        for o, c in zip(sides["one_node"], sides["cluster"], strict=True)
    ]
    extra = {
        stage: figures["cluster"]["stages_s"][stage]["median"]
        - figures["one_node"]["stages_s"][stage]["median"]
        for stage in figures["cluster"]["stages_s"]
        if stage in figures["one_node"]["stages_s"]
    }
    costliest = max(extra, key=lambda stage: extra[stage])
    stages_only = summary(without)
    cluster_total, one_total = totals["ours"], totals["baseline"]
    measures = ["ray_mlops", "cluster/local", "configs/cluster.yaml", "configs/quickstart.yaml"]
    document = header("cluster_overhead", "ray", "mlflow", "torch", measures=measures) | {
        "setup": (
            "local cluster of make cluster-up on this one machine: head + 2 worker nodes in "
            "network and mount namespaces, S3 = moto_server, MLflow server on PostgreSQL + S3; "
            "one node = ray-mlops run with a local Ray and SQLite"
        ),
        "repetitions": repetitions,
        "figures": figures,
        "totals": totals,
        "ratio_total": ratio,
        "ratio_stages_only_per_repetition": stages_only,
        "extra_seconds_per_stage": extra,
        "costliest_stage": costliest,
        "goals": [
            goal(
                "the quick start as a job on the local 3-node cluster vs `ray-mlops run` on one node,"
                " total time",
                ratio,
                "<=",
                GOAL_RATIO,
                detail=(
                    f"medians of {repetitions} interleaved: {cluster_total['median']:.1f} s"
                    f" ({cluster_total['min']:.1f}-{cluster_total['max']:.1f}) vs"
                    f" {one_total['median']:.1f} s ({one_total['min']:.1f}-{one_total['max']:.1f});"
                    f" paired {totals['median_of_paired_ratios']:.2f}x; stages only (start-up"
                    f" apart) {stages_only['median']:.2f}x; costliest stage {costliest}"
                    f" (+{extra[costliest]:.1f} s)"
                ),
            )
        ],
        "same_work": {
            "rows": sides["cluster"][-1]["rows"],
            "fingerprint": sides["cluster"][-1]["fingerprint"],
            "epochs": sides["cluster"][-1]["epochs"],
            "roc_auc": {
                "one_node": sides["one_node"][-1]["roc_auc"],
                "cluster": sides["cluster"][-1]["roc_auc"],
            },
            "cluster_worker_nodes": sides["cluster"][-1]["worker_nodes"],
        },
    }
    emit(rounded(document), args.out)


if __name__ == "__main__":
    main()
