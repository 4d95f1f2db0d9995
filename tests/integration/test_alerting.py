"""Alerts for real: Debian's Prometheus scrapes the model server and the monitor, evaluates
``cluster/monitoring/alerts.yml``, and Debian's Alertmanager, configured by
``cluster/monitoring/alertmanager.yml``, routes the alerts to a webhook receiver run here.

The two configs are the shipped ones with only what a test must change: local ports, the
receiver's URL, one-second scrape and evaluation intervals and short grouping waits. The
monitor's series come from a :class:`MonitorMetrics` served by ``serve_metrics``, holding a
window judged by ``evaluate_window`` on the sample with ``age`` shifted by half a standard
deviation (the issue's injected drift); the server's from Ray's metrics export port of the
session's node, where the served champion's replica records them. Its capture buffer holds
fewer records than a request carries, so it really drops captured records (``CaptureDrops``).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
import yaml

from ray_mlops.config import load_config
from ray_mlops.monitor.exposition import MetricsServer, MonitorMetrics, serve_metrics
from ray_mlops.monitor.result import WindowResult
from ray_mlops.monitor.service import DRIFT_EVENT, drift_event
from ray_mlops.monitor.window import Limits, Reference, Window, evaluate_window
from ray_mlops.notify import make_notifier
from ray_mlops.pipeline import PipelineResult
from ray_mlops.serve.launch import ServedModel, deploy_model, stop_serving
from tests.conftest import free_port
from tests.integration.test_serving import _records

MONITORING = Path(__file__).resolve().parents[2] / "cluster" / "monitoring"
MODEL = "adult-test"
# The capture keeps 5 records; each request carries 10: the other 5 are dropped.
CAPTURE_BUFFER = 5
REQUEST_RECORDS = 10
# From a change of the series to the webhook: a scrape and an evaluation (1 s each), the
# notification to Alertmanager, its group wait (0 s) or interval (1 s), the POST.
ALERT_WITHIN_S = 60.0
ALERTS = "/alerts"
EVENTS = "/events"


# The webhook receiver ---------------------------------------------------------------------


class Receiver:
    """Every JSON body POSTed to it, by path, from a thread of its own HTTP server."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._changed:
                    receiver.messages.append((self.path, json.loads(body)))
                    receiver._changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def wait_for(
        self, found: Callable[[str, dict[str, Any]], bool], timeout_s: float, what: str
    ) -> dict[str, Any]:
        """The first message ``found`` accepts, waiting up to ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for path, message in self.messages:
                    if found(path, message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {what} within {timeout_s:.0f} s; received: {self.messages}"
                    )
                self._changed.wait(remaining)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _alert(message: dict[str, Any], name: str, status: str, **labels: str) -> dict[str, Any] | None:
    """The alert of Alertmanager's webhook message with this name, status and labels."""
    for alert in message.get("alerts", []):
        wanted = {"alertname": name, **labels}
        if alert["status"] == status and wanted.items() <= alert["labels"].items():
            return dict(alert)
    return None


