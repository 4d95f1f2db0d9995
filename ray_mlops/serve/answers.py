"""How the model server writes its answers: strict JSON, one error body. Ray-free.

Every answer is encoded here, so none can fail on the way out: JSON with no ``NaN`` or
``Infinity`` (a client's parser would refuse them) and ASCII only (a lone surrogate that a
client sent in a key comes back escaped, where UTF-8 could not carry it).

Example:
    >>> encode_json({"predictions": [1.5, "é"]})
    b'{"predictions":[1.5,"\\\\u00e9"]}'
    >>> error_response(RequestError(404, "no such model")).body
    b'{"error":"no such model","details":[]}'
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from ray_mlops.serve.schema import RequestError


class ErrorDetail(BaseModel):
    """One problem with a request: where it is and what is wrong."""

    loc: list[str | int] = Field(description="Path to the field, from the body's top.")
    msg: str = Field(description="What is wrong there.")


class ErrorBody(BaseModel):
    """The body of every error answer (4xx and 5xx), in the Open Inference Protocol's shape."""

    error: str = Field(description="What went wrong, in one line.")
    details: list[ErrorDetail] = Field(description="One entry per bad field; may be empty.")


def encode_json(content: Any) -> bytes:
    """Strict, compact JSON.

    Raises:
        ValueError: ``content`` holds a non-finite float (the caller checks numbers first).
    """
    return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


class JSONAnswer(JSONResponse):
    """A JSON response encoded by :func:`encode_json`."""

    def render(self, content: Any) -> bytes:
        return encode_json(content)


def error_response(error: RequestError) -> JSONAnswer:
    """The answer to a refused request: its status, headers and :class:`ErrorBody`."""
    return JSONAnswer(error.to_body(), status_code=error.status, headers=error.headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting ``statuses`` with :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": _REASONS[status]} for status in statuses}


_REASONS = {
    400: "The body is not valid JSON, or its binary part does not match its header.",
    401: "No API key, or an unknown one.",
    403: "The key's role may not call this.",
    404: "No such model or model version here.",
    405: "This path does not take this method.",
    413: "The body or its row count is over the configured limit.",
    415: "A Content-Encoding other than gzip or deflate.",
    422: "A field or value does not fit the model's inputs.",
    429: "Over the key's rate limit; retry after Retry-After seconds.",
    500: "The server failed; the message carries the request id to look up in its log.",
    503: "The server cannot take more now (its label buffer is full); retry later.",
    504: "No answer within the configured deadline.",
}
