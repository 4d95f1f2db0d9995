"""Run one side of a benchmark in its own process: wall time, peak memory, a memory cap.

A baseline that holds everything in memory (pandas, eager polars) may outgrow the machine at
the large sizes; the issue asks to record that, not to let the kernel's OOM killer pick a
victim among the other processes here. So the child's process tree is polled, its peak
memory kept (proportional set size, PSS, summed over the tree: shared pages such as Ray's
object store in /dev/shm count once, not once per process that maps them), and the tree killed once it passes
``cap_gib``: the result then says ``out_of_memory``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class ProcessResult:
    """What one run of a side gave: its exit, its clock, its memory and its JSON answer."""

    returncode: int
    wall_s: float
    peak_rss_gib: float
    out_of_memory: bool
    timed_out: bool
    answer: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the side finished by itself and answered."""
        return self.returncode == 0 and not self.out_of_memory and not self.timed_out


def tree_rss(process: psutil.Process) -> int:
    """Proportional set size (RSS where PSS is unknown) of a process and its descendants."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            info = member.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:
            continue
    return total


def run_side(
    argv: Sequence[str],
    *,
    cap_gib: float | None = None,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    poll_s: float = 0.1,
) -> ProcessResult:
    """Run ``argv``; its last stdout line that parses as a JSON object is its answer."""
    started = time.perf_counter()
    child = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,  # one process group: the cap kills the whole tree
    )
    watched = psutil.Process(child.pid)
    peak = 0
    out_of_memory = timed_out = False
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak, out_of_memory, timed_out
        while not stop.is_set():
            rss = tree_rss(watched)
            peak = max(peak, rss)
            if cap_gib is not None and rss > cap_gib * 2**30:
                out_of_memory = True
                kill_group(child.pid)
                return
            if timeout_s is not None and time.perf_counter() - started > timeout_s:
                timed_out = True
                kill_group(child.pid)
                return
            stop.wait(poll_s)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    answer: dict[str, Any] = {}
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                answer = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    return ProcessResult(
        returncode=child.returncode,
        wall_s=wall,
        peak_rss_gib=peak / 2**30,
        out_of_memory=out_of_memory,
        timed_out=timed_out,
        answer=answer,
        stderr_tail=stderr[-2000:],
    )


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid``, if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def python(*args: str) -> list[str]:
    """The argv of this interpreter running ``args``."""
    return [sys.executable, *args]
