"""One audit record and its line on disk.

A record's ``hash`` is the SHA-256 of the canonical JSON of every other field
(``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, UTF-8). Its line
is that canonical body with ``"hash"`` appended as the last key::

    {"action":"model.promote","actor":"alice",...,"time":"2026-12-05T16:01:15.123456+00:00","hash":"9f2c..."}

so the line is itself a JSON object (``jq`` and pandas read it), and the hashed bytes are the
line minus its fixed-length ``,"hash":"<64 hex>"`` suffix: verification slices and hashes, and
never re-serialises JSON.

Example:
    >>> r = AuditRecord.create(0, GENESIS_HASH, "2026-12-05T16:00:00.000000+00:00", "alice",
    ...                        "model.promote", "adult-income/v3", "ok", "better", {})
    >>> AuditRecord.from_line(r.line()) == r
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ray_mlops.errors import AuditError

__all__ = ["GENESIS_HASH", "HASH_SUFFIX_LEN", "AuditRecord", "canonical", "utc_now"]

GENESIS_HASH = "0" * 64
# ',"hash":"' + 64 hex digits + '"}' closes every line: the body is line[:-75] + b"}".
_HASH_KEY = b',"hash":"'
HASH_SUFFIX_LEN = len(_HASH_KEY) + 64 + 2


def canonical(value: Any) -> bytes:
    """The canonical JSON of ``value``, UTF-8: sorted keys, no spaces, non-ASCII kept."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def utc_now() -> str:
    """Now, UTC, ISO 8601 with microseconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the audit trail.

    Args:
        seq: Position in the log, from 0.
        time: When it was appended, UTC ISO 8601 with microseconds.
        actor: Who acted (:func:`ray_mlops.audit.current_actor`, ``key:<name>`` for a key).
        action: What was done (:mod:`ray_mlops.audit.actions`).
        target: What it acted on: ``<model>/v<version>``, ``<model>@<alias>``, a key, a run id.
        outcome: ``ok``, ``refused`` or ``failed``.
        reason: Why, in words (never a secret).
        details: A small JSON object of specifics.
        prev_hash: The previous record's hash (:data:`GENESIS_HASH` for seq 0).
        hash: SHA-256 of the canonical JSON of the fields above.
    """

    seq: int
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    @classmethod
    def create(
        cls,
        seq: int,
        prev_hash: str,
        time: str,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        reason: str,
        details: dict[str, Any],
    ) -> AuditRecord:
        """A new record, its hash computed (details round-tripped through JSON)."""
        fields = {
            "seq": seq,
            "time": time,
            "actor": actor,
            "action": action,
            "target": target,
            "outcome": outcome,
            "reason": reason,
            "details": json.loads(canonical(details)),
            "prev_hash": prev_hash,
        }
        digest = hashlib.sha256(canonical(fields)).hexdigest()
        return cls(**fields, hash=digest)

    def body(self) -> bytes:
        """The canonical JSON of every field but ``hash``: the bytes the hash covers."""
        fields = {k: v for k, v in self.as_dict().items() if k != "hash"}
        return canonical(fields)

    def line(self) -> bytes:
        """The record's line on disk, without the newline."""
        return self.body()[:-1] + _HASH_KEY + self.hash.encode("ascii") + b'"}'

    def as_dict(self) -> dict[str, Any]:
        """Every field, ``hash`` last."""
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "reason": self.reason,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @property
    def when(self) -> dt.datetime:
        """``time`` as an aware datetime."""
        return dt.datetime.fromisoformat(self.time)

    @classmethod
    def from_line(cls, line: bytes, where: str = "a line") -> AuditRecord:
        """The record a line holds.

        Raises:
            AuditError: the line is not a record (``where`` names it in the message).
        """
        try:
            value = json.loads(line)
            return cls(**{name: value[name] for name in _FIELDS})
        except (ValueError, TypeError, KeyError) as exc:
            raise AuditError(f"{where} of the audit log is not a record: {exc}") from None


_FIELDS = tuple(AuditRecord.__dataclass_fields__)
