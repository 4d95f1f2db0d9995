"""How fast the audit trail is checked and written: ``ray-mlops audit verify`` of 1M records.

Issue 28's goal: ``audit verify`` of 1,000,000 records in under 10 s. Each side runs as a user
runs it, as a fresh process timed from start to exit, on the same log:

- candidate: ``ray-mlops audit verify`` in the workspace that holds the log (it slices and
  hashes each line and reads ``seq`` and ``prev_hash`` with an anchored regular expression,
  never re-serialising JSON);
- baseline: ``baselines/audit_chain.py``, the check a user writes in Python (``json.loads``
  each line, ``json.dumps(sort_keys=True)`` to re-hash it, ``hashlib.sha256``), never
  importing ray_mlops;
- start-up, reported apart: ``python -c pass``.

The log is written once with the records ``AuditLog.append`` writes (the same
``AuditRecord`` code, in one buffered write rather than one locked, fsynced append each:
a million fsyncs would take the better part of an hour), with a mix of actions, actors,
targets, reasons and details like a busy workspace's. Both sides must report the same count
on the intact log and name the same record on a copy with one record edited (``same_work``).
Also measured: the cost of one ``AuditLog.append`` to a local log (lock, tail read, write,
fsync, head marker), on a new log and on the 1M-record one.

Usage:
    python benchmarks/audit_verify.py --out benchmarks/results/audit_verify-cpu2.json
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

GOAL_S = 10.0
BASELINE = ROOT / "baselines" / "audit_chain.py"
MEASURES = ["ray_mlops/audit", "ray_mlops/audit_cli.py"]
_ACTIONS = [
    ("run.start", "ok"),
    ("run.end", "ok"),
    ("model.register", "ok"),
    ("model.promote", "ok"),
    ("model.promote", "refused"),
    ("alias.move", "ok"),
    ("serve.deploy", "ok"),
    ("key.create", "ok"),
    ("monitor.retrain", "failed"),
]


def write_log(folder: Path, records: int) -> None:
    """``records`` chained records and the head marker in ``folder`` (audit.jsonl, head.json)."""
    from ray_mlops.audit import AuditRecord
    from ray_mlops.audit._local import LocalStore, _write_head
    from ray_mlops.audit.chain import Head

    store = LocalStore(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prev, start = "0" * 64, 1_764_930_000
    with open(store.log_path, "wb", buffering=1 << 22) as log:
        for seq in range(records):
            action, outcome = _ACTIONS[seq % len(_ACTIONS)]
            version = seq // 50 + 1
            record = AuditRecord.create(
                seq,
                prev,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + seq * 3))
                + f".{seq % 1_000_000:06d}+00:00",
                ("alice", "bob", "ci-bot", "key:dashboard")[seq % 4],
                action,
                f"adult-income-{seq % 7}/v{version}",
                outcome,
                "champion better on the holdout by 0.012 roc_auc" if seq % 3 else "",
                {"run_id": f"{seq:032x}", "from_version": str(version - 1)} if seq % 2 else {},
            )
            log.write(record.line() + b"\n")
            prev = record.hash
    _write_head(store.head_path, Head(records - 1, prev))


def timed(command: list[str], cwd: Path, expect: str, code: int = 0) -> float:
    """Seconds from start to exit of ``command``; fails unless it exits ``code`` saying ``expect``."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    said = done.stdout + done.stderr
    if done.returncode != code or expect not in said:
        raise SystemExit(f"{' '.join(command)} (exit {done.returncode}):\n{said[-2000:]}")
    return elapsed


def same_work(workspace: Path, records: int) -> dict[str, Any]:
    """Both sides on the intact log and on a copy with one record edited: the same verdicts."""
    folder = workspace / ".ray-mlops" / "audit"
    edited = records // 2
    tampered = workspace.parent / "tampered"
    shutil.copytree(workspace, tampered)
    log = tampered / ".ray-mlops" / "audit" / "audit.jsonl"
    with open(log, "r+b") as f:
        lines = f.read().split(b"\n")
        lines[edited] = lines[edited].replace(b'"actor":"', b'"actor":"x', 1)
        f.seek(0)
        f.write(b"\n".join(lines))
    ours = [sys.executable, "-m", "ray_mlops", "audit", "verify"]
    base = [sys.executable, str(BASELINE)]
    intact = f"{records} records, chain intact"
    timed(ours, workspace, intact)
    timed([*base, str(folder)], workspace, intact)
    timed(ours, tampered, f"record {edited} (line {edited + 1}) was edited", code=7)
    timed([*base, str(tampered / ".ray-mlops" / "audit")], tampered, f"record {edited} ", code=1)
    shutil.rmtree(tampered)
    return {
        f"both report {records} records, chain intact": True,
        f"both name record {edited} as edited on a copy with its actor changed": True,
    }


