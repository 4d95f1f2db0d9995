"""Where data comes from: resolving the config's path and choosing a reader. Ray-free."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Literal

from ray_mlops.errors import DataError

SourceFormat = Literal["csv", "parquet", "json"]
_SUFFIXES: dict[str, SourceFormat] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".jsonl.gz": "json",
    ".json": "json",
}


def resolve_source(path: str, base_dir: Path) -> str:
    """An absolute path (relative ones are taken from ``base_dir``) or the URI unchanged.

    Raises:
        DataError: a local path, folder or glob that matches nothing.
    """
    if "://" in path:
        return path
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = (base_dir / resolved).resolve()
    if not glob.glob(str(resolved)):
        raise DataError(f"data file not found: {path} (looked for {resolved})")
    return str(resolved)


def source_format(path: str) -> SourceFormat:
    """The reader for a path, from its suffix (a folder or glob takes its files' suffix)."""
    name = path.lower().rstrip("/")
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    local = Path(path)
    if local.is_dir():
        for child in sorted(local.iterdir()):
            if child.is_file() and not child.name.startswith((".", "_")):
                return source_format(str(child))
    raise DataError(
        f"cannot tell the format of {path}: expected one of {', '.join(sorted(_SUFFIXES))}"
    )
