"""Where training throughput goes: ray-mlops' Ray Train worker against the plain torch loop.

A profile for ``train_throughput.py``'s CPU gap, not a benchmark with a goal. Both sides
train the same data as there (``--rows`` random rows, the same MLP and batch) for
``--epochs`` epochs, one after the other on an otherwise idle machine, and for each side:

- CPU seconds of every process on the machine over the side's run, by process (Ray's
  daemons, the train worker, the plain loop), so a share taken by something other than
  the training process shows;
- a py-spy profile (``--nonblocking``, 100 Hz, on-CPU samples) of the training process:
  the Ray Train worker (``ray::RayTrainWorker``) or the plain loop's process, with the
  shares of the training step (forward, backward, optimizer) and of everything else;
- the threads torch may use (``OMP_NUM_THREADS`` in the process's environment) and the
  samples/s of each epoch.

Usage:
    python benchmarks/profile_train.py --out benchmarks/results/profiles/train_worker-cpu2.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import python
from _report import emit, header, rounded
from serve_load import collapsed_profile, process_label
from train_throughput import (
    BASELINE,
    MEASURES,
    fingerprint,
    make_data,
    ours_side,
    to_ray,
    write_npy,
)

SPY = Path(sys.executable).parent / "py-spy"
STEP = ("forward", "backward", "optimizer")


def machine_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every process on the machine, by pid, with its label."""
    import psutil

    found: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter():
        try:
            times = proc.cpu_times()
            found[proc.pid] = (process_label(proc), times.user + times.system)
        except psutil.Error:
            continue
    return found


