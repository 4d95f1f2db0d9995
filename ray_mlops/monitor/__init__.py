"""Monitoring: drift and live quality of a served model, from its captured traffic.

A window of captured records (:mod:`.reader`, Ray Data) is judged against the model
version's reference (:mod:`.reference`) by :mod:`.window`: per-column drift tests and
distances with a false-discovery control across columns (:mod:`ray_mlops.data.drift`, where
the data stage's poisoning check reuses them), the performance estimated from the predicted
probabilities before labels arrive and the realised performance once they do
(:mod:`.estimate`; labels from :mod:`ray_mlops.serve.labels`, beside the capture, so the
server's feedback endpoint can write them). Every output reads the one
:class:`WindowResult` (:mod:`.result`): :mod:`.report` draws it as a page and
:mod:`.exposition` serves it to Prometheus.
Imported lazily.
"""

from ray_mlops.exports import lazy_exports

_EXPORTS = {
    "Breach": "result",
    "Calibrator": "estimate",
    "EstimatedPerformance": "estimate",
    "Limits": "window",
    "MetricsServer": "exposition",
    "MonitorMetrics": "exposition",
    "RealisedPerformance": "estimate",
    "Reference": "window",
    "Window": "window",
    "WindowRecords": "reader",
    "WindowResult": "result",
    "build_reference": "reference",
    "estimate_by_group": "estimate",
    "estimate_performance": "estimate",
    "evaluate_window": "window",
    "fit_calibrator": "estimate",
    "read_window": "reader",
    "realised_performance": "estimate",
    "render_window_report": "report",
    "serve_metrics": "exposition",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
