"""Prometheus metrics of the model server, through Ray's metrics system.

Each replica records into ``ray.serve.metrics`` (requests by status, latency, batch sizes,
the version it serves, capture drops); Ray's metrics agent on every node aggregates them
with Serve's own series (replicas, queue lengths). ``GET /metrics`` gathers the project's and
Serve's series from every node's agent, so one scrape sees the whole deployment whichever
replica answers it. Prometheus may also scrape the nodes' agents directly.
"""

from __future__ import annotations

import functools
from typing import Any

# Ray's metrics agent exports every ray.util.metrics series as "ray_" + its name (its
# Prometheus namespace is "ray", not configurable), so "mlops_requests" is scraped as
# "ray_mlops_requests_total".
PREFIXES = ("ray_mlops_", "ray_serve_")
LATENCY_BUCKETS_MS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4]
BATCH_BUCKETS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]


class ServerMetrics:
    """The series one replica records."""

    def __init__(self, model_name: str) -> None:
        from ray.serve import metrics as serve_metrics

        # Ray annotates tag_keys as a 1-tuple; any length works.
        metrics: Any = serve_metrics
        self.model = model_name
        self.requests = metrics.Counter(
            "mlops_requests",
            description="Requests answered, by route, HTTP status and model version.",
            tag_keys=("model", "route", "status", "version"),
        )
        self.latency = metrics.Histogram(
            "mlops_request_latency_ms",
            description="Time from request to response inside the replica, in ms.",
            boundaries=LATENCY_BUCKETS_MS,
            tag_keys=("model", "route"),
        )
        self.batch_size = metrics.Histogram(
            "mlops_batch_size",
            description="Requests per model call (serve.batch).",
            boundaries=BATCH_BUCKETS,
            tag_keys=("model",),
        )
        self.version = metrics.Gauge(
            "mlops_model_version",
            description="The model version each alias serves on this replica.",
            tag_keys=("model", "alias"),
        )
        self.replica_up = metrics.Gauge(
            "mlops_replica_up",
            description="1 per live model replica: their sum is the replica count.",
            tag_keys=("model",),
        )
        self.capture_dropped = metrics.Counter(
            "mlops_capture_dropped",
            description="Captured records dropped because the buffer was full or a write failed.",
            tag_keys=("model",),
        )
        self.signature_failures = signature_failures()
        self.shadow_errors = metrics.Counter(
            "mlops_shadow_errors",
            description="Shadow predictions of the challenger that failed (callers never see them).",
            tag_keys=("model",),
        )

    def request(self, route: str, status: int, version: str, latency_ms: float) -> None:
        """Count one answered request."""
        tags = {"model": self.model, "route": route}
        self.requests.inc(1, tags={**tags, "status": str(status), "version": version or "none"})
        self.latency.observe(latency_ms, tags=tags)


@functools.cache
def signature_failures() -> Any:
    """Model versions this process refused to load (signature, signer or a pickle): the
    ``ray_mlops_model_signature_failures_total`` series that the ModelTampered alert reads.

    One per process, made on first use: a replica may refuse its first version before its
    :class:`ServerMetrics` exist.
    """
    from ray.serve import metrics as serve_metrics

    metrics: Any = serve_metrics
    return metrics.Counter(
        "mlops_model_signature_failures",
        description="Model versions refused at load: files, signature or signer did not check out.",
        tag_keys=("model", "version"),
    )


def scrape_metrics(timeout_s: float = 3.0) -> str:
    """The project's and Serve's series from every live node's metrics agent."""
    import ray
    import requests

    lines: list[str] = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        try:
            text = requests.get(url, timeout=timeout_s).text
        except requests.RequestException:
            continue
        lines.extend(line for line in text.splitlines() if _wanted(line))
    return "\n".join(_dedupe_comments(lines)) + "\n"


def _wanted(line: str) -> bool:
    name = line.split(" ", 3)[2] if line.startswith("# ") and line.count(" ") >= 2 else line
    return name.startswith(PREFIXES)


def _dedupe_comments(lines: list[str]) -> list[str]:
    """HELP and TYPE lines once per series, as the exposition format asks."""
    seen: set[str] = set()
    out: list[Any] = []
    for line in lines:
        if line.startswith("#"):
            if line in seen:
                continue
            seen.add(line)
        out.append(line)
    return out
