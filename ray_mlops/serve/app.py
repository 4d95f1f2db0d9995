"""The Ray Serve application: one autoscaling deployment that serves ``models:/<name>@<alias>``.

Every replica is its own HTTP ingress (behind Serve's HAProxy or its Python proxy), so a
request costs one hop. A replica holds the champion and, in canary or shadow mode, the
challenger (:mod:`ray_mlops.serve.slots`), batches requests across clients with
``@serve.batch``, and swaps versions when an alias moves without failing a request.

APIs:
- REST: ``POST /v1/models/{name}:predict`` with ``{"records": [...]}`` or
  ``{"columns": {name: [...]}}``; ``GET /v1/models/{name}``.
- Open Inference Protocol v2: ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/{name}``, ``/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``.
- ``/metrics`` (Prometheus), ``/docs`` and ``/openapi.json``.

Every answer names the version that produced it (body and ``X-Model-Version``). A client's
mistake is a 4xx with a message (400 bad JSON, 401/403 keys, 404 model, 413 size, 422 fields,
429 rate, 504 deadline), never a 500.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at
# runtime to tell the Request parameter from query parameters.
import asyncio
import itertools
import logging
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from ray_mlops.config import ServeConfig
from ray_mlops.serve.capture import TrafficCapture
from ray_mlops.serve.guard import KeyStore, RateLimiter
from ray_mlops.serve.schema import RequestError, RequestRows, parse_body, request_rows
from ray_mlops.serve.scores import Scores
from ray_mlops.serve.slots import AliasView, AliasWatcher, ModelSlot, load_slot

_log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"

_PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["records"],
                        "properties": {
                            "records": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": {"type": ["number", "string", "null"]},
                                },
                            }
                        },
                    },
                    {
                        "type": "object",
                        "required": ["columns"],
                        "properties": {
                            "columns": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "array",
                                    "items": {"type": ["number", "string", "null"]},
                                },
                            }
                        },
                    },
                ]
            }
        }
    },
}
_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "inputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "shape", "datatype", "data"],
                            "properties": {
                                "name": {"type": "string"},
                                "shape": {"type": "array", "items": {"type": "integer"}},
                                "datatype": {"type": "string"},
                                "data": {"type": "array"},
                            },
                        },
                    },
                    "outputs": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    },
                },
            }
        }
    },
}

api = FastAPI(
    title="ray-mlops model server",
    description=(
        "Predictions from a registered model. REST (/v1) and the Open Inference Protocol v2 "
        "(/v2). Send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' when keys are configured."
    ),
)


@serve.deployment
@serve.ingress(api)
class ModelServer:
    """A replica holding the served model versions.

    Its settings come in two parts, the way Serve tells a restart from an in-place update:

    - ``__init__`` gets what needs a new replica: ``model_name``, ``champion_alias``,
      ``tracking_uri``, ``base_dir`` and ``device``. The champion is loaded once, here.
    - :meth:`reconfigure` gets the config's ``serve`` section as Serve's ``user_config``, on
      start and again whenever only it changed. Keys, rate limits, the deadline, batching,
      capture, the rollout and alias polling then change in place: no new replica, no model
      reload, no drain, no dropped request.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        from ray_mlops.serve.telemetry import ServerMetrics

        self.model_name: str = settings["model_name"]
        self.tracking_uri: str = settings["tracking_uri"]
        self.base_dir = Path(settings.get("base_dir", "."))
        # A GPU replica runs the network there; Ray gave this process its GPU(s).
        self.device: str = settings.get("device", "cpu")
        self.replica = serve.get_replica_context().replica_tag
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
        self.watcher: AliasWatcher | None = None
        self._configured = False
        self._captured_drops = 0
        self._random = random.Random()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._report_gauges()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply the ``serve`` section (``user_config["serve"]``) to this running replica.

        Everything new is built before anything is swapped, so a failure (a keys file that
        cannot be read) leaves the replica serving as it was.
        """
        cfg = ServeConfig.model_validate(user_config["serve"])
        old = self.cfg if self._configured else None  # None: the first call, at start
        keys = KeyStore.from_config(cfg.auth, self.base_dir)
        limiter = self.limiter  # kept when unchanged: its buckets hold the callers' tokens
        if old is None or cfg.rate_limit != old.rate_limit:
            limiter = RateLimiter(cfg.rate_limit.requests_per_s, cfg.rate_limit.burst)
        capture, retired = self.capture, None
        if old is None or cfg.capture != old.capture:
            capture = TrafficCapture.from_config(cfg.capture, self.base_dir, self.replica)
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
        self.predict_batch.set_max_batch_size(cfg.max_batch_size)  # type: ignore[attr-defined]
        self.predict_batch.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)  # type: ignore[attr-defined]
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

    # -- model calls -------------------------------------------------------------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def predict_batch(self, items: list[tuple[ModelSlot, RequestRows]]) -> list[Scores]:
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

    def _choose(self) -> ModelSlot:
        """The champion, or in canary mode the challenger for its share of requests."""
        champion = self.slots[CHAMPION]
        assert champion is not None
        challenger = self.slots.get(CHALLENGER)
        rollout = self.cfg.rollout
        if (
            rollout.mode == "canary"
            and challenger is not None
            and self._random.random() < rollout.canary_share
        ):
            return challenger
        return champion

    async def _answer(self, slot: ModelSlot, rows: RequestRows) -> Scores:
        scores: Scores = await self.predict_batch((slot, rows))
        challenger = self.slots.get(CHALLENGER)
        if self.cfg.rollout.mode == "shadow" and challenger is not None:
            # Mirrored after the answer is ready; its result and errors stay here.
            task = asyncio.create_task(self._shadow(challenger, rows))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return scores

    async def _shadow(self, slot: ModelSlot, rows: RequestRows) -> None:
        try:
            scores = await self.predict_batch((slot, rows))
            self._capture(f"shadow-{uuid.uuid4()}", slot, rows, scores, 0.0)
        except Exception:
            self.metrics.shadow_errors.inc(1, tags={"model": self.model_name})

    # -- the request path ----------------------------------------------------------------

    async def _handle(
        self, request: Request, name: str, route: str, role: str, work: Any
    ) -> JSONResponse | PlainTextResponse:
        """Checks every request goes through, then ``work``, within the deadline."""
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        version = ""
        headers = {"X-Request-ID": request_id}
        try:
            if name and name != self.model_name:
                raise RequestError(
                    404,
                    f"model {name!r} is not served here; this server serves {self.model_name!r}",
                )
            principal = self.keys.authenticate(request.headers)
            self.keys.authorize(principal, role)
            self.limiter.check(principal)
            response, version = await asyncio.wait_for(
                work(request, request_id), timeout=self.cfg.request_timeout_s
            )
            status = 200
        except RequestError as exc:
            status = exc.status
            headers |= getattr(exc, "headers", None) or {}
            response = JSONResponse(exc.to_body(), status_code=status)
        except TimeoutError:
            status = 504
            response = JSONResponse(
                {
                    "error": f"no answer within the deadline of {self.cfg.request_timeout_s:g} s",
                    "details": [],
                },
                status_code=504,
            )
        latency_ms = (time.perf_counter() - started) * 1000
        if version:
            headers["X-Model-Version"] = version
        response.headers.update(headers)
        self.metrics.request(route, status, version, latency_ms)
        return response

    async def _body(self, request: Request) -> Any:
        limit = self.cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body of {declared} bytes; the limit is {limit}")
        body = await request.body()
        if len(body) > limit:
            raise RequestError(413, f"request body of {len(body)} bytes; the limit is {limit}")
        return parse_body(body)

    def _capture(
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

    # -- REST v1 ---------------------------------------------------------------------------

    @api.post("/v1/models/{name}:predict", openapi_extra={"requestBody": _PREDICT_BODY})
    async def predict(self, name: str, request: Request) -> Any:
        """Predict for ``{"records": [...]}`` or ``{"columns": {...}}``."""

        async def work(req: Request, request_id: str) -> tuple[JSONResponse, str]:
            started = time.perf_counter()
            slot = self._choose()
            rows = request_rows(await self._body(req), slot.schema, self.cfg.max_records)
            scores = await self._answer(slot, rows)
            answer = scores.body()
            body = {
                "model_name": self.model_name,
                "model_version": slot.version,
                "alias": slot.alias,
                **answer,
            }
            self._capture(
                request_id, slot, rows, scores, (time.perf_counter() - started) * 1000, answer
            )
            return JSONResponse(body), slot.version

        return await self._handle(request, name, "v1_predict", "predict", work)

    @api.get("/v1/models/{name}")
    async def metadata(self, name: str, request: Request) -> Any:
        """Model name, version, input columns and an example request body."""

        async def work(req: Request, request_id: str) -> tuple[JSONResponse, str]:
            slot = self.slots[CHAMPION]
            assert slot is not None
            schema = slot.schema
            return JSONResponse(
                {
                    "model_name": self.model_name,
                    "model_version": slot.version,
                    "inputs": {
                        "numeric": schema.numeric,
                        "categorical": schema.categorical,
                        "datetime": schema.datetime,
                    },
                    "labels": slot.labels,
                    "example_request": {"records": slot.example},
                }
            ), slot.version

        return await self._handle(request, name, "v1_metadata", "predict", work)

    # -- Open Inference Protocol v2 ------------------------------------------------------

    @api.get("/v2/health/live")
    async def live(self) -> dict[str, bool]:
        """The replica process is up."""
        return {"live": True}

    @api.get("/v2/health/ready")
    async def ready(self) -> dict[str, bool]:
        """The replica holds a loaded, warmed-up model."""
        return {"ready": self.slots.get(CHAMPION) is not None}

    @api.get("/v2/models/{name}/ready")
    async def model_ready(self, name: str, request: Request) -> Any:
        """The named model is loaded here."""

        async def work(req: Request, request_id: str) -> tuple[JSONResponse, str]:
            slot = self.slots[CHAMPION]
            assert slot is not None
            return JSONResponse({"name": self.model_name, "ready": True}), slot.version

        return await self._handle(request, name, "v2_ready", "predict", work)

    @api.get("/v2/models/{name}")
    async def v2_metadata(self, name: str, request: Request) -> Any:
        """OIP v2 model metadata: input and output tensors."""
        from ray_mlops.serve.oip import model_metadata

        async def work(req: Request, request_id: str) -> tuple[JSONResponse, str]:
            slot = self.slots[CHAMPION]
            assert slot is not None
            meta = model_metadata(self.model_name, slot.version, slot.schema, slot.labels)
            return JSONResponse(meta), slot.version

        return await self._handle(request, name, "v2_metadata", "predict", work)

    @api.post("/v2/models/{name}/infer", openapi_extra={"requestBody": _INFER_BODY})
    async def infer(self, name: str, request: Request) -> Any:
        """OIP v2 inference: one tensor per input column."""
        from ray_mlops.serve.oip import infer_response, output_names, parse_infer_request

        async def work(req: Request, request_id: str) -> tuple[JSONResponse, str]:
            started = time.perf_counter()
            slot = self._choose()
            parsed = parse_infer_request(
                await self._body(req),
                slot.schema,
                self.cfg.max_records,
                known_outputs=output_names(slot.labels),
            )
            scores = await self._answer(slot, parsed.rows)
            body = infer_response(
                self.model_name, slot.version, parsed.id or request_id, scores, parsed.outputs
            )
            self._capture(
                request_id, slot, parsed.rows, scores, (time.perf_counter() - started) * 1000
            )
            return JSONResponse(body), slot.version

        return await self._handle(request, name, "v2_infer", "predict", work)

    # -- operations ------------------------------------------------------------------------

    @api.get("/metrics")
    async def prometheus(self, request: Request) -> Any:
        """Prometheus text format: this project's and Serve's series, from every node."""
        from ray_mlops.serve.telemetry import scrape_metrics

        async def work(req: Request, request_id: str) -> tuple[PlainTextResponse, str]:
            text = await asyncio.to_thread(scrape_metrics)
            return PlainTextResponse(text, media_type="text/plain; version=0.0.4"), ""

        return await self._handle(request, "", "metrics", "admin", work)

    @api.get("/healthz")
    async def health(self) -> dict[str, Any]:
        """Liveness: the replica is up and holds a model; which replica and process answered."""
        slot = self.slots[CHAMPION]
        return {
            "status": "ok",
            "model_version": slot.version if slot else "",
            "replica": self.replica,
            "pid": os.getpid(),
        }

    def check_health(self) -> None:
        """Serve's health check: a replica without its champion is replaced."""
        if self.slots.get(CHAMPION) is None:
            raise RuntimeError("no champion loaded")

    def __del__(self) -> None:
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.stop()
        capture = getattr(self, "capture", None)
        if capture is not None:
            capture.close(timeout_s=5.0)


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for ``serve run`` / ``serve deploy`` / KubeRay ``RayService``.

    ``import_path: ray_mlops.serve.app:build_app`` with ``args: {config: PATH}`` (and
    optionally ``tracking_uri``, ``model``: NAME@ALIAS).
    """
    from ray_mlops.config import load_config
    from ray_mlops.serve.launch import bind_server
    from ray_mlops.tracking import resolve_tracking_uri

    loaded = load_config(Path(args["config"]))
    name, _, alias = str(args.get("model") or "").partition("@")
    return bind_server(
        loaded.pipeline,
        resolve_tracking_uri(args.get("tracking_uri") or loaded.pipeline.tracking.tracking_uri),
        loaded.base_dir,
        model_name=name or None,
        alias=alias or None,
    )
