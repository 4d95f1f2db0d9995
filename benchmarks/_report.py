"""What every benchmark's JSON document shares: the header, statistics, goals, curves.

Not a benchmark itself (``make bench`` skips files whose name starts with ``_``). The rules
these helpers serve are at the top of ``benchmarks/README.md``:

- ``header`` records the commit measured and the code paths the benchmark measures
  (``measures``), so ``make bench-stale`` can list results older than that code;
- ``interleaved`` runs every side once per repetition, in a rotating order, so a slow minute
  of the machine falls on all sides alike;
- ``summary`` and ``compare`` give medians with min-max, the ratio of medians and the median
  of per-repetition (or per-seed) ratios;
- ``goal`` and ``curve`` are what ``benchmarks/figures.py`` turns into the README's tables
  and plots: figures are never typed by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def header(benchmark: str, *packages: str, measures: Sequence[str] = ()) -> dict[str, Any]:
    """Name, date, commit, machine, versions of ``packages`` and Python, code measured.

    ``measures`` lists the paths (relative to the repository root) whose changes make this
    result stale; the benchmark's own script is always among them.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = "not installed"
    script = f"benchmarks/{benchmark.split('-')[0]}.py"
    paths = sorted({*measures, *([script] if (ROOT / script).exists() else [])})
    return {
        "benchmark": benchmark,
        "date": dt.date.today().isoformat(),
        "commit": measured_commit(),
        "machine": machine(),
        "versions": versions | {"python": platform.python_version()},
        "measures": paths,
        "code_fingerprint": code_fingerprint(paths),
    }


def _git(*args: str, stdin: str | None = None, root: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=False, input=stdin
    ).stdout.strip()


def code_fingerprint(paths: Sequence[str], revision: str | None = None, root: Path = ROOT) -> str:
    """One hash of the git blobs under ``paths``: in the work tree, or at ``revision``.

    A result is current while the code it measured is unchanged, whatever was committed
    around it: ``benchmarks/stale.py`` compares this hash, taken when the benchmark ran
    (uncommitted edits included), with the same hash at ``HEAD``.
    """
    if not paths:
        return ""
    if revision:
        listing = _git("ls-tree", "-r", revision, "--", *paths, root=root)
        blobs = sorted(
            f"{line.split(chr(9), 1)[1]} {line.split()[2]}" for line in listing.splitlines()
        )
    else:
        listed = _git(
            "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths, root=root
        )
        files = sorted(set(listed.split()))
        files = [f for f in files if (root / f).is_file()]
        hashes = _git("hash-object", "--stdin-paths", stdin="\n".join(files), root=root).split()
        blobs = [f"{f} {h}" for f, h in zip(files, hashes, strict=True)]
    return hashlib.sha256("\n".join(blobs).encode()).hexdigest()[:16]


def machine() -> str:
    """CPUs, architecture, memory and, when torch sees one, the GPU."""
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{os.cpu_count()} cpu, {platform.machine()}{memory}"


def measured_commit() -> str:
    """The commit of the code measured, with ``+dirty`` when the work tree has changes."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{commit}+dirty" if _git("status", "--porcelain", "--untracked-files=no") else commit


def interleaved(
    repetitions: int,
    sides: dict[str, Callable[[], T]],
    on_result: Callable[..., None] | None = None,
) -> dict[str, list[T]]:
    """Run each side once per repetition, the order rotated each time; results per side.

    ``on_result(repetition, side, result)`` is called after each run (progress, partial
    writes).
    """
    names = list(sides)
    results: dict[str, list[T]] = {name: [] for name in names}
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            result = sides[name]()
            results[name].append(result)
            if on_result:
                on_result(repetition, name, result)
    return results


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median with min, max, count and the values themselves."""
    clean = [float(v) for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
        "values": clean,
    }


def compare(
    ours: Sequence[float], baseline: Sequence[float], *, higher_is_better: bool
) -> dict[str, Any]:
    """Both sides summarised, the ratio of medians and the median of paired ratios.

    The ratio is always ours / baseline in the metric's own unit; ``speedup`` is oriented so
    that above 1 means ray-mlops is better (throughput ratio, or baseline time / our time).
    Paired ratios pair the i-th value of each side (same repetition or same seed).
    """
    a, b = summary(ours), summary(baseline)
    pairs = [(x, y) for x, y in zip(ours, baseline, strict=False) if x and y]
    paired = [x / y for x, y in pairs]
    ratio = a["median"] / b["median"] if a["median"] and b["median"] else None
    paired_median = statistics.median(paired) if paired else None

    def oriented(value: float | None) -> float | None:
        if value is None:
            return None
        return value if higher_is_better else 1 / value

    return {
        "ours": a,
        "baseline": b,
        "higher_is_better": higher_is_better,
        "ratio_of_medians": ratio,
        "median_of_paired_ratios": paired_median,
        "paired_ratios": paired,
        "speedup": oriented(ratio),
        "speedup_paired": oriented(paired_median),
    }


def goal(
    claim: str,
    value: float | None,
    op: str,
    target: float,
    *,
    unit: str = "x",
    detail: str = "",
) -> dict[str, Any]:
    """One goal of the issue, judged from the measured ``value`` (``op`` is '>=' or '<=')."""
    if op not in (">=", "<="):
        raise ValueError(f"goal {claim!r}: op must be '>=' or '<=', not {op!r}")
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    return {
        "claim": claim,
        "value": value,
        "op": op,
        "target": target,
        "unit": unit,
        "met": met,
        "detail": detail,
    }


def curve(
    name: str,
    x_label: str,
    y_label: str,
    x: Sequence[float],
    series: dict[str, Sequence[float | None]],
    *,
    log_x: bool = False,
    log_y: bool = False,
) -> dict[str, Any]:
    """A scaling curve that ``benchmarks/figures.py`` draws as a PNG beside the JSON."""
    for label, ys in series.items():
        if len(ys) != len(x):
            raise ValueError(f"curve {name!r}: series {label!r} has {len(ys)} points, x {len(x)}")
    return {
        "name": name,
        "x_label": x_label,
        "y_label": y_label,
        "x": list(x),
        "series": {k: list(v) for k, v in series.items()},
        "log_x": log_x,
        "log_y": log_y,
    }


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded to ``digits`` significant places after the point, through dicts and lists."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def emit(document: dict[str, Any], out: Path | None) -> None:
    """Print the document as JSON and, with ``out``, write it there whole (folders made).

    Written to a temporary name and renamed, so an interrupted run leaves no half file.
    """
    text = json.dumps(document, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(out.suffix + ".partial")
        partial.write_text(text + "\n")
        partial.replace(out)
    print(text)
