"""The request path every model API shares: the data plane, the key check, the body within
its limits, the deadline, the error body and the count in ``requests_total``.

A model API is a route of class :class:`ServedRoute` whose ``name`` is its label in the
metrics; its endpoint only turns HTTP into :class:`~ray_mlops.serve.dataplane.DataPlane`
calls. Serve adds the ``X-Request-ID`` header to every answer (the client's, or one it made
up and put in the request's headers), so it is read here, never set again.
"""

# No "from __future__ import annotations": FastAPI reads the dependencies' annotations at
# runtime to tell the Request parameter from query parameters.
import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from ray_mlops.serve.dataplane import DataPlane
from ray_mlops.serve.errors import deadline_exceeded, error_answer
from ray_mlops.serve.schema import RequestError, decode_content

MODEL_VERSION_HEADER = "X-Model-Version"


# The dependencies are ``async def`` although they never await: FastAPI runs a plain ``def``
# dependency in its thread pool, a thread hop per dependency per request, which profiling
# showed was half the replica's CPU per request (issue 26, serve_load's py-spy phase).


def plane_of(request: Request) -> DataPlane:
    """The replica's data plane, which :func:`ray_mlops.serve.api.create_api` put on the app."""
    plane: DataPlane = request.app.state.plane
    return plane


async def data_plane(request: Request) -> DataPlane:
    """The data plane as a dependency (see :func:`plane_of`)."""
    return plane_of(request)


async def request_id(request: Request) -> str:
    """The request's ``X-Request-ID`` (one made up when Serve did not give one)."""
    given: str = request.state.request_id
    return given


Plane = Annotated[DataPlane, Depends(data_plane)]
RequestId = Annotated[str, Depends(request_id)]


def caller_may(role: str) -> Any:
    """A dependency admitting a request for the route's model to a key with ``role``."""

    async def admit(request: Request) -> None:
        plane_of(request).admit(request.headers, request.path_params.get("name"), role)

    return Depends(admit)


async def raw_body(request: Request) -> bytes:
    """The request body within ``max_body_bytes``, decompressed when it is gzip/deflate.

    Raises:
        RequestError: 413 over the limit, 400/415 for the encoding.
    """
    limit = plane_of(request).cfg.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {declared} bytes; the limit is {limit}")
    body = await request.body()
    if len(body) > limit:
        raise RequestError(413, f"request body of {len(body)} bytes; the limit is {limit}")
    return decode_content(body, request.headers.get("content-encoding"), limit)


RawBody = Annotated[bytes, Depends(raw_body)]


def versioned(response: Response, version: str) -> Response:
    """``response`` naming the model version that produced it."""
    response.headers[MODEL_VERSION_HEADER] = version
    return response


class ServedRoute(APIRoute):
    """A model API: its checks and work within the deadline, every outcome an answer
    (:func:`ray_mlops.serve.errors.error_answer`) counted under the route's ``name``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        label = self.name

        async def served(request: Request) -> Response:
            started = time.perf_counter()
            request.state.request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
            plane = plane_of(request)
            deadline = plane.cfg.request_timeout_s
            try:
                try:
                    response = await asyncio.wait_for(handler(request), timeout=deadline)
                except TimeoutError:
                    raise deadline_exceeded(deadline) from None
            except Exception as exc:
                response = error_answer(request, exc)
            version = response.headers.get(MODEL_VERSION_HEADER, "")
            latency_ms = (time.perf_counter() - started) * 1000
            plane.metrics.request(label, response.status_code, version, latency_ms)
            return response

        return served
