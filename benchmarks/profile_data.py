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
from profile_train import SPY, cpu_by_process, machine_cpu
from serve_load import collapsed_profile


def by_process(raw: str) -> dict[str, float]:
    """Shares of samples by the process frame py-spy puts first with ``--subprocesses``."""
    counts: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        first = stack.split(";", 1)[0]
        title = first.split('"')[1] if first.startswith("process") and '"' in first else "python"
        title = title.split(" ", 1)[0][:80]  # ray::MapBatches(...) or the script's path
        counts[title] = counts.get(title, 0) + int(count)
    total = max(sum(counts.values()), 1)
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:15]}


def findings(document: dict[str, Any]) -> list[str]:
    """The profile in sentences, built from its numbers (the READMEs render them)."""
    stages = document["stages_s"]
    total = sum(stages.values()) or 1.0
    ours = [
        f"{name.split(' (')[0]} {share:.0%}"
        for name, share in document["profile"]["inclusive"].items()
        if "ray_mlops/" in name
    ][:6]
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
    before = machine_cpu()
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
        "cpu_s_by_process": cpu_by_process(before, machine_cpu()),
        "samples_by_process": by_process(raw),
        "profile": collapsed_profile(raw, top=40),
    }
    document["findings"] = findings(document)
    emit(rounded(document), args.out)
    print(json.dumps(document["stages_s"]), json.dumps(document["samples_by_process"])[:600])


if __name__ == "__main__":
    main()
