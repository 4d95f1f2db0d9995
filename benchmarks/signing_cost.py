"""What signing and verifying models costs: ``ray-mlops run`` and a replica's start.

Issue 28's goals: signing and verification at most 2% of ``ray-mlops run`` time, and at most
1 s added to a serving replica's start. The baseline is the same work without signing
(``governance.signing.enabled: false``): what a user gets from MLflow alone.

- **run**: ``ray-mlops run`` of ``configs/quickstart.yaml`` as a fresh process, signing on
  and off, each side in a workspace of its own (so from the second repetition on each run
  also loads, and with signing on verifies, the champion of the one before), interleaved.
  One unmeasured run per side first (warm caches, and a champion for every measured run
  to load). Inside the signed runs, what signing adds is measured apart: importing
  model-signing (in a fresh process that has already imported what a run imports),
  ``sign_model`` (at registration) and ``verify_model`` (the champion's load) on the run's
  own model folder, medians over the repetitions.
- **replica start**: ``load_version`` of the registered version (download, verify, load: what
  a replica does before it answers) in a fresh process, verifying or not, interleaved; the
  process's own start and imports apart, model-signing's import included in the verifying
  side (a replica pays it once).

Usage:
    flock -x /work/notes/cpu.lock python benchmarks/signing_cost.py \\
        --out benchmarks/results/signing_cost-cpu2.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

from _report import compare, emit, goal, header, interleaved, rounded, summary  # noqa: E402

RUN_GOAL_PERCENT = 2.0
START_GOAL_S = 1.0
DATA = REPO / "ray_mlops" / "datasets" / "adult" / "adult.csv.gz"
# What signing adds (the rest of `ray-mlops run` is the same on both sides).
MEASURES = ["ray_mlops/signing", "ray_mlops/registry/champion.py", "configs/quickstart.yaml"]
# A replica's load, timed inside a fresh process (the process's start and imports apart).
LOAD = """
import sys, time, json
from ray_mlops.registry.champion import load_version
from ray_mlops.signing.trust import Trust, default_trust
import tempfile
uri, name, version, verify = sys.argv[1:5]
started = time.perf_counter()
trust = default_trust() if verify == "1" else Trust(enabled=False)
model, local = load_version(uri, name, version, tempfile.mkdtemp(), trust)
seconds = time.perf_counter() - started
out = model.predict(model.input_example)
print(json.dumps({"seconds": seconds, "predictions": out["prediction"].tolist()}))
"""


# What importing model-signing adds to a process that already holds a run's imports.
IMPORT = """
import time
import mlflow, torch, ray, ray_mlops.pipeline
started = time.perf_counter()
import ray_mlops.signing.model
print(time.perf_counter() - started)
"""


def import_once() -> float:
    """Seconds to import the signing code after a run's other imports, fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT], env=_env(), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"import probe failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _config(work: Path, signing: bool, key_dir: Path) -> Path:
    doc = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    doc["data"]["path"] = str(DATA)
    doc.setdefault("governance", {})["signing"] = {"enabled": signing, "key_dir": str(key_dir)}
    config = work / "quickstart.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config


def _env() -> dict[str, str]:
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_MLOPS_WEBHOOK_URL")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_once(work: Path, config: Path) -> dict[str, Any]:
    """``ray-mlops run CONFIG`` from ``work``: seconds, the version it registered."""
    begin = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "run", str(config)],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    total = time.perf_counter() - begin
    if done.returncode != 0:
        raise SystemExit(f"ray-mlops run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"seconds": total, **_latest(work)}


def _latest(work: Path) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / '.ray-mlops' / 'mlflow.db'}")
    latest = max(
        client.search_model_versions("name = 'adult-income'"), key=lambda v: int(v.version)
    )
    run = client.get_run(latest.run_id)
    return {"version": str(latest.version), "roc_auc": run.data.metrics.get("test_roc_auc")}


