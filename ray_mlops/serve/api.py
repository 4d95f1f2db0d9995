"""The model server's HTTP API: the protocol routers over one replica's data plane.

- REST v1 (:mod:`ray_mlops.serve.v1_endpoints`) and the Open Inference Protocol v2
  (:mod:`ray_mlops.serve.v2_endpoints`);
- ``/metrics`` (Prometheus), ``/healthz``, ``/docs`` and ``/openapi.json`` (generated from
  the request and response models, :mod:`ray_mlops.serve.openapi`).

Every answer names the version that produced it (body and ``X-Model-Version``). A client's
mistake is a 4xx with a message (400 bad JSON, 401/403 keys, 404 model, 405 method, 413 size,
415 encoding, 422 fields, 429 rate, 504 deadline), never a 500. Every error, whoever raises
it, has the body ``{"error": ..., "details": [...]}`` (:mod:`ray_mlops.serve.errors`).
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime.
import asyncio
import os
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match

from ray_mlops import __version__
from ray_mlops.serve import v1_endpoints, v2_endpoints
from ray_mlops.serve.answers import error_responses
from ray_mlops.serve.dataplane import CHAMPION, DataPlane
from ray_mlops.serve.errors import register_error_handlers
from ray_mlops.serve.models import Health
from ray_mlops.serve.openapi import document
from ray_mlops.serve.routing import Plane, ServedRoute, caller_may, plane_of
from ray_mlops.serve.schema import RequestError

operations = APIRouter(route_class=ServedRoute)
probes = APIRouter()
# Declared last, so it only sees what no other route took.
fallback = APIRouter(route_class=ServedRoute)


@operations.get(
    "/metrics",
    name="metrics",
    summary="Prometheus",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(401, 403, 429, 500, 504),
    },
    dependencies=[caller_may("admin")],
)
async def prometheus() -> Any:
    """Prometheus text format: this project's and Serve's series, from every node."""
    from ray_mlops.serve.telemetry import scrape_metrics

    text = await asyncio.to_thread(scrape_metrics)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


@probes.get("/healthz", response_model=Health)
async def health(request: Request) -> dict[str, Any]:
    """Liveness: the replica is up and holds a model; which replica and process answered."""
    plane = plane_of(request)
    slot = plane.slots[CHAMPION]
    return {
        "status": "ok",
        "model_version": slot.version if slot else "",
        "replica": plane.replica,
        "pid": os.getpid(),
    }


@fallback.api_route(
    "/{path:path}",
    name="unrouted",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,
)
async def unrouted(path: str, request: Request, plane: Plane) -> Any:
    """Any other path or method: 404, or 405 naming the methods the path takes.

    Answering here rather than in Starlette's router counts these answers in
    ``requests_total`` too; no key is needed for them.
    """
    allowed = sorted(
        {
            method
            for route in _routes(request.app.router.routes)
            if route.matches(request.scope)[0] is Match.PARTIAL
            for method in getattr(route, "methods", None) or ()
        }
    )
    if allowed:
        raise RequestError(
            405,
            f"{request.url.path} takes {', '.join(allowed)}, not {request.method}",
            headers={"Allow": ", ".join(allowed)},
        )
    raise RequestError(404, f"no API at {request.url.path}; see /docs")


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, inside included routers too (FastAPI from 0.137 may keep an included
    router as one node in the app's list)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def create_api(plane: DataPlane) -> FastAPI:
    """The HTTP API of one replica, serving ``plane``."""
    api = FastAPI(
        title="ray-mlops model server",
        version=__version__,
        description=(
            "Predictions from a registered model. REST (/v1) and the Open Inference Protocol "
            "v2 (/v2). Send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' when keys are "
            "configured."
        ),
    )
    api.state.plane = plane
    register_error_handlers(api)
    for router in (
        v1_endpoints.router,
        v2_endpoints.health,
        v2_endpoints.router,
        operations,
        probes,
        fallback,
    ):
        api.include_router(router)
    api.openapi = lambda: document(api)  # type: ignore[method-assign]
    return api
