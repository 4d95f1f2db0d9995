"""The audit log in a folder: one JSON-lines file, appended under an exclusive lock."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ray_mlops.audit.chain import Head, batched_lines, parse_link
from ray_mlops.audit.record import GENESIS_HASH, AuditRecord
from ray_mlops.errors import AuditError

LOG_NAME = "audit.jsonl"
HEAD_NAME = "head.json"
_READ_BLOCK = 1 << 24  # verification reads 16 MiB at a time
_TAIL_BLOCK = 1 << 13  # appends read the last record 8 KiB back from the end


class LocalStore:
    """``audit.jsonl`` and ``head.json`` in ``folder``.

    An append takes ``flock`` on the log file, reads its last line (a seek from the end, not
    the whole file), writes the new line with one ``write``, then ``flush`` and ``fsync``,
    and replaces the head marker, all before releasing the lock: concurrent processes on this
    host, or on hosts sharing the folder over NFS (which maps ``flock`` to its own locks),
    append one after the other and never fork the chain.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log_path = folder / LOG_NAME
        self.head_path = folder / HEAD_NAME

    def describe(self) -> str:
        """The log file, for messages."""
        return str(self.log_path)

    def where(self, position: int) -> str:
        """A 1-based position named in words."""
        return f"line {position}"

    def append(self, build: Callable[[int, str], AuditRecord]) -> AuditRecord:
        """Append the record ``build(seq, prev_hash)`` makes after the last one."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a+b") as log:
                fcntl.flock(log, fcntl.LOCK_EX)
                try:
                    record = self._append_locked(log, build)
                finally:
                    fcntl.flock(log, fcntl.LOCK_UN)
        except OSError as exc:
            raise AuditError(f"cannot append to the audit log {self.log_path}: {exc}") from None
        return record

    def _append_locked(
        self, log: BinaryIO, build: Callable[[int, str], AuditRecord]
    ) -> AuditRecord:
        last = _last_line(log, self.log_path)
        if last is None:
            seq, prev = 0, GENESIS_HASH
        else:
            link = parse_link(last)
            if link is None:
                raise AuditError(
                    f"the last line of the audit log {self.log_path} is not a record; "
                    f"nothing is appended to a broken log (`ray-mlops audit verify`)"
                )
            seq, prev = link.seq + 1, link.hash.decode("ascii")
        record = build(seq, prev)
        log.write(record.line() + b"\n")
        log.flush()
        os.fsync(log.fileno())
        _write_head(self.head_path, Head(record.seq, record.hash))
        return record

    def head(self) -> Head | None:
        """The head marker, None when there is none."""
        try:
            text = self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read the audit head marker {self.head_path}: {exc}") from None
        return parse_head(text, str(self.head_path))

    def lines(self) -> Iterator[bytes]:
        """Every line of the log, in order, without newlines (none when there is no log)."""
        return batched_lines(self._batches())

    def _batches(self) -> Iterator[list[bytes]]:
        try:
            log = open(self.log_path, "rb")  # noqa: SIM115 - a generator holds it
        except FileNotFoundError:
            return
        with log:
            rest = b""
            while chunk := log.read(_READ_BLOCK):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                yield lines
            if rest:
                yield [rest]


def _last_line(log: BinaryIO, path: Path) -> bytes | None:
    """The log's last line, read backwards from the end; None for an empty log.

    Raises:
        AuditError: the log does not end with a newline (a write was cut short).
    """
    size = log.seek(0, os.SEEK_END)
    if size == 0:
        return None
    block = b""
    start = size
    while True:
        step = min(_TAIL_BLOCK, start)
        start -= step
        log.seek(start)
        block = log.read(step) + block
        if not block.endswith(b"\n"):
            raise AuditError(
                f"the audit log {path} ends in a partial line (a write was cut short); "
                f"nothing is appended to it until it is repaired (`ray-mlops audit verify`)"
            )
        newline = block.rfind(b"\n", 0, len(block) - 1)
        if newline >= 0 or start == 0:
            return block[newline + 1 : -1]


def _write_head(path: Path, head: Head) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as out:
        out.write(head_bytes(head))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def head_bytes(head: Head) -> bytes:
    """The head marker's file content."""
    return json.dumps({"seq": head.seq, "hash": head.hash}).encode() + b"\n"


def parse_head(text: bytes, where: str) -> Head:
    """The head marker in ``text``.

    Raises:
        AuditError: it is not a head marker.
    """
    try:
        value = json.loads(text)
        head = Head(int(value["seq"]), str(value["hash"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise AuditError(f"the audit head marker {where} is unreadable: {exc}") from None
    return head
