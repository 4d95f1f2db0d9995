"""Where ray-mlops' data preparation spends its time: a py-spy profile of every process.

A profile for ``data_prep.py``'s gap to polars, not a benchmark with a goal. It runs
data_prep's ray-mlops side (``prepare_data`` + fit + encode, on a local Ray with every CPU)
once on ``--rows`` synthetic rows, with py-spy recording the driver and every process under
it (``--subprocesses``: the raylet's Ray Data workers), and writes:

- the stages' seconds (from the side's own answer) and CPU seconds by process;
- the shares of on-CPU Python samples by function (inclusive and self), over all processes,
  and by process title (driver, ``ray::MapBatches(...)`` workers, ...).

Usage:
    python benchmarks/profile_data.py --out benchmarks/results/profiles/data_prep-cpu2.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit, header, rounded
from data_prep import DATA_HOME, OURS, SCRATCH, ensure_data, side_argv
from profile_train import SPY, CpuWatch
from serve_load import collapsed_profile


def _stacks(raw: str) -> list[tuple[list[str], int]]:
    """py-spy's collapsed stacks: frames (outermost first) and sample counts."""
    found = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            found.append((stack.split(";"), int(count)))
    return found


def by_process(raw: str, labels: dict[int, str] | None = None) -> dict[str, float]:
    """Shares of samples by process. With ``--subprocesses`` py-spy starts each stack with the
    chain of processes (``process PID:"command"``); the last one ran the code. ``labels``
    names a pid (Ray's process titles, from the CPU watch)."""
    counts: dict[str, int] = {}
    for frames, n in _stacks(raw):
        processes = [f for f in frames if f.startswith("process ")]
        if processes:
            pid = int(processes[-1].split(":", 1)[0].split()[1])
            command = processes[-1].split('"')[1] if '"' in processes[-1] else "?"
            parts = command.split() or ["?"]
            program = Path(parts[0]).name
            if program.startswith("python") and len(parts) > 1:
                program = Path(parts[1]).name  # the script: data_prep.py, default_worker.py
            title = (labels or {}).get(pid) or program
        else:
            title = "python"
        counts[title[:80]] = counts.get(title[:80], 0) + n
    total = max(sum(counts.values()), 1)
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:15]}


def ours_by_function(raw: str, top: int = 10) -> dict[str, float]:
    """Shares of all samples in each ray_mlops function (inclusive), largest first."""
    counts: dict[str, int] = {}
    total = 0
    for frames, n in _stacks(raw):
        total += n
        for frame in {f for f in frames if "ray_mlops/" in f}:
            name = frame.split(" (")[0] + " (" + frame.split("ray_mlops/", 1)[1].split(":")[0] + ")"
            counts[name] = counts.get(name, 0) + n
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return {k: v / max(total, 1) for k, v in ranked}


def findings(document: dict[str, Any]) -> list[str]:
    """The profile in sentences, built from its numbers (the READMEs render them)."""
    stages = document["stages_s"]
    total = sum(stages.values()) or 1.0
    ours = [f"{name} {share:.0%}" for name, share in document["ray_mlops_functions"].items()][:6]
    processes = [f"{k} {v:.0%}" for k, v in list(document["samples_by_process"].items())[:4]]
    return [
        f"{document['rows']:,} rows in {document['seconds']:.1f} s: "
        + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in stages.items()),
        "samples by process: " + ", ".join(processes),
        "ray-mlops functions by share of all samples (inclusive): " + ", ".join(ours),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    folder = ensure_data(args.rows)
    trace = DATA_HOME / f"py-spy-data-{args.rows}.txt"
    with CpuWatch() as watch:
        began = time.perf_counter()
        side = subprocess.Popen(side_argv(OURS, folder), stdout=subprocess.PIPE, text=True)
        spy = subprocess.Popen(
            [str(SPY), "record", "-p", str(side.pid), "--subprocesses", "--nonblocking",
             "-r", "50", "-f", "raw", "-o", str(trace)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = side.communicate(timeout=1800)
        wall = time.perf_counter() - began
        spy.wait(timeout=120)
    if side.returncode != 0:
        sys.exit(f"the ray-mlops side failed ({side.returncode})")
    answer = json.loads(out.strip().splitlines()[-1])
    raw = trace.read_text() if trace.exists() else ""
    document = header(
        "profile_data",
        "ray",
        "pyarrow",
        measures=["ray_mlops/data", "ray_mlops/features", "ray_mlops/train/encode.py"],
    )
    document |= {
        "setup": f"data_prep's ray-mlops side, {args.rows:,} rows, py-spy at 50 Hz on the "
        "driver and every process under it (Python frames only)",
        "rows": args.rows,
        "wall_s": wall,
        "seconds": answer["seconds"],
        "stages_s": answer["stages"],
        "cpu_s_by_process": watch.by_process(),
        "samples_by_process": by_process(
            raw, {pid: label for pid, (label, _) in watch.last.items()}
        ),
        "ray_mlops_functions": ours_by_function(raw),
        "profile": collapsed_profile(raw, top=40),
    }
    document["findings"] = findings(document)
    emit(rounded(document), args.out)
    print(json.dumps(document["stages_s"]), json.dumps(document["samples_by_process"])[:600])


if __name__ == "__main__":
    main()
