"""Where a search's first seconds go: the start-up of Ray Tune's trial processes.

Companion to ``tune_efficiency.py``, whose time-to-target goal is decided by the seconds a
search spends before its first epoch. Here a real ray-mlops search (``run_search``, the
benchmark's Adult problem, near-empty trials: one epoch on 256 rows, as many trials as CPUs)
is run ``--searches`` times in one Ray session, and for every trial process it reports:

- when Tune's trial process was created and when its first result arrived, from the
  search's call;
- what the process imported, from ``python -X importtime`` in the workers (set through the
  job's runtime environment): Ray Tune, torch, ``torch._dynamo`` (imported by
  ``torch.optim`` on the first optimizer step) and ``ray_mlops.search.trial``;
- whether it was one of the Ray workers already started and idle before the search: Tune
  starts a new process for every trial actor (measured by hand: also without the runtime
  environment Tune gives its actors, and with Ray's ``preload_python_modules`` set to torch
  and Ray Tune, the first result still came after 5.2 s), so warm workers cannot shorten a
  search's start.

Baseline, beside it: what a plain Optuna script pays for the same imports, once per run, in
a fresh Python process (``import torch``, then the first AdamW step).

Usage:
    python benchmarks/trial_startup.py --out benchmarks/results/trial_startup-cpu2.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _report import emit, header, rounded  # noqa: E402
from tune_efficiency import _with_tracking, load_problem  # noqa: E402

# Modules whose import a trial process pays before its first epoch.
WATCHED = ("ray.tune", "torch", "torch._dynamo", "ray_mlops.search.trial", "pandas")
# Imported one after another (torch inside ray_mlops.search.trial, pandas inside ray.tune).
TOP_LEVEL = ("ray.tune", "ray_mlops.search.trial", "torch._dynamo")
PLAIN_SCRIPT = """
import time
started = time.perf_counter()
import torch
imported = time.perf_counter()
model = torch.nn.Linear(8, 1)
optimizer = torch.optim.AdamW(model.parameters())
model(torch.randn(4, 8)).sum().backward()
optimizer.step()
print(imported - started, time.perf_counter() - imported)
"""


def import_seconds(err_file: Path) -> dict[str, float]:
    """Cumulative import time of the watched modules, from a worker's ``-X importtime``."""
    seconds: dict[str, float] = {}
    for line in err_file.read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        name = name.strip()
        if name in WATCHED and cumulative.strip().isdigit():
            seconds[name] = int(cumulative) / 1e6
    return seconds


def idle_workers() -> set[int]:
    """Ray worker processes started and waiting for work (``ray::IDLE``)."""
    found = set()
    for process in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or []) + (process.info["name"] or "")
        if "ray::IDLE" in title:
            found.add(process.pid)
    return found


def one_search(cfg: Any, inputs: Any, storage: Path, uri: str, label: str) -> dict[str, Any]:
    """A near-empty search: per trial process, creation, first result and imports."""
    from ray import tune

    from ray_mlops.search.tuner import run_search

    first_result: dict[int, float] = {}
    created: dict[int, float] = {}

    class FirstResult(tune.Callback):
        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
        ) -> None:
            pid = int(result["pid"])
            if pid not in first_result:
                first_result[pid] = time.time()
                created[pid] = psutil.Process(pid).create_time()

    waiting = idle_workers()
    tracked = _with_tracking(inputs, uri, label)
    called = time.time()
    run_search(cfg, tracked, storage, label, callbacks=[FirstResult()])
    wall = time.time() - called
    from ray_mlops.compat.ray_core import node_logs_dir

    logs = node_logs_dir()
    processes = []
    for pid, seen in sorted(first_result.items()):
        err = next(iter(logs.glob(f"worker-*-{pid}.err")), None)
        imports = import_seconds(err) if err else {}
        start_to_result = seen - created[pid]
        processes.append(
            {
                "pid": pid,
                "pre_started_worker": pid in waiting,
                "created_after_s": created[pid] - called,
                "first_result_after_s": seen - called,
                "import_s": imports,
                # Process start, `import ray`, unpickling the trainable, the epoch itself.
                "not_imports_s": start_to_result - sum(imports.get(m, 0.0) for m in TOP_LEVEL),
            }
        )
    return {
        "wall_s": wall,
        "idle_workers_before": len(waiting),
        "trial_processes": processes,
        "first_result_s": min(p["first_result_after_s"] for p in processes),
    }


def plain_process(runs: int) -> dict[str, Any]:
    """A fresh Python process: ``import torch``, then the first optimizer step."""
    measured = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", PLAIN_SCRIPT], capture_output=True, text=True, check=True
        )
        measured.append([float(v) for v in done.stdout.split()])
    torch_s = statistics.median(m[0] for m in measured)
    first_step_s = statistics.median(m[1] for m in measured)
    return {
        "runs": runs,
        "import_torch_s": torch_s,
        "first_optimizer_step_s": first_step_s,
        "total_s": torch_s + first_step_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one search")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.searches = 1

    import ray

    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPROFILEIMPORTTIME": "1"}},
    )
    problem = argparse.Namespace(
        trials=os.cpu_count(), epochs=1, startup_trials=1, space="wide", brackets=1
    )
    cfg, inputs = load_problem(problem)
    inputs = replace(
        inputs, base_arrays={k: (x[:256], y[:256]) for k, (x, y) in inputs.base_arrays.items()}
    )
    cfg = cfg.model_copy(
        update={
            "search": cfg.search.model_copy(
                update={"algorithm": "random", "scheduler": "none", "num_samples": os.cpu_count()}
            )
        }
    )
    work = Path(tempfile.mkdtemp(prefix="trial-startup-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    time.sleep(5)  # Ray's pre-started workers are up and idle before the first search
    searches = [
        one_search(cfg, inputs, work / "ray_results", uri, f"startup-{i}")
        for i in range(args.searches)
    ]
    ray.shutdown()
    write(args, searches, plain_process(args.searches))


def write(args: argparse.Namespace, searches: list[dict[str, Any]], plain: dict[str, Any]) -> None:
    """Summary rows (search against a plain process), the per-search detail, the JSON."""
    processes = [p for s in searches for p in s["trial_processes"]]
    first = statistics.median(s["first_result_s"] for s in searches)
    imports = {
        name: statistics.median(p["import_s"].get(name, 0.0) for p in processes) for name in WATCHED
    }
    not_imports = statistics.median(p["not_imports_s"] for p in processes)
    document = {
        **header(
            "trial_startup",
            "torch",
            "ray",
            "optuna",
            measures=["ray_mlops/search", "ray_mlops/train", "benchmarks/tune_efficiency.py"],
        ),
        "setup": {
            "search": "ray-mlops run_search, random, no scheduler, one epoch on 256 rows",
            "trials_per_search": os.cpu_count(),
            "searches": args.searches,
        },
        "results": [
            {
                "case": "seconds from the call to the first result (median of searches)",
                "metric": "seconds",
                "higher_is_better": False,
                "baseline": {
                    "name": "plain process: import torch + first AdamW step, once per run",
                    "value": plain["total_s"],
                },
                "candidate": {"name": "ray-mlops search, fresh trial processes", "value": first},
                "ratio": first / plain["total_s"],
            }
        ],
        "trial_process_import_s_median": imports,
        "trial_process_other_s_median": not_imports,
        "trial_processes_in_pre_started_workers": sum(p["pre_started_worker"] for p in processes),
        "trial_processes": len(processes),
        "plain_process": plain,
        "searches": searches,
    }
    emit(rounded(document), args.out)


if __name__ == "__main__":
    main()
