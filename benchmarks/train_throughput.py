"""Training throughput: ray-mlops' trainer against a plain torch loop, and `ray-mlops train`'s
time to its first step.

Same model (MLP features -> 512 -> 512 -> 1, binary head), same data (random float32
features, a label that depends on them), same batch, same precision (bf16 autocast on CUDA,
fp32 on CPU), same optimizer (AdamW, fused on CUDA), same seed for the weights. Sides, run
``--rounds`` times, interleaved (the order rotates every round):

- plain torch loop: ``baselines/train_torch.py`` in its own process, data resident on the
  device as tensors, a fresh permutation each epoch (never imports ray_mlops);
- ray-mlops, 1 worker, resident ingest: ``ray_mlops.train.trainer.train_encoded`` (the
  trainer `ray-mlops train` runs), MLflow off, all CPUs (or one GPU) on its worker;
- ray-mlops, 1 worker, Ray Data streaming ingest (``iter_torch_batches`` with prefetching):
  the path of a split larger than a worker's device memory; on a GPU node its goal is 0.7x;
- on CPU: ray-mlops with 2 workers x 1 CPU against 1 worker x 2 CPUs.

Samples/s are those of the last epoch (warm), timed inside each loop around the training
steps, so neither side's figure includes start-up; each side's whole round (process start
and imports of the plain loop; worker group start, shard loading and checkpoints of ours)
gives the ratio with start-up beside it. ``ray.init`` is paid once per session, reported
apart. Medians with min-max over the rounds, the ratio of medians and the median of the
per-round (paired) ratios. Both sides are checked to do the same work: the same rows (count,
positives, feature checksum), epochs and steps per epoch, and the mean train loss of the
last epoch and the validation loss within a tolerance (same initial weights; only the
shuffles differ).

Start-up: ``ray-mlops train`` on the quick start config, a fresh process in a fresh
workspace, ``--startup-reps`` times: seconds from the command to the end of the first
optimizer step, with its breakdown (process start, imports and config checks, ``ray.init``,
tracking set-up, data and features stages, encoding the splits, worker group start (with
Ray Train's own breakdown from its controller log), model and shard loading, first step).
A probe (a ``sitecustomize`` on ``PYTHONPATH``, written to a temporary folder; Ray's workers
inherit it) stamps those events; the command is stopped after the first step.

Usage:
    python benchmarks/train_throughput.py --quick --out /tmp/train.json
    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput-cpu2.json
    python3 benchmarks/train_throughput.py --device cuda --out $OUT/train_throughput-gpu-h100.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _proc import python, run_side  # noqa: E402
from _report import compare, curve, emit, goal, header, interleaved, rounded, summary  # noqa: E402

BASELINE = ROOT / "benchmarks" / "baselines" / "train_torch.py"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
PLAIN = "plain torch loop"
RESIDENT = "ray-mlops, 1 worker, resident"
STREAMING = "ray-mlops, 1 worker, streaming"
TWO_WORKERS = "ray-mlops, 2 workers x 1 CPU, resident"
# Same work: the last epoch's mean train loss and the validation loss of both sides may
# differ by this much (same weights at the start, different shuffles), absolute.
LOSS_TOLERANCE = 0.03
MEASURES = [
    "ray_mlops/train",
    "ray_mlops/models",
    "ray_mlops/cli.py",
    "ray_mlops/pipeline.py",
    "ray_mlops/runtime.py",
    "ray_mlops/data",
    "ray_mlops/features",
    "ray_mlops/tracking.py",
    "benchmarks/baselines/train_torch.py",
]


def make_data(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 features and a binary label that depends on them (so the loss falls)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    weights = rng.standard_normal(features).astype(np.float32)
    y = ((x @ weights + rng.standard_normal(rows).astype(np.float32)) > 0).astype(np.int64)
    return x, y


def fingerprint(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Rows, positive labels and the float64 sum of the features: equal data, equal prints."""
    return {
        "rows": len(y),
        "positives": int(y.sum()),
        "feature_sum": float(x.astype(np.float64).sum()),
    }


