"""REST v1: ``POST /v1/models/{name}:predict`` and ``GET /v1/models/{name}``.

Thin: each endpoint turns HTTP into :class:`~ray_mlops.serve.dataplane.DataPlane` calls;
keys, limits, the deadline and errors are the route's (:mod:`ray_mlops.serve.routing`).
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime.
import time
from typing import Any

from fastapi import APIRouter, Request

from ray_mlops.serve.answers import JSONAnswer, error_responses
from ray_mlops.serve.models import (
    FeedbackRequest,
    FeedbackResponse,
    ModelMetadataV1,
    PredictRequest,
    PredictResponse,
)
from ray_mlops.serve.openapi import json_body
from ray_mlops.serve.routing import (
    Plane,
    RawBody,
    RequestId,
    ServedRoute,
    caller_may,
    versioned,
)
from ray_mlops.serve.schema import RequestError, parse_body, request_rows

router = APIRouter(route_class=ServedRoute)
PREDICT_PATH = "/v1/models/{name}:predict"
FEEDBACK_PATH = "/v1/models/{name}/feedback"


@router.post(
    PREDICT_PATH,
    name="v1_predict",
    summary="Predict",
    response_model=PredictResponse,
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429, 500, 504),
    openapi_extra={"requestBody": json_body(PredictRequest)},
    dependencies=[caller_may("predict")],
)
async def predict(name: str, plane: Plane, body: RawBody, request_id: RequestId) -> Any:
    """Predict for ``{"records": [...]}`` or ``{"columns": {...}}``."""
    started = time.perf_counter()
    slot = plane.choose()
    rows = request_rows(parse_body(body), slot.schema, plane.cfg.max_records)
    scores = await plane.predict(slot, rows)
    scores.check_finite(rows, lambda row, column: ["body", "records", row, column])
    answer = scores.body()
    plane.record(request_id, slot, rows, scores, (time.perf_counter() - started) * 1000, answer)
    content = {
        "model_name": plane.model_name,
        "model_version": slot.version,
        "alias": slot.alias,
        **answer,
    }
    return versioned(JSONAnswer(content), slot.version)


@router.post(
    FEEDBACK_PATH,
    name="v1_feedback",
    summary="Feedback",
    status_code=202,
    response_model=FeedbackResponse,
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429, 500, 503, 504),
    openapi_extra={"requestBody": json_body(FeedbackRequest)},
    dependencies=[caller_may("predict")],
)
async def feedback(name: str, plane: Plane, body: RawBody) -> Any:
    """The true label of earlier predictions, by the request id their answer carried.

    ``{"labels": [{"request_id": ..., "label": ..., "record_index": 0}, ...]}``; a later
    label for the same record replaces an earlier one. The monitor joins them to the capture.
    """
    parsed = parse_body(body)
    rows = parsed.get("labels") if isinstance(parsed, dict) else None
    if not isinstance(rows, list) or not rows:
        raise RequestError(
            422, 'the body must be {"labels": [{"request_id": ..., "label": ...}, ...]}'
        )
    accepted = plane.take_feedback(rows)
    return JSONAnswer({"accepted": accepted}, status_code=202)


# Before the metadata route, whose {name} also matches the predict path.
@router.get(PREDICT_PATH, name="v1_predict", include_in_schema=False)
async def predict_by_get(request: Request) -> Any:
    """A GET on the predict path: 405 before any other check (no key needed)."""
    raise RequestError(405, f"{request.url.path} takes POST", headers={"Allow": "POST"})


@router.get(
    "/v1/models/{name}",
    name="v1_metadata",
    summary="Metadata",
    response_model=ModelMetadataV1,
    responses=error_responses(401, 403, 404, 405, 429, 500, 504),
    dependencies=[caller_may("predict")],
)
async def metadata(name: str, plane: Plane) -> Any:
    """Model name, version, input columns and an example request body."""
    slot = plane.slot(None)
    schema = slot.schema
    content = {
        "model_name": plane.model_name,
        "model_version": slot.version,
        "inputs": {
            "numeric": schema.numeric,
            "categorical": schema.categorical,
            "datetime": schema.datetime,
        },
        "labels": slot.labels,
        "example_request": {"records": slot.example},
    }
    return versioned(JSONAnswer(content), slot.version)
