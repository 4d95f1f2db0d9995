"""Webhook notifications of registry events, delivered off the pipeline's thread.

A notification is worth less than the step that sends it: ``send`` only puts the message on a
bounded queue, one daemon thread POSTs it with retries, and nothing is ever raised back to the
caller. A receiver that is slow, down or wrong costs the pipeline nothing but log lines.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests

from ray_mlops.secrets import address_of, is_redacted, redact_text

if TYPE_CHECKING:
    from ray_mlops.config import NotifyConfig

VERSION_CREATED = "model_version_created"
PROMOTED = "model_promoted"
REJECTED = "model_rejected"
ROLLED_BACK = "model_rolled_back"
MODEL_TAMPERED = "model_tampered"  # a version refused at load: its files or signer do not match
WEBHOOK_ENV = "RAY_MLOPS_WEBHOOK_URL"

_log = logging.getLogger(__name__)
# Wakes the worker when ``close`` has nothing left for it to do.
_STOP = object()


class Notifier(Protocol):
    """What the pipeline calls: a ``WebhookNotifier`` or a ``NullNotifier``."""

    delivered: int
    failed: int
    dropped: int

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Queue ``event`` with ``payload``; never blocks, never raises."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued within ``timeout_s``, then stop."""


@dataclass(frozen=True)
class _Message:
    event: str
    body: bytes


