"""The audit log in an object store: one object per record, no append needed.

Object stores have no append and no lock, and pyarrow offers no conditional create
(S3's ``If-None-Match``). Each record is its own object, ``records/<seq, 12 digits>/<hash>.json``:
two writers that race for the same seq write two objects instead of one overwriting the
other, so no record is ever lost silently. After writing, a writer lists its seq and the
one before: if its object is not alone, or the record it links to is no longer alone, it
deletes its own object and retries at the next seq after a random pause. With the strong
read-after-write listing of S3, GCS and MinIO, of two racing writers at least the later one
sees the other, so at most one object per seq survives.

What remains, and is reported rather than hidden: a writer that dies between its write and
its delete leaves two objects for one seq (``verify``: an inserted record; appends refuse
until it is removed); and in a race of three or more writers within the same few
milliseconds, a record may be deleted after the next writer's check, which ``verify``
reports as a broken link. The head marker (``head.json``) is overwritten after each append
and may lag behind the last record when writers race or die; appends find the end by
probing past it, and ``verify`` accepts records after it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow.fs as pafs

from ray_mlops.audit._local import head_bytes, parse_head
from ray_mlops.audit.chain import Head
from ray_mlops.audit.record import GENESIS_HASH, AuditRecord
from ray_mlops.errors import AuditError
from ray_mlops.storage import open_location

_ATTEMPTS = 8
_READERS = 16  # objects fetched at once when the whole log is read


class ObjectStore:
    """``records/`` and ``head.json`` under an object store prefix."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self.filesystem, root = open_location(self.location)
        self._root = root.rstrip("/")
        self.records = f"{self._root}/records"
        self.head_path = f"{self._root}/head.json"
        self._names: list[str] = []

    def describe(self) -> str:
        """The log's location, for messages."""
        return self.location

    def where(self, position: int) -> str:
        """A 1-based position (in the last listing) named by its object."""
        if 0 < position <= len(self._names):
            return f"object {self._names[position - 1].removeprefix(self._root + '/')}"
        return f"object {position}"

    def _seq_objects(self, seq: int) -> list[str]:
        selector = pafs.FileSelector(f"{self.records}/{seq:012d}", allow_not_found=True)
        infos = self.filesystem.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def _read(self, path: str) -> bytes:
        with self.filesystem.open_input_stream(path) as stream:
            return bytes(stream.read()).rstrip(b"\n")

    def append(self, build: Callable[[int, str], AuditRecord]) -> AuditRecord:
        """Append the record ``build(seq, prev_hash)`` makes after the last one."""
        try:
            for attempt in range(_ATTEMPTS):
                end = self._end()
                if end is not None:
                    record = build(*end)
                    if self._claim(record):
                        return record
                # Another writer holds or races for this seq: let it finish, then try again.
                time.sleep(random.uniform(0.02, 0.2) * (attempt + 1))  # nosec B311: jitter
        except OSError as exc:
            raise AuditError(f"cannot append to the audit log {self.location}: {exc}") from None
        raise AuditError(
            f"cannot append to the audit log {self.location}: {_ATTEMPTS} attempts lost a "
            f"race with other writers, or a seq has two records (`ray-mlops audit verify`)"
        )

    def _claim(self, record: AuditRecord) -> bool:
        """Write ``record``; keep it if it is alone at its seq, else delete it (False)."""
        path = f"{self.records}/{record.seq:012d}/{record.hash}.json"
        with self.filesystem.open_output_stream(path) as out:
            out.write(record.line() + b"\n")
        alone = self._seq_objects(record.seq) == [path]
        # The record it links to must still stand alone: a writer that lost the race for the
        # previous seq deletes its record, perhaps after this one read it.
        if not alone or (record.seq > 0 and not self._stands(record.seq - 1, record.prev_hash)):
            self.filesystem.delete_file(path)
            return False
        with self.filesystem.open_output_stream(self.head_path) as out:
            out.write(head_bytes(Head(record.seq, record.hash)))
        return True

    def _end(self) -> tuple[int, str] | None:
        """The next seq and the last hash: from the head marker, then probing past it; None
        when a seq has two records (writers racing, or one died before stepping back)."""
        head = self.head()
        seq, prev = (0, GENESIS_HASH) if head is None else (head.seq + 1, head.hash)
        while objects := self._seq_objects(seq):
            if len(objects) > 1:
                return None
            # The name holds the hash; verify, not append, checks it against the content.
            seq, prev = seq + 1, objects[0].rsplit("/", 1)[-1].removesuffix(".json")
        return seq, prev

    def _stands(self, seq: int, digest: str) -> bool:
        return self._seq_objects(seq) == [f"{self.records}/{seq:012d}/{digest}.json"]

    def head(self) -> Head | None:
        """The head marker, None when there is none."""
        try:
            with self.filesystem.open_input_stream(self.head_path) as stream:
                text = bytes(stream.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read the audit head marker {self.head_path}: {exc}") from None
        return parse_head(text, self.head_path)

    def lines(self) -> Iterator[bytes]:
        """Every record's line, in the order of the objects' names (seq first)."""
        selector = pafs.FileSelector(self.records, recursive=True, allow_not_found=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise AuditError(f"cannot list the audit log {self.location}: {exc}") from None
        self._names = sorted(i.path for i in infos if i.type == pafs.FileType.File)
        with ThreadPoolExecutor(_READERS) as pool:
            yield from pool.map(self._read, self._names)
