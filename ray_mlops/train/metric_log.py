"""Metrics from rank 0 to MLflow without stalling the training loop.

Each call is one ``log_batch`` sent with ``synchronous=False``: MLflow queues it and a
background thread writes it, so a step pays for building a few ``Metric`` objects only.
:meth:`MetricLogger.close` waits for everything queued, so nothing is lost at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


class MetricLogger:
    """Log metrics to one MLflow run from one worker; a no-op without a run.

    Args:
        tracking_uri: MLflow tracking URI, or ``None`` to log nothing.
        run_id: The train stage's run.
    """

    def __init__(self, tracking_uri: str | None, run_id: str | None) -> None:
        self.run_id = run_id
        self.client = None
        self.seconds = 0.0  # time the training loop spent inside logging calls
        self._pending: list[Any] = []
        if tracking_uri and run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one step's metrics."""
        if self.client is None or self.run_id is None or not metrics:
            return
        from mlflow.entities import Metric

        start = time.perf_counter()
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        operation = self.client.log_batch(self.run_id, metrics=batch, synchronous=False)
        if operation is not None:
            self._pending.append(operation)
        self.seconds += time.perf_counter() - start

    def flush(self) -> None:
        """Wait until every queued batch is written."""
        start = time.perf_counter()
        for operation in self._pending:
            operation.wait()
        self._pending.clear()
        self.seconds += time.perf_counter() - start