class WebhookNotifier:
    """POSTs each event as JSON to one URL from a background thread, with retries.

    The body is ``{"event": ..., "time": <ISO-8601 UTC>, "id": <uuid4>, **payload}``; ``time``
    and ``id`` are fixed when ``send`` is called, so every retry of a message carries the same
    ``id`` and the receiver can drop duplicates. The envelope keys win over payload keys of the
    same name, for that reason.

    Connection errors, timeouts, HTTP 429 and 5xx are retried after ``backoff_s * 2**attempt``
    seconds (at most ``max_backoff_s``), or after the server's ``Retry-After`` seconds, also
    capped: one slow receiver must not hold every later message for long. Any other 4xx is a
    mistake in the request that a retry would repeat, so it fails at once.

    Attributes:
        delivered: Messages the receiver accepted (2xx).
        failed: Messages given up on: retries spent, a non-retryable answer, or still being
            retried when ``close`` timed out.
        dropped: Messages never sent: the queue was full, the notifier was closed, or
            ``close`` timed out before their turn.

    Example:
        >>> with WebhookNotifier("http://127.0.0.1:9/hook", retries=0) as notifier:
        ...     notifier.send(PROMOTED, {"model": "adult", "version": "3"})
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
        queue_size: int = 1000,
    ) -> None:
        """Check the settings and start the delivery thread.

        Args:
            url: An ``http://`` or ``https://`` URL that receives one POST per message.
            retries: Further attempts after the first one fails in a retryable way.
            backoff_s: Wait before the first retry; it doubles with each retry.
            max_backoff_s: Longest wait between two attempts.
            timeout_s: Connect and read timeout of one attempt.
            headers: Extra request headers (an ``Authorization`` token, say); never logged.
            queue_size: Messages that may wait; more are dropped.

        Raises:
            ValueError: The URL is not HTTP(S) or a number is out of range.
        """
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ValueError(f"webhook URL must be http(s)://host/...: {_redact(url)!r}")
        if retries < 0 or backoff_s < 0 or max_backoff_s < 0 or timeout_s <= 0 or queue_size < 1:
            raise ValueError(
                "retries, backoff_s and max_backoff_s must be >= 0, timeout_s > 0, queue_size >= 1"
            )
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._shown_url = _redact(url)
        self._queue: queue.Queue[_Message | object] = queue.Queue(maxsize=queue_size)
        # One lock guards the counters, ``_pending`` (queued or in flight) and ``_in_flight``;
        # ``close`` waits on the condition for ``_pending`` to reach zero.
        self._lock = threading.Condition()
        self._pending = 0
        self._in_flight: _Message | None = None
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-notifier", daemon=True)
        self._thread.start()

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Queue one message and return at once; it is dropped (and counted) if the queue is full.

        The payload is serialised here, so later changes to the caller's dict do not leak into
        the message; values JSON cannot hold are sent as their ``str``.
        """
        try:
            envelope = {
                "event": event,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "id": str(uuid.uuid4()),
            }
            body = json.dumps({**payload, **envelope}, default=str).encode("utf-8")
        except Exception as error:  # a bad payload must not reach the pipeline
            with self._lock:
                self.failed += 1
            _log.warning(
                "webhook %s to %s: payload not serialisable: %s", event, self._shown_url, error
            )
            return
        message = _Message(event, body)
        with self._lock:
            if self._closed:
                self.dropped += 1
                reason = "notifier is closed"
            else:
                try:
                    self._queue.put_nowait(message)
                    self._pending += 1
                    return
                except queue.Full:
                    self.dropped += 1
                    reason = f"queue full ({self._queue.maxsize} waiting)"
        _log.warning("webhook %s to %s dropped: %s", event, self._shown_url, reason)

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait up to ``timeout_s`` for the queue to drain, then stop the thread.

        Messages still queued at the deadline are counted as dropped, one still being retried
        as failed, so the counters are final when this returns. Calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            deadline = time.monotonic() + max(timeout_s, 0.0)
            while self._pending > 0 and (remaining := deadline - time.monotonic()) > 0:
                self._lock.wait(remaining)
            self._stop.set()
            while True:  # empty the queue, so that the stop marker fits below
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            abandoned = self._in_flight
            self._in_flight = None
            # Everything still pending is counted here, so the counters are final on return;
            # the worker counts nothing once ``_stop`` is set or ``_in_flight`` was cleared.
            left = self._pending - (abandoned is not None)
            self.dropped += left
            self.failed += abandoned is not None
            self._pending = 0
            # The queue is empty now and ``send`` refuses new messages, so this cannot fail.
            self._queue.put_nowait(_STOP)
        if left:
            _log.warning("webhook to %s: %d message(s) dropped at close", self._shown_url, left)
        if abandoned is not None:
            _log.warning(
                "webhook %s to %s failed: still retrying when close timed out",
                abandoned.event,
                self._shown_url,
            )
        # An attempt in flight cannot be interrupted; the daemon thread ends after it.
        self._thread.join(max(deadline - time.monotonic(), 0.0))

    def __enter__(self) -> WebhookNotifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        with requests.Session() as session:
            while True:
                item = self._queue.get()
                if not isinstance(item, _Message):
                    return
                with self._lock:
                    if self._stop.is_set():  # ``close`` counted it as dropped
                        continue
                    self._in_flight = item
                try:
                    delivered = self._deliver(session, item)
                except Exception as error:  # the thread must outlive any one message
                    reason = redact_text(str(error))  # a library's message may quote the URL
                    _log.warning("webhook %s to %s failed: %s", item.event, self._shown_url, reason)
                    delivered = False
                with self._lock:
                    if self._in_flight is item:  # else ``close`` counted it already
                        self._in_flight = None
                        self._pending -= 1
                        if delivered:
                            self.delivered += 1
                        else:
                            self.failed += 1
                        self._lock.notify_all()

    def _deliver(self, session: requests.Session, message: _Message) -> bool:
        """Try once plus ``retries`` times; whether the receiver accepted the message."""
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = session.post(
                    self.url, data=message.body, headers=self._headers, timeout=self.timeout_s
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = type(error).__name__
            else:
                if 200 <= response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    _log.warning(
                        "webhook %s to %s failed: %s, not retried",
                        message.event,
                        self._shown_url,
                        problem,
                    )
                    return False
                retry_after = _retry_after(response)
            if self._stop.is_set():  # ``close`` has counted and logged it
                return False
            if attempt >= self.retries:
                _log.warning(
                    "webhook %s to %s failed after %d attempt(s): %s",
                    message.event,
                    self._shown_url,
                    attempt + 1,
                    problem,
                )
                return False
            wait = self.backoff_s * 2**attempt if retry_after is None else retry_after
            # ``close`` sets the event, which cuts the wait short.
            if self._stop.wait(min(wait, self.max_backoff_s)):
                return False
            attempt += 1


class NullNotifier:
    """The notifier when no webhook is configured: it accepts every call and does nothing."""

    def __init__(self) -> None:
        """No settings; the counters stay at zero."""
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Do nothing."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Do nothing."""

    def __enter__(self) -> NullNotifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def make_notifier(url: str | None, **kw: Any) -> WebhookNotifier | NullNotifier:
    """A ``WebhookNotifier`` for ``url``, or a ``NullNotifier`` when it is ``None`` or blank.

    Args:
        url: The webhook URL from the config, if any.
        **kw: Keyword settings of ``WebhookNotifier`` (``retries``, ``timeout_s``...).

    Returns:
        A notifier to ``send`` to and ``close`` at the end of the run.
    """
    if url is None or not url.strip():
        return NullNotifier()
    return WebhookNotifier(url.strip(), **kw)


def notifier_for(settings: NotifyConfig) -> WebhookNotifier | NullNotifier:
    """The notifier the config's ``notify`` section asks for ($RAY_MLOPS_WEBHOOK_URL if unset).

    A run records its config with the webhook's token redacted
    (:func:`ray_mlops.secrets.redact_config`); a config read back from a run (``promote``,
    ``rollback``) then notifies through $RAY_MLOPS_WEBHOOK_URL, not the redacted URL.
    """
    url = settings.webhook_url
    if url is None or is_redacted(url):
        url = os.environ.get(WEBHOOK_ENV)
    return make_notifier(
        url,
        retries=settings.retries,
        timeout_s=settings.timeout_s,
    )


def _retry_after(response: requests.Response) -> float | None:
    """The ``Retry-After`` header in seconds; an HTTP-date form is ignored (backoff applies)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _redact(url: str) -> str:
    """The URL for log lines, without user:password or query string, where tokens often sit."""
    return address_of(url)
