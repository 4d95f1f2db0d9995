"""The Ray Serve application: one autoscaling deployment that serves ``models:/<name>@<alias>``.

Every replica is its own HTTP ingress (behind Serve's HAProxy or its Python proxy), so a
request costs one hop. A replica holds the champion and, in canary or shadow mode, the
challenger (:mod:`ray_mlops.serve.slots`), batches requests across clients with
``@serve.batch``, and swaps versions when an alias moves without failing a request.

APIs:
- REST: ``POST /v1/models/{name}:predict`` with ``{"records": [...]}`` or
  ``{"columns": {name: [...]}}``; ``GET /v1/models/{name}``.
- Open Inference Protocol v2, its whole REST API: ``GET /v2`` (server metadata),
  ``/v2/health/live``, ``/v2/health/ready``, and ``/v2/models/{name}[/versions/{v}]``,
  ``.../ready`` and ``POST .../infer``, with JSON or binary tensor data (the binary tensor
  data extension that ``tritonclient`` uses by default).
- ``/metrics`` (Prometheus), ``/docs`` and ``/openapi.json``.

Every answer names the version that produced it (body and ``X-Model-Version``). A client's
mistake is a 4xx with a message (400 bad JSON, 401/403 keys, 404 model, 405 method, 413 size,
415 encoding, 422 fields, 429 rate, 504 deadline), never a 500. Every error, whoever raises
it, has the body ``{"error": ..., "details": [...]}`` (:mod:`ray_mlops.serve.answers`).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from ray import serve
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from ray_mlops import __version__
from ray_mlops.config import ServeConfig
from ray_mlops.serve.answers import JSONAnswer, error_response, error_responses
from ray_mlops.serve.capture import TrafficCapture
from ray_mlops.serve.guard import KeyStore, RateLimiter
from ray_mlops.serve.schema import (
    RequestError,
    RequestRows,
    decode_content,
    parse_body,
    request_rows,
)
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
        # The binary tensor data extension: a JSON header of Inference-Header-Content-Length
        # bytes (the schema below, tensors with parameters.binary_data_size), then raw data.
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
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
        },
    },
}

# What each kind of route can answer besides 200, documented with the one error body.
_MODEL_ERRORS = error_responses(401, 403, 404, 429, 500, 504)
_PREDICT_ERRORS = error_responses(400, 401, 403, 404, 413, 415, 422, 429, 500, 504)
_TEXT_200: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}

api = FastAPI(
    title="ray-mlops model server",
    version=__version__,
    description=(
        "Predictions from a registered model. REST (/v1) and the Open Inference Protocol v2 "
        "(/v2). Send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' when keys are configured."
    ),
)


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals in the project's error body (FastAPI's is ``{"detail"}``)."""
    return error_response(RequestError(exc.status_code, str(exc.detail), headers=exc.headers))


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    return error_response(RequestError(422, f"{len(details)} invalid field(s)", details))