def _wait_for_alert(
    receiver: Receiver, name: str, status: str, **labels: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(webhook message, alert) of the first notification of this alert in this state."""
    message = receiver.wait_for(
        lambda path, body: path == ALERTS and _alert(body, name, status, **labels) is not None,
        ALERT_WITHIN_S,
        f"{status} {name} {labels} from Alertmanager",
    )
    alert = _alert(message, name, status, **labels)
    assert alert is not None
    return message, alert


# Processes --------------------------------------------------------------------------------


def _until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def _running(command: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A process started here, ready when ``ready_url`` answers, always stopped after."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _until(lambda: process.poll() is not None or _answers(ready_url), 30, command[0])
        assert process.poll() is None, f"{command[0]} exited: {log.read_text()[-3000:]}"
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(
        f"{names[0]} is not installed: `make setup` installs it as root "
        "(apt-get install prometheus prometheus-alertmanager)"
    )


def _short_for(rules: str) -> str:
    """The rules with each `for` of N minutes made N seconds.

    Only so that a test can see a pending alert fire (MonitorDown waits 5 minutes): every
    expression, label and annotation stays as shipped.
    """
    shortened = re.sub(r"(?m)^(\s+for: \d+)m$", r"\1s", rules)

    def without_for(text: str) -> Any:
        document = yaml.safe_load(text)
        for group in document["groups"]:
            for rule in group["rules"]:
                rule.pop("for")
        return document

    assert without_for(shortened) == without_for(rules)
    assert "for: 5s" in shortened
    return shortened


# Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def _window(sample: pd.DataFrame, end: datetime, shift_sd: float) -> Window:
    """The second half of the sample as an hour of traffic, ``age`` shifted by ``shift_sd``."""
    frame = sample.iloc[len(sample) // 2 :].reset_index(drop=True)
    frame["age"] = frame["age"] + shift_sd * sample["age"].std()
    return Window(MODEL, end - timedelta(hours=1), end, frame, ("1",))


@pytest.fixture(scope="module")
def judge(adult_sample: pd.DataFrame) -> Callable[[float], WindowResult]:
    """A window judged against the first half of the sample, ending now."""
    train = adult_sample.iloc[: len(adult_sample) // 2]
    reference = Reference(
        numeric={c: train[c].to_numpy(dtype=float) for c in ("age", "hours_per_week")},
        categorical={"sex": dict(train["sex"].value_counts())},
    )
    limits = Limits(min_distance={"wasserstein_normalised": 0.1, "jensen_shannon": 0.1})

    def run(shift_sd: float) -> WindowResult:
        window = _window(adult_sample, datetime.now(timezone.utc), shift_sd)
        return evaluate_window(window, reference, limits)

    return run


@pytest.fixture(scope="module")
def drifted(judge: Callable[[float], WindowResult]) -> WindowResult:
    result = judge(0.5)
    assert result.drifted_columns == ["age"]  # what the alert must name, and only it
    return result


class Monitor:
    """The monitor's /metrics, which a test may stop."""

    def __init__(self, metrics: MonitorMetrics, server: MetricsServer) -> None:
        self.metrics = metrics
        self.server: MetricsServer | None = server
        self.target = f"127.0.0.1:{server.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="module")
def monitor(drifted: WindowResult) -> Iterator[Monitor]:
    metrics = MonitorMetrics()
    metrics.record(drifted)
    monitor = Monitor(metrics, serve_metrics(metrics, 0, "127.0.0.1"))
    yield monitor
    monitor.stop()


@pytest.fixture(scope="module")
def served(trained: PipelineResult, workspace: Path, tracking_uri: str) -> Iterator[ServedModel]:
    base = load_config(workspace / f"{MODEL}.yaml").pipeline
    capture = {
        "enabled": True,
        "sample_rate": 1.0,
        "path": str(workspace / "capture-alerting"),
        "max_buffer": CAPTURE_BUFFER,
        "flush_interval_s": 0.5,
    }
    section = {**base.serve.model_dump(mode="json"), "capture": capture, "port": free_port()}
    cfg = base.model_copy(update={"serve": base.serve.model_validate(section)})
    yield deploy_model(cfg, tracking_uri, base_dir=workspace)
    stop_serving()


@pytest.fixture(scope="module")
def ray_export_target(served: ServedModel) -> str:
    """The node's metrics export port, where the replica's series reach Ray's agent."""
    import ray

    (node,) = [node for node in ray.nodes() if node["Alive"]]
    return f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"


@pytest.fixture(scope="module")
def alertmanager(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Alertmanager with alertmanager.yml's routes, notifying the receiver at once."""
    directory = tmp_path_factory.mktemp("alertmanager")
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    for hooks in config["receivers"]:
        for hook in hooks["webhook_configs"]:
            hook["url"] = receiver.url + ALERTS
    for route in (config["route"], *config["route"].get("routes", [])):
        route.update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    command = [
        _binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={directory / 'alertmanager.yml'}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address={address}",
        "--cluster.listen-address=",  # one instance: no gossip port
    ]
    with _running(command, directory / "log", f"http://{address}/-/ready"):
        yield address


@pytest.fixture(scope="module")
def prometheus(
    monitor: Monitor,
    ray_export_target: str,
    alertmanager: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """Prometheus with prometheus.yml's jobs and alerts.yml's rules, every second."""
    directory = tmp_path_factory.mktemp("prometheus")
    (directory / "alerts.yml").write_text(_short_for((MONITORING / "alerts.yml").read_text()))
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    assert config["rule_files"] == ["alerts.yml"]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ray", "ray-mlops-monitor"}
    # Ray's discovery file lists this node too, but another Ray on the machine rewrites it.
    del jobs["ray"]["file_sd_configs"]
    jobs["ray"]["static_configs"] = [{"targets": [ray_export_target]}]
    jobs["ray-mlops-monitor"]["static_configs"] = [{"targets": [monitor.target]}]
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    command = [
        _binary("prometheus"),
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={address}",
    ]
    with _running(command, directory / "log", f"http://{address}/-/ready"):
        yield f"http://{address}"


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"]["result"])


def _predict(served: ServedModel, sample: pd.DataFrame, requests_n: int) -> None:
    for number in range(requests_n):
        records = _records(sample, REQUEST_RECORDS, start=number * REQUEST_RECORDS)
        response = requests.post(served.predict_url, json={"records": records}, timeout=60)
        assert response.status_code == 200, response.text


# Tests ------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_model_server_and_the_monitor(
    prometheus: str, served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    _predict(served, adult_sample, 3)

    def scraped() -> bool:
        found = _query(prometheus, f'sum(ray_mlops_requests_total{{model="{MODEL}"}})')
        up = {r["metric"]["job"]: r["value"][1] for r in _query(prometheus, "up")}
        # Each target is scraped at its own offset in the interval: wait for both.
        ready = up == {"ray": "1", "ray-mlops-monitor": "1"} and bool(found)
        return ready and float(found[0]["value"][1]) >= 3

    _until(scraped, 30, "both targets up and the server's requests in Prometheus")
    drifted = _query(prometheus, 'ray_mlops_monitor_drift_detected{job="ray-mlops-monitor"} == 1')
    assert [(r["metric"]["model"], r["metric"]["column"]) for r in drifted] == [(MODEL, "age")]


def test_input_drift_reaches_the_webhook_through_alertmanager(
    prometheus: str, receiver: Receiver, drifted: WindowResult
) -> None:
    message, alert = _wait_for_alert(receiver, "ModelInputDrift", "firing", model=MODEL)
    assert alert["labels"]["column"] == "age" and alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["summary"] == f"Input column age of model {MODEL} drifted"
    age = next(column for column in drifted.columns if column.column == "age")
    assert f"{age.distance_name} {age.distance:.3f}" in alert["annotations"]["description"]
    # alertmanager.yml groups by alert and model: the one drifted column, nothing else.
    assert message["groupLabels"] == {"alertname": "ModelInputDrift", "model": MODEL}
    assert [a["labels"]["column"] for a in message["alerts"]] == ["age"]


def test_the_projects_own_webhook_reports_the_drift_too(
    receiver: Receiver, drifted: WindowResult
) -> None:
    # What the monitor sends for an alarmed window (Monitor._record), to the same receiver.
    with make_notifier(receiver.url + EVENTS, retries=0) as notifier:
        notifier.send(DRIFT_EVENT, drift_event(drifted, "run-1"))
    event = receiver.wait_for(lambda path, _: path == EVENTS, 10, f"{DRIFT_EVENT} event")
    assert event["event"] == "model_drift" and event["model"] == MODEL
    assert [(b["signal"], b["name"]) for b in event["breaches"]] == [("drift", "age")]
    assert event["run_id"] == "run-1" and event["window_start"] == drifted.start.isoformat()


def test_dropped_captured_records_reach_the_webhook(
    prometheus: str, receiver: Receiver, served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    _predict(served, adult_sample, 2)
    _, alert = _wait_for_alert(receiver, "CaptureDrops", "firing", model=MODEL)
    assert alert["annotations"]["summary"] == f"Model {MODEL} dropped captured records"
    dropped = _query(prometheus, f'sum(ray_mlops_capture_dropped_total{{model="{MODEL}"}})')
    assert float(dropped[0]["value"][1]) >= REQUEST_RECORDS - CAPTURE_BUFFER


def test_a_clean_window_resolves_the_drift_alert(
    prometheus: str,
    receiver: Receiver,
    monitor: Monitor,
    judge: Callable[[float], WindowResult],
) -> None:
    _wait_for_alert(receiver, "ModelInputDrift", "firing", model=MODEL)
    clean = judge(0.0)
    assert clean.tested and not clean.drifted_columns and not clean.breaches
    monitor.metrics.record(clean)
    started = time.monotonic()
    message, alert = _wait_for_alert(receiver, "ModelInputDrift", "resolved", model=MODEL)
    assert alert["labels"]["column"] == "age"
    assert message["status"] == "resolved"  # the whole group: no column drifts any more
    assert time.monotonic() - started < ALERT_WITHIN_S


def test_a_stopped_monitor_raises_monitor_down(
    prometheus: str, receiver: Receiver, monitor: Monitor
) -> None:
    target = monitor.target
    monitor.stop()
    _, alert = _wait_for_alert(receiver, "MonitorDown", "firing", instance=target)
    assert alert["labels"]["job"] == "ray-mlops-monitor"
    assert target in alert["annotations"]["summary"]
