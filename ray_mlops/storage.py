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
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from ray_mlops.errors import ConfigError
from ray_mlops.secrets import redact_text, redact_uri

__all__ = [
    "OBJECT_STORE_SCHEMES",
    "RetryingS3FileSystem",
    "fetch_directory",
    "is_object_store",
    "join",
    "location_of",
    "open_location",
    "ray_storage",
    "scheme_of",
]

# What pyarrow (and so Ray Train, Tune and Data) opens besides local paths.
OBJECT_STORE_SCHEMES = frozenset({"s3", "gs", "gcs", "abfs", "abfss", "hdfs"})
# Attempts of one S3 request from Ray Train and Tune (checkpoints, trial state). Arrow's AWS
# retry doubles its wait from 25 ms, so 12 attempts ride out about 100 s of a store that
# refuses connections (a restart, a network blip); Arrow's default of 3 gives up within a
# second, and the checkpoint's upload fails the worker group.
S3_ATTEMPTS = 12


def scheme_of(location: str | os.PathLike[str]) -> str:
    """The URI scheme of ``location``, ``""`` for a plain path (``file://`` counts as one)."""
    location = os.fspath(location)
    if "://" not in location:
        return ""
    scheme = urlparse(location).scheme.lower()
    return "" if scheme == "file" else scheme


def is_object_store(location: str | os.PathLike[str]) -> bool:
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


def join(location: str | os.PathLike[str], *parts: str) -> str:
    """``location`` with ``parts`` appended, as a path or URI of the same kind."""
    location = os.fspath(location)
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
        raise ConfigError(f"cannot open {redact_uri(location)}: {redact_text(str(exc))}") from None


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


def ray_storage(location: str | os.PathLike[str]) -> tuple[str, pafs.FileSystem | None]:
    """``storage_path`` and ``storage_filesystem`` for Ray Train's and Tune's ``RunConfig``.

    An S3 location gets a filesystem that retries with backoff (:data:`S3_ATTEMPTS`), at the
    endpoint of ``$AWS_ENDPOINT_URL`` when set; it travels to every worker with the run.
    Anything else is left to Ray (None).
    """
    location = os.fspath(location)
    if scheme_of(location) != "s3":
        return location, None
    parsed = urlparse(location)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    filesystem = RetryingS3FileSystem(**({"endpoint_override": endpoint} if endpoint else {}))
    return f"{parsed.netloc}{parsed.path}".rstrip("/"), filesystem


class RetryingS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem retrying each request :data:`S3_ATTEMPTS` times with backoff,
    also after pickling: pyarrow's own pickling drops ``retry_strategy``, and Ray ships the
    run's filesystem to the Train controller and every worker.

    Args:
        options: Keyword arguments of :class:`pyarrow.fs.S3FileSystem` (not ``retry_strategy``).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(
            retry_strategy=pafs.AwsDefaultS3RetryStrategy(max_attempts=S3_ATTEMPTS), **options
        )
        self._options = options

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        return _retrying_s3, (self._options,)


def _retrying_s3(options: dict[str, Any]) -> RetryingS3FileSystem:
    return RetryingS3FileSystem(**options)


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
