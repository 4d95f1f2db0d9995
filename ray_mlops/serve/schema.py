"""Request parsing and validation against the model's input signature. Ray-free.

A client's mistake becomes a :class:`RequestError` with a 4xx status and one message per
field, never a 500.
"""

from __future__ import annotations

import json
import math
import reprlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ray_mlops.features.primitives import datetime_values

_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 5


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
    """JSON from the request body, or a 400.

    Beyond syntax errors and bad UTF-8 (``ValueError``), the parser refuses integers of more
    than 4300 digits (``ValueError`` too) and recurses once per nesting level
    (``RecursionError``): each is the client's doing, so each is a 400.
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise RequestError(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise RequestError(400, f"request body is not valid JSON: {describe(exc)}") from None


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body decompressed per its ``Content-Encoding`` (gzip or deflate), within ``limit``.

    Decompression stops one byte past ``limit``, so a small "zip bomb" cannot expand in
    memory. tritonclient sends these with ``request_compression_algorithm``.

    Raises:
        RequestError: 415 for another encoding, 413 over ``limit`` once expanded, 400 when
            the data is not what the encoding says.
    """
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    # zlib's window bits: 16 + 15 reads a gzip member, 15 a zlib stream (HTTP's "deflate").
    wbits = {"gzip": 16 + 15, "x-gzip": 16 + 15, "deflate": 15}.get(name)
    if wbits is None:
        raise RequestError(
            415, f"Content-Encoding {describe(encoding)} is not supported; use gzip or deflate"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(400, f"request body is not valid {name} data: {exc}") from None
    if len(data) > limit:
        raise RequestError(413, f"request body expands to over {limit} bytes, the limit")
    if not inflater.eof:
        raise RequestError(400, f"request body is truncated {name} data")
    return data


def describe(value: Any) -> str:
    """A short ``repr`` of a client's value for an error message.

    Nested containers are cut a few levels down and long text is shortened, so a message
    stays small and its ``repr`` cannot recurse through a deeply nested value.
    """
    return _SHORT.repr(value)


@dataclass(frozen=True)
class RequestRows:
    """A validated request's rows, one numpy array per input column.

    Cheaper than a DataFrame per request: a batch of requests joins column by column
    (:func:`join_columns`) into the one input the model sees.

    Attributes:
        columns: Numeric columns as float64 (NaN where missing), the others as object arrays
            of ``str`` or ``None``, in the schema's order.
        schema: The schema they were checked against.
    """

    columns: dict[str, np.ndarray]
    schema: InputSchema

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame: float64 numbers, object text with ``None`` for missing."""
        return rows_frame([self])

    def records(self) -> list[dict[str, Any]]:
        """The rows as JSON-ready records: floats, strings and ``None`` for missing."""
        names = list(self.columns)
        values = [
            [None if v != v else v for v in array.tolist()]  # NaN -> None
            if name in self.schema.numeric
            else array.tolist()
            for name, array in self.columns.items()
        ]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def join_columns(parts: list[RequestRows]) -> dict[str, np.ndarray | pd.Series]:
    """The rows of several requests (one schema), in order, one array per column.

    This is what the model's transform takes, without the cost of a DataFrame per batch.
    Datetime columns are parsed here (times as ``datetime64``, NaT where missing).
    """
    schema = parts[0].schema
    joined: dict[str, np.ndarray | pd.Series] = {}
    for name in schema.order:
        arrays = [part.columns[name] for part in parts]
        column = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        joined[name] = datetime_values(column) if name in schema.datetime else column
    return joined


def rows_frame(parts: list[RequestRows]) -> pd.DataFrame:
    """The rows of several requests as one DataFrame (float64, object text, datetime64)."""
    return pd.DataFrame(
        {
            # An explicit object Series: pandas would otherwise infer its str dtype (NaN
            # for missing), and the model's input should not depend on the pandas version.
            name: pd.Series(column, dtype=object)
            if isinstance(column, np.ndarray) and column.dtype == object
            else column
            for name, column in join_columns(parts).items()
        }
    )


def request_rows(payload: Any, schema: InputSchema, max_records: int) -> RequestRows:
    """Validate a ``{"records": [...]}`` or ``{"columns": {name: [...]}}`` body into rows."""
    if isinstance(payload, dict) and "columns" in payload and "records" not in payload:
        return checked_rows({"records": _columns_to_records(payload)}, schema, max_records)
    return checked_rows(payload, schema, max_records)


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
    return checked_rows(payload, schema, max_records).frame()


def checked_rows(payload: Any, schema: InputSchema, max_records: int) -> RequestRows:
    """Validate ``{"records": [{column: value, ...}, ...]}`` into :class:`RequestRows`."""
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
    # Checked above: numbers (int or finite float) or None, strings or None. numpy reads
    # None as NaN in a float64 array.
    columns: dict[str, np.ndarray] = {}
    for name in schema.order:
        values = [record[name] for record in records]
        if name in schema.numeric:
            columns[name] = np.array(values, dtype=np.float64)
        else:
            array = np.empty(len(values), dtype=object)
            array[:] = values
            columns[name] = array
    return RequestRows(columns, schema)


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
            errors.append(
                {"loc": [*where, column], "msg": f"expected a number, got {describe(value)}"}
            )
        elif (isinstance(value, float) and not math.isfinite(value)) or (
            isinstance(value, int) and not _fits_float(value)
        ):
            errors.append(
                {"loc": [*where, column], "msg": "expected a finite number (null for missing)"}
            )
    for column in schema.categorical:
        value = record.get(column)
        if value is not None and not isinstance(value, str):
            errors.append(
                {"loc": [*where, column], "msg": f"expected a string, got {describe(value)}"}
            )
    for column in schema.datetime:
        value = record.get(column)
        if value is None:
            continue
        if not isinstance(value, str) or pd.isna(datetime_values(pd.Series([value]))[0]):
            errors.append(
                {
                    "loc": [*where, column],
                    "msg": f"expected an ISO 8601 time, got {describe(value)}",
                }
            )
    return errors


def _fits_float(value: int) -> bool:
    """Whether a JSON integer (unbounded) converts to a float64."""
    try:
        float(value)
    except OverflowError:
        return False
    return True