@api.exception_handler(Exception)
async def _server_error(request: Request, exc: Exception) -> Response:
    """A failure outside the request path's own handling (ModelServer._handle)."""
    _log.exception("request %s failed", request.headers.get("x-request-id"))
    return error_response(_internal_error(request.headers.get("x-request-id")))


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, inside included routers too: Serve's ingress moves the class's routes
    into a router that FastAPI (0.137 on) keeps as one node in the app's list."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def _internal_error(request_id: str | None) -> RequestError:
    return RequestError(500, f"internal server error; request id {request_id}, see the server log")


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
    ) -> Response:
        """Checks every request goes through, then ``work``, within the deadline.

        This is where every outcome becomes an answer and is counted in ``requests_total``:
        a refusal (:class:`RequestError`), the deadline (504) and any other failure (500).
        Serve adds the ``X-Request-ID`` header to every answer (the client's, or one it made
        up and put in the request's headers), so it is read here, never set again.
        """
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        version = ""
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
        except RequestError as exc:
            response = error_response(exc)
        except TimeoutError:
            deadline = self.cfg.request_timeout_s
            response = error_response(
                RequestError(504, f"no answer within the deadline of {deadline:g} s")
            )
        except Exception:
            _log.exception("request %s to %s failed", request_id, route)
            response = error_response(_internal_error(request_id))
        if version:
            response.headers["X-Model-Version"] = version
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.request(route, response.status_code, version, latency_ms)
        return response

    async def _raw_body(self, request: Request) -> bytes:
        """The request body within ``max_body_bytes``, decompressed when it is gzip/deflate."""
        limit = self.cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body of {declared} bytes; the limit is {limit}")
        body = await request.body()
        if len(body) > limit:
            raise RequestError(413, f"request body of {len(body)} bytes; the limit is {limit}")
        return decode_content(body, request.headers.get("content-encoding"), limit)

    async def _body(self, request: Request) -> Any:
        return parse_body(await self._raw_body(request))

    def _slot(self, version: str | None) -> ModelSlot:
        """The slot serving ``version``; None: the champion."""
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

    @api.post(
        "/v1/models/{name}:predict",
        openapi_extra={"requestBody": _PREDICT_BODY},
        responses=_PREDICT_ERRORS,
    )
    async def predict(self, name: str, request: Request) -> Any:
        """Predict for ``{"records": [...]}`` or ``{"columns": {...}}``."""

        async def work(req: Request, request_id: str) -> tuple[Response, str]:
            started = time.perf_counter()
            slot = self._choose()
            rows = request_rows(await self._body(req), slot.schema, self.cfg.max_records)
            scores = await self._answer(slot, rows)
            scores.check_finite(rows, lambda row, column: ["body", "records", row, column])
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
            return JSONAnswer(body), slot.version

        return await self._handle(request, name, "v1_predict", "predict", work)

    @api.get("/v1/models/{name}", responses=error_responses(401, 403, 404, 405, 429, 500, 504))
    async def metadata(self, name: str, request: Request) -> Any:
        """Model name, version, input columns and an example request body."""
        if name.endswith(":predict"):
            # The path of the predict API, which this route's {name} also matches.
            return await self._refuse(
                request,
                "v1_predict",
                RequestError(405, f"{request.url.path} takes POST", headers={"Allow": "POST"}),
            )

        async def work(req: Request, request_id: str) -> tuple[Response, str]:
            slot = self._slot(None)
            schema = slot.schema
            return JSONAnswer(
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

    @api.get("/v2", responses=error_responses(401, 403, 429, 500, 504))
    async def server_metadata(self, request: Request) -> Any:
        """OIP v2 server metadata: name, version and the protocol extensions supported."""
        from ray_mlops.serve.oip import server_metadata

        async def work(req: Request, request_id: str) -> tuple[Response, str]:
            return JSONAnswer(server_metadata(__version__)), ""

        return await self._handle(request, "", "v2_server_metadata", "predict", work)

    @api.get("/v2/models/{name}/ready", responses=_MODEL_ERRORS)
    async def model_ready(self, name: str, request: Request) -> Any:
        """The named model is loaded here."""
        return await self._model_ready(request, name, None)

    @api.get("/v2/models/{name}/versions/{version}/ready", responses=_MODEL_ERRORS)
    async def model_version_ready(self, name: str, version: str, request: Request) -> Any:
        """The named model version is loaded here (404 when it is not)."""
        return await self._model_ready(request, name, version)

    async def _model_ready(self, request: Request, name: str, version: str | None) -> Any:
        async def work(req: Request, request_id: str) -> tuple[Response, str]:
            slot = self._slot(version)
            return JSONAnswer({"name": self.model_name, "ready": True}), slot.version

        return await self._handle(request, name, "v2_ready", "predict", work)

    @api.get("/v2/models/{name}", responses=_MODEL_ERRORS)
    async def v2_metadata(self, name: str, request: Request) -> Any:
        """OIP v2 model metadata: input and output tensors."""
        return await self._v2_metadata(request, name, None)

    @api.get("/v2/models/{name}/versions/{version}", responses=_MODEL_ERRORS)
    async def v2_version_metadata(self, name: str, version: str, request: Request) -> Any:
        """OIP v2 metadata of one served model version."""
        return await self._v2_metadata(request, name, version)

    async def _v2_metadata(self, request: Request, name: str, version: str | None) -> Any:
        from ray_mlops.serve.oip import model_metadata

        async def work(req: Request, request_id: str) -> tuple[Response, str]:
            slot = self._slot(version)
            versions = [slot.version] if version else self._versions()
            meta = model_metadata(self.model_name, versions, slot.schema, slot.labels)
            return JSONAnswer(meta), slot.version

        return await self._handle(request, name, "v2_metadata", "predict", work)

    def _versions(self) -> list[str]:
        """The versions served here: the champion's first."""
        return list(dict.fromkeys(s.version for s in self.slots.values() if s is not None))

    @api.post(
        "/v2/models/{name}/infer",
        openapi_extra={"requestBody": _INFER_BODY},
        responses=_PREDICT_ERRORS,
    )
    async def infer(self, name: str, request: Request) -> Any:
        """OIP v2 inference: one tensor per input column."""
        return await self._infer(request, name, None)

    @api.post(
        "/v2/models/{name}/versions/{version}/infer",
        openapi_extra={"requestBody": _INFER_BODY},
        responses=_PREDICT_ERRORS,
    )
    async def infer_version(self, name: str, version: str, request: Request) -> Any:
        """OIP v2 inference by one served model version (champion or challenger)."""
        return await self._infer(request, name, version)

    async def _infer(self, request: Request, name: str, version: str | None) -> Any:
        from ray_mlops.serve.oip import (
            encode_infer_response,
            infer_response,
            output_names,
            parse_infer_request,
        )
        from ray_mlops.serve.tensors import (
            BINARY_MEDIA_TYPE,
            HEADER_LENGTH,
            TensorDataError,
            split_body,
        )

        async def work(req: Request, request_id: str) -> tuple[Response, str]:
            started = time.perf_counter()
            slot = self._choose() if version is None else self._slot(version)
            try:
                header, binary = split_body(
                    await self._raw_body(req), req.headers.get(HEADER_LENGTH)
                )
            except TensorDataError as exc:
                raise RequestError(400, str(exc)) from None
            parsed = parse_infer_request(
                parse_body(header),
                slot.schema,
                self.cfg.max_records,
                known_outputs=output_names(slot.labels),
                binary=binary,
            )
            scores = await self._answer(slot, parsed.rows)
            positions = parsed.positions
            scores.check_finite(
                parsed.rows,
                lambda row, column: ["body", "inputs", positions[column], "data", row],
            )
            body = infer_response(
                self.model_name, slot.version, parsed.id or request_id, scores, parsed.outputs
            )
            self._capture(
                request_id, slot, parsed.rows, scores, (time.perf_counter() - started) * 1000
            )
            content, header_length = encode_infer_response(body, parsed.binary)
            if header_length is None:
                return Response(content, media_type="application/json"), slot.version
            answer = Response(content, media_type=BINARY_MEDIA_TYPE)
            answer.headers[HEADER_LENGTH] = str(header_length)
            return answer, slot.version

        return await self._handle(request, name, "v2_infer", "predict", work)

    # -- operations ------------------------------------------------------------------------

    @api.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={**_TEXT_200, **error_responses(401, 403, 429, 500, 504)},
    )
    async def prometheus(self, request: Request) -> Any:
        """Prometheus text format: this project's and Serve's series, from every node."""
        from ray_mlops.serve.telemetry import scrape_metrics

        async def work(req: Request, request_id: str) -> tuple[Response, str]:
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

    @api.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        include_in_schema=False,
    )
    async def unrouted(self, path: str, request: Request) -> Any:
        """Any other path or method: 404, or 405 naming the methods the path takes.

        Declared last, so it only sees what no other route took; answering here rather than
        in Starlette's router counts these answers in ``requests_total`` too.
        """
        allowed = sorted(
            method
            for route in _routes(request.app.router.routes)
            if route.matches(request.scope)[0] is Match.PARTIAL
            for method in getattr(route, "methods", None) or ()
        )
        if allowed:
            error = RequestError(
                405,
                f"{request.url.path} takes {', '.join(allowed)}, not {request.method}",
                headers={"Allow": ", ".join(allowed)},
            )
        else:
            error = RequestError(404, f"no API at {request.url.path}; see /docs")
        return await self._refuse(request, "unrouted", error)

    async def _refuse(self, request: Request, route: str, error: RequestError) -> Response:
        """Answer ``error`` before any other check (no key needed), counted like the rest."""
        started = time.perf_counter()
        response = error_response(error)
        self.metrics.request(route, error.status, "", (time.perf_counter() - started) * 1000)
        return response

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
