"""The model server's request and response shapes, for its OpenAPI document. Ray-free.

FastAPI generates the document from these models; the server does not parse bodies with
them. A body is read and checked by :mod:`ray_mlops.serve.schema` and
:mod:`ray_mlops.serve.oip`, which accept what these describe and name every mistake in a
4xx (pydantic's own validation would stop at the first and could not take gzip or binary
tensor data).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, RootModel
from pydantic.json_schema import SkipJsonSchema

# A value in a request: a number, a category or a date as text, or missing.
Value = float | str | None


class RecordsRequest(BaseModel):
    """Rows as objects: ``{"records": [{column: value, ...}, ...]}``."""

    records: list[dict[str, Value]] = Field(min_length=1, description="One object per row.")


class ColumnsRequest(BaseModel):
    """Rows as columns: ``{"columns": {column: [value, ...], ...}}``."""

    columns: dict[str, list[Value]] = Field(description="One list of values per column.")


class PredictRequest(RootModel[RecordsRequest | ColumnsRequest]):
    """The body of ``POST /v1/models/{name}:predict``: records or columns."""


class FeedbackLabel(BaseModel):
    """The true label of one predicted record."""

    request_id: str = Field(min_length=1, description="The X-Request-ID of the prediction.")
    label: str | float = Field(description="The true class (or value).")
    record_index: int = Field(0, ge=0, description="The record's position in that request.")


class FeedbackRequest(BaseModel):
    """The body of ``POST /v1/models/{name}/feedback``."""

    labels: list[FeedbackLabel] = Field(min_length=1)


class FeedbackResponse(BaseModel):
    """The answer to a feedback post: how many labels were accepted for storage."""

    accepted: int


class PredictResponse(BaseModel):
    """The answer to a v1 prediction request."""

    model_name: str
    model_version: str = Field(description="The registered version that answered.")
    alias: str = Field(description="The alias that version was served under.")
    predictions: list[Any] = Field(description="One prediction per row.")
    probabilities: list[dict[str, float]] | SkipJsonSchema[None] = Field(
        default=None, description="A classifier's probability per label, one object per row."
    )


class InputColumns(BaseModel):
    """A model's input columns, by kind."""

    numeric: list[str]
    categorical: list[str]
    datetime: list[str]


class ModelMetadataV1(BaseModel):
    """The answer to ``GET /v1/models/{name}``."""

    model_name: str
    model_version: str
    inputs: InputColumns
    labels: list[str] | None = Field(description="A classifier's labels; null for regression.")
    example_request: dict[str, Any] = Field(description="A body the predict API accepts.")


class RequestTensor(BaseModel):
    """One input tensor of an inference request: a column's values."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class RequestedOutput(BaseModel):
    """An output the client asks for."""

    name: str | SkipJsonSchema[None] = None


class InferRequest(BaseModel):
    """The JSON body of ``POST /v2/models/{name}/infer`` (or the JSON header of a binary one)."""

    id: str | SkipJsonSchema[None] = None
    inputs: list[RequestTensor]
    outputs: list[RequestedOutput] | SkipJsonSchema[None] = None


class ResponseTensor(BaseModel):
    """One output tensor of an inference response."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | SkipJsonSchema[None] = Field(
        default=None, description="Absent when the tensor is sent as binary data."
    )
    parameters: dict[str, Any] | SkipJsonSchema[None] = None


class InferResponse(BaseModel):
    """The answer to an inference request."""

    model_name: str
    model_version: str
    id: str | SkipJsonSchema[None] = None
    outputs: list[ResponseTensor]


class TensorMetadata(BaseModel):
    """A tensor a model takes or produces."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadataV2(BaseModel):
    """The answer to ``GET /v2/models/{name}[/versions/{version}]``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    """The answer to ``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class ModelReady(BaseModel):
    """The answer to ``GET /v2/models/{name}[/versions/{version}]/ready``."""

    name: str
    ready: bool


class Live(BaseModel):
    """The answer to ``GET /v2/health/live``."""

    live: bool


class Ready(BaseModel):
    """The answer to ``GET /v2/health/ready``."""

    ready: bool


class Health(BaseModel):
    """The answer to ``GET /healthz``: which replica and process answered."""

    status: str
    model_version: str
    replica: str
    pid: int


# Bodies the server reads itself: documented through ``openapi_extra`` with these schemas.
REQUEST_BODIES = (PredictRequest, InferRequest)
