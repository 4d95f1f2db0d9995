"""Locations of a run's files: a local folder, a shared mount, or an object store URI. Ray-free.

A location is a string: an absolute path (``/srv/shared/ray-mlops``) or a URI
(``s3://bucket/prefix``, ``gs://bucket/prefix``). pyarrow's filesystems open both, the way Ray
Train, Tune and Data do, so S3-compatible stores work through the standard AWS variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` ...) with nothing configured here.

Example:
    >>> join("s3://bucket/prefix", "quarantine", "0a1b")
    's3://bucket/prefix/quarantine/0a1b'
    >>> is_object_store("/srv/shared")
    False
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from ray_mlops.errors import ConfigError

__all__ = [
    "OBJECT_STORE_SCHEMES",
    "fetch_directory",
    "is_object_store",
    "join",
    "location_of",
    "open_location",
    "scheme_of",
]

# What pyarrow (and so Ray Train, Tune and Data) opens besides local paths.
OBJECT_STORE_SCHEMES = frozenset({"s3", "gs", "gcs", "abfs", "abfss", "hdfs"})


def scheme_of(location: str) -> str:
    """The URI scheme of ``location``, ``""`` for a plain path (``file://`` counts as one)."""
    if "://" not in location:
        return ""
    scheme = urlparse(location).scheme.lower()
    return "" if scheme == "file" else scheme


def is_object_store(location: str) -> bool:
    """Whether ``location`` is an object store URI rather than a folder."""
    return scheme_of(location) != ""


def check_location(location: str, setting: str) -> str:
    """``location`` if ray-mlops can write there, else a ConfigError naming ``setting``."""
    scheme = scheme_of(location)
    if scheme and scheme not in OBJECT_STORE_SCHEMES:
        raise ConfigError(
            f"{setting}: {location!r} has the scheme {scheme}://, which ray-mlops cannot "
            f"write to; use a folder, s3://bucket/prefix or gs://bucket/prefix"
        )
    if scheme and not urlparse(location).netloc:
        raise ConfigError(f"{setting}: {location!r} names no bucket (e.g. s3://my-bucket/prefix)")
    return location


def join(location: str, *parts: str) -> str:
    """``location`` with ``parts`` appended, as a path or URI of the same kind."""
    if not parts:
        return location
    if is_object_store(location):
        return "/".join([location.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(location, *parts))


def open_location(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``location`` and the path inside it.

    Raises:
        ConfigError: pyarrow cannot open the URI (unknown scheme, no credentials library).
    """
    if not is_object_store(location):
        local = location.removeprefix("file://")
        return pafs.LocalFileSystem(), str(Path(local).expanduser())
    try:
        return pafs.FileSystem.from_uri(location)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot open {location}: {exc}") from None


def location_of(filesystem: pafs.FileSystem, path: str) -> str:
    """The location (path or URI) of ``path`` on ``filesystem``, as Ray reports checkpoints.

    Ray's ``Checkpoint.path`` of an object store has no scheme (``bucket/key``); this puts it
    back, so the location can be opened anywhere.
    """
    kind = filesystem.type_name
    if kind == "local":
        return path
    scheme = {"gcs": "gs"}.get(kind, kind)
    return f"{scheme}://{path.lstrip('/')}"


@contextlib.contextmanager
def fetch_directory(location: str) -> Iterator[Path]:
    """A local folder holding what ``location`` holds: the folder itself, or a copy of an
    object store prefix, removed on exit."""
    if not is_object_store(location):
        yield Path(location.removeprefix("file://"))
        return
    with tempfile.TemporaryDirectory(prefix="ray-mlops-fetch-") as tmp:
        filesystem, path = open_location(location)
        pafs.copy_files(path, tmp, source_filesystem=filesystem)
        yield Path(tmp)
