"""How long the registry commands take: ``ray-mlops models list|show`` against plain MLflow.

Issue 23 measured 7 to 19 s per registry command; the goal is under 2 s for ``models list``
and ``models show`` on the quick start's store. Each case runs as a user runs it, as a fresh
process timed from start to exit:

- candidate: ``ray-mlops models list``, ``models show NAME``, ``models show NAME VERSION``;
- baseline: a Python script with ``MlflowClient`` that prints the same listing (MLflow's own
  command line has no registry listing), never importing ray_mlops;
- start-up, reported apart: ``python -c pass``.

The cases are interleaved (one repetition of each, in turn), and each figure is the median
over ``--repetitions`` with its spread (min, max). Both sides print the same versions, aliases
and tags; the script checks that the version and alias appear in each output.

Usage:
    python benchmarks/registry_cli.py --store .ray-mlops/mlflow.db \\
        --out benchmarks/results/registry_cli-cpu2.json

Without ``--store``, a store like the quick start's (one model, ``--versions`` versions with
the same tags, a champion alias) is built in a temporary folder first.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _report import compare, emit, goal, header, interleaved, rounded, summary  # noqa: E402

GOAL_S = 2.0
BASELINE = ROOT / "baselines" / "registry_mlflowclient.py"
MEASURES = [
    "ray_mlops/__init__.py",
    "ray_mlops/__main__.py",
    "ray_mlops/registry_cli.py",
    "ray_mlops/cli.py",
    "ray_mlops/console.py",
    "ray_mlops/errors.py",
]


def build_store(folder: Path, versions: int) -> tuple[str, str]:
    """A SQLite store shaped like the quick start's; returns (model name, champion version)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("adult-income", (folder / "artifacts").as_uri())
    name = "adult-income"
    client.create_registered_model(name)
    for _ in range(versions):
        run = client.create_run(experiment)
        tags = {
            "ray_mlops.dataset_fingerprint": "cd55f9c9cdf7ad83",
            "ray_mlops.config_hash": "5f104c2272c61a04",
            "test_roc_auc": "0.899637",
            "ray_mlops.gate": "passed",
            "ray_mlops.promoted": "true",
            "ray_mlops.decision": "gate passed: no champion yet",
            **{
                f"ray_mlops.metric.{metric}": "0.8"
                for metric in ("accuracy", "f1", "f1_macro", "precision", "recall", "roc_auc")
            },
        }
        client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run.info.run_id, tags=tags
        )
    client.set_registered_model_alias(name, "champion", str(versions))
    return name, str(versions)


def timed(command: list[str], expect: list[str]) -> float:
    """Seconds from start to exit of ``command``; fails unless its output has ``expect``."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or not all(e in done.stdout for e in expect):
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def cases(uri: str, name: str, version: str) -> dict[str, dict[str, Any]]:
    """Per case: the candidate's and the baseline's command, and what each must print."""
    cli = [sys.executable, "-m", "ray_mlops", "models"]
    python = [sys.executable, str(BASELINE)]
    return {
        "models list": {
            "candidate": [*cli, "list", "--tracking-uri", uri],
            "baseline": [*python, "list", uri],
            "expect": [name, "champion"],
        },
        f"models show {name}": {
            "candidate": [*cli, "show", name, "--tracking-uri", uri],
            "baseline": [*python, "show", uri, name],
            "expect": [name, "champion"],
        },
        f"models show {name} {version}": {
            "candidate": [*cli, "show", name, version, "--tracking-uri", uri],
            "baseline": [*python, "show", uri, name, version],
            "expect": [name, "champion", "ray_mlops.gate"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="an existing SQLite store (mlflow.db)")
    parser.add_argument("--model", default="adult-income")
    parser.add_argument("--version", default="1")
    parser.add_argument("--versions", type=int, default=3, help="without --store")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="5 repetitions")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.repetitions = 5
    folder = Path(tempfile.mkdtemp(prefix="registry-cli-"))
    try:
        if args.store:
            # A copy: neither side may change the store the figures are about.
            shutil.copy(args.store, folder / "mlflow.db")
            name, version, store = args.model, args.version, f"given: {args.store}"
        else:
            name, version = build_store(folder, args.versions)
            store = f"built: 1 model, {args.versions} versions like the quick start's"
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        plan = cases(uri, name, version)
        sides: dict[str, Any] = {
            "python -c pass": lambda: timed([sys.executable, "-c", "pass"], [])
        }
        for case, spec in plan.items():
            for side in ("candidate", "baseline"):
                sides[f"{case} | {side}"] = lambda c=spec[side], e=spec["expect"]: timed(c, e)
        timings = interleaved(args.repetitions, sides)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    startup = summary(timings["python -c pass"])
    results, goals = [], []
    for case in plan:
        ours, base = timings[f"{case} | candidate"], timings[f"{case} | baseline"]
        comparison = compare(ours, base, higher_is_better=False)
        results.append({"case": case, "metric": "seconds, process start to exit", **comparison})
        # Start-up apart: what is left once a bare interpreter's start is taken off both sides.
        bare = startup["median"]
        goals.append(
            goal(
                f"`ray-mlops {case}`, a fresh process, start to exit",
                comparison["ours"]["median"],
                "<=",
                GOAL_S,
                unit="s",
                detail=(
                    f"median of {args.repetitions} interleaved: {comparison['ours']['median']:.2f} s"
                    f" ({comparison['ours']['min']:.2f}-{comparison['ours']['max']:.2f}) vs MlflowClient"
                    f" script {comparison['baseline']['median']:.2f} s"
                    f" ({comparison['ratio_of_medians']:.2f}x; without the interpreter's"
                    f" {bare:.2f} s start:"
                    f" {(comparison['ours']['median'] - bare) / (comparison['baseline']['median'] - bare):.2f}x)"
                ),
            )
        )
    document = {
        **header("registry_cli", "mlflow", "typer", measures=MEASURES),
        "setup": {
            "store": store,
            "repetitions": args.repetitions,
            "interleaved": True,
            "python_startup_s": startup,
        },
        "same_work": {"each output names the model, the version and its alias": True},
        "results": results,
        "goals": goals,
        "timings": timings,
    }
    emit(rounded(document), args.out)


if __name__ == "__main__":
    main()
