"""The local cluster's processes: known by pid and start time, found through their cgroup,
stopped by pid.

A process is identified by its pid together with its start time (field 22 of
``/proc/PID/stat``), so a pid the kernel has given to another process since is never signalled.
Signals go through a pidfd opened before that check, which closes the remaining race.

"Every process of a component" must include those that escaped their parent: stopping
``ray start --block`` by its process group left a namespaced node's raylet running. Each
component starts in a cgroup of its own (cgroup v2, no controllers: only to keep track), which
every process it starts stays in, whoever its parent is now; worker nodes add the processes of
their network namespace. Two things that look simpler fail: an environment mark (PostgreSQL
and Ray's workers overwrite it with their process titles), and a namespace id (the kernel gives
a freed namespace's id to the next new one at once, measured here: a stopped component's
recorded id can name another cluster's namespace).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

# Stop signals by name, as the state file stores them.
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}
# Under the cgroup v2 hierarchy: one folder per cluster, one per started component in it.
CGROUP_TOP = "ray-mlops-local-cluster"


class ProcessError(RuntimeError):
    """The machine cannot keep track of the cluster's processes."""


@dataclass
class Proc:
    """One started component: its root process and how to find the rest of it."""

    name: str
    pid: int
    start_time: int
    pgid: int
    cgroup: str  # the cgroup folder its processes are in
    argv: list[str]
    log: str
    netns: str | None = None
    stop_signal: str = "SIGTERM"  # the graceful one; SIGKILL follows after a grace period
    # Whether the graceful signal goes to every process or to the root only. `ray start
    # --block` stops its node best itself (2 s; all at once took 10 s), while `mlflow server`
    # dies at once and leaves its uvicorn workers to wait out the grace period.
    signal_all: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Proc:
        return cls(**data)  # type: ignore[arg-type]


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` while it runs (not a zombie), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def is_alive(proc: Proc) -> bool:
    """Whether ``proc``'s root process is still the one that was started, and running."""
    return start_time(proc.pid) == proc.start_time


def cgroup_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or ``.../unified``).

    Raises:
        ProcessError: there is none.
    """
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    raise ProcessError("no cgroup v2 hierarchy mounted: it keeps track of the cluster's processes")


def new_cluster_cgroup(prefix: str) -> Path:
    """A fresh, empty cgroup folder for one cluster."""
    folder = cgroup_root() / CGROUP_TOP / f"{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True)
    except OSError as error:
        raise ProcessError(f"cannot make cgroup {folder}: {error}") from None
    return folder


def remove_cgroup(folder: Path) -> None:
    """Remove an empty cgroup folder and, once empty, the cluster's and the top one above it."""
    for path in (folder, folder.parent, folder.parent.parent):
        if path.name and path != cgroup_root() and path.is_dir():
            try:
                path.rmdir()
            except OSError:
                return  # still in use (by another component or another cluster)


def spawn(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log: Path,
    cluster_cgroup: Path,
    *,
    netns: str | None = None,
    stop_signal: str = "SIGTERM",
    signal_all: bool = False,
) -> Proc:
    """Start ``argv`` in a session and a cgroup of its own, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cgroup = cluster_cgroup / f"{name}-{uuid.uuid4().hex[:8]}"
    cgroup.mkdir()
    procs_file = str(cgroup / "cgroup.procs")

    def enter_cgroup() -> None:  # in the child, before exec: nothing it starts escapes
        with open(procs_file, "w") as handle:
            handle.write("0")

    with log.open("ab") as output:
        child = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            preexec_fn=enter_cgroup,
        )
    started = start_time(child.pid)
    # The child outlives this command: mark it as handled so that Popen never waits for it.
    child.returncode = 0
    return Proc(
        name,
        child.pid,
        -1 if started is None else started,  # gone already: is_alive() says so
        child.pid,
        str(cgroup),
        argv,
        str(log),
        netns=netns,
        stop_signal=stop_signal,
        signal_all=signal_all,
    )


def members(proc: Proc, namespace_pids: Callable[[str], set[int]]) -> dict[int, int]:
    """Every running process of ``proc``: pid -> start time.

    Args:
        proc: the component.
        namespace_pids: the pids of a network namespace by name (``ip netns pids``).
    """
    try:
        found = {int(pid) for pid in Path(proc.cgroup, "cgroup.procs").read_text().split()}
    except FileNotFoundError:
        found = set()
    if proc.netns:
        found |= namespace_pids(proc.netns)
    started = {pid: start_time(pid) for pid in found}
    return {pid: value for pid, value in started.items() if value is not None}


def send(targets: dict[int, int], sig: int) -> int:
    """Signal each pid of ``targets`` that still has its recorded start time; how many were."""
    sent = 0
    for pid, started in targets.items():
        try:
            handle = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if start_time(pid) == started:
                signal.pidfd_send_signal(handle, sig)
                sent += 1
        except ProcessLookupError:
            pass
        finally:
            os.close(handle)
    return sent


def stop(
    procs: Iterable[Proc],
    namespace_pids: Callable[[str], set[int]],
    grace_s: float = 10.0,
    *,
    force: bool = False,
) -> list[str]:
    """Stop every process of ``procs`` together: each one's graceful signal, SIGKILL to what
    is left after ``grace_s`` (at once with ``force``). Returns what survived, if anything.
    """
    procs = list(procs)
    if not force:
        for proc in procs:
            targets = (
                members(proc, namespace_pids) if proc.signal_all else {proc.pid: proc.start_time}
            )
            send(targets, SIGNALS[proc.stop_signal])
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(members(p, namespace_pids) for p in procs):
            time.sleep(0.2)
    deadline = time.monotonic() + 10.0
    while True:
        left = {proc.name: members(proc, namespace_pids) for proc in procs}
        if not any(left.values()) or time.monotonic() > deadline:
            break
        for targets in left.values():
            send(targets, signal.SIGKILL)
        time.sleep(0.1)
    return [f"{name}: pids {sorted(pids)}" for name, pids in left.items() if pids]
