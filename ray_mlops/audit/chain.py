"""Checking the hash chain: every record's hash, every link, the head marker.

The walk slices each line (:mod:`ray_mlops.audit.record` keeps the hashed body verbatim),
hashes it, and finds ``seq`` and ``prev_hash`` by their keys in the end of the body, whose
shape is fixed; JSON is neither parsed nor re-serialised on the way, so a million records
take seconds. The shape check is light on purpose: the hash, not the parser, protects the
bytes, and ``AuditLog.records`` parses every line as JSON. At the first record that does not fit, the walk stops and
works out what happened to it from its neighbours:

- **edited**: its hash does not match its bytes; or it was re-hashed after the change, and
  the next record's ``prev_hash`` no longer matches it.
- **deleted**: a sequence number is missing and does not turn up later.
- **inserted**: a record the chain goes around (the next one links to its predecessor), or
  one that repeats a sequence number.
- **reordered**: a sequence number comes before a smaller one that turns up later.
- **truncated**: the log ends before the record the head marker names.
- **unparseable**: a line that is not a record (its line number is named).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ray_mlops.audit.record import GENESIS_HASH, HASH_SUFFIX_LEN

__all__ = ["KINDS", "Head", "Link", "VerifyResult", "batched_lines", "parse_link", "verify_lines"]

KINDS = ("edited", "deleted", "inserted", "reordered", "truncated", "unparseable")

_HASH_KEY = b',"hash":"'
_START = b'{"action":'
# Top-level keys after ``details`` (sorted: outcome, prev_hash, reason, seq, target, time).
# ``details`` may hold anything, but a JSON string cannot hold an unescaped quote, so the
# last '"prev_hash":"' before the hash is the top-level one, and the first '"seq":' after it.
_PREV_KEY = b',"prev_hash":"'
_SEQ_KEY = b',"seq":'
_TARGET_KEY = b',"target":'
_CUT = -HASH_SUFFIX_LEN  # the body is line[:_CUT] + b"}"
_KEY_END = _CUT + len(_HASH_KEY)  # the hash is line[_KEY_END:-2]
_PREV_AT = len(_PREV_KEY)
_SEQ_AT = len(_SEQ_KEY)


@dataclass(frozen=True)
class Head:
    """The head marker: the last record's seq and hash, written after each append."""

    seq: int
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """What a walk of the chain found.

    Args:
        records: Records in the log (up to the first bad one when the chain is broken).
        kind: None when intact, else one of :data:`KINDS`.
        seq: The first bad record's seq (the missing one for ``deleted`` and ``truncated``).
        line: Where it is: 1-based line of the log file, or position among the objects.
        message: What is wrong, in words; "N records, chain intact" when nothing is.
        head_seq: The head marker's seq (None: no marker).
    """

    records: int
    kind: str | None = None
    seq: int | None = None
    line: int | None = None
    message: str = ""
    head_seq: int | None = None

    @property
    def intact(self) -> bool:
        """Whether every record, link and the head marker check out."""
        return self.kind is None


@dataclass(frozen=True)
class Link:
    seq: int
    prev_hash: bytes
    hash: bytes


def parse_link(line: bytes) -> Link | None:
    """seq, prev_hash and hash of a line whose shape fits, else None (not its hash check).

    The same reading as :func:`verify_lines`' loop, which inlines it.
    """
    p = line.rfind(_PREV_KEY, 0, _CUT)
    s = line.find(_SEQ_KEY, p)
    number = line[s + _SEQ_AT : line.find(_TARGET_KEY, s)]
    if (
        p < 0
        or s < 0
        or not number.isdigit()
        or line[_CUT:_KEY_END] != _HASH_KEY
        or not line.endswith(b'"}')
        or not line.startswith(_START)
    ):
        return None
    return Link(int(number), line[p + _PREV_AT : p + _PREV_AT + 64], line[_KEY_END:-2])


def verify_lines(
    lines: Iterable[bytes],
    head: Head | None,
    where: Callable[[int], str] = lambda position: f"line {position}",
) -> VerifyResult:
    """Walk the chain of ``lines`` (in log order) and check it against the head marker.

    Args:
        lines: Each record's line, without its newline.
        head: The head marker, None when there is none.
        where: Names a 1-based position in words (``line 7``, an object's name).
    """
    rest = iter(lines)
    expected, prev, before_prev = 0, GENESIS_HASH.encode(), b""
    head_seq = -1 if head is None else head.seq
    head_seen = b""
    sha256, prev_key, seq_key, target_key, key, start = (
        hashlib.sha256,
        _PREV_KEY,
        _SEQ_KEY,
        _TARGET_KEY,
        _HASH_KEY,
        _START,
    )
    cut, key_end, prev_at, seq_at = _CUT, _KEY_END, _PREV_AT, _SEQ_AT
    for line in rest:
        # The hot loop of a million records: parse_link inlined, no JSON, no regex.
        p = line.rfind(prev_key, 0, cut)
        s = line.find(seq_key, p)
        number = line[s + seq_at : line.find(target_key, s)]
        if (
            p < 0
            or s < 0
            or not number.isdigit()
            or line[cut:key_end] != key
            or not line.endswith(b'"}')
            or not line.startswith(start)
        ):
            return _broken(expected, "unparseable", None, expected + 1, where, head, "")
        digest = line[key_end:-2]
        if sha256(line[:cut] + b"}").hexdigest().encode() != digest:
            return _broken(expected, "edited", int(number), expected + 1, where, head, "")
        if line[p + prev_at : p + prev_at + 64] != prev or int(number) != expected:
            link = Link(int(number), line[p + prev_at : p + prev_at + 64], digest)
            return _classify(link, expected, prev, before_prev, rest, where, head)
        if expected == head_seq:
            head_seen = digest
        before_prev, prev = prev, digest
        expected += 1
    return _check_head(expected, head, head_seen, where)