def same_work(plain: dict[str, Any], ours: dict[str, Any], workers: int = 1) -> dict[str, Any]:
    """Whether one round of ours did the plain loop's work: data, epochs, steps, losses.

    ``workers`` > 1: each worker steps through its share of the rows with the same batch
    size, so a worker takes 1/``workers`` of the plain loop's steps per epoch and the loss
    is not compared (the effective batch differs).
    """
    rows = plain["data"]["rows"]
    plain_steps = plain["steps"] / plain["epochs"]
    expected_steps = math.ceil((rows // workers) / plain["batch_size"])
    checks: dict[str, Any] = {
        "same_data": same_print(ours["data"], plain["data"]),
        "same_epochs": ours["epochs"] == plain["epochs"],
        "same_samples_per_epoch": abs(ours["samples_per_epoch"] - (rows // workers) * workers)
        <= 0.5,
        "steps_per_epoch": {"plain": plain_steps, "ray-mlops": ours["steps_per_epoch"]},
        "same_steps_per_epoch": ours["steps_per_epoch"] == expected_steps
        and (workers > 1 or plain_steps == expected_steps),
    }
    if workers == 1:
        train_gap = abs(ours["train_loss"] - plain["train_loss"][-1])
        val_gap = abs(ours["val_loss"] - plain["val_loss"])
        checks |= {
            "train_loss_last_epoch": {
                "plain": plain["train_loss"][-1],
                "ray-mlops": ours["train_loss"],
            },
            "val_loss": {"plain": plain["val_loss"], "ray-mlops": ours["val_loss"]},
            "loss_tolerance": LOSS_TOLERANCE,
            "losses_within_tolerance": train_gap <= LOSS_TOLERANCE and val_gap <= LOSS_TOLERANCE,
        }
    checks["ok"] = all(v for k, v in checks.items() if k.startswith(("same_", "losses_")))
    return checks


def same_print(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two :func:`fingerprint` s agree: counts exactly, the feature sum to 1e-9 (summation order)."""
    exact = ("rows", "positives", "validation_rows")
    return all(a.get(k) == b.get(k) for k in exact) and math.isclose(
        a["feature_sum"], b["feature_sum"], rel_tol=1e-9, abs_tol=1e-6
    )


def write_npy(
    folder: Path, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]
) -> None:
    """The baseline's input: the same arrays the Ray datasets are made of."""
    np.save(folder / "features.npy", train[0])
    np.save(folder / "labels.npy", train[1])
    np.save(folder / "val_features.npy", val[0])
    np.save(folder / "val_labels.npy", val[1])


def plain_side(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One round of the plain loop in a fresh process; its JSON answer plus its wall time."""
    argv = python(
        str(BASELINE),
        "--data",
        str(folder),
        "--device",
        args.device,
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--hidden",
        args.hidden,
    )
    spawned = time.time()
    result = run_side(argv, timeout_s=600, poll_s=0.5)  # a light watcher: it shares the CPUs
    if not result.ok:
        raise RuntimeError(f"plain torch loop failed ({result.returncode}): {result.stderr_tail}")
    answer = result.answer
    return {
        **answer,
        "samples_per_s": answer["samples_per_s"][-1],  # the last epoch (warm), as for ours
        "epoch_samples_per_s": answer["samples_per_s"],
        "batch_size": args.batch_size,
        "wall_s": result.wall_s,
        "first_step_after_s": answer["first_step_at"] - spawned,
        "peak_rss_gib": result.peak_rss_gib,
    }


def _config(args: argparse.Namespace, workers: int, cpus: float, ingest: str) -> Any:
    from ray_mlops.config import parse_config

    return parse_config(
        {
            "name": "bench",
            "data": {"path": "unused", "target": "label", "numeric": ["x"]},
            "train": {
                "num_workers": workers,
                "cpus_per_worker": cpus,
                "use_gpu": args.device == "cuda",
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": 1e-3,
                "ingest": ingest,
                "max_failures": 0,
                "seed": 0,
            },
        }
    )


def ours_side(
    splits: tuple[Any, Any],
    data_print: dict[str, Any],
    args: argparse.Namespace,
    workers: int,
    cpus: float,
    ingest: str,
) -> dict[str, Any]:
    """One round of ray-mlops' trainer on already-encoded Ray datasets (MLflow off)."""
    import torch

    from ray_mlops.features.state import FeatureState
    from ray_mlops.models.spec import ModelSpec
    from ray_mlops.train.trainer import train_encoded

    spec = ModelSpec(
        n_inputs=args.features,
        n_outputs=1,
        head="binary",
        hidden_sizes=[int(w) for w in args.hidden.split(",")],
    )
    cfg = _config(args, workers, cpus, ingest)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        outcome = train_encoded(
            cfg,
            splits[0],
            splits[1],
            spec,
            FeatureState(labels=["0", "1"]),
            str(Path(tmp) / "results"),
            f"bench-{workers}-{ingest}-{time.time_ns()}",
        )
        wall = time.perf_counter() - start
        state = torch.load(Path(outcome.checkpoint_path) / "training_state.pt", weights_only=False)
    progress = state["progress"]
    last = outcome.last_metrics
    return {
        "samples_per_s": last["samples_per_s"],  # the last epoch: warm, like the plain loop's
        "samples_per_epoch": round(last["samples_per_s"] * last["epoch_seconds"]),
        "epochs": outcome.epochs_run,
        "steps_per_epoch": progress["global_step"] // (progress["epoch"] + 1),
        "train_loss": last["train_loss"],
        "val_loss": last["val_loss"],
        "val_accuracy": last["val_accuracy"],
        "ingest": outcome.ingest,
        "data": data_print,
        "wall_s": wall,
    }


def to_ray(x: np.ndarray, y: np.ndarray, blocks: int) -> Any:
    """The arrays as a materialized Ray dataset with the encoded splits' columns."""
    import ray
    import ray.data

    x_ref, y_ref = ray.put(x), ray.put(y)

    def batch(ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = ids["id"]
        return {
            "features": ray.get(x_ref)[index],
            "label": ray.get(y_ref)[index],
            "row_key": index.astype(np.int64),
        }

    return ray.data.range(len(y), override_num_blocks=blocks).map_batches(batch).materialize()


def ray_fingerprint(dataset: Any) -> dict[str, Any]:
    """:func:`fingerprint` of a Ray dataset's ``features`` and ``label`` columns."""
    rows, positives, total = 0, 0, 0.0
    for batch in dataset.iter_batches(batch_size=65_536, batch_format="numpy"):
        rows += len(batch["label"])
        positives += int(batch["label"].sum())
        total += float(np.asarray(batch["features"], dtype=np.float64).sum())
    return {"rows": rows, "positives": positives, "feature_sum": total}


# ---------------------------------------------------------------- time to first step

PROBE = r'''
"""Stamps the events of a `ray-mlops train` run (benchmarks/train_throughput.py)."""
import importlib.abc
import json
import os
import sys
import time

_TRACE = os.environ.get("TRAIN_BENCH_TRACE")


def _event(name, **extra):
    with open(_TRACE, "a") as f:
        f.write(json.dumps({"event": name, "t": time.time(), "pid": os.getpid(), **extra}) + "\n")


def _timed(owner, attr, label, after=None):
    original = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        _event(label + ":start")
        try:
            return original(*args, **kwargs)
        finally:
            _event(label + ":end", **(after() if after else {}))

    setattr(owner, attr, wrapper)


def _logs_dir():
    import ray

    node = ray._private.worker._global_node
    return {"logs_dir": node.get_logs_dir_path() if node else None}


def _patch(name, module):
    if name == "ray":
        _timed(module, "init", "ray.init", after=_logs_dir)
    elif name == "ray_mlops.pipeline":
        for stage in ("data", "features", "train"):
            _timed(module, "_" + stage + "_stage", stage)
    elif name == "ray_mlops.train.trainer":
        _timed(module, "train_encoded", "train_encoded")
        _timed(module, "build_torch_trainer", "build_trainer")
    elif name == "ray_mlops.train.loop":
        _timed(module, "run_loop", "run_loop")
        build = module.build_optimizer

        def build_optimizer(*args, **kwargs):
            optimizer = build(*args, **kwargs)
            done = []

            def first_step(*_):
                if not done:
                    done.append(True)
                    _event("first_step")

            optimizer.register_step_post_hook(first_step)
            return optimizer

        module.build_optimizer = build_optimizer
    elif name == "ray_mlops.train.ingest":
        load = module.ResidentShard.load.__func__

        def timed_load(cls, *args, **kwargs):
            _event("shard_load:start")
            try:
                return load(cls, *args, **kwargs)
            finally:
                _event("shard_load:end")

        module.ResidentShard.load = classmethod(timed_load)


_TARGETS = {"ray", "ray_mlops.pipeline", "ray_mlops.train.trainer", "ray_mlops.train.loop",
            "ray_mlops.train.ingest"}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                run = spec.loader.exec_module

                def exec_module(module, run=run):
                    run(module)
                    _patch(name, module)

                spec.loader.exec_module = exec_module
                return spec
        return None


if _TRACE:
    _event("interpreter", argv=sys.argv[:2])
    sys.meta_path.insert(0, _Finder())
'''


def read_trace(path: Path) -> list[dict[str, Any]]:
    """The probe's events, in the order written."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def startup_breakdown(
    events: list[dict[str, Any]], spawned: float, driver_pid: int
) -> dict[str, Any]:
    """Seconds of each phase from the command's start to the end of its first step.

    The phases follow each other, so they add up to ``total_s`` (each is the gap between two
    consecutive events; a missing event leaves its phase ``None``).
    """

    def first(name: str, driver: bool | None = None) -> float | None:
        for event in events:
            if event["event"] != name:
                continue
            if driver is True and event["pid"] != driver_pid:
                continue
            if driver is False and event["pid"] == driver_pid:
                continue
            return float(event["t"])
        return None

    marks = [
        ("process_start_s", first("interpreter", driver=True)),
        ("imports_and_config_checks_s", first("ray.init:start", driver=True)),
        ("ray_init_s", first("ray.init:end", driver=True)),
        ("tracking_setup_s", first("data:start")),
        ("data_stage_s", first("data:end")),
        ("features_stage_s", first("features:end")),
        ("encode_splits_and_log_params_s", first("train_encoded:start")),
        ("shards_and_trainer_s", first("build_trainer:end")),
        ("worker_group_start_s", first("run_loop:start", driver=False)),
        (
            "model_and_shard_load_s",
            first("shard_load:end", driver=False) or first("run_loop:start"),
        ),
        ("first_step_s", first("first_step", driver=False)),
    ]
    phases: dict[str, Any] = {}
    previous: float | None = spawned
    for name, at in marks:
        phases[name] = None if at is None or previous is None else at - previous
        previous = at if at is not None else previous
    end = first("first_step", driver=False)
    phases["total_s"] = None if end is None else end - spawned
    return phases


_WORKER_GROUP_LINE = re.compile(r"\[Worker Group Initialization\] (.+?) in ([0-9.]+)s")


def ray_train_breakdown(logs_dir: str | None) -> dict[str, float]:
    """Ray Train's own timing of its worker group's start, from the controller's log."""
    found: dict[str, float] = {}
    if not logs_dir:
        return found
    for log in sorted(Path(logs_dir, "train").glob("ray-train-sys-controller-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                message = json.loads(line).get("message", "")
            except json.JSONDecodeError:
                message = line
            match = _WORKER_GROUP_LINE.search(message)
            if match:
                step = re.sub(r"^\d+ ", "", match.group(1).strip())  # "2 worker actors created"
                found[step] = float(match.group(2))
    return found


# What `ray-mlops train` imports before it starts Ray (cli.py's _run_command, then ray_runtime).
COMMAND_IMPORTS = (
    "import ray_mlops.cli, ray_mlops.config, ray_mlops.preflight, ray_mlops.workspace, "
    "ray_mlops.pipeline, ray_mlops.runtime, ray_mlops.summary, ray.data"
)


def import_profile(top: int = 10) -> dict[str, Any]:
    """``python -X importtime`` of the command's imports: the slowest top-level packages.

    Seconds are cumulative (a package with what it imports first), so they overlap.
    """
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", COMMAND_IMPORTS],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    wall = time.perf_counter() - began
    packages: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        root = name.strip().split(".")[0]
        if cumulative.strip().isdigit():
            packages[root] = max(packages.get(root, 0.0), int(cumulative) / 1e6)
    slowest = sorted(packages.items(), key=lambda kv: -kv[1])[:top]
    return {"wall_s": wall, "slowest_packages_s": dict(slowest), "statement": COMMAND_IMPORTS}


def first_step_run(config: Path, timeout_s: float) -> dict[str, Any]:
    """One `ray-mlops train` in a fresh workspace, stopped after its first training step."""
    with tempfile.TemporaryDirectory(prefix="train-startup-") as tmp:
        workspace, probe = Path(tmp) / "workspace", Path(tmp) / "probe"
        workspace.mkdir()
        probe.mkdir()
        (probe / "sitecustomize.py").write_text(PROBE)
        trace = Path(tmp) / "trace.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(probe), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env["TRAIN_BENCH_TRACE"] = str(trace)
        command = shutil.which("ray-mlops", path=str(Path(sys.executable).parent))
        argv = [command] if command else [sys.executable, "-m", "ray_mlops"]
        spawned = time.time()
        child = subprocess.Popen(
            [*argv, "train", str(config)],
            cwd=workspace,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            while time.time() - spawned < timeout_s:
                if child.poll() is not None or any(
                    e["event"] == "first_step" for e in read_trace(trace)
                ):
                    break
                time.sleep(0.05)
        finally:
            exited = child.poll()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            _, stderr = child.communicate()
        events = read_trace(trace)
        phases = startup_breakdown(events, spawned, child.pid)
        logs = next((e.get("logs_dir") for e in events if e["event"] == "ray.init:end"), None)
        result = {
            **phases,
            "ray_train_worker_group": ray_train_breakdown(logs),
            "command": " ".join(["ray-mlops" if command else "python -m ray_mlops", "train"]),
        }
        if phases["total_s"] is None:
            result["error"] = f"exit {exited}: {stderr.decode(errors='replace')[-1500:]}"
        return result


# ---------------------------------------------------------------- driver


def _retrying(
    name: str, fn: Callable[[], dict[str, Any]], failures: list[str]
) -> Callable[[], Any]:
    """``fn``, tried a second time when it raises (the error kept for the record)."""

    def run() -> dict[str, Any] | None:
        for attempt in (1, 2):
            try:
                return fn()
            except Exception as exc:  # a worker group lost under load: record, retry once
                failures.append(
                    f"{name}, attempt {attempt}: {type(exc).__name__}: {str(exc)[:300]}"
                )
        return None

    return run


def _values(rounds: list[dict[str, Any] | None], key: str) -> list[float | None]:
    return [None if r is None else r[key] for r in rounds]


def _throughput(rounds: dict[str, list[Any]], side: str, baseline: str) -> dict[str, Any]:
    """Samples/s of ``side`` against ``baseline``, without and with start-up."""
    ours, base = rounds[side], rounds[baseline]

    def end_to_end(r: dict[str, Any] | None) -> float | None:
        if r is None:
            return None
        samples = r.get("samples") or r["samples_per_epoch"] * r["epochs"]
        return samples / r["wall_s"]

    return {
        "candidate": side,
        "baseline": baseline,
        "samples_per_s_last_epoch": compare(
            _values(ours, "samples_per_s"), _values(base, "samples_per_s"), higher_is_better=True
        ),
        "samples_per_s_with_startup": compare(
            [end_to_end(r) for r in ours], [end_to_end(r) for r in base], higher_is_better=True
        ),
        "wall_s": {
            "ours": summary(_values(ours, "wall_s")),
            "baseline": summary(_values(base, "wall_s")),
        },
    }


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:.1f}k{unit}" if value >= 1000 else f"{value:.2f}{unit}"


def build_document(
    args: argparse.Namespace,
    rounds: dict[str, list[Any]],
    startup: list[dict[str, Any]],
    plain_first: list[float],
    failures: list[str],
    session: dict[str, Any],
) -> dict[str, Any]:
    """The JSON document: comparisons, same-work checks, start-up, goals, curves."""
    import torch

    gpu = args.device == "cuda"
    comparisons = {name: _throughput(rounds, name, PLAIN) for name in rounds if name != PLAIN}
    if TWO_WORKERS in rounds:
        comparisons["2 workers x 1 CPU vs 1 worker x 2 CPUs"] = _throughput(
            rounds, TWO_WORKERS, RESIDENT
        )
    checks: dict[str, Any] = {}
    for name in rounds:
        if name == PLAIN:
            continue
        workers = 2 if name == TWO_WORKERS else 1
        per_round = [
            same_work(p, o, workers) if p and o else None
            for p, o in zip(rounds[PLAIN], rounds[name], strict=True)
        ]
        checks[name] = {"ok": all(c and c["ok"] for c in per_round), "rounds": per_round}

    def ratio_goal(claim: str, side: str, target: float, measured_here: bool) -> dict[str, Any]:
        c = comparisons.get(side, {}).get("samples_per_s_last_epoch") if measured_here else None
        if not c:
            return goal(claim, None, ">=", target, detail="not measured on this device")
        detail = (
            f"{_fmt(c['ours']['median'])} vs {_fmt(c['baseline']['median'])} samples/s, medians of "
            f"{c['ours']['n']} interleaved rounds (ours {_fmt(c['ours']['min'])}-"
            f"{_fmt(c['ours']['max'])}, plain {_fmt(c['baseline']['min'])}-"
            f"{_fmt(c['baseline']['max'])}); median of paired per-round ratios "
            f"{_fmt(c['median_of_paired_ratios'], 'x')}"
        )
        return goal(claim, c["ratio_of_medians"], ">=", target, detail=detail)

    totals = summary([s.get("total_s") for s in startup])
    startup_goal_here = not gpu and (os.cpu_count() or 0) <= 2 and totals["n"] > 0
    medians = {
        key: statistics.median([s[key] for s in startup if s.get(key) is not None])
        for key in (startup[0] if startup else {})
        if key.endswith("_s") and any(s.get(key) is not None for s in startup)
    }
    biggest = sorted(((k, v) for k, v in medians.items() if k != "total_s"), key=lambda kv: -kv[1])[
        :3
    ]
    startup_detail = (
        f"median {totals['median']:.1f} s over {totals['n']} fresh commands "
        f"({totals['min']:.1f}-{totals['max']:.1f} s); largest parts: "
        + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f} s" for k, v in biggest)
        + (
            f"; a plain torch script's first step ends {statistics.median(plain_first):.1f} s after its start"
            if plain_first
            else ""
        )
        if totals["n"]
        else "not measured"
    )
    goals = [
        ratio_goal(
            "training on 2 CPUs: ray-mlops (1 worker, resident ingest) vs a plain torch loop, samples/s",
            RESIDENT,
            0.9,
            not gpu,
        ),
        ratio_goal(
            "training on a GPU: ray-mlops (1 worker, resident ingest) vs a plain torch loop, samples/s",
            RESIDENT,
            0.9,
            gpu,
        ),
        ratio_goal(
            "training on a GPU: Ray Data streaming ingest vs a plain torch loop (resident), samples/s",
            STREAMING,
            0.7,
            gpu,
        ),
        goal(
            "time from `ray-mlops train` (quick start) to the first training step on 2 CPUs",
            totals["median"] if startup_goal_here else None,
            "<=",
            10.0,
            unit="s",
            detail=startup_detail if startup_goal_here else f"not on 2 CPUs here: {startup_detail}",
        ),
    ]
    curves = []
    if TWO_WORKERS in rounds:
        one = comparisons[RESIDENT]["samples_per_s_last_epoch"]["ours"]["median"]
        two = comparisons[TWO_WORKERS]["samples_per_s_last_epoch"]["ours"]["median"]
        curves.append(
            curve(
                "train_throughput_workers",
                "workers (CPUs split between them)",
                "samples/s (last epoch, median)",
                [1, 2],
                {"ray-mlops, resident ingest": [one, two]},
            )
        )
    device_name = torch.cuda.get_device_name(0) if gpu else "cpu"
    document = {
        **header("train_throughput", "torch", "ray", "ray_mlops", measures=MEASURES),
        "device": device_name,
        "quick": args.quick,
        "setup": {
            "rows": args.rows,
            "validation_rows": args.validation_rows,
            "features": args.features,
            "model": f"MLP {args.features}-{args.hidden.replace(',', '-')}-1 (binary head)",
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "rounds": args.rounds,
            "precision": "bf16 autocast" if gpu else "fp32",
            "optimizer": "AdamW lr 1e-3" + (" (fused)" if gpu else ""),
            "throughput": "samples/s of the last epoch, timed around the training steps on both sides",
            "with_startup": "samples of all epochs / the side's whole round: the plain loop's "
            "process (start, imports, data load, epochs, validation); ours' train_encoded call "
            "(worker group start, shard load, epochs, validation, checkpoints); ray.init apart",
            "streaming_note": "the stream path (iter_torch_batches) is what a split larger than "
            "a worker's device memory takes; its samples/s do not depend on the split's size, "
            "so it is measured on the same split as the resident case",
        },
        "session": session,
        "comparisons": comparisons,
        "same_work": checks,
        "startup": {
            "command": startup[0]["command"] if startup else None,
            "config": str(QUICKSTART.relative_to(ROOT)),
            "runs": startup,
            "medians": medians,
            "plain_torch_first_step_s": summary(plain_first),
        },
        "rounds": rounds,
        "failures": failures,
        "goals": goals,
        "curves": curves,
    }
    return document


def write_partial(document: dict[str, Any], out: Path) -> None:
    """``document`` to ``out``, whole or not at all (quietly: the final one is printed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--rows", type=int, help="train rows (default: 2M cuda, 300k cpu)")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", default="512,512", help="hidden widths, comma-separated")
    parser.add_argument("--batch-size", type=int, help="default: 8192 on cuda, 1024 on cpu")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions")
    parser.add_argument(
        "--startup-reps", type=int, help="fresh `ray-mlops train` commands (default 5; cuda 0)"
    )
    parser.add_argument("--no-two-workers", action="store_true", help="skip 2 workers x 1 CPU")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument(
        "--budget-s", type=float, help="wall-clock budget: fewer start-up runs (>= 3) past it"
    )
    args = parser.parse_args()
    run_started = time.perf_counter()
    gpu = args.device == "cuda"
    args.rows = args.rows or (2_000_000 if gpu else (30_000 if args.quick else 300_000))
    args.validation_rows = max(args.rows // 10, 1000)
    args.batch_size = args.batch_size or (8192 if gpu else 1024)
    if args.startup_reps is None:
        args.startup_reps = 0 if gpu else (1 if args.quick else 5)
    if args.quick:  # every side once: a check that it all runs, no figures to read
        args.rounds = 1

    # One draw, then cut: the validation rows follow the train rows' label rule.
    x_all, y_all = make_data(args.rows + args.validation_rows, args.features)
    x, y = x_all[: args.rows], y_all[: args.rows]
    val = (x_all[args.rows :], y_all[args.rows :])
    data_print = fingerprint(x, y) | {"validation_rows": args.validation_rows}
    rounds: dict[str, list[Any]] = {}
    failures: list[str] = []
    session: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        folder = Path(tmp)
        write_npy(folder, (x, y), val)

        import ray

        from ray_mlops.compat.ray_core import local_node_options

        began = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, **local_node_options())
        session["ray_init_s"] = time.perf_counter() - began
        ray.data.DataContext.get_current().enable_progress_bars = False
        blocks = max(os.cpu_count() or 1, 8)
        began = time.perf_counter()
        splits = (to_ray(x, y, blocks), to_ray(*val, blocks))
        session["to_ray_datasets_s"] = time.perf_counter() - began
        ray_print = ray_fingerprint(splits[0]) | {"validation_rows": splits[1].count()}
        session["ray_dataset_matches_arrays"] = same_print(ray_print, data_print)
        all_cpus = float(os.cpu_count() or 1)
        worker_cpus = min(all_cpus, 4.0) if gpu else all_cpus
        sides: dict[str, Callable[[], Any]] = {
            PLAIN: _retrying(PLAIN, lambda: plain_side(folder, args), failures),
            RESIDENT: _retrying(
                RESIDENT,
                lambda: ours_side(splits, ray_print, args, 1, worker_cpus, "resident"),
                failures,
            ),
            STREAMING: _retrying(
                STREAMING,
                lambda: ours_side(splits, ray_print, args, 1, worker_cpus, "stream"),
                failures,
            ),
        }
        if not gpu and not args.no_two_workers and all_cpus >= 2:
            sides[TWO_WORKERS] = _retrying(
                TWO_WORKERS,
                lambda: ours_side(splits, ray_print, args, 2, all_cpus / 2, "resident"),
                failures,
            )

        done: dict[str, list[Any]] = {name: [] for name in sides}

        def progress(repetition: int, name: str, result: dict[str, Any] | None) -> None:
            if result is not None:  # how busy the machine was: 1-minute load after the run
                result["load_1min_after"] = os.getloadavg()[0]
            done[name].append(result)
            if args.out and all(len(r) == repetition + 1 for r in done.values()):
                # Every finished round on disk: a run stopped at a time limit keeps them.
                partial = build_document(args, done, [], [], failures, session)
                write_partial(rounded(partial | {"partial": True}), args.out)
            figure = "failed" if result is None else f"{result['samples_per_s']:,.0f} samples/s"
            wall = "" if result is None else f" (round {result['wall_s']:.1f} s)"
            print(f"round {repetition + 1}/{args.rounds}, {name}: {figure}{wall}", flush=True)

        rounds = interleaved(args.rounds, sides, on_result=progress)
        ray.shutdown()

        startup: list[dict[str, Any]] = []
        for rep in range(args.startup_reps):
            elapsed = time.perf_counter() - run_started
            longest = max((s.get("total_s") or 60.0 for s in startup), default=0.0) + 15.0
            if args.budget_s and rep >= 3 and elapsed + longest > args.budget_s:
                session["startup_reps_cut"] = f"{rep} of {args.startup_reps}: --budget-s"
                print(f"start-up: stopping after {rep} runs (budget)", flush=True)
                break
            startup.append(first_step_run(QUICKSTART, timeout_s=180))
            print(
                f"start-up {rep + 1}/{args.startup_reps}: first step after "
                f"{_fmt(startup[-1].get('total_s'), ' s')}",
                flush=True,
            )
        if startup:
            try:
                session["command_imports"] = import_profile()
            except Exception as exc:  # a profile only: the figures stand without it
                session["command_imports"] = {"error": repr(exc)}
    plain_first = [r["first_step_after_s"] for r in rounds.get(PLAIN, []) if r]
    document = build_document(args, rounds, startup, plain_first, failures, session)
    emit(rounded(document), args.out)
    for g in document["goals"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[g["met"]]
        print(f"goal {verdict}: {g['claim']}: {g['value']} ({g['detail']})", file=sys.stderr)


if __name__ == "__main__":
    main()
