"""Every failure of a request becomes an answer here, in the one error body (as KServe's
``errors.py``): a refusal keeps its status, FastAPI's and Starlette's own refusals are
rewritten into the body, anything else is a 500 naming the request id. Ray-free.

:func:`error_answer` is the one mapping; :func:`register_error_handlers` puts it on the app
for what fails outside the model APIs, and :class:`ray_mlops.serve.routing.ServedRoute` calls
it for what fails inside them (it counts every answer, so it needs the status there).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ray_mlops.serve.answers import error_response
from ray_mlops.serve.schema import RequestError

_log = logging.getLogger(__name__)


def deadline_exceeded(deadline_s: float) -> RequestError:
    """The 504 of a request with no answer within ``serve.request_timeout_s``."""
    return RequestError(504, f"no answer within the deadline of {deadline_s:g} s")


def as_request_error(exc: Exception, request_id: str | None, path: str = "") -> RequestError:
    """The refusal ``exc`` stands for; an unexpected failure is logged and becomes a 500."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, HTTPException):
        return RequestError(exc.status_code, str(exc.detail), headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return RequestError(422, f"{len(details)} invalid field(s)", details)
    _log.error("request %s to %s failed", request_id, path, exc_info=exc)
    return RequestError(500, f"internal server error; request id {request_id}, see the server log")


def error_answer(request: Request, exc: Exception) -> Response:
    """The answer to a request that failed with ``exc``."""
    request_id = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    return error_response(as_request_error(exc, request_id, request.url.path))


async def _handle(request: Request, exc: Exception) -> Response:
    return error_answer(request, exc)


def register_error_handlers(app: FastAPI) -> None:
    """Answer every failure on ``app`` with the error body (FastAPI's is ``{"detail"}``)."""
    for kind in (RequestError, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, _handle)
