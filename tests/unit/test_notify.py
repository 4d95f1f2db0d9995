"""Webhook notifications against a real local HTTP server: delivery, retries, and never blocking."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ray_mlops.notify import (
    PROMOTED,
    REJECTED,
    VERSION_CREATED,
    NullNotifier,
    WebhookNotifier,
    make_notifier,
)
from tests.conftest import free_port


def fast(url: str, **settings: Any) -> WebhookNotifier:
    """A notifier with short backoffs, so that a test with retries takes well under a second."""
    return WebhookNotifier(
        url, **{"backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 2.0, **settings}
    )


@dataclass
class Hit:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: records every request and answers with ``respond(hit_number)``."""

    respond: Callable[[int], tuple[int, dict[str, str]]] = lambda _: (200, {})
    delay_s: float = 0.0
    gate: threading.Event | None = None
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.hits.append(Hit(self.path, dict(self.headers.items()), body))
                    number = len(receiver.hits)
                if receiver.gate is not None:
                    receiver.gate.wait(10)
                time.sleep(receiver.delay_s)
                status, headers = receiver.respond(number)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.hits)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    if served.gate is not None:
        served.gate.set()
    served.stop()


def test_payload_arrives_as_json_with_envelope(receiver: Receiver) -> None:
    url = receiver.start()
    with fast(url, headers={"X-Token": "abc"}) as notifier:
        notifier.send(PROMOTED, {"model": "adult", "version": "3", "metrics": {"roc_auc": 0.91}})
    assert (notifier.delivered, notifier.failed, notifier.dropped) == (1, 0, 0)
    [hit] = receiver.hits
    assert hit.path == "/hook"
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["X-Token"] == "abc"
    body = json.loads(hit.body)
    assert body["event"] == "model_promoted"
    assert body["model"] == "adult" and body["version"] == "3"
    assert body["metrics"] == {"roc_auc": 0.91}
    sent = datetime.fromisoformat(body["time"])
    assert sent.utcoffset() == timedelta(0)
    assert uuid.UUID(body["id"]).version == 4


def test_envelope_keys_win_and_each_message_has_its_own_id(receiver: Receiver) -> None:
    url = receiver.start()
    with fast(url) as notifier:
        notifier.send(VERSION_CREATED, {"event": "spoofed", "version": "1"})
        notifier.send(REJECTED, {"version": "2"})
    bodies = [json.loads(hit.body) for hit in receiver.hits]
    assert [body["event"] for body in bodies] == [VERSION_CREATED, REJECTED]
    assert bodies[0]["id"] != bodies[1]["id"]


