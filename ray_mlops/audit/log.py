"""The audit log: append a record, read records, verify the chain.

Example:
    >>> import tempfile
    >>> log = audit_log(tempfile.mkdtemp())
    >>> log.append(action="model.promote", target="adult-income/v3", reason="better",
    ...            actor="alice").seq
    0
    >>> log.verify().message
    '1 records, chain intact'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ray_mlops.audit._local import LocalStore
from ray_mlops.audit._objects import ObjectStore
from ray_mlops.audit.actions import OUTCOMES
from ray_mlops.audit.actor import current_actor
from ray_mlops.audit.chain import Head, VerifyResult, verify_lines
from ray_mlops.audit.record import AuditRecord, utc_now
from ray_mlops.errors import AuditError
from ray_mlops.storage import check_location, is_object_store, join

__all__ = ["DEFAULT_FOLDER", "AuditLog", "audit_log", "audit_log_for"]

DEFAULT_FOLDER = "audit"


class _Store(Protocol):
    def describe(self) -> str: ...

    def where(self, position: int) -> str: ...

    def append(self, build: Any) -> AuditRecord: ...

    def head(self) -> Head | None: ...

    def lines(self) -> Iterator[bytes]: ...


class AuditLog:
    """An append-only, hash-chained log in a folder or under an object store prefix.

    Args:
        location: The log's own folder or object store URI.
        tracking_uri: The run's tracking URI, which decides the default actor
            (:func:`~ray_mlops.audit.current_actor`). None: ``$MLFLOW_TRACKING_URI``.
    """

    def __init__(self, location: str, tracking_uri: str | None = None) -> None:
        self.location = location
        self.tracking_uri = tracking_uri
        self._opened: _Store | None = None

    @property
    def _store(self) -> _Store:
        # Opened on first use: an S3 filesystem asks the network for the bucket's region.
        if self._opened is None:
            self._opened = (
                ObjectStore(self.location)
                if is_object_store(self.location)
                else LocalStore(Path(self.location.removeprefix("file://")).expanduser())
            )
        return self._opened

    def __repr__(self) -> str:
        return f"AuditLog({self.location!r})"

    def append(
        self,
        action: str,
        target: str,
        outcome: str = "ok",
        reason: str = "",
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Record one action after the last record; the record as written.

        Args:
            action: What was done (:mod:`ray_mlops.audit.actions`).
            target: What it acted on: ``<model>/v<version>``, ``<model>@<alias>``, a key name,
                a run id.
            outcome: ``ok``, ``refused`` or ``failed``.
            reason: Why, in words; never a secret.
            actor: Who; None: :func:`~ray_mlops.audit.current_actor`.
            details: A small JSON-able dict (values that are not JSON are written as text).

        Raises:
            ValueError: ``outcome`` or ``action`` is not valid.
            AuditError: the log cannot be written, or its last record is broken.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
        if not action:
            raise ValueError("audit action: empty")
        who = actor if actor is not None else current_actor(self.tracking_uri)

        def build(seq: int, prev_hash: str) -> AuditRecord:
            return AuditRecord.create(
                seq, prev_hash, utc_now(), who, action, target, outcome, reason, details or {}
            )

        return self._store.append(build)

    def records(self) -> Iterator[AuditRecord]:
        """Every record, oldest first.

        Raises:
            AuditError: a line is not a record (its position named).
        """
        for position, line in enumerate(self._store.lines(), 1):
            yield AuditRecord.from_line(line, self._store.where(position))

    def head(self) -> Head | None:
        """The head marker (last seq and hash written), None for a new log."""
        return self._store.head()

    def verify(self) -> VerifyResult:
        """Walk the whole chain; what it found (never raises for a broken chain).

        Raises:
            AuditError: the log or its head marker cannot be read.
        """
        head = self._store.head()
        try:
            return verify_lines(self._store.lines(), head, self._store.where)
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self._store.describe()}: {exc}") from None

    def check(self) -> VerifyResult:
        """:meth:`verify`, raising when the chain is broken.

        Raises:
            AuditError: the chain is broken (the message names the first bad record).
        """
        result = self.verify()
        if not result.intact:
            raise AuditError(f"audit log {self._store.describe()}: {result.message}")
        return result


def audit_log(location: str | os.PathLike[str], tracking_uri: str | None = None) -> AuditLog:
    """The audit log whose own folder (or object store prefix) is ``location``.

    Raises:
        ConfigError: ``location`` is a URI of a kind ray-mlops cannot write to.
    """
    where = check_location(os.fspath(location), "governance.audit.location")
    return AuditLog(where, tracking_uri)


def audit_log_for(
    storage: str, configured: str | None = None, tracking_uri: str | None = None
) -> AuditLog:
    """The workspace's audit log.

    Args:
        storage: The workspace's storage (``Workspace.storage``).
        configured: ``governance.audit.location``: a URI or absolute folder as given, a
            relative folder under the storage; None: ``audit/`` under the storage.
        tracking_uri: As for :class:`AuditLog`.
    """
    if configured is None:
        return audit_log(join(storage, DEFAULT_FOLDER), tracking_uri)
    if is_object_store(configured) or Path(configured).expanduser().is_absolute():
        return audit_log(configured, tracking_uri)
    return audit_log(join(storage, configured), tracking_uri)
