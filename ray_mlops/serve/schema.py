"""Request parsing and validation against the model's input signature. Ray-free.

A client's mistake becomes a :class:`RequestError` with a 4xx status and one message per
field, never a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ray_mlops.features.primitives import datetime_values


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and per-field problems."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        # Response headers the answer must carry, e.g. Retry-After on a 429.
        self.headers: dict[str, str] = dict(headers or {})

    def to_body(self) -> dict[str, Any]:
        """JSON body of the error response."""
        return {"error": self.message, "details": self.errors}


@dataclass(frozen=True)
class InputSchema:
    """The columns a model takes: numeric ones accept numbers, categorical ones strings.

    Both accept ``null`` (the feature pipeline imputes it).
    """

    numeric: list[str]
    categorical: list[str]
    order: list[str] = field(default_factory=list)
    datetime: list[str] = field(default_factory=list)

    @classmethod
    def from_signature(cls, inputs: Any) -> InputSchema:
        """Build from an MLflow input :class:`~mlflow.types.Schema`."""
        numeric: list[str] = []
        categorical: list[str] = []
        datetime: list[str] = []
        order: list[str] = []
        for spec in inputs.inputs:
            order.append(spec.name)
            kind = str(spec.type).lower()
            if "string" in kind:
                categorical.append(spec.name)
            elif "datetime" in kind:
                datetime.append(spec.name)
            else:
                numeric.append(spec.name)
        return cls(numeric=numeric, categorical=categorical, order=order, datetime=datetime)


def parse_body(body: bytes) -> Any:
    """JSON from the request body, or a 400."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None


def request_frame(payload: Any, schema: InputSchema, max_records: int) -> pd.DataFrame:
    """Validate a ``{"records": [...]}`` or ``{"columns": {name: [...]}}`` body into a frame."""
    if isinstance(payload, dict) and "columns" in payload and "records" not in payload:
        return records_frame({"records": _columns_to_records(payload)}, schema, max_records)
    return records_frame(payload, schema, max_records)


def _columns_to_records(payload: dict[str, Any]) -> list[dict[str, Any]]:
    unknown_keys = sorted(set(payload) - {"columns"})
    if unknown_keys:
        raise RequestError(
            422,
            "unknown top-level keys",
            [{"loc": ["body", k], "msg": "unknown key"} for k in unknown_keys],
        )
    columns = payload["columns"]
    if not isinstance(columns, dict) or not columns:
        raise RequestError(
            422,
            "'columns' must be an object of equally long lists",
            [{"loc": ["body", "columns"], "msg": "expected a non-empty object"}],
        )
    errors = [
        {"loc": ["body", "columns", name], "msg": "expected a list"}
        for name, values in columns.items()
        if not isinstance(values, list)
    ]
    if errors:
        raise RequestError(422, f"{len(errors)} invalid column(s)", errors)
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise RequestError(
            422,
            "columns of different lengths",
            [
                {"loc": ["body", "columns", name], "msg": f"{n} values"}
                for name, n in lengths.items()
            ],
        )
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def records_frame(payload: Any, schema: InputSchema, max_records: int) -> pd.DataFrame:
    """Validate ``{"records": [{column: value, ...}, ...]}`` and return it as a frame."""
    if not isinstance(payload, dict) or "records" not in payload:
        raise RequestError(
            422,
            'expected a JSON object {"records": [{...}, ...]} or {"columns": {...}}',
            [{"loc": ["body"], "msg": "missing key 'records'"}],
        )
    unknown_keys = sorted(set(payload) - {"records"})
    if unknown_keys:
        raise RequestError(
            422,
            "unknown top-level keys",
            [{"loc": ["body", k], "msg": "unknown key"} for k in unknown_keys],
        )
    records = payload["records"]
    if not isinstance(records, list) or not records:
        raise RequestError(
            422,
            "'records' must be a non-empty list of objects",
            [{"loc": ["body", "records"], "msg": "expected a non-empty list"}],
        )
    if len(records) > max_records:
        raise RequestError(
            413, f"{len(records)} records in one request; the limit is {max_records}"
        )
    errors: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        errors.extend(_record_errors(i, record, schema))
        if len(errors) >= 50:
            break
    if errors:
        raise RequestError(422, f"{len(errors)} invalid field(s)", errors)
    frame = pd.DataFrame.from_records(records, columns=schema.order)
    for column in schema.numeric:
        frame[column] = frame[column].astype("float64")
    for column in schema.categorical:
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)
    for column in schema.datetime:
        frame[column] = datetime_values(frame[column])
    return frame


def _record_errors(index: int, record: Any, schema: InputSchema) -> list[dict[str, Any]]:
    where = ["body", "records", index]
    if not isinstance(record, dict):
        return [{"loc": where, "msg": f"expected an object, got {type(record).__name__}"}]
    errors = [
        {"loc": [*where, column], "msg": "field required"}
        for column in schema.order
        if column not in record
    ]
    errors += [
        {"loc": [*where, key], "msg": "unknown field"} for key in record if key not in schema.order
    ]
    for column in schema.numeric:
        value = record.get(column)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append({"loc": [*where, column], "msg": f"expected a number, got {value!r}"})
        elif isinstance(value, float) and not math.isfinite(value):
            errors.append(
                {"loc": [*where, column], "msg": "expected a finite number (null for missing)"}
            )
    for column in schema.categorical:
        value = record.get(column)
        if value is not None and not isinstance(value, str):
            errors.append({"loc": [*where, column], "msg": f"expected a string, got {value!r}"})
    for column in schema.datetime:
        value = record.get(column)
        if value is None:
            continue
        if not isinstance(value, str) or pd.isna(datetime_values(pd.Series([value]))[0]):
            errors.append(
                {"loc": [*where, column], "msg": f"expected an ISO 8601 time, got {value!r}"}
            )
    return errors


def predictions_body(frame: pd.DataFrame) -> dict[str, Any]:
    """``predictions`` and, for classifiers, ``probabilities`` as a list of {label: p}."""
    from ray_mlops.models.predictor import PREDICTION_COLUMN, PROBABILITY_PREFIX

    body: dict[str, Any] = {"predictions": frame[PREDICTION_COLUMN].tolist()}
    proba_columns = [c for c in frame.columns if c.startswith(PROBABILITY_PREFIX)]
    if proba_columns:
        labels = [c.removeprefix(PROBABILITY_PREFIX) for c in proba_columns]
        body["probabilities"] = [
            dict(zip(labels, row, strict=True)) for row in frame[proba_columns].to_numpy().tolist()
        ]
    return body
