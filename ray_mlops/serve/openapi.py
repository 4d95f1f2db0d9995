"""The model server's OpenAPI document: FastAPI's, with the bodies the server reads itself.

The model APIs read their bodies from the request (gzip, binary tensor data, every mistake
named in one 4xx), so FastAPI cannot see a body parameter to document. Their routes point
at the request models' schemas (``openapi_extra``), which pydantic generates into the
document's components here. Ray-free.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ray_mlops.serve.models import REQUEST_BODIES

_REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel], **media: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` of JSON shaped like ``model`` (and other ``media`` types)."""
    json_schema = {"schema": {"$ref": _REF.format(model=model.__name__)}}
    return {"required": True, "content": {**media, "application/json": json_schema}}


def document(app: FastAPI) -> dict[str, Any]:
    """``app``'s OpenAPI document, with the request models in its components."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, schemas = models_json_schema(
            [(model, "validation") for model in REQUEST_BODIES], ref_template=_REF
        )
        spec.setdefault("components", {}).setdefault("schemas", {}).update(schemas["$defs"])
        app.openapi_schema = spec
    return app.openapi_schema
