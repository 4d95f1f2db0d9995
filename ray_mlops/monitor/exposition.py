"""The monitor's Prometheus series: the latest window of each model, as gauges. Ray-free.

:class:`MonitorMetrics` keeps the last :class:`~ray_mlops.monitor.result.WindowResult` of
each model and builds every series from it when Prometheus scrapes (a custom collector in its
own ``CollectorRegistry``, never the process-wide one). Because nothing is kept between scrapes
but the latest result, a column flagged in an older window and absent from the newest one has no
series any more, instead of a stale value that would keep an alert firing; and a scrape never
sees a model half updated. ``serve_metrics`` serves them on ``/metrics`` for the ``--every``
service (``monitor.metrics_port``).

The series start with ``ray_mlops_`` like the model server's (``ray_mlops_requests_total``...),
all labelled ``model``; a value the window could not measure (an untested column, a metric
undefined on the window, no labels) has no series rather than NaN, so an alert comparing it
with a limit neither fires nor resolves on it. ``cluster/monitoring/alerts.yml`` and the
Grafana dashboard read these names.

Example:
    >>> from datetime import datetime, timezone
    >>> from ray_mlops.monitor.result import WindowResult
    >>> metrics = MonitorMetrics()
    >>> metrics.record(WindowResult("income", ("3",), datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...     datetime(2026, 1, 1, 1, tzinfo=timezone.utc), rows=1200, labelled_rows=0, tested=True))
    >>> b'ray_mlops_monitor_window_rows{model="income"} 1200.0' in metrics.render()
    True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ray_mlops.data.drift import drift_share
from ray_mlops.errors import DataError
from ray_mlops.monitor.result import SIGNALS, WindowResult

PREFIX = "ray_mlops_monitor_"


class MonitorMetrics:
    """The monitor's series, from the latest window recorded for each model.

    A Prometheus collector (``collect``) registered in its own registry. Thread-safe: the
    monitor records from its loop while the HTTP server's threads scrape.

    Attributes:
        registry: The registry holding only these series (what ``serve_metrics`` serves).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, WindowResult] = {}
        self._labels_ingested: dict[str, float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record(self, result: WindowResult) -> None:
        """Make ``result`` the model's window every series shows.

        A window that ends before the one already recorded for the model is ignored, so
        windows judged out of order (a backfill beside the service) never move the series back.

        Args:
            result: One judged window.
        """
        with self._lock:
            shown = self._latest.get(result.model)
            if shown is None or _timestamp(result.end) >= _timestamp(shown.end):
                self._latest[result.model] = result
            self._labels_ingested.setdefault(result.model, 0.0)

    def labels_ingested(self, model: str, n: int) -> None:
        """Count labels joined to the model's captured predictions (a Prometheus counter).

        Args:
            model: Registered model name.
            n: Labels newly found in the label store.

        Raises:
            DataError: ``n`` is negative (a counter only goes up).
        """
        if n < 0:
            raise DataError(f"monitor metrics: labels ingested for {model!r} is {n}, below 0")
        with self._lock:
            self._labels_ingested[model] = self._labels_ingested.get(model, 0.0) + n

    def render(self) -> bytes:
        """Every series in Prometheus' text exposition format (what ``/metrics`` answers)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """The metric families, built from the latest windows (called by the registry)."""
        with self._lock:
            latest = sorted(self._latest.items())
            ingested = sorted(self._labels_ingested.items())
        families = _window_families(dict(latest))
        labels = CounterMetricFamily(
            PREFIX + "labels_ingested",
            "Ground-truth labels joined to the model's captured predictions.",
            labels=["model"],
        )
        for model, count in ingested:
            labels.add_metric([model], count)
        yield from families.values()
        yield labels


def _window_families(latest: dict[str, WindowResult]) -> dict[str, GaugeMetricFamily]:
    """Every gauge of the windows, one family per series name."""
    family = {
        name: GaugeMetricFamily(PREFIX + name, text, labels=["model", *labels])
        for name, labels, text in _GAUGES
    }
    for model, result in latest.items():
        family["window_rows"].add_metric([model], result.rows)
        family["labelled_rows"].add_metric([model], result.labelled_rows)
        family["window_start_timestamp_seconds"].add_metric([model], _timestamp(result.start))
        family["window_end_timestamp_seconds"].add_metric([model], _timestamp(result.end))
        for column in (*result.columns, *result.predictions):
            if column.distance is not None:
                family["drift_score"].add_metric(
                    [model, column.column, column.kind, column.distance_name], column.distance
                )
            if column.adjusted_p is not None:
                family["drift_p_value"].add_metric([model, column.column], column.adjusted_p)
            family["drift_detected"].add_metric([model, column.column], float(column.drifted))
        share = drift_share(result.columns)
        if share is not None:
            family["drift_share"].add_metric([model], share)
        for name, performance in (("estimated", result.estimated), ("realised", result.realised)):
            metrics = performance.metrics if performance is not None else {}
            for metric, value in sorted(metrics.items()):
                if value is not None:
                    family[f"{name}_metric"].add_metric([model, metric], value)
        for sensitive, measures in sorted(result.fairness.items()):
            for measure, value in sorted(measures.items()):
                if value is not None:
                    family["fairness"].add_metric([model, sensitive, measure], value)
        broken = result.signals()
        for signal in SIGNALS:
            family["breach"].add_metric([model, signal], float(signal in broken))
    return family


# (name after the prefix, labels after "model", help text)
_GAUGES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("window_rows", (), "Captured records in the latest monitored window."),
    ("labelled_rows", (), "Records of the latest window with a joined ground-truth label."),
    ("window_start_timestamp_seconds", (), "Start of the latest monitored window (Unix time)."),
    ("window_end_timestamp_seconds", (), "End of the latest monitored window (Unix time)."),
    (
        "drift_score",
        ("column", "kind", "distance"),
        "Drift distance of a column or model output against the reference (the effect size).",
    ),
    ("drift_p_value", ("column",), "Benjamini-Hochberg adjusted p-value of the drift test."),
    ("drift_detected", ("column",), "1 when the column or model output drifted in the window."),
    ("drift_share", (), "Share of the input columns that drifted in the window."),
    ("estimated_metric", ("metric",), "Performance estimated from predicted probabilities."),
    ("realised_metric", ("metric",), "Performance on the window's labelled rows."),
    ("fairness", ("column", "measure"), "Fairness measure per sensitive column, labelled rows."),
    ("breach", ("signal",), "1 when the window broke a limit of this signal."),
)


def _timestamp(moment: datetime) -> float:
    """Unix time of a window bound; a naive bound is UTC, as the monitor writes them."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class MetricsServer:
    """``/metrics`` of one :class:`MonitorMetrics`, served from a background thread.

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the one picked when asked for port 0).
    """

    def __init__(self, metrics: MonitorMetrics, port: int, host: str) -> None:
        try:
            self._server, self._thread = start_http_server(port, host, registry=metrics.registry)
        except OSError as error:
            from ray_mlops.serve.ingress import PortInUseError, port_holder

            holder = port_holder(port) if port else None
            raise PortInUseError(
                f"monitor: port {port} (monitor.metrics_port) on {host} cannot be served: "
                f"{f'in use by {holder}' if holder else error}"
            ) from error
        self.host = host
        self.port = int(self._server.server_port)

    def stop(self) -> None:
        """Stop answering and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve_metrics(metrics: MonitorMetrics, port: int, host: str = "0.0.0.0") -> MetricsServer:  # nosec B104  # read-only series for a remote Prometheus, only with monitor.metrics_port
    """Serve the monitor's series for Prometheus until the returned server is stopped.

    Args:
        metrics: What to serve.
        port: TCP port (``monitor.metrics_port``); 0 picks a free one (see ``.port``).
        host: Address to listen on; every interface by default, as Prometheus scrapes it
            from another machine.

    Returns:
        The running server; ``stop()`` ends it.

    Raises:
        PortInUseError: the port cannot be bound, naming what holds it where it can tell.
    """
    return MetricsServer(metrics, port, host)
