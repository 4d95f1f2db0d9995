"""What every benchmark's JSON document shares: the header, rounding, where it is written.

Not a benchmark itself (``make bench`` skips files whose name starts with ``_``).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def header(benchmark: str, *packages: str) -> dict[str, Any]:
    """Name, date, commit, machine, and the versions of ``packages`` and Python."""
    versions = {name: importlib.import_module(name).__version__ for name in packages}
    return {
        "benchmark": benchmark,
        "date": dt.date.today().isoformat(),
        "commit": measured_commit(),
        "machine": f"{os.cpu_count()} cpu, {platform.machine()}",
        "versions": versions | {"python": platform.python_version()},
    }


def measured_commit() -> str:
    """The commit of the code measured, with ``+dirty`` when the work tree has changes."""
    root = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{commit}+dirty" if git("status", "--porcelain", "--untracked-files=no") else commit


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded to ``digits`` places, through dicts and lists."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def emit(document: dict[str, Any], out: Path | None) -> None:
    """Print the document as JSON and, with ``out``, write it there (folders made)."""
    text = json.dumps(document, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