def inside_costs(work: Path, key_dir: Path, version: str) -> dict[str, float]:
    """Seconds of ``sign_model`` and ``verify_model`` on the run's own model folder."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    from ray_mlops.signing import key_pair, sign_model, verify_model
    from ray_mlops.signing.trust import Trust

    uri = f"sqlite:///{work / '.ray-mlops' / 'mlflow.db'}"
    scratch = Path(tempfile.mkdtemp(prefix="signing-cost-"))
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=MlflowClient(uri).get_model_version_download_uri(
                    "adult-income", version
                ),
                dst_path=str(scratch),
                tracking_uri=uri,
            )
        )
        pair = key_pair(key_dir)
        trust = Trust(public_keys=(pair.public_key.read_text(),))
        begin = time.perf_counter()
        verify_model(local, trust, f"adult-income/v{version}")  # as registered by the run
        verified = time.perf_counter() - begin
        begin = time.perf_counter()
        sign_model(local, pair)
        signed = time.perf_counter() - begin
        files = sum(1 for p in local.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"sign_s": signed, "verify_s": verified, "files": files, "bytes": size}


def load_once(uri: str, version: str, verify: bool) -> dict[str, Any]:
    """``load_version`` in a fresh process: its seconds and the example's predictions."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD, uri, "adult-income", version, "1" if verify else "0"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"load_version failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repetitions (not committed)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.repetitions = 2
    folder = Path(tempfile.mkdtemp(prefix="signing-cost-"))
    try:
        key_dir = folder / "keys"
        works = {side: folder / side for side in ("signed", "unsigned")}
        configs = {}
        for side, work in works.items():
            work.mkdir()
            configs[side] = _config(work, side == "signed", key_dir)
        warmup = {side: run_once(works[side], configs[side]) for side in works}
        runs = interleaved(
            args.repetitions,
            {side: lambda s=side: run_once(works[s], configs[s]) for side in works},
        )
        imports = [import_once() for _ in range(args.repetitions)]
        inside = [inside_costs(works["signed"], key_dir, r["version"]) for r in runs["signed"]]
        uri = f"sqlite:///{works['signed'] / '.ray-mlops' / 'mlflow.db'}"
        version = runs["signed"][-1]["version"]
        os.environ["RAY_MLOPS_KEY_DIR"] = str(key_dir)  # the loading processes trust this key
        loads = interleaved(
            args.repetitions,
            {
                "verified": lambda: load_once(uri, version, True),
                "unverified": lambda: load_once(uri, version, False),
            },
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.out:  # the raw timings first: a summary that fails loses no measurement
        raw = args.out.with_suffix(".raw.json")
        raw.write_text(
            json.dumps({"warmup": warmup, "runs": runs, "inside": inside, "loads": loads})
        )

    run_s = {side: [r["seconds"] for r in runs[side]] for side in runs}
    run_cmp = compare(run_s["signed"], run_s["unsigned"], higher_is_better=False)
    sign_s = summary([c["sign_s"] for c in inside])
    verify_s = summary([c["verify_s"] for c in inside])
    import_s = summary(imports)
    inside_s = import_s["median"] + sign_s["median"] + verify_s["median"]
    share = inside_s / run_cmp["ours"]["median"]
    end_to_end = run_cmp["ours"]["median"] / run_cmp["baseline"]["median"] - 1
    ours, base = run_cmp["ours"], run_cmp["baseline"]
    overlap = ours["min"] <= base["max"] and base["min"] <= ours["max"]
    spread = "the two ranges overlap" if overlap else "the two ranges do not overlap"
    load_s = {side: [r["seconds"] for r in loads[side]] for side in loads}
    load_cmp = compare(load_s["verified"], load_s["unverified"], higher_is_better=False)
    added = load_cmp["ours"]["median"] - load_cmp["baseline"]["median"]
    same_predictions = len({json.dumps(r["predictions"]) for side in loads for r in loads[side]})
    goals = [
        goal(
            "signing and verification inside `ray-mlops run` (quick start): share of its time",
            100 * share,
            "<=",
            RUN_GOAL_PERCENT,
            unit="%",
            detail=(
                f"import {import_s['median'] * 1000:.0f} ms + sign {sign_s['median'] * 1000:.1f} ms"
                f" + verify {verify_s['median'] * 1000:.1f} ms"
                f" ({inside[0]['files']} files, {inside[0]['bytes'] / 1024:.0f} KiB) of a"
                f" {run_cmp['ours']['median']:.1f} s run, medians of {args.repetitions};"
                f" end to end signed {run_cmp['ours']['median']:.1f} s"
                f" ({run_cmp['ours']['min']:.1f}-{run_cmp['ours']['max']:.1f}) vs unsigned"
                f" {run_cmp['baseline']['median']:.1f} s"
                f" ({run_cmp['baseline']['min']:.1f}-{run_cmp['baseline']['max']:.1f}),"
                f" {end_to_end:+.1%}, paired {run_cmp['median_of_paired_ratios'] - 1:+.1%}"
                f" ({spread}), interleaved after a warm-up run each"
            ),
        ),
        goal(
            "time added to a replica's start by verification (load_version, fresh process)",
            added,
            "<=",
            START_GOAL_S,
            unit="s",
            detail=(
                f"load_version verified {load_cmp['ours']['median']:.2f} s"
                f" ({load_cmp['ours']['min']:.2f}-{load_cmp['ours']['max']:.2f}) vs without"
                f" {load_cmp['baseline']['median']:.2f} s"
                f" ({load_cmp['baseline']['min']:.2f}-{load_cmp['baseline']['max']:.2f}),"
                f" medians of {args.repetitions} interleaved; model-signing's import included"
            ),
        ),
    ]
    document = {
        **header("signing_cost", "mlflow", "model_signing", "torch", measures=MEASURES),
        "setup": {
            "config": "configs/quickstart.yaml (data path absolute; governance.signing.enabled"
            " true vs false; key_dir in a temporary folder)",
            "repetitions": args.repetitions,
            "interleaved": True,
            "baseline": "the same command with governance.signing.enabled: false",
        },
        "same_work": {
            "both sides registered a version every run (the warm-up v1)": all(
                r["version"] == str(i + 2) for side in runs for i, r in enumerate(runs[side])
            ),
            "test roc_auc within 0.01 across every run of both sides": max(
                r["roc_auc"] for side in runs for r in runs[side]
            )
            - min(r["roc_auc"] for side in runs for r in runs[side])
            <= 0.01,
            "every load predicted the same answers for the input example": same_predictions == 1,
        },
        "results": [
            {"case": "ray-mlops run, signed vs unsigned", "metric": "seconds", **run_cmp},
            {"case": "importing model-signing in the run", "metric": "seconds", **import_s},
            {"case": "sign_model inside the run", "metric": "seconds", **sign_s},
            {
                "case": "verify_model of the champion inside the run",
                "metric": "seconds",
                **verify_s,
            },
            {"case": "load_version, verified vs not", "metric": "seconds", **load_cmp},
        ],
        "goals": goals,
        "timings": {
            "warmup": warmup,
            "runs": runs,
            "inside": inside,
            "imports": imports,
            "loads": loads,
        },
    }
    emit(rounded(document), args.out)


if __name__ == "__main__":
    main()
