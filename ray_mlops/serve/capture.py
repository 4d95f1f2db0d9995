"""A sample of served requests and responses, written to Parquet for monitoring. Ray-free.

Each model replica holds one :class:`TrafficCapture`. The request path only calls
:meth:`TrafficCapture.offer`, which samples, appends references to a bounded in-memory
buffer and returns: it never touches the disk, never waits on the writer and never raises.
A daemon thread turns the buffer into Parquet files under ``<path>/date=YYYY-MM-DD/``,
each written under a hidden temporary name and renamed, so readers only see whole files.
Capture is best effort: when the buffer is full or the disk fails, rows are dropped and
counted, and the requests are answered as if nothing happened.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time as _time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from ray_mlops.storage import is_object_store, join, open_location

if TYPE_CHECKING:
    import pandas as pd

    from ray_mlops.config import CaptureConfig

logger = logging.getLogger(__name__)

CAPTURE_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("record_index", pa.int32(), nullable=False),
        pa.field("features", pa.string(), nullable=False),
        pa.field("prediction", pa.string(), nullable=False),
        pa.field("probabilities", pa.string(), nullable=True),
    ]
)
"""Columns of every capture file, in this order."""

PARTITION_COLUMN = "date"
"""Hive partition folder of the files (``date=YYYY-MM-DD``), a column of :func:`read_capture`."""

_COUNTERS = ("offered", "sampled", "written", "dropped", "failed_writes")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class _Row(NamedTuple):
    """One buffered record: references only, serialized later by the writer thread."""

    request_id: str
    time: datetime
    model_name: str
    model_version: str
    latency_ms: float
    record_index: int
    record: Any
    prediction: Any
    probabilities: Any


class TrafficCapture:
    """Samples requests into a bounded buffer that a background thread writes to Parquet.

    ``offer`` keeps references to the records, predictions and probabilities it is given
    (serializing them on the request path would cost the request latency): the caller must
    not mutate them afterwards.

    Args:
        path: Folder of the capture (created on first write).
        sample_rate: Share of requests kept, from 0 to 1, decided per request.
        max_buffer: Rows held in memory at most; rows offered beyond it are dropped.
        flush_rows: Rows per file at most; a write starts as soon as this many are buffered.
        flush_interval_s: Longest a buffered row waits before it is written.
        replica: Name of the replica, part of the file names (so replicas never collide).
        seed: Seed of the sampling, for reproducible tests; random when None.

    Raises:
        ValueError: a setting out of range.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        sample_rate: float,
        max_buffer: int,
        flush_rows: int,
        flush_interval_s: float,
        replica: str = "",
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within [0, 1], got {sample_rate}")
        if max_buffer < 1 or flush_rows < 1:
            raise ValueError("max_buffer and flush_rows must be at least 1")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}")
        # A folder (``path``, a Path) or an object store URI (``location``, kept as given).
        self.location = str(path)
        self.path = Path(path) if not is_object_store(self.location) else None
        self.sample_rate = float(sample_rate)
        self.max_buffer = int(max_buffer)
        self.flush_rows = int(flush_rows)
        self.flush_interval_s = float(flush_interval_s)
        self.replica = replica
        self._file_prefix = "part-" + (f"{_UNSAFE_NAME.sub('_', replica)}-" if replica else "")
        self._rng = random.Random(seed)
        # One lock guards the buffer and the counters: offer takes it once per request.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._buffer: list[_Row] = []
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._closing = False
        self._warned_offer = False
        self._thread = threading.Thread(
            target=self._run, name=f"traffic-capture{'-' + replica if replica else ''}", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_config(cls, cfg: CaptureConfig, location: str, replica: str) -> TrafficCapture | None:
        """The capture a config asks for, or None when capture is disabled.

        Args:
            cfg: The ``capture`` section of the pipeline config.
            location: Where it writes: an absolute folder or an object store URI (the
                workspace resolves ``cfg.path``: :meth:`ray_mlops.workspace.Workspace.capture_location`).
            replica: Name of the replica, part of the file names.
        """
        if not cfg.enabled:
            return None
        return cls(
            location,
            sample_rate=cfg.sample_rate,
            max_buffer=cfg.max_buffer,
            flush_rows=cfg.flush_rows,
            flush_interval_s=cfg.flush_interval_s,
            replica=replica,
        )

    def offer(
        self,
        *,
        request_id: str,
        model_name: str,
        model_version: str,
        records: list[dict[str, Any]],
        predictions: list[Any],
        probabilities: list[dict[str, float]] | None,
        latency_ms: float,
        time: datetime | None = None,
        drawn: bool = False,
    ) -> bool:
        """Keep an answered request in the capture if the sampling picks it.

        Never blocks on I/O and never raises: whatever goes wrong is counted.

        Args:
            request_id: Id of the request, shared by its rows.
            model_name: Registered model that answered.
            model_version: Its version.
            records: The request's records, one row each.
            predictions: One prediction per record.
            probabilities: One ``{class: probability}`` per record, or None (regression).
            latency_ms: Time the request took to answer.
            time: When it was answered (UTC; naive times are taken as UTC); now when None.
            drawn: :meth:`draw` already picked this request (the caller built the rows
                only then); it is not sampled again.

        Returns:
            True when at least one of its rows was buffered for writing.
        """
        try:
            return self._offer(
                request_id,
                model_name,
                model_version,
                records,
                predictions,
                probabilities,
                latency_ms,
                time,
                drawn,
            )
        except Exception:
            # A capture bug must never fail the request it observes.
            self._count_unexpected(records)
            return False

    def draw(self) -> bool:
        """Whether the sampling picks the next request; one it skips counts as offered.

        Lets a caller skip building a request's rows (records, predictions) when they would
        be thrown away: call ``offer(..., drawn=True)`` only after a True.
        """
        # Random.random is a single C call, safe across threads under the GIL.
        if self.sample_rate > 0 and self._rng.random() < self.sample_rate:
            return True
        with self._lock:
            self._counts["offered"] += 1
        return False

    def _offer(
        self,
        request_id: str,
        model_name: str,
        model_version: str,
        records: list[dict[str, Any]],
        predictions: list[Any],
        probabilities: list[dict[str, float]] | None,
        latency_ms: float,
        when: datetime | None,
        drawn: bool,
    ) -> bool:
        if not drawn and not self.draw():
            return False
        when = when or datetime.now(timezone.utc)
        n_predictions = len(predictions)
        rows = [
            _Row(
                request_id,
                when,
                model_name,
                model_version,
                latency_ms,
                index,
                record,
                predictions[index] if index < n_predictions else None,
                probabilities[index]
                if probabilities is not None and index < len(probabilities)
                else None,
            )
            for index, record in enumerate(records)
        ]
        with self._lock:
            self._counts["offered"] += 1
            self._counts["sampled"] += 1
            if self._closing:
                # Nobody will write them any more.
                self._counts["dropped"] += len(rows)
                return False
            room = self.max_buffer - len(self._buffer)
            if room < len(rows):
                self._counts["dropped"] += len(rows) - max(room, 0)
                rows = rows[: max(room, 0)]
            if not rows:
                return False
            before = len(self._buffer)
            self._buffer.extend(rows)
            if before < self.flush_rows <= len(self._buffer):
                self._wake.notify()
        return True

    def _count_unexpected(self, records: Any) -> None:
        try:
            lost = len(records)
        except Exception:
            lost = 1
        with self._lock:
            self._counts["offered"] += 1
            self._counts["dropped"] += lost
            warn = not self._warned_offer
            self._warned_offer = True
        # The first failure with its traceback; later ones would flood the log per request.
        if warn:
            logger.warning("traffic capture failed to take a request", exc_info=True)
        else:
            logger.debug("traffic capture failed to take a request", exc_info=True)

    def stats(self) -> dict[str, int]:
        """The counters, for metrics.

        ``offered`` and ``sampled`` count requests; ``written`` and ``dropped`` count rows
        (records); ``failed_writes`` counts files that could not be written.
        """
        with self._lock:
            return dict(self._counts)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered and stop the writer thread. Idempotent.

        Args:
            timeout_s: Longest wait for the writer to finish; what it has not written by
                then is lost with the process.
        """
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning(
                "traffic capture writer still busy after %.1f s; buffered rows may be lost",
                timeout_s,
            )

    # -- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        last_write = _time.monotonic()
        while True:
            with self._lock:
                while not self._closing and len(self._buffer) < self.flush_rows:
                    remaining = last_write + self.flush_interval_s - _time.monotonic()
                    if remaining <= 0:
                        if self._buffer:
                            break
                        # Nothing waited: restart the clock rather than write the next lone
                        # row at once, so a quiet server makes at most one file per interval.
                        last_write = _time.monotonic()
                        remaining = self.flush_interval_s
                    self._wake.wait(remaining)
                batch = self._take()
                if not batch and self._closing:
                    return
            if batch:
                try:
                    self._write_batch(batch)
                except Exception:
                    # The writer outlives its own bugs: losing a batch beats losing capture.
                    logger.warning("traffic capture writer failed", exc_info=True)
                    self._add(failed_writes=1)
            last_write = _time.monotonic()

    def _take(self) -> list[_Row]:
        """Up to ``flush_rows`` rows out of the buffer; the caller holds the lock."""
        if len(self._buffer) <= self.flush_rows:
            batch, self._buffer = self._buffer, []
        else:
            batch = self._buffer[: self.flush_rows]
            del self._buffer[: self.flush_rows]
        return batch

    def _write_batch(self, batch: list[_Row]) -> None:
        """Write one batch, one file per day it spans; failures are logged and counted."""
        try:
            tables, unserializable = _tables_by_date(batch)
        except Exception:
            logger.warning("traffic capture could not build %d rows", len(batch), exc_info=True)
            self._add(failed_writes=1, dropped=len(batch))
            return
        if unserializable:
            self._add(dropped=unserializable)
        for date, table in tables.items():
            target = join(
                self.location,
                f"{PARTITION_COLUMN}={date}",
                f"{self._file_prefix}{uuid.uuid4().hex}.parquet",
            )
            try:
                self._write_table(table, target)
            except Exception as error:
                logger.warning(
                    "traffic capture could not write %d rows to %s: %s",
                    table.num_rows,
                    target,
                    error,
                )
                self._add(failed_writes=1, dropped=table.num_rows)
            else:
                self._add(written=table.num_rows)

    def _write_table(self, table: pa.Table, location: str) -> None:
        """Write ``table`` to ``location`` atomically.

        In a folder: a hidden temporary file, then a rename (the leading dot keeps the
        temporary file out of ``pyarrow.dataset`` readers, which skip hidden files, even
        while it is being written). In an object store an object appears whole when its
        upload completes, so it is written in place.
        """
        import pyarrow.parquet as pq

        if is_object_store(location):
            filesystem, key = open_location(location)
            with filesystem.open_output_stream(key) as stream:
                pq.write_table(table, stream)
            return
        target = Path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def _add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                self._counts[name] += value


def _tables_by_date(batch: list[_Row]) -> tuple[dict[str, pa.Table], int]:
    """Arrow tables of the rows, keyed by their UTC day, and how many rows failed to encode."""
    columns: dict[str, dict[str, list[Any]]] = {}
    failed = 0
    for row in batch:
        try:
            when = _as_utc(row.time)
            encoded = (
                str(row.request_id),
                when,
                str(row.model_name),
                str(row.model_version),
                float(row.latency_ms),
                int(row.record_index),
                _to_json(row.record),
                _to_json(row.prediction),
                None if row.probabilities is None else _to_json(row.probabilities),
            )
        except Exception:
            # One odd record (say, a circular structure) must not cost the whole file.
            failed += 1
            continue
        day = columns.setdefault(when.date().isoformat(), {f: [] for f in CAPTURE_SCHEMA.names})
        for name, value in zip(CAPTURE_SCHEMA.names, encoded, strict=True):
            day[name].append(value)
    tables = {
        date: pa.Table.from_pydict(values, schema=CAPTURE_SCHEMA)
        for date, values in columns.items()
    }
    return tables, failed


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _to_json(value: Any) -> str:
    return json.dumps(_json_safe(value), default=str, allow_nan=False)


def _json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays unwrapped, NaN and infinities as None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_capture(path: Path | str) -> pd.DataFrame:
    """Every captured row under ``path``, oldest first.

    Args:
        path: The capture folder or object store URI (``TrafficCapture.location``).

    Returns:
        The :data:`CAPTURE_SCHEMA` columns plus ``date`` (the partition, ``YYYY-MM-DD``);
        JSON columns stay strings. Empty, with the same columns, when nothing was captured.
    """
    import pyarrow.dataset as ds

    partition = pa.schema([pa.field(PARTITION_COLUMN, pa.string())])
    schema = pa.schema([*CAPTURE_SCHEMA, *partition])
    filesystem, root = open_location(str(path))
    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        return schema.empty_table().to_pandas()
    dataset = ds.dataset(
        root,
        filesystem=filesystem,
        format="parquet",
        schema=schema,
        partitioning=ds.partitioning(partition, flavor="hive"),
    )
    table = dataset.to_table()
    if table.num_rows:
        table = table.sort_by(
            [("time", "ascending"), ("request_id", "ascending"), ("record_index", "ascending")]
        )
    return table.to_pandas()
