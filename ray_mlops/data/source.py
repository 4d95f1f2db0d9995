"""Where data comes from: a file, folder or glob; a local path or a URI. Ray-free.

URIs (``s3://``, ``gs://``, ``file://`` ...) go through pyarrow filesystems, so globs and
folders behave the same on a laptop and against object storage.
"""

from __future__ import annotations

import fnmatch
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow.fs as pafs

from ray_mlops.errors import DataError
from ray_mlops.secrets import redact_text, redact_uri

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
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class DataSource:
    """Resolved input files, the filesystem holding them, and their format."""

    uri: str
    files: list[str]
    filesystem: pafs.FileSystem | None
    format: SourceFormat


def resolve_source(path: str, base_dir: Path) -> DataSource:
    """Expand the configured path into the files to read.

    Args:
        path: A file, folder or glob; relative local paths are taken from ``base_dir``.
        base_dir: The config file's folder.

    Raises:
        DataError: nothing matches, or the format cannot be told from the file names.
    """
    if "://" in path:
        return _resolve_uri(path)
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = (base_dir / resolved).resolve()
    if resolved.is_dir():
        files = sorted(str(p) for p in resolved.rglob("*") if _is_data_file(p.name) and p.is_file())
    else:
        files = sorted(glob.glob(str(resolved)))
    if not files:
        raise DataError(f"data file not found: {path} (looked for {resolved})")
    return DataSource(str(resolved), files, None, _common_format(files, path))


def _resolve_uri(uri: str) -> DataSource:
    prefix = _glob_free_prefix(uri)
    try:
        filesystem, root = pafs.FileSystem.from_uri(prefix)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot open {redact_uri(uri)}: {redact_text(str(exc))}") from None
    pattern = root + uri[len(prefix) :] if prefix != uri else None
    info = filesystem.get_file_info(root)
    files: list[str] = []
    if info.type == pafs.FileType.File and pattern is None:
        files = [root]
    elif info.type == pafs.FileType.Directory:
        selector = pafs.FileSelector(root, recursive=True)
        listed = [
            i.path for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.File
        ]
        files = sorted(
            p
            for p in listed
            if (fnmatch.fnmatch(p, pattern) if pattern else _is_data_file(p.rsplit("/", 1)[-1]))
        )
    if not files:
        raise DataError(f"data file not found: {redact_uri(uri)}")
    return DataSource(uri, files, filesystem, _common_format(files, uri))


def _glob_free_prefix(uri: str) -> str:
    """The part of a URI before its first glob character, cut back to a folder."""
    cut = min((i for i, ch in enumerate(uri) if ch in _GLOB_CHARS), default=len(uri))
    if cut == len(uri):
        return uri
    return uri[:cut].rsplit("/", 1)[0]


def _is_data_file(name: str) -> bool:
    return not name.startswith((".", "_")) and _format_of(name) is not None


def _format_of(name: str) -> SourceFormat | None:
    lowered = name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return _SUFFIXES[suffix]
    return None


def _common_format(files: list[str], origin: str) -> SourceFormat:
    formats = {_format_of(f) for f in files}
    if None in formats or len(formats) != 1:
        found = sorted(str(f) for f in formats)
        raise DataError(
            f"{origin}: expected files of one format among {', '.join(sorted(_SUFFIXES))}; "
            f"found {', '.join(found)}"
        )
    return formats.pop()  # type: ignore[return-value]


def source_format(path: str) -> SourceFormat:
    """The reader for a file name, from its suffix."""
    found = _format_of(path)
    if found is None:
        raise DataError(
            f"cannot tell the format of {path}: expected one of {', '.join(sorted(_SUFFIXES))}"
        )
    return found
