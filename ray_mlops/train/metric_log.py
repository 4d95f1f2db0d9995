"""Metrics from rank 0 to MLflow without stalling the training loop.

A background thread owns the MLflow client. It imports MLflow and opens the tracking store
while the first epoch trains (about 4 s on a 2-core machine: the import, then SQLite's store
checks its schema; the first epoch used to wait for both), then writes whatever steps are
queued with one ``log_batch`` each time. The loop only appends a dict to a queue.
:meth:`MetricLogger.flush` waits until everything queued is written, so nothing is lost at
the end, and raises if the writer failed.

A worker can be killed with steps still queued. :meth:`MetricLogger.unwritten` lists them so
that the epoch's checkpoint carries them, and a restarted rank 0 :meth:`MetricLogger.replay` s
them with their first timestamps. The SQL stores (SQLite, ``mlflow server``) skip a metric
identical in key, value, step and timestamp, so one written just before the kill is not
doubled.

A tracking server that restarts is waited for by MLflow's HTTP client, which sends the same
``log_batch`` again (the same timestamps: a batch stored just before the server died is not
doubled) as the config's ``tracking`` section allows. When that gives up, the writer stops
and the loop raises its :class:`~ray_mlops.errors.TrackingError` right after the next
checkpoint (:meth:`MetricLogger.raise_if_failed`): that checkpoint carries every step not
stored, and nothing after it was logged, so Ray Train's restart of the workers from it (each
``train.max_failures`` attempt) neither loses a step nor writes one twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from ray_mlops.errors import TrackingError

# MLflow refuses a log_batch of more than 1000 metrics.
_MAX_METRICS_PER_BATCH = 1000

Entry = tuple[dict[str, float], int, int]
"""One step's metrics, its step and its timestamp in ms."""


class MetricLogger:
    """Log metrics to one MLflow run from one worker; a no-op without a run.

    Args:
        tracking_uri: MLflow tracking URI, or ``None`` to log nothing.
        run_id: The train stage's run.
    """

    def __init__(
        self, tracking_uri: str | None, run_id: str | None, read_stored: Sequence[str] = ()
    ) -> None:
        self.run_id = run_id
        # The highest step of each ``read_stored`` key already in the run, read by the writer
        # thread first (MLflow's import is not safe from two threads at once).
        self._read_stored = tuple(read_stored)
        self._stored: dict[str, int] = {}
        self._stored_read = threading.Event()
        self.seconds = 0.0  # time the training loop spent inside logging calls
        self._error: BaseException | None = None
        # Queued and not yet stored, oldest first: the writer drops entries once stored, so
        # this is also what a checkpoint carries (unwritten()).
        self._pending: deque[Entry] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._writer: threading.Thread | None = None
        if tracking_uri and run_id:
            self._writer = threading.Thread(
                target=self._write, args=(tracking_uri, run_id), name="mlflow-metrics", daemon=True
            )
            self._writer.start()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one step's metrics, stamped now."""
        if self._writer is None or not metrics:
            return
        values = {key: float(value) for key, value in metrics.items()}
        self._put((values, step, int(time.time() * 1000)))

    def stored_step(self, key: str) -> int:
        """The highest step of ``key`` (one of ``read_stored``) the run held when this logger
        started; -1 when none, or when the store could not be read.

        A restarted rank 0 asks: the epochs and steps an earlier attempt logged after its
        last checkpoint are trained again and must not be logged twice. Waits for the
        writer's first read (done while the first epoch trains).
        """
        if self._writer is None:
            return -1
        self._stored_read.wait()
        return self._stored.get(key, -1)

    def replay(self, entries: Iterable[Entry]) -> None:
        """Queue steps that an earlier attempt had not written, with their own timestamps."""
        if self._writer is None:
            return
        for values, step, stamp in entries:
            self._put((dict(values), int(step), int(stamp)))

    def unwritten(self) -> list[Entry]:
        """Steps queued and not yet stored: what a checkpoint carries for :meth:`replay`."""
        with self._wake:
            return list(self._pending)

    def _put(self, entry: Entry) -> None:
        start = time.perf_counter()
        with self._wake:
            self._pending.append(entry)
            self._wake.notify()
        self.seconds += time.perf_counter() - start

    def flush(self) -> None:
        """Write everything queued, then stop the writer.

        Raises:
            TrackingError: the tracking server did not answer within the retries allowed.
            RuntimeError: the writer could not open the tracking store or write to the run.
        """
        if self._writer is not None:
            start = time.perf_counter()
            with self._wake:
                self._closing = True
                self._wake.notify()
            self._writer.join()
            self._writer = None
            self.seconds += time.perf_counter() - start
        self._raise_error()

    def raise_if_failed(self) -> None:
        """Raise what stopped the writer, if it stopped; else return at once.

        Raises:
            TrackingError: the tracking server did not answer within the retries allowed.
            RuntimeError: the writer failed otherwise.
        """
        if self._error is not None:
            self.flush()

    def _raise_error(self) -> None:
        if isinstance(self._error, TrackingError):
            raise self._error
        if self._error is not None:
            raise RuntimeError(
                f"logging training metrics to MLflow run {self.run_id} failed: {self._error}"
            ) from self._error

    def _write(self, tracking_uri: str, run_id: str) -> None:
        started = time.monotonic()  # of the call that fails, for the error's message
        try:
            from mlflow.entities import Metric
            from mlflow.tracking import MlflowClient

            from ray_mlops.tracking import RunHandle

            client = MlflowClient(tracking_uri)
            try:
                for key in self._read_stored:
                    history = client.get_metric_history(run_id, key)
                    self._stored[key] = max((int(m.step) for m in history), default=-1)
            except Exception:  # writing meets the same store, and says what is wrong
                self._stored.clear()
            finally:
                self._stored_read.set()
            run = RunHandle(client, run_id)
            while True:
                with self._wake:  # waits for the loop's next step, or for flush()
                    self._wake.wait_for(lambda: bool(self._pending) or self._closing)
                    if not self._pending:
                        return  # closing, and everything is stored
                    batch: list[Metric] = []
                    taken = 0
                    for values, step, stamp in self._pending:
                        batch += [Metric(key, value, stamp, step) for key, value in values.items()]
                        taken += 1
                        if len(batch) >= _MAX_METRICS_PER_BATCH:
                            break
                for first in range(0, len(batch), _MAX_METRICS_PER_BATCH):
                    started = time.monotonic()
                    run.record_metric_entries(batch[first : first + _MAX_METRICS_PER_BATCH])
                with self._wake:  # stored: no longer pending
                    for _ in range(taken):
                        self._pending.popleft()
        except BaseException as error:  # raised by flush(), in the loop's thread
            self._stored_read.set()  # nothing read: nothing skipped
            self._error = error
            with contextlib.suppress(ImportError):  # MLflow itself may be what failed
                from ray_mlops.tracking import tracking_failure

                where = f" (training's rank 0, run {run_id})"
                took = time.monotonic() - started
                self._error = tracking_failure(error, tracking_uri, took, where) or error
