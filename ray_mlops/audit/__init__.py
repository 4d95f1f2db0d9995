"""The audit trail: an append-only, hash-chained log of every state-changing action.

Each record (:class:`AuditRecord`) names who acted, when, on what, with what outcome and
why, and carries the SHA-256 of the previous record: changing, removing, adding or moving a
record breaks a link that :meth:`AuditLog.verify` finds and names. A head marker beside the
log holds the last record's seq and hash, so deleting records from the end is found too.

In a folder the log is one JSON-lines file (``audit.jsonl``) appended under an exclusive
``flock``, with ``fsync`` before the lock is released; in an object store each record is an
object of its own (``records/<seq>/<hash>.json``), since objects cannot be appended to.

What the chain proves, and what it does not:

- It proves the log is one unbroken sequence from record 0 to the head marker: an edit, a
  deletion, an insertion or a reordering by someone who does not recompute every later hash
  and the head marker is found, and the first bad record is named.
- It does not prove who wrote it. The hashes are not signed or kept elsewhere: anyone with
  write access to both the log and its head marker can rewrite the log from any point on,
  or cut it short, recomputing the hashes and the marker, and the result verifies. Keep the
  log where the actors it records cannot write except through ray-mlops (a bucket with
  object lock or versioning, a folder only the service account writes), and copy the head
  marker's hash somewhere they cannot change (a ticket, a second store) to pin a point of
  the log for good.
- Records appended after the head marker (a writer that died before updating it, or
  writers racing in an object store) are accepted and reported; a forged record appended at
  the end and the head rewritten to match is not detectable.
- Time is the writer's clock; ``actor`` is who the writer says it is
  (:func:`current_actor`), authenticated only where the tracking server authenticated it.

Example:
    >>> import tempfile
    >>> from ray_mlops.audit import actions, audit_log
    >>> log = audit_log(tempfile.mkdtemp())
    >>> _ = log.append(action=actions.PROMOTE, target="adult-income/v3", actor="alice")
    >>> log.verify().intact
    True
"""

from __future__ import annotations

from ray_mlops.audit import actions
from ray_mlops.audit.actor import current_actor, key_actor
from ray_mlops.audit.chain import KINDS, Head, VerifyResult
from ray_mlops.audit.log import AuditLog, audit_log, audit_log_for
from ray_mlops.audit.record import GENESIS_HASH, AuditRecord

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "AuditLog",
    "AuditRecord",
    "Head",
    "VerifyResult",
    "actions",
    "audit_log",
    "audit_log_for",
    "current_actor",
    "key_actor",
]
