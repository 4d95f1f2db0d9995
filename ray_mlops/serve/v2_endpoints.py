"""The Open Inference Protocol v2, its whole REST API: ``GET /v2`` (server metadata),
``/v2/health/live``, ``/v2/health/ready``, and ``/v2/models/{name}[/versions/{v}]``,
``.../ready`` and ``POST .../infer``, with JSON or binary tensor data (the binary tensor
data extension that ``tritonclient`` uses by default).

Thin: each endpoint turns HTTP into :class:`~ray_mlops.serve.dataplane.DataPlane` calls and
the protocol's bodies (:mod:`ray_mlops.serve.oip`); keys, limits, the deadline and errors
are the route's (:mod:`ray_mlops.serve.routing`).
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime.
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ray_mlops import __version__
from ray_mlops.serve.answers import JSONAnswer, error_responses
from ray_mlops.serve.models import (
    InferRequest,
    InferResponse,
    Live,
    ModelMetadataV2,
    ModelReady,
    Ready,
    ServerMetadata,
)
from ray_mlops.serve.oip import (
    encode_infer_response,
    infer_response,
    model_metadata,
    output_names,
    parse_infer_request,
    server_metadata,
)
from ray_mlops.serve.openapi import json_body
from ray_mlops.serve.routing import (
    Plane,
    RequestId,
    ServedRoute,
    caller_may,
    plane_of,
    raw_body,
    versioned,
)
from ray_mlops.serve.schema import RequestError, parse_body
from ray_mlops.serve.tensors import BINARY_MEDIA_TYPE, HEADER_LENGTH, TensorDataError, split_body

router = APIRouter(route_class=ServedRoute, dependencies=[caller_may("predict")])
# Health probes answer without a key, a deadline or a count.
health = APIRouter()

_MODEL_ERRORS = error_responses(401, 403, 404, 429, 500, 504)
_INFER_ERRORS = error_responses(400, 401, 403, 404, 413, 415, 422, 429, 500, 504)
# The binary tensor data extension: a JSON header of Inference-Header-Content-Length bytes
# (an InferRequest with parameters.binary_data_size on its tensors), then the raw data.
_INFER_BODY = json_body(
    InferRequest, **{BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}
)


@health.get("/v2/health/live", response_model=Live)
async def live() -> dict[str, bool]:
    """The replica process is up."""
    return {"live": True}


@health.get("/v2/health/ready", response_model=Ready)
async def ready(request: Request) -> dict[str, bool]:
    """The replica holds a loaded, warmed-up model."""
    return {"ready": plane_of(request).ready}


@router.get(
    "/v2",
    name="v2_server_metadata",
    summary="Server Metadata",
    response_model=ServerMetadata,
    responses=error_responses(401, 403, 429, 500, 504),
)
async def server_meta() -> Any:
    """OIP v2 server metadata: name, version and the protocol extensions supported."""
    return JSONAnswer(server_metadata(__version__))


@router.get(
    "/v2/models/{name}/ready",
    name="v2_ready",
    summary="Model Ready",
    response_model=ModelReady,
    responses=_MODEL_ERRORS,
)
async def model_ready(name: str, plane: Plane) -> Any:
    """The named model is loaded here."""
    return _ready(plane, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    name="v2_ready",
    summary="Model Version Ready",
    response_model=ModelReady,
    responses=_MODEL_ERRORS,
)
async def model_version_ready(name: str, version: str, plane: Plane) -> Any:
    """The named model version is loaded here (404 when it is not)."""
    return _ready(plane, version)


def _ready(plane: Plane, version: str | None) -> Response:
    slot = plane.slot(version)
    return versioned(JSONAnswer({"name": plane.model_name, "ready": True}), slot.version)


@router.get(
    "/v2/models/{name}",
    name="v2_metadata",
    summary="Model Metadata",
    response_model=ModelMetadataV2,
    responses=_MODEL_ERRORS,
)
async def v2_metadata(name: str, plane: Plane) -> Any:
    """OIP v2 model metadata: input and output tensors."""
    return _metadata(plane, None)


@router.get(
    "/v2/models/{name}/versions/{version}",
    name="v2_metadata",
    summary="Model Version Metadata",
    response_model=ModelMetadataV2,
    responses=_MODEL_ERRORS,
)
async def v2_version_metadata(name: str, version: str, plane: Plane) -> Any:
    """OIP v2 metadata of one served model version."""
    return _metadata(plane, version)


def _metadata(plane: Plane, version: str | None) -> Response:
    slot = plane.slot(version)
    versions = [slot.version] if version else plane.versions()
    meta = model_metadata(plane.model_name, versions, slot.schema, slot.labels)
    return versioned(JSONAnswer(meta), slot.version)


@router.post(
    "/v2/models/{name}/infer",
    name="v2_infer",
    summary="Infer",
    response_model=InferResponse,
    responses=_INFER_ERRORS,
    openapi_extra={"requestBody": _INFER_BODY},
)
async def infer(name: str, request: Request, plane: Plane, request_id: RequestId) -> Any:
    """OIP v2 inference: one tensor per input column."""
    return await _infer(request, plane, request_id, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    name="v2_infer",
    summary="Infer Version",
    response_model=InferResponse,
    responses=_INFER_ERRORS,
    openapi_extra={"requestBody": _INFER_BODY},
)
async def infer_version(
    name: str, version: str, request: Request, plane: Plane, request_id: RequestId
) -> Any:
    """OIP v2 inference by one served model version (champion or challenger)."""
    return await _infer(request, plane, request_id, version)


async def _infer(request: Request, plane: Plane, request_id: str, version: str | None) -> Response:
    started = time.perf_counter()
    slot = plane.choose() if version is None else plane.slot(version)
    # Read after the version is found: an unknown version is a 404 whatever the body.
    body = await raw_body(request)
    try:
        header, binary = split_body(body, request.headers.get(HEADER_LENGTH))
    except TensorDataError as exc:
        raise RequestError(400, str(exc)) from None
    parsed = parse_infer_request(
        parse_body(header),
        slot.schema,
        plane.cfg.max_records,
        known_outputs=output_names(slot.labels),
        binary=binary,
    )
    scores = await plane.predict(slot, parsed.rows)
    positions = parsed.positions
    scores.check_finite(
        parsed.rows,
        lambda row, column: ["body", "inputs", positions[column], "data", row],
    )
    answer = infer_response(
        plane.model_name, slot.version, parsed.id or request_id, scores, parsed.outputs
    )
    plane.record(request_id, slot, parsed.rows, scores, (time.perf_counter() - started) * 1000)
    content, header_length = encode_infer_response(answer, parsed.binary)
    if header_length is None:
        return versioned(Response(content, media_type="application/json"), slot.version)
    response = Response(content, media_type=BINARY_MEDIA_TYPE)
    response.headers[HEADER_LENGTH] = str(header_length)
    return versioned(response, slot.version)
