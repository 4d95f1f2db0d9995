"""Labels posted to the feedback endpoint, written to the label store in batches. Ray-free.

A post is checked and answered at once (202); a daemon thread writes what was posted to the
label store (:func:`ray_mlops.serve.labels.write_labels`) every ``flush_interval_s`` or
``flush_rows`` labels, so a burst of posts makes a few files, not one each. Unlike capture,
feedback is the client's data: when the buffer is full the post is refused (503, retry
later) rather than dropped, and a failed write is retried with the next batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ray_mlops.serve.labels import FEEDBACK_SOURCE, write_labels

logger = logging.getLogger(__name__)


class FeedbackSink:
    """A bounded buffer of posted labels and the thread that stores them.

    Args:
        location: The label store (folder or object store URI).
        flush_rows: A write starts as soon as this many labels wait.
        flush_interval_s: Longest a label waits before it is written.
        max_buffer: Labels held at most; a post beyond it is refused.
    """

    def __init__(
        self,
        location: str,
        *,
        flush_rows: int = 1000,
        flush_interval_s: float = 1.0,
        max_buffer: int = 100_000,
    ) -> None:
        self.location = location
        self.flush_rows, self.flush_interval_s, self.max_buffer = (
            flush_rows,
            flush_interval_s,
            max_buffer,
        )
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._buffer: list[dict[str, Any]] = []
        self._closing = False
        self.written = 0
        self.failed_writes = 0
        self._thread = threading.Thread(target=self._run, name="feedback-labels", daemon=True)
        self._thread.start()

    def offer(self, rows: list[Mapping[str, Any]]) -> bool:
        """Queue checked label rows, stamped with the time they were received.

        Returns:
            False when the buffer has no room for them (the caller answers 503).
        """
        now = datetime.now(timezone.utc)
        stamped = [{**row, "time": now} for row in rows]
        with self._lock:
            if len(self._buffer) + len(stamped) > self.max_buffer:
                return False
            self._buffer.extend(stamped)
            if len(self._buffer) >= self.flush_rows:
                self._wake.notify()
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered within ``timeout_s``, then stop."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._closing and len(self._buffer) < self.flush_rows:
                    self._wake.wait(self.flush_interval_s)
                batch, self._buffer = self._buffer, []
                closing = self._closing
            if batch:
                self._write(batch)
            if closing:
                with self._lock:
                    rest, self._buffer = self._buffer, []
                if rest:
                    self._write(rest)
                return

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.written += write_labels(batch, self.location, source=FEEDBACK_SOURCE)
        except Exception:
            # Kept for the next batch: feedback is the client's data, not a sample.
            self.failed_writes += 1
            logger.exception("writing %d feedback labels to %s failed", len(batch), self.location)
            with self._lock:
                if len(self._buffer) + len(batch) <= self.max_buffer:
                    self._buffer[:0] = batch