def _check_head(
    count: int, head: Head | None, head_seen: bytes, where: Callable[[int], str]
) -> VerifyResult:
    if head is None:
        if count == 0:
            return VerifyResult(0, message="0 records, chain intact (the log is empty)")
        return VerifyResult(
            count,
            "truncated",
            None,
            None,
            f"the head marker is missing: whether records were deleted from the end of "
            f"the log ({count} records, last {where(count)}) cannot be checked",
        )
    if head.seq >= count:
        return VerifyResult(
            count,
            "truncated",
            count,
            count + 1,
            f"truncated: the head marker names record {head.seq} as the last, but the log "
            f"ends at record {count - 1}; records {count} to {head.seq} were deleted",
            head.seq,
        )
    if head_seen != head.hash.encode():
        return VerifyResult(
            count,
            "edited",
            head.seq,
            head.seq + 1,
            f"record {head.seq} ({where(head.seq + 1)}) is not the one the head marker "
            f"recorded (hash {head.hash[:12]}...): the end of the log was rewritten",
            head.seq,
        )
    after = count - 1 - head.seq
    note = f" ({after} after the head marker, written since it)" if after else ""
    return VerifyResult(count, message=f"{count} records, chain intact{note}", head_seq=head.seq)


def _broken(
    count: int,
    kind: str,
    seq: int | None,
    line: int,
    where: Callable[[int], str],
    head: Head | None,
    detail: str,
) -> VerifyResult:
    what = detail or {
        "unparseable": f"{where(line)} is not an audit record (garbled or cut short)",
        "edited": f"record {seq} ({where(line)}) was edited: its hash does not match its contents",
    }.get(kind, kind)
    head_seq = None if head is None else head.seq
    return VerifyResult(count, kind, seq, line, f"chain broken: {what}", head_seq)


def _classify(
    link: Link,
    expected: int,
    prev: bytes,
    before_prev: bytes,
    rest: Iterator[bytes],
    where: Callable[[int], str],
    head: Head | None,
) -> VerifyResult:
    """Name what happened at the first record (``expected + 1``-th line) that does not fit."""
    line = expected + 1
    if link.seq < expected:
        if link.seq == expected - 1 and link.prev_hash == before_prev:
            return _broken(
                expected - 1,
                "inserted",
                expected - 1,
                line - 1,
                where,
                head,
                f"record {expected - 1} ({where(line - 1)}) was inserted: the next record, "
                f"also numbered {expected - 1}, links to the record before it",
            )
        return _broken(
            expected,
            "inserted",
            link.seq,
            line,
            where,
            head,
            f"{where(line)} was inserted: it repeats record {link.seq}",
        )
    if link.seq == expected:
        following = next(rest, None)
        after = None if following is None else parse_link(following)
        if after is not None and after.seq == expected and after.prev_hash == prev:
            return _broken(
                expected,
                "inserted",
                expected,
                line,
                where,
                head,
                f"{where(line)} was inserted: it does not link to record {expected - 1}, "
                f"and the record after it does",
            )
        if expected == 0:
            return _broken(
                0,
                "edited",
                0,
                line,
                where,
                head,
                f"record 0 ({where(line)}) was edited: it does not start the chain",
            )
        return _broken(
            expected - 1,
            "edited",
            expected - 1,
            line - 1,
            where,
            head,
            f"record {expected - 1} ({where(line - 1)}) was edited and re-hashed: record "
            f"{expected} ({where(line)}) no longer links to it",
        )
    if link.prev_hash == prev:
        return _broken(
            expected,
            "edited",
            link.seq,
            line,
            where,
            head,
            f"record {link.seq} ({where(line)}) was renumbered: it links to record "
            f"{expected - 1} but is numbered {link.seq}, not {expected}",
        )
    for position, later in enumerate(rest, line + 1):
        found = parse_link(later)
        if found is not None and found.seq == expected:
            return _broken(
                expected,
                "reordered",
                link.seq,
                line,
                where,
                head,
                f"records were reordered: record {link.seq} ({where(line)}) comes before "
                f"record {expected} ({where(position)})",
            )
    missing = (
        f"record {expected}"
        if link.seq == expected + 1
        else (f"records {expected} to {link.seq - 1}")
    )
    return _broken(
        expected,
        "deleted",
        expected,
        line,
        where,
        head,
        f"{missing} deleted: {where(line)} holds record {link.seq}",
    )


def batched_lines(batches: Iterable[list[bytes]]) -> Iterator[bytes]:
    """The lines of consecutive batches, as one stream."""
    return itertools.chain.from_iterable(batches)