def test_send_returns_at_once_when_the_server_is_slow(receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    url = receiver.start()
    notifier = fast(url)
    timings = []
    for number in range(2):
        started = time.perf_counter()
        notifier.send(VERSION_CREATED, {"version": str(number)})
        timings.append(time.perf_counter() - started)
    assert max(timings) < 0.05
    notifier.close(timeout_s=10)
    assert notifier.delivered == 2


def test_503_twice_then_200_is_delivered_once_after_retries(receiver: Receiver) -> None:
    receiver.respond = lambda number: (503, {}) if number <= 2 else (200, {})
    url = receiver.start()
    with fast(url, retries=5) as notifier:
        notifier.send(PROMOTED, {"version": "7"})
    assert receiver.count() == 3
    assert (notifier.delivered, notifier.failed) == (1, 0)
    assert len({json.loads(hit.body)["id"] for hit in receiver.hits}) == 1  # the same message


def test_429_waits_for_retry_after(receiver: Receiver) -> None:
    receiver.respond = lambda number: (429, {"Retry-After": "0.3"}) if number == 1 else (200, {})
    url = receiver.start()
    notifier = WebhookNotifier(url, retries=2, backoff_s=0.01, max_backoff_s=1.0)
    started = time.monotonic()
    notifier.send(PROMOTED, {})
    notifier.close(timeout_s=5)
    assert receiver.count() == 2 and notifier.delivered == 1
    assert time.monotonic() - started >= 0.3


def test_a_receiver_that_comes_up_late_still_gets_the_message() -> None:
    port = free_port()
    late = Receiver()
    url = f"http://127.0.0.1:{port}/hook"
    starter = threading.Timer(1.0, late.start, kwargs={"port": port})
    notifier = WebhookNotifier(url, retries=10, backoff_s=0.1, max_backoff_s=0.3, timeout_s=1.0)
    try:
        starter.start()
        notifier.send(VERSION_CREATED, {"version": "1"})
        notifier.close(timeout_s=8)
    finally:
        starter.cancel()
        late.stop()
    assert (notifier.delivered, notifier.failed) == (1, 0)
    assert late.count() == 1


def test_nothing_listening_fails_quietly_within_the_close_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    notifier = fast(url, retries=3)
    started = time.perf_counter()
    notifier.send(PROMOTED, {"version": "1"})
    assert time.perf_counter() - started < 0.05
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ray_mlops.notify"):
        notifier.close(timeout_s=3.0)
    assert time.monotonic() - started < 3.0 + 0.5
    assert (notifier.delivered, notifier.failed, notifier.dropped) == (0, 1, 0)
    assert PROMOTED in caplog.text and url in caplog.text


def test_close_gives_up_on_schedule_while_retries_remain() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    notifier = WebhookNotifier(url, retries=20, backoff_s=0.2, max_backoff_s=5.0)
    notifier.send(PROMOTED, {})
    notifier.send(REJECTED, {})
    started = time.monotonic()
    notifier.close(timeout_s=0.5)
    assert time.monotonic() - started < 0.5 + 0.3
    # The message being retried failed; the one behind it was never sent.
    assert (notifier.delivered, notifier.failed, notifier.dropped) == (0, 1, 1)


def test_400_is_not_retried_and_headers_are_not_logged(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.respond = lambda _: (400, {})
    url = receiver.start()
    secret = {"Authorization": "Bearer s3cret"}
    with (
        caplog.at_level(logging.WARNING, logger="ray_mlops.notify"),
        fast(url, headers=secret) as notifier,
    ):
        notifier.send(REJECTED, {"version": "4"})
    assert receiver.count() == 1
    assert (notifier.delivered, notifier.failed) == (0, 1)
    assert REJECTED in caplog.text and "400" in caplog.text and url in caplog.text
    assert "s3cret" not in caplog.text


def test_a_full_queue_drops_and_counts(receiver: Receiver) -> None:
    receiver.gate = threading.Event()
    url = receiver.start()
    notifier = fast(url, queue_size=1)
    notifier.send(VERSION_CREATED, {"n": 1})
    deadline = time.monotonic() + 5
    while receiver.count() < 1 and time.monotonic() < deadline:  # the worker holds message 1
        time.sleep(0.01)
    notifier.send(VERSION_CREATED, {"n": 2})  # waits in the queue
    notifier.send(VERSION_CREATED, {"n": 3})  # no room
    assert notifier.dropped == 1
    receiver.gate.set()
    notifier.close(timeout_s=5)
    assert (notifier.delivered, notifier.failed, notifier.dropped) == (2, 0, 1)
    assert [json.loads(hit.body)["n"] for hit in receiver.hits] == [1, 2]


def test_close_is_idempotent_and_later_sends_are_dropped(receiver: Receiver) -> None:
    notifier = fast(receiver.start())
    notifier.close()
    notifier.close()
    notifier.send(PROMOTED, {})
    assert (notifier.delivered, notifier.dropped) == (0, 1)
    assert receiver.count() == 0


def test_unserialisable_payload_is_sent_as_text(receiver: Receiver) -> None:
    with fast(receiver.start()) as notifier:
        notifier.send(PROMOTED, {"when": datetime(2024, 1, 2), "ids": {1, 2} - {2}})
    body = json.loads(receiver.hits[0].body)
    assert body["when"] == "2024-01-02 00:00:00" and body["ids"] == "{1}"


def test_make_notifier_picks_null_without_url() -> None:
    for missing in (None, "", "  "):
        null = make_notifier(missing, retries=1)
        assert isinstance(null, NullNotifier)
        with null:
            null.send(PROMOTED, {"version": "1"})
        assert (null.delivered, null.failed, null.dropped) == (0, 0, 0)
    real = make_notifier("http://127.0.0.1:9/hook", retries=0)
    assert isinstance(real, WebhookNotifier) and real.retries == 0
    real.close(timeout_s=0)


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("ftp://example.com/hook")