def cpu_by_process(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds spent between two snapshots, summed by label, largest first (>= 0.05 s)."""
    totals: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        spent = seconds - before.get(pid, (label, 0.0))[1]
        totals[label] = totals.get(label, 0.0) + spent
    return dict(sorted(((k, v) for k, v in totals.items() if v >= 0.05), key=lambda kv: -kv[1]))


class CpuWatch:
    """CPU seconds of every process on the machine while the block runs, sampled every
    ``interval_s``: a process that starts and ends inside the block (the plain loop, the Ray
    Train worker) is counted up to its last sample, which two snapshots would miss."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.first: dict[int, tuple[str, float]] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuWatch:
        self.first = machine_cpu()
        self.last = dict(self.first)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.last.update(machine_cpu())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.last.update(machine_cpu())

    def by_process(self) -> dict[str, float]:
        """CPU seconds spent in the block, summed by process label."""
        return cpu_by_process(self.first, self.last)


def step_share(profile: dict[str, Any], raw: str) -> dict[str, float]:
    """Shares of on-CPU samples in the forward pass, the backward pass (autograd), the
    optimizer (``torch/optim/``), and everything else (data, reporting, the loop itself)."""
    total, inside = 0, dict.fromkeys(STEP, 0)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        frames = stack.split(";")
        names = [frame.partition(" (")[0] for frame in frames]
        if any(
            "torch/autograd/" in f or n.endswith("backward")
            for f, n in zip(frames, names, strict=True)
        ):
            inside["backward"] += int(count)
        elif any("torch/optim/" in f for f in frames):
            inside["optimizer"] += int(count)
        elif any(n.endswith("forward") for n in names):
            inside["forward"] += int(count)
    shares = {k: v / max(total, 1) for k, v in inside.items()}
    return shares | {"everything else": 1.0 - sum(shares.values()), "samples": profile["samples"]}


class Spy:
    """py-spy on the first process whose command line holds ``marker``, until it exits."""

    def __init__(self, marker: str, out: Path) -> None:
        self.marker, self.out, self.pid, self.threads = marker, out, 0, 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        deadline = time.time() + 300
        while not self.pid and time.time() < deadline:
            for proc in psutil.process_iter(["cmdline"]):
                if self.marker in " ".join(proc.info["cmdline"] or []) and proc.pid != os.getpid():
                    self.pid = proc.pid
                    break
            time.sleep(0.05)
        if self.pid:
            spy = subprocess.Popen(
                [str(SPY), "record", "-p", str(self.pid), "-r", "100", "--nonblocking",
                 "-f", "raw", "-o", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            while spy.poll() is None:  # the most threads it ran (torch's pool among them)
                with contextlib.suppress(psutil.Error):
                    self.threads = max(self.threads, psutil.Process(self.pid).num_threads())
                time.sleep(0.25)

    def result(self) -> dict[str, Any]:
        self._thread.join(timeout=60)
        raw = self.out.read_text() if self.out.exists() else ""
        profile = collapsed_profile(raw, top=20)
        return {
            "pid": self.pid,
            "max_threads": self.threads,
            "training_step": step_share(profile, raw),
            "profile": profile,
        }


def findings(plain: dict[str, Any], ours: dict[str, Any], idle: dict[str, float]) -> list[str]:
    """The profile in sentences, built from its numbers (the READMEs render them)."""
    fast, slow = plain["epoch_samples_per_s"][-1], ours["last_epoch_samples_per_s"]
    worker = sum(v for k, v in ours["cpu_s_by_process"].items() if "RayTrainWorker" in k)
    others = sum(ours["cpu_s_by_process"].values()) - worker
    outside = {k: v["training_step"]["everything else"] for k, v in (("p", plain), ("o", ours))}
    top = [f"{name} {share:.0%}" for name, share in list(ours["profile"]["self"].items())[:3]]
    return [
        f"last epoch: ray-mlops {slow:,.0f} vs plain loop {fast:,.0f} samples/s ({slow / fast:.2f}x)",
        f"on-CPU samples outside forward, backward and the optimizer step: {outside['o']:.0%} in "
        f"the Ray Train worker vs {outside['p']:.0%} in the plain loop",
        f"CPU seconds during ray-mlops' run: the train worker {worker:.1f} s, every other process "
        f"{others:.1f} s; Ray idle: {sum(idle.values()):.2f} CPU-s per 10 s",
        f"threads at most: the train worker {ours['max_threads']}, the plain loop "
        f"{plain['max_threads']}",
        "the worker's busiest functions (self): " + ", ".join(top),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", default="512,512")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.device, args.validation_rows = "cpu", max(args.rows // 10, 1000)
    x_all, y_all = make_data(args.rows + args.validation_rows, args.features)
    x, y = x_all[: args.rows], y_all[: args.rows]
    val = (x_all[args.rows :], y_all[args.rows :])
    document = header(
        "profile_train", "ray", "torch", measures=[*MEASURES, "benchmarks/profile_train.py"]
    )
    with tempfile.TemporaryDirectory(prefix="train-profile-") as tmp:
        folder = Path(tmp)
        write_npy(folder, (x, y), val)
        argv = python(str(BASELINE), "--data", str(folder), "--device", "cpu",
                      "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                      "--hidden", args.hidden)  # fmt: skip
        spy = Spy(str(BASELINE), folder / "plain.txt")
        with CpuWatch() as watch:
            began = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            plain_wall = time.perf_counter() - began
        plain_cpu = watch.by_process()
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        plain = {"wall_s": plain_wall, "epoch_samples_per_s": answer["samples_per_s"],
                 "cpu_s_by_process": plain_cpu, **spy.result()}  # fmt: skip

        import ray

        from ray_mlops.compat.ray_core import local_node_options

        ray.init(include_dashboard=False, log_to_driver=False, **local_node_options())
        ray.data.DataContext.get_current().enable_progress_bars = False
        splits = (to_ray(x, y, 8), to_ray(*val, 8))
        time.sleep(5)  # let Ray's start-up work settle before the window opens
        idle_before = machine_cpu()
        time.sleep(10)
        idle = cpu_by_process(idle_before, machine_cpu())
        spy = Spy("RayTrainWorker", folder / "ours.txt")
        with CpuWatch() as watch:
            began = time.perf_counter()
            result = ours_side(
                splits, fingerprint(x, y), args, 1, float(os.cpu_count() or 2), "resident"
            )
            ours_wall = time.perf_counter() - began
        ours_cpu = watch.by_process()
        ours = {"wall_s": ours_wall, "last_epoch_samples_per_s": result["samples_per_s"],
                "cpu_s_by_process": ours_cpu, **spy.result()}  # fmt: skip
        ray.shutdown()
    document |= {
        "findings": findings(plain, ours, idle),
        "setup": f"{args.rows:,} rows x {args.features} features, MLP {args.hidden}, batch "
        f"{args.batch_size}, {args.epochs} epochs, one after the other on {os.cpu_count()} CPUs",
        "ray_idle_cpu_s_per_10s": idle,
        "plain": plain,
        "ray_mlops": ours,
    }
    emit(rounded(document), args.out)
    share = {
        k: v["training_step"]["everything else"] for k, v in (("plain", plain), ("ours", ours))
    }
    print(f"plain {plain['epoch_samples_per_s'][-1]:,.0f} vs ours {ours['last_epoch_samples_per_s']:,.0f} samples/s; "
          f"outside the step: {share}; Ray idle CPU per 10 s: {sum(idle.values()):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