def append_costs(folder: Path, appends: int) -> list[float]:
    """Milliseconds per ``AuditLog.append`` over ``appends`` appends to the log in ``folder``."""
    from ray_mlops.audit import actions, audit_log

    log = audit_log(folder)
    started = time.perf_counter()
    for i in range(appends):
        log.append(
            action=actions.PROMOTE,
            target=f"adult-income/v{i}",
            reason="better on the holdout",
            actor="bench",
            details={"from_version": str(i)},
        )
    return [(time.perf_counter() - started) * 1000 / appends]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--appends", type=int, default=500, help="per append measurement")
    parser.add_argument("--quick", action="store_true", help="200,000 records, 100 appends")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.records, args.appends = 200_000, 100
    scratch = Path(tempfile.mkdtemp(prefix="audit-verify-"))
    try:
        workspace = scratch / "workspace"
        folder = workspace / ".ray-mlops" / "audit"
        started = time.perf_counter()
        write_log(folder, args.records)
        written_s = time.perf_counter() - started
        log_bytes = (folder / "audit.jsonl").stat().st_size
        checks = same_work(workspace, args.records)
        long_log = scratch / "appended"  # a copy: the verified log keeps its count
        shutil.copytree(folder, long_log)
        intact = f"{args.records} records, chain intact"
        ours = [sys.executable, "-m", "ray_mlops", "audit"]
        sides: dict[str, Any] = {
            "python -c pass": lambda: timed([sys.executable, "-c", "pass"], scratch, ""),
            "ray-mlops audit --help": lambda: timed([*ours, "--help"], workspace, "verify"),
            "candidate": lambda: timed([*ours, "verify"], workspace, intact),
            "baseline": lambda: timed(
                [sys.executable, str(BASELINE), str(folder)], workspace, intact
            ),
            "append, new log": lambda: append_costs(
                scratch / f"new-{time.time_ns()}", args.appends
            )[0],
            "append, long log": lambda: append_costs(long_log, args.appends)[0],
        }
        timings = interleaved(args.repetitions, sides)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    startup = summary(timings["python -c pass"])["median"]
    comparison = compare(timings["candidate"], timings["baseline"], higher_is_better=False)
    ours_s, base_s = comparison["ours"], comparison["baseline"]
    per_million = ours_s["median"] * 1_000_000 / args.records
    cli_start = summary(timings["ray-mlops audit --help"])["median"]
    fresh, big = summary(timings["append, new log"]), summary(timings["append, long log"])
    goals = [
        goal(
            f"`ray-mlops audit verify` of {args.records:,} records, a fresh process, start to exit",
            ours_s["median"],
            "<=",
            GOAL_S * args.records / 1_000_000,
            unit="s",
            detail=(
                f"median of {args.repetitions} interleaved: {ours_s['median']:.2f} s "
                f"({ours_s['min']:.2f}-{ours_s['max']:.2f}; {log_bytes / 2**20:.0f} MiB) vs a "
                f"json.loads/json.dumps/sha256 script {base_s['median']:.2f} s "
                f"({base_s['min']:.2f}-{base_s['max']:.2f}): {comparison['speedup']:.2f}x faster, "
                f"paired {comparison['speedup_paired']:.2f}x; start-up apart (`audit --help` "
                f"{cli_start:.2f} s, interpreter {startup:.2f} s): {ours_s['median'] - cli_start:.2f}"
                f" s vs {base_s['median'] - startup:.2f} s; "
                f"append {fresh['median']:.2f} ms per record (fsync included), "
                f"{big['median']:.2f} ms on the {args.records:,}-record log"
            ),
        )
    ]
    document = {
        **header("audit_verify", measures=MEASURES),
        "setup": {
            "records": args.records,
            "log_bytes": log_bytes,
            "log_written_s": written_s,
            "repetitions": args.repetitions,
            "appends_per_measurement": args.appends,
            "interleaved": True,
            "python_startup_s": summary(timings["python -c pass"]),
            "cli_startup_s": summary(timings["ray-mlops audit --help"]),
        },
        "same_work": checks,
        "results": [
            {"case": "audit verify", "metric": "seconds, process start to exit", **comparison},
            {"case": "verify, seconds per 1M records", "value": per_million},
            {"case": "append, new log", "metric": "ms per record", **fresh},
            {"case": f"append, {args.records:,}-record log", "metric": "ms per record", **big},
        ],
        "goals": goals,
        "timings": timings,
    }
    emit(rounded(document), args.out)


if __name__ == "__main__":
    main()
