"""The monitor's Prometheus series, and the alert rules and dashboard that read them. Ray-free.

The window is judged by the real drift statistics on seeded samples (one input column shifted
by a standard deviation, one stable, one empty), so the series are checked against the
``ColumnDrift`` fields they must carry rather than against typed-in numbers. The exposition is
read back with prometheus_client's own parser. Then ``cluster/monitoring/``: every series name
an alert, its promtool test or the Grafana dashboard uses must be one the monitor exposes or one
the model server records (``ray_mlops/serve/telemetry.py``), so renaming a series on either
side fails here, not silently in production.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ray_mlops.data.drift import (
    ColumnDrift,
    categorical_drift,
    decide,
    drift_share,
    numeric_drift,
    prediction_class_drift,
)
from ray_mlops.errors import DataError
from ray_mlops.monitor.estimate import EstimatedPerformance, RealisedPerformance
from ray_mlops.monitor.exposition import MonitorMetrics, serve_metrics
from ray_mlops.monitor.result import SIGNALS, Breach, WindowResult
from ray_mlops.serve.ingress import PortInUseError

MONITORING = Path(__file__).resolve().parents[2] / "cluster" / "monitoring"
START = datetime(2026, 12, 5, 9, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
SERIES_NAME = re.compile(r"ray_mlops_[a-z_]+")
# The server's series the design names (issue 27): the alerts read them.
SERVER_SERIES = {
    "ray_mlops_requests_total",
    "ray_mlops_request_latency_ms_bucket",
    "ray_mlops_capture_dropped_total",
    "ray_mlops_replica_up",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _columns(seed: int = 0) -> list[ColumnDrift]:
    """A decided window: age shifted by one standard deviation, city stable, income empty."""
    rng = np.random.default_rng(seed)
    age = numeric_drift("age", rng.normal(40, 10, 3000), rng.normal(50, 10, 3000))
    mix = {"Oslo": 1500, "Rome": 1500}
    city = categorical_drift("city", mix, rng.choice(["Oslo", "Rome"], 3000).tolist())
    income = numeric_drift("income", rng.normal(0, 1, 3000), np.full(50, np.nan))
    predicted = prediction_class_drift({"no": 2000, "yes": 1000}, {"no": 1000, "yes": 2000})
    return decide([age, city, income, predicted], alpha=0.05)


def _result(
    model: str = "income-model",
    columns: list[ColumnDrift] | None = None,
    start: datetime = START,
    **fields: Any,
) -> WindowResult:
    decided = _columns() if columns is None else columns
    values: dict[str, Any] = {
        "versions": ("3",),
        "start": start,
        "end": start + HOUR,
        "rows": 3000,
        "labelled_rows": 150,
        "tested": True,
        "columns": tuple(c for c in decided if c.kind != "prediction"),
        "predictions": tuple(c for c in decided if c.kind == "prediction"),
        "estimated": EstimatedPerformance(
            3000, {"accuracy": 0.81, "f1": 0.64, "roc_auc": None}, "yes", 0.5, None
        ),
        "realised": RealisedPerformance(150, {"accuracy": 0.78, "f1": 0.6, "roc_auc": 0.83}),
        "fairness": {
            "sex": {"demographic_parity_difference": 0.04, "equalized_odds_difference": None}
        },
        "breaches": (
            Breach("drift", "age", 0.98, None, "drift age"),
            Breach("estimated", "accuracy", 0.81, 0.85, "estimated accuracy 0.8100 is below 0.85"),
        ),
    }
    values.update(fields)
    return WindowResult(model=model, **values)


def _parse(text: bytes | str) -> Samples:
    """(sample name, labels) -> value of an exposition."""
    text = text.decode() if isinstance(text, bytes) else text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get(("ray_mlops_monitor_" + name, frozenset(labels.items())))


def _series(samples: Samples, name: str, model: str) -> set[frozenset[tuple[str, str]]]:
    """Label sets of one series name for one model."""
    full = "ray_mlops_monitor_" + name
    return {labels for n, labels in samples if n == full and ("model", model) in labels}


def test_each_series_carries_the_window_it_was_recorded_from() -> None:
    result = _result()
    assert result.drifted_columns == ["age"]  # the seeded shift is found, the rest is stable
    metrics = MonitorMetrics()
    metrics.record(result)
    samples = _parse(metrics.render())
    model = {"model": "income-model"}

    assert _value(samples, "window_rows", **model) == 3000
    assert _value(samples, "labelled_rows", **model) == 150
    assert _value(samples, "window_start_timestamp_seconds", **model) == START.timestamp()
    assert _value(samples, "window_end_timestamp_seconds", **model) == (START + HOUR).timestamp()
    for column in (*result.columns, *result.predictions):
        labels = {**model, "column": column.column}
        assert _value(samples, "drift_detected", **labels) == float(column.drifted)
        if column.tested:
            score = {**labels, "kind": column.kind, "distance": column.distance_name}
            assert _value(samples, "drift_score", **score) == pytest.approx(column.distance)
            assert _value(samples, "drift_p_value", **labels) == pytest.approx(column.adjusted_p)
    # age of the three input columns; the predictions are not inputs.
    assert _value(samples, "drift_share", **model) == pytest.approx(1 / 3)
    assert drift_share(result.columns) == pytest.approx(1 / 3)
    assert _value(samples, "estimated_metric", **model, metric="accuracy") == 0.81
    assert _value(samples, "estimated_metric", **model, metric="f1") == 0.64
    assert _value(samples, "realised_metric", **model, metric="accuracy") == 0.78
    assert _value(samples, "realised_metric", **model, metric="roc_auc") == 0.83
    fairness = {**model, "column": "sex", "measure": "demographic_parity_difference"}
    assert _value(samples, "fairness", **fairness) == 0.04
    breaches = {s: _value(samples, "breach", **model, signal=s) for s in SIGNALS}
    assert breaches == {"drift": 1.0, "estimated": 1.0, "realised": 0.0, "fairness": 0.0}
    assert _value(samples, "labels_ingested_total", **model) == 0


def test_what_the_window_could_not_measure_has_no_series() -> None:
    metrics = MonitorMetrics()
    metrics.record(_result())
    samples = _parse(metrics.render())
    model = "income-model"
    # income was empty: untested, so no distance and no p-value, and not drifted.
    assert {dict(labels)["column"] for labels in _series(samples, "drift_score", model)} == {
        "age",
        "city",
        "predicted_class",
    }
    assert _value(samples, "drift_detected", model=model, column="income") == 0
    assert _value(samples, "drift_p_value", model=model, column="income") is None
    # None metrics (roc_auc undefined on the window) are absent, not NaN.
    assert _value(samples, "estimated_metric", model=model, metric="roc_auc") is None
    measures = {dict(labels)["measure"] for labels in _series(samples, "fairness", model)}
    assert measures == {"demographic_parity_difference"}


def test_an_untested_window_shows_its_rows_and_no_drift() -> None:
    metrics = MonitorMetrics()
    quiet: dict[str, Any] = {"estimated": None, "realised": None, "fairness": {}, "breaches": ()}
    metrics.record(_result(columns=[], rows=12, labelled_rows=0, tested=False, **quiet))
    samples = _parse(metrics.render())
    assert _value(samples, "window_rows", model="income-model") == 12
    for name in ("drift_score", "drift_detected", "drift_p_value", "drift_share"):
        assert not _series(samples, name, "income-model"), name
    assert not _series(samples, "estimated_metric", "income-model")
    assert {_value(samples, "breach", model="income-model", signal=s) for s in SIGNALS} == {0.0}


def test_a_newer_window_clears_the_columns_of_the_older_one() -> None:
    metrics = MonitorMetrics()
    metrics.record(_result())
    # The next window judged city only, and it drifted; nothing broke but drift.
    city = categorical_drift("city", {"Oslo": 1500, "Rome": 1500}, {"Oslo": 600, "Rome": 2400})
    newer = _result(
        columns=decide([city]),
        start=START + HOUR,
        rows=2800,
        breaches=(Breach("drift", "city", None, None, "drift city"),),
    )
    metrics.record(newer)
    samples = _parse(metrics.render())
    columns = {
        dict(labels)["column"] for labels in _series(samples, "drift_detected", "income-model")
    }
    assert columns == {"city"}  # age, income and the predictions of the older window are gone
    assert _value(samples, "drift_detected", model="income-model", column="city") == 1
    assert _value(samples, "drift_share", model="income-model") == 1
    assert _value(samples, "window_rows", model="income-model") == newer.rows
    assert _value(samples, "breach", model="income-model", signal="estimated") == 0

    # A window judged late (ending before the one shown) does not move the series back.
    metrics.record(_result(start=START - HOUR))
    assert _parse(metrics.render()) == samples


def test_models_keep_their_own_series() -> None:
    metrics = MonitorMetrics()
    metrics.record(_result("income-model"))
    metrics.record(_result("churn", columns=[], rows=500, breaches=()))
    samples = _parse(metrics.render())
    assert _value(samples, "window_rows", model="income-model") == 3000
    assert _value(samples, "window_rows", model="churn") == 500
    assert _value(samples, "breach", model="income-model", signal="drift") == 1
    assert _value(samples, "breach", model="churn", signal="drift") == 0
    assert _series(samples, "drift_detected", "income-model")
    assert not _series(samples, "drift_detected", "churn")


def test_labels_ingested_is_a_counter_that_only_goes_up() -> None:
    metrics = MonitorMetrics()
    metrics.labels_ingested("income-model", 40)
    metrics.labels_ingested("income-model", 2)
    metrics.labels_ingested("churn", 0)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    counter = families["ray_mlops_monitor_labels_ingested"]
    assert counter.type == "counter"
    assert {s.labels["model"]: s.value for s in counter.samples} == {"income-model": 42, "churn": 0}
    with pytest.raises(DataError, match=r"churn.*-1"):
        metrics.labels_ingested("churn", -1)


def test_each_monitor_has_its_own_registry() -> None:
    first, second = MonitorMetrics(), MonitorMetrics()
    first.record(_result())
    assert first.registry is not second.registry
    assert not _series(_parse(second.render()), "window_rows", "income-model")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return bytes(answer.read())


def test_http_server_answers_the_rendered_series_until_stopped() -> None:
    metrics = MonitorMetrics()
    metrics.record(_result())
    server = serve_metrics(metrics, 0, "127.0.0.1")
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        assert server.port > 0
        assert _get(url) == metrics.render()
        metrics.labels_ingested("income-model", 7)  # a scrape sees the state of its moment
        assert _value(_parse(_get(url)), "labels_ingested_total", model="income-model") == 7
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        _get(url)


def test_a_taken_port_names_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} \\(monitor.metrics_port\\)"):
            serve_metrics(MonitorMetrics(), port, "127.0.0.1")


# cluster/monitoring/ ------------------------------------------------------------------------


def _monitor_series() -> set[str]:
    """Every sample name the monitor exposes, from a window that fills every series."""
    metrics = MonitorMetrics()
    metrics.record(_result())
    families = list(text_string_to_metric_families(metrics.render().decode()))
    assert len(families) == 13 and all(family.samples for family in families)
    names = {sample.name for family in families for sample in family.samples}
    assert all(name.startswith("ray_mlops_monitor_") for name in names)
    return names


def _server_series(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """What ServerMetrics records, as Prometheus scrapes it, without importing Ray.

    Ray's metrics agent exports each series as "ray_" + its name; Prometheus adds "_total" to a
    counter and "_bucket", "_sum", "_count" to a histogram.
    """
    created: list[tuple[str, str]] = []

    def kind(suffixes: tuple[str, ...]) -> type:
        class Recorded:
            def __init__(self, name: str, **_: Any) -> None:
                created.extend(("ray_" + name, suffix) for suffix in suffixes)

        return Recorded

    serve = types.ModuleType("ray.serve")
    serve.metrics = types.SimpleNamespace(  # type: ignore[attr-defined]
        Counter=kind(("_total",)),
        Histogram=kind(("_bucket", "_sum", "_count")),
        Gauge=kind(("",)),
    )
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    monkeypatch.setitem(sys.modules, "ray.serve", serve)
    from ray_mlops.serve.telemetry import ServerMetrics, signature_failures

    # The signature-failure counter is made once per process: an earlier test of this session
    # may have made the real one, and this recorder's must not outlive the test.
    signature_failures.cache_clear()
    try:
        ServerMetrics("income-model")
    finally:
        signature_failures.cache_clear()
    return {name + suffix for name, suffix in created}


def _alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        yield from (target["expr"] for target in panel.get("targets", []))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["query"]


def test_alerts_and_dashboard_read_only_series_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _server_series(monkeypatch)
    assert server >= SERVER_SERIES
    known = _monitor_series() | server
    rules = _alert_rules()
    used = {
        f"alerts.yml {name}": " ".join([rule["expr"], *rule["annotations"].values()])
        for name, rule in rules.items()
    }
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    for group in tests:
        for series in group["input_series"]:
            used[f"alerts_test.yml {group['name']}"] = series["series"]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for number, query in enumerate(_dashboard_queries(dashboard)):
        used[f"grafana-dashboard.json query {number}"] = query
    unknown = {
        where: sorted(set(SERIES_NAME.findall(text)) - known) for where, text in used.items()
    }
    assert not {where: names for where, names in unknown.items() if names}
    # The check reads real references: the monitor's and the server's series both appear.
    referenced = {name for text in used.values() for name in SERIES_NAME.findall(text)}
    assert {"ray_mlops_monitor_drift_score", "ray_mlops_requests_total"} <= referenced
    assert SERIES_NAME.findall("rate(ray_mlops_request_latency_ms_bucket[5m])") == [
        "ray_mlops_request_latency_ms_bucket"
    ]


def test_alert_rules_are_the_designed_ones_with_severity_and_text() -> None:
    rules = _alert_rules()
    assert set(rules) >= {
        "ModelInputDrift",
        "ModelPredictionDrift",
        "EstimatedQualityDrop",
        "RealisedQualityDrop",
        "FairnessLimitBroken",
        "ModelServerErrorRate",
        "ModelServerLatencyP99",
        "CaptureDrops",
        "MonitorStale",
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert "$labels.model" in rule["annotations"]["summary"] or name == "MonitorDown", name
    for name in ("ModelInputDrift", "ModelPredictionDrift"):
        assert "$labels.column" in rules[name]["annotations"]["summary"]


def _expansion(template: str, labels: dict[str, str]) -> re.Pattern[str]:
    """What promtool may expand an annotation to: the labels filled in, any value templated."""
    pieces = re.split(r"(\{\{.*?\}\})", template)
    pattern = []
    for piece in pieces:
        label = re.fullmatch(r"\{\{ \$labels\.(\w+) \}\}", piece)
        if label:
            pattern.append(re.escape(labels[label.group(1)]))
        else:
            pattern.append(".+?" if piece.startswith("{{") else re.escape(piece))
    return re.compile("".join(pattern))


def test_promtool_tests_cover_the_main_alerts_and_match_the_rules() -> None:
    rules = _alert_rules()
    document = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())
    assert document["rule_files"] == ["alerts.yml"]
    cases = [case for group in document["tests"] for case in group["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    assert firing >= {
        "ModelInputDrift",
        "EstimatedQualityDrop",
        "ModelServerErrorRate",
        "CaptureDrops",
    }
    for case in cases:
        rule = rules[case["alertname"]]
        for alert in case.get("exp_alerts") or []:
            # promtool compares labels and annotations whole: each must be listed.
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(alert["exp_annotations"]) == set(rule["annotations"])
            for name, template in rule["annotations"].items():
                expected = alert["exp_annotations"][name]
                assert _expansion(template, alert["exp_labels"]).fullmatch(expected), expected
            assert re.fullmatch(r"\d+m", case["eval_time"])


def test_prometheus_config_loads_the_rules_and_scrapes_the_monitor_job_the_rules_watch() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert all((MONITORING / path).is_file() for path in config["rule_files"])
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"ray", "ray-mlops-monitor"}
    assert 'up{job="ray-mlops-monitor"}' in _alert_rules()["MonitorDown"]["expr"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    alertmanager = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in alertmanager["receivers"]}
    assert receivers[alertmanager["route"]["receiver"]]["webhook_configs"][0]["url"]


def test_dashboard_is_a_grafana_dashboard_with_the_promised_panels() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = {p["title"] for p in panels}
    assert {
        "Drift score per column",
        "Share of input columns drifted",
        "Estimated vs realised metrics",
        "Labelled rows",
        "Request rate by status",
        "5xx share",
        "p99 latency",
        "Captured records dropped",
    } <= titles
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(target["expr"] for target in panel["targets"]), panel["title"]
