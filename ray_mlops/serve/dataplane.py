"""One replica's state and model calls, apart from any protocol (as KServe's ``DataPlane``).

A :class:`DataPlane` holds the champion and, in canary or shadow mode, the challenger
(:mod:`ray_mlops.serve.slots`), the keys and rate limits, the traffic capture and the
metrics. It batches requests across clients with ``@serve.batch`` and swaps versions when
an alias moves without failing a request. The protocol routers
(:mod:`ray_mlops.serve.v1_endpoints`, :mod:`ray_mlops.serve.v2_endpoints`) only translate
HTTP to its calls.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import serve

from ray_mlops.config import ServeConfig, TrackingConfig
from ray_mlops.errors import DataError
from ray_mlops.serve.capture import TrafficCapture
from ray_mlops.serve.feedback import FeedbackSink
from ray_mlops.serve.guard import KeyStore, RateLimiter
from ray_mlops.serve.labels import check_labels
from ray_mlops.serve.schema import RequestError, RequestRows
from ray_mlops.serve.scores import Scores
from ray_mlops.serve.slots import AliasView, AliasWatcher, ModelSlot, load_slot
from ray_mlops.serve.telemetry import ServerMetrics
from ray_mlops.settings_env import apply_tracking
from ray_mlops.workspace import Workspace

_log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"


class DataPlane:
    """The served model versions of one replica, and what every request is checked against.

    Its settings come in two parts, the way Serve tells a restart from an in-place update:
    the constructor gets what needs a new replica (the model, its alias, the tracking URI,
    the base folder and the device) and loads the champion once; :meth:`reconfigure` gets
    the config's ``serve`` section, on start and whenever only it changed.

    Args:
        settings: ``model_name``, ``champion_alias``, ``tracking_uri``, and optionally
            ``base_dir``, ``workspace``, ``device`` and ``tracking`` (the config's section,
            applied to this process before it loads the champion).
        replica: This replica's name, for the capture's files and ``/healthz``.
    """

    def __init__(self, settings: Mapping[str, Any], replica: str) -> None:
        if "tracking" in settings:
            apply_tracking(TrackingConfig.model_validate(settings["tracking"]))
        self.model_name: str = settings["model_name"]
        self.tracking_uri: str = settings["tracking_uri"]
        self.base_dir = Path(settings.get("base_dir", "."))
        # A relative capture path lands in the workspace's storage, beside a run's other files.
        self.workspace = Workspace(
            Path(settings.get("workspace", self.base_dir)), settings.get("storage", "")
        )
        # A GPU replica runs the network there; Ray gave this process its GPU(s).
        self.device: str = settings.get("device", "cpu")
        self.replica = replica
        self.champion_alias: str = settings["champion_alias"]
        self.slots: dict[str, ModelSlot | None] = {
            CHAMPION: load_slot(
                self.tracking_uri, self.model_name, self.champion_alias, device=self.device
            )
        }
        self.aliases = {CHAMPION: self.champion_alias}
        self.metrics = ServerMetrics(self.model_name)
        # Serve's defaults until reconfigure() brings the config's serve section.
        self.cfg = ServeConfig()
        self.keys = KeyStore.from_config(self.cfg.auth, self.base_dir)
        self.limiter = RateLimiter(self.cfg.rate_limit.requests_per_s, self.cfg.rate_limit.burst)
        self.capture: TrafficCapture | None = None
        # Labels posted to the feedback endpoint go where `ray-mlops monitor` reads them.
        labels_path = settings.get("labels_path")
        self.feedback = (
            FeedbackSink(self.workspace.capture_location(labels_path)) if labels_path else None
        )
        self.watcher: AliasWatcher | None = None
        self._configured = False
        self._captured_drops = 0
        self._random = random.Random()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._report_gauges()

    # -- settings ------------------------------------------------------------------------

    def reconfigure(self, cfg: ServeConfig) -> None:
        """Apply the ``serve`` section: keys, rate limits, the deadline, batching, capture,
        the rollout and alias polling change in place (no reload, no dropped request).

        Everything new is built before anything is swapped, so a failure (a keys file that
        cannot be read) leaves the replica serving as it was.
        """
        old = self.cfg if self._configured else None  # None: the first call, at start
        keys = KeyStore.from_config(cfg.auth, self.base_dir)
        limiter = self.limiter  # kept when unchanged: its buckets hold the callers' tokens
        if old is None or cfg.rate_limit != old.rate_limit:
            limiter = RateLimiter(cfg.rate_limit.requests_per_s, cfg.rate_limit.burst)
        capture, retired = self.capture, None
        if old is None or cfg.capture != old.capture:
            capture = TrafficCapture.from_config(
                cfg.capture, self.workspace.capture_location(cfg.capture.path), self.replica
            )
            retired = self.capture
        slots, aliases = dict(self.slots), {CHAMPION: self.champion_alias}
        if cfg.rollout.mode != "none":
            aliases[CHALLENGER] = cfg.rollout.challenger_alias
            if self.aliases.get(CHALLENGER) != cfg.rollout.challenger_alias:
                slots[CHALLENGER] = self._load_challenger(cfg.rollout.challenger_alias)
        else:
            slots.pop(CHALLENGER, None)
        watching = old is None or aliases != self.aliases or cfg.alias_poll_s != old.alias_poll_s

        self.cfg, self.keys, self.limiter, self.capture = cfg, keys, limiter, capture
        self._configured = True
        if retired is not None:
            self._captured_drops = 0
        if watching:
            if self.watcher is not None:
                self.watcher.stop()
            self.slots, self.aliases = slots, aliases
            # Ray exports a gauge's last value once: the watcher sets them again every poll.
            self.watcher = AliasWatcher(
                self.tracking_uri,
                self.model_name,
                AliasView(self.slots, self.aliases),
                cfg.alias_poll_s,
                on_poll=self._report_gauges,
                device=self.device,
            )
        self.score_batch.set_max_batch_size(cfg.max_batch_size)  # type: ignore[attr-defined]
        self.score_batch.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)  # type: ignore[attr-defined]
        self._report_gauges()
        if retired is not None:
            retired.close(timeout_s=5.0)  # writes what it holds; new requests go to the new one

    def _load_challenger(self, alias: str) -> ModelSlot | None:
        """The challenger's slot, or None while no version has the alias (champion only)."""
        try:
            return load_slot(self.tracking_uri, self.model_name, alias, device=self.device)
        except Exception as exc:
            _log.info("no challenger @%s yet (%s); the champion answers alone", alias, exc)
            return None

    def _report_gauges(self) -> None:
        """The versions this replica serves, and that it is up."""
        for role, slot in list(self.slots.items()):
            if slot is not None:
                self.metrics.version.set(
                    float(slot.version), tags={"model": self.model_name, "alias": role}
                )
        self.metrics.replica_up.set(1, tags={"model": self.model_name})

    # -- admission -----------------------------------------------------------------------

    def admit(self, headers: Mapping[str, str], name: str | None, role: str) -> None:
        """The checks before any work: the model's name, the caller's key, role and rate.

        Raises:
            RequestError: 404 for another model, 401/403 for the key, 429 for the rate.
        """
        if name and name != self.model_name:
            raise RequestError(
                404,
                f"model {name!r} is not served here; this server serves {self.model_name!r}",
            )
        principal = self.keys.authenticate(headers)
        self.keys.authorize(principal, role)
        self.limiter.check(principal)

    # -- the served versions -------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The replica holds a loaded, warmed-up champion."""
        return self.slots.get(CHAMPION) is not None

    def choose(self) -> ModelSlot:
        """The champion, or in canary mode the challenger for its share of requests."""
        champion = self.slot(None)
        challenger = self.slots.get(CHALLENGER)
        rollout = self.cfg.rollout
        if (
            rollout.mode == "canary"
            and challenger is not None
            and self._random.random() < rollout.canary_share
        ):
            return challenger
        return champion

    def slot(self, version: str | None) -> ModelSlot:
        """The slot serving ``version``; None: the champion.

        Raises:
            RequestError: 404, that version is not served here.
        """
        if version is None:
            champion = self.slots[CHAMPION]
            assert champion is not None
            return champion
        served = [slot for slot in self.slots.values() if slot is not None]
        for slot in served:
            if slot.version == version:
                return slot
        raise RequestError(
            404,
            f"version {version!r} of model {self.model_name!r} is not served here; "
            f"served: {[slot.version for slot in served]}",
        )

    def versions(self) -> list[str]:
        """The versions served here: the champion's first."""
        return list(dict.fromkeys(s.version for s in self.slots.values() if s is not None))

    # -- model calls -----------------------------------------------------------------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def score_batch(self, items: list[tuple[ModelSlot, RequestRows]]) -> list[Scores]:
        """One model call per model version for the rows of every request in the batch."""
        self.metrics.batch_size.observe(len(items), tags={"model": self.model_name})
        results: list[Scores | None] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (slot, _) in enumerate(items):
            groups.setdefault(id(slot), []).append(i)
        for members in groups.values():
            slot = items[members[0]][0]
            parts = [items[i][1] for i in members]
            rows = sum(len(part) for part in parts)
            if rows <= self.cfg.inline_rows:
                # A small batch costs less than a thread hop (~0.1 ms each way).
                scores = slot.score(parts)
            else:
                scores = await asyncio.to_thread(slot.score, parts)
            bounds = itertools.accumulate((len(part) for part in parts), initial=0)
            for i, (a, b) in zip(members, itertools.pairwise(bounds), strict=True):
                results[i] = scores.rows(a, b)
        return [r for r in results if r is not None]

    async def predict(self, slot: ModelSlot, rows: RequestRows) -> Scores:
        """``slot``'s scores for ``rows``; in shadow mode the challenger sees them too."""
        scores: Scores = await self.score_batch((slot, rows))
        challenger = self.slots.get(CHALLENGER)
        if self.cfg.rollout.mode == "shadow" and challenger is not None:
            # Mirrored after the answer is ready; its result and errors stay here.
            task = asyncio.create_task(self._shadow(challenger, rows))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return scores

    async def _shadow(self, slot: ModelSlot, rows: RequestRows) -> None:
        try:
            scores = await self.score_batch((slot, rows))
            self.record(f"shadow-{uuid.uuid4()}", slot, rows, scores, 0.0)
        except Exception:
            self.metrics.shadow_errors.inc(1, tags={"model": self.model_name})

    def record(
        self,
        request_id: str,
        slot: ModelSlot,
        rows: RequestRows,
        scores: Scores,
        latency_ms: float,
        answer: dict[str, Any] | None = None,
    ) -> None:
        """Offer the request to the capture; its rows are built only when it is sampled."""
        capture = self.capture  # one capture per request, even if reconfigure() swaps it
        if capture is None or not capture.draw():
            return
        answer = answer or scores.body()
        capture.offer(
            request_id=request_id,
            model_name=self.model_name,
            model_version=slot.version,
            records=rows.records(),
            predictions=answer["predictions"],
            probabilities=answer.get("probabilities"),
            latency_ms=latency_ms,
            drawn=True,
        )
        dropped = capture.stats()["dropped"]
        if dropped > self._captured_drops:
            self.metrics.capture_dropped.inc(
                dropped - self._captured_drops, tags={"model": self.model_name}
            )
            self._captured_drops = dropped

    def take_feedback(self, rows: list[dict[str, Any]]) -> int:
        """Store posted labels (checked) for the monitor; how many were accepted.

        Raises:
            RequestError: 422 naming each bad label, 404 when this server keeps no labels,
                503 when the buffer is full (retry later).
        """
        if self.feedback is None:
            raise RequestError(404, "this server keeps no feedback (no monitor.labels_path)")
        try:
            checked = check_labels(rows, where="body.labels")
        except DataError as exc:
            raise RequestError(422, str(exc)) from None
        if not self.feedback.offer(checked.to_dict("records")):
            raise RequestError(
                503,
                "too many labels waiting to be stored; retry later",
                headers={"Retry-After": "1"},
            )
        return len(checked)

    def close(self) -> None:
        """Stop polling the aliases and write the capture's and the feedback's buffered rows."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.capture is not None:
            self.capture.close(timeout_s=5.0)
        if self.feedback is not None:
            self.feedback.close(timeout_s=5.0)
