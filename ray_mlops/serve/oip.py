"""The Open Inference Protocol v2 (KServe / Triton HTTP/REST) for a tabular model. Ray-free.

A request carries one tensor per input column; this module checks the tensors' structure
(names, datatypes, shapes, lengths), then hands the rows to :func:`checked_rows`, so a value
is accepted or refused exactly as in a ``{"records": [...]}`` request and the frame has the
same dtypes. Tensor data comes as JSON or in the binary tensor data extension
(:mod:`ray_mlops.serve.tensors`), which ``tritonclient`` uses by default; answers are JSON or
binary per output, as the request asks. The shared-memory extension cannot work across
machines and is refused.

Example:
    >>> schema = InputSchema(numeric=["age"], categorical=["sex"], order=["age", "sex"])
    >>> request = parse_infer_request(
    ...     {"inputs": [
    ...         {"name": "age", "shape": [2], "datatype": "FP64", "data": [30, None]},
    ...         {"name": "sex", "shape": [2, 1], "datatype": "BYTES", "data": [["F"], ["M"]]},
    ...     ]},
    ...     schema,
    ...     max_records=10,
    ... )
    >>> request.frame["age"].tolist(), request.frame["sex"].tolist()
    ([30.0, nan], ['F', 'M'])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd

from ray_mlops.serve.answers import encode_json
from ray_mlops.serve.schema import (
    InputSchema,
    RequestError,
    RequestRows,
    checked_rows,
    describe,
)
from ray_mlops.serve.scores import Scores
from ray_mlops.serve.tensors import (
    FIXED_DATATYPES,
    TEXT_DATATYPE,
    TensorDataError,
    decode_tensor,
    encode_tensor,
)

PLATFORM = "ray-mlops"
# The protocol extensions this server implements, as GET /v2 names them (Triton's names).
EXTENSIONS = ("binary_tensor_data",)
PREDICTION_OUTPUT = "prediction"
PROBABILITIES_OUTPUT = "probabilities"
# Every numeric datatype of the protocol; BOOL is not a number here, as in JSON records.
NUMERIC_DATATYPES = frozenset(FIXED_DATATYPES.keys() - {"BOOL"} | {"BF16"})
INTEGER_DATATYPES = frozenset(d for d in NUMERIC_DATATYPES if "INT" in d)

_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
BINARY_SIZE = "binary_data_size"
# Request parameter: every output in binary unless an output says otherwise.
BINARY_OUTPUT = "binary_data_output"
# Output parameter: this output in binary (true) or JSON (false).
BINARY_DATA = "binary_data"
_SHARED_MEMORY = "shared_memory_region"
# Same cap as checked_rows: a client fixes a few errors at a time; a huge body stays cheap.
_MAX_ERRORS = 50


@dataclass(frozen=True)
class InferRequest:
    """A validated inference request.

    Attributes:
        id: The client's request id, echoed in the response; ``None`` when not given.
        rows: One row per instance, checked as by :func:`checked_rows`.
        outputs: Output names to return, in the requested order; ``None`` for all.
        binary_outputs: Output names to return as binary data, whether asked for by name or
            by the request's ``binary_data_output``; all outputs when ``outputs`` is None
            and this holds ``"*"``.
        positions: Each column's place in ``inputs``, for errors found later.
    """

    id: str | None
    rows: RequestRows
    outputs: list[str] | None
    binary_outputs: frozenset[str] = frozenset()
    positions: dict[str, int] = field(default_factory=dict)

    def binary(self, output: str) -> bool:
        """Whether ``output`` goes out as binary data."""
        return output in self.binary_outputs or "*" in self.binary_outputs

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as the model's input frame (columns in the schema's order)."""
        return self.rows.frame()


class _Tensor(NamedTuple):
    """A well-formed input tensor: its place in ``inputs``, its datatype and flat data."""

    position: int
    datatype: str
    data: list[Any]


def output_names(labels: list[str] | None) -> list[str]:
    """Outputs a model produces: ``prediction``, and ``probabilities`` for a classifier.

    Args:
        labels: Class labels of a classifier; ``None`` for regression.

    Returns:
        The output tensor names, in response order.
    """
    return [PREDICTION_OUTPUT] if labels is None else [PREDICTION_OUTPUT, PROBABILITIES_OUTPUT]


def server_metadata(version: str) -> dict[str, Any]:
    """The body of ``GET /v2``: the server's name, version and protocol extensions.

    Args:
        version: The ray-mlops version.
    """
    return {"name": PLATFORM, "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(
    name: str, versions: list[str], schema: InputSchema, labels: list[str] | None
) -> dict[str, Any]:
    """The body of ``GET /v2/models/{name}[/versions/{version}]``.

    Args:
        name: Registered model name.
        versions: Registered model versions served (the champion's first).
        schema: The model's input columns.
        labels: Class labels of a classifier; ``None`` for regression.

    Returns:
        Name, versions, platform, and one input tensor per column and the output tensors.
    """
    inputs = [
        {"name": column, "datatype": _column_datatype(column, schema), "shape": [-1]}
        for column in schema.order
    ]
    outputs: list[dict[str, Any]] = [
        {
            "name": PREDICTION_OUTPUT,
            "datatype": "FP64" if labels is None else TEXT_DATATYPE,
            "shape": [-1],
        }
    ]
    if labels is not None:
        outputs.append(
            {"name": PROBABILITIES_OUTPUT, "datatype": "FP64", "shape": [-1, len(labels)]}
        )
    return {
        "name": name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": outputs,
    }


def parse_infer_request(
    payload: Any,
    schema: InputSchema,
    max_records: int,
    *,
    known_outputs: Sequence[str] = (PREDICTION_OUTPUT, PROBABILITIES_OUTPUT),
    binary: bytes | None = None,
) -> InferRequest:
    """Validate a ``POST /v2/models/{name}/infer`` body and return its rows as a frame.

    Args:
        payload: The decoded JSON body (the JSON header of a binary request).
        schema: The model's input columns; one tensor is expected per column.
        max_records: Most rows one request may carry.
        known_outputs: Output names a request may ask for; pass :func:`output_names` of the
            served model so that a regression model refuses ``probabilities``.
        binary: The bytes after the JSON header of a binary request
            (:func:`~ray_mlops.serve.tensors.split_body`); None for a JSON-only body.

    Returns:
        The request id, the typed frame and the requested outputs.

    Raises:
        RequestError: 422 with one error per bad field (its ``loc`` is
            ``["body", "inputs", i, field]``), or 413 over ``max_records`` rows.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise RequestError(
            422,
            'expected a JSON object {"inputs": [{"name", "shape", "datatype", "data"}, ...]}',
            [{"loc": ["body", "inputs"], "msg": "expected a list of input tensors"}],
        )
    errors = [
        {"loc": ["body", key], "msg": "unknown key"}
        for key in sorted(set(payload) - _REQUEST_KEYS, key=str)
    ]
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        errors.append(
            {"loc": ["body", "id"], "msg": f"expected a string, got {describe(request_id)}"}
        )
    binary_default, parameter_errors = _request_parameters(payload.get("parameters", {}))
    outputs, binary_outputs, output_errors = _requested_outputs(
        payload.get("outputs"), known_outputs, binary_default
    )
    raw, binary_errors = _binary_parts(payload["inputs"], binary)
    columns, tensor_errors = _column_tensors(payload["inputs"], schema, raw)
    errors += parameter_errors + output_errors + binary_errors + tensor_errors
    if errors:
        raise RequestError(422, _summary(errors, "invalid field"), errors[:_MAX_ERRORS])
    rows = len(next(iter(columns.values())).data) if columns else 0
    if rows > max_records:
        raise RequestError(413, f"{rows} rows in one request; the limit is {max_records}")
    if rows == 0:
        raise RequestError(
            422,
            "the input tensors hold no rows",
            [{"loc": ["body", "inputs"], "msg": "expected at least one row"}],
        )
    return InferRequest(
        id=request_id,
        rows=_checked_rows(columns, schema, max_records),
        outputs=outputs,
        binary_outputs=binary_outputs,
        positions={name: tensor.position for name, tensor in columns.items()},
    )


def infer_response(
    name: str,
    version: str,
    request_id: str | None,
    scores: Scores,
    outputs: list[str] | None,
) -> dict[str, Any]:
    """The body answering ``POST /v2/models/{name}/infer``.

    Args:
        name: Registered model name.
        version: Registered model version that answered.
        request_id: The request's ``id``, echoed when not ``None``.
        scores: The model's answers: predictions and, for a classifier, probabilities.
        outputs: Output names to return, in this order; ``None`` for all the model has.

    Returns:
        Model name and version, the id, and the output tensors with JSON data.

    Raises:
        RequestError: 422 when an output is asked for that the model does not produce.
    """
    labels = scores.labels
    available = output_names(labels)
    requested = available if outputs is None else outputs
    missing = [output for output in requested if output not in available]
    if missing:
        raise RequestError(
            422,
            f"this model does not produce output(s) {missing}; it produces {available}",
            [{"loc": ["body", "outputs"], "msg": f"unknown output {describe(m)}"} for m in missing],
        )
    rows = len(scores)
    tensors: list[dict[str, Any]] = []
    for output in requested:
        if output == PREDICTION_OUTPUT:
            values = scores.predictions
            tensors.append(
                {
                    "name": PREDICTION_OUTPUT,
                    # Labels go out as strings whatever their type, as the metadata promises.
                    "datatype": TEXT_DATATYPE if labels else "FP64",
                    "shape": [rows],
                    "data": [str(v) for v in values.tolist()]
                    if labels
                    else values.astype("float64").tolist(),
                }
            )
        else:
            assert scores.probabilities is not None and labels is not None
            tensors.append(
                {
                    "name": PROBABILITIES_OUTPUT,
                    "datatype": "FP64",
                    "shape": [rows, len(labels)],
                    "data": scores.probabilities.astype("float64").ravel().tolist(),
                    "parameters": {"labels": labels},
                }
            )
    body: dict[str, Any] = {"model_name": name, "model_version": version}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = tensors
    return body


def encode_infer_response(
    body: dict[str, Any], binary: Callable[[str], bool]
) -> tuple[bytes, int | None]:
    """The bytes of an inference answer, with the outputs ``binary`` picks as binary data.

    Args:
        body: An answer from :func:`infer_response` (it is changed: binary outputs lose
            their ``data`` and gain a ``binary_data_size``).
        binary: Whether an output, by name, goes out as binary data
            (:meth:`InferRequest.binary`).

    Returns:
        The body, and the length of its JSON header when binary data follows it (the
        ``Inference-Header-Content-Length`` to send); None for a JSON-only answer.
    """
    parts: list[bytes] = []
    for output in body["outputs"]:
        if binary(output["name"]):
            raw = encode_tensor(output["datatype"], output.pop("data"))
            output.setdefault("parameters", {})[BINARY_SIZE] = len(raw)
            parts.append(raw)
    header = encode_json(body)
    if not parts:
        return header, None
    return header + b"".join(parts), len(header)


def _column_datatype(column: str, schema: InputSchema) -> str:
    return "FP64" if column in schema.numeric else TEXT_DATATYPE


def _summary(errors: list[dict[str, Any]], what: str) -> str:
    return f"{len(errors)} {what}(s): " + "; ".join(e["msg"] for e in errors[:3])


def _request_parameters(parameters: Any) -> tuple[bool, list[dict[str, Any]]]:
    """The request's ``binary_data_output`` (False when absent); errors when malformed.

    Other parameters (tritonclient's ``timeout``, ``priority``, custom ones) are ignored.
    """
    where: list[Any] = ["body", "parameters"]
    if not isinstance(parameters, dict):
        return False, [{"loc": where, "msg": "expected an object"}]
    binary = parameters.get(BINARY_OUTPUT, False)
    if not isinstance(binary, bool):
        return False, [
            {
                "loc": [*where, BINARY_OUTPUT],
                "msg": f"expected true or false, got {describe(binary)}",
            }
        ]
    return binary, []


def _requested_outputs(
    outputs: Any, known: Sequence[str], binary_default: bool
) -> tuple[list[str] | None, frozenset[str], list[dict[str, Any]]]:
    """The requested output names (None for all), those wanted in binary, and errors."""
    # An empty list reads as no choice (tritonclient sends none then), not as "return nothing".
    if outputs is None or outputs == []:
        return None, frozenset({"*"} if binary_default else ()), []
    where: list[Any] = ["body", "outputs"]
    if not isinstance(outputs, list):
        return (
            None,
            frozenset(),
            [{"loc": where, "msg": "expected a list of {'name': ...} objects"}],
        )
    names: list[str] = []
    binary: set[str] = set()
    errors: list[dict[str, Any]] = []
    for i, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            errors.append({"loc": [*where, i], "msg": "expected an object with a 'name'"})
            continue
        name = output["name"]
        errors += [
            {"loc": [*where, i, key], "msg": f"output {describe(name)}: unknown field"}
            for key in sorted(set(output) - _OUTPUT_KEYS, key=str)
        ]
        parameters = output.get("parameters", {})
        if not isinstance(parameters, dict):
            errors.append({"loc": [*where, i, "parameters"], "msg": "expected an object"})
        elif not isinstance(parameters.get(BINARY_DATA, binary_default), bool):
            errors.append(
                {
                    "loc": [*where, i, "parameters", BINARY_DATA],
                    "msg": f"output {describe(name)}: expected true or false",
                }
            )
        elif "classification" in parameters:
            # Triton's classification extension would change the output's meaning: refuse it
            # rather than answer something the client did not ask for.
            errors.append(
                {
                    "loc": [*where, i, "parameters"],
                    "msg": f"output {describe(name)}: the classification extension is not supported",
                }
            )
        if name not in known:
            errors.append(
                {
                    "loc": [*where, i, "name"],
                    "msg": f"unknown output {describe(name)}; known: {list(known)}",
                }
            )
        elif name in names:
            errors.append({"loc": [*where, i, "name"], "msg": f"duplicate output {describe(name)}"})
        else:
            names.append(name)
            if isinstance(parameters, dict) and parameters.get(BINARY_DATA, binary_default):
                binary.add(name)
    return names, frozenset(binary), errors


def _binary_parts(
    tensors: list[Any], binary: bytes | None
) -> tuple[dict[int, bytes], list[dict[str, Any]]]:
    """Each binary input's bytes, by its place in ``inputs``, cut from the binary part in order.

    The sizes are read first, from every tensor that declares one, so that one malformed
    tensor does not shift the bytes of those after it.
    """
    parts: dict[int, bytes] = {}
    errors: list[dict[str, Any]] = []
    offset = 0
    for i, tensor in enumerate(tensors):
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, dict) or BINARY_SIZE not in parameters:
            continue
        where: list[Any] = ["body", "inputs", i, "parameters"]
        name = describe(tensor.get("name"))
        size = parameters[BINARY_SIZE]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            errors.append(
                {
                    "loc": [*where, BINARY_SIZE],
                    "msg": f"tensor {name}: expected a byte count, got {describe(size)}",
                }
            )
            continue
        if binary is None:
            errors.append(
                {
                    "loc": where,
                    "msg": f"tensor {name}: {BINARY_SIZE} needs a binary body, with the "
                    "Inference-Header-Content-Length header giving its JSON part's length",
                }
            )
            continue
        parts[i] = binary[offset : offset + size]
        offset += size
    if binary is not None and offset != len(binary):
        errors.append(
            {
                "loc": ["body", "inputs"],
                "msg": f"the binary part holds {len(binary)} bytes; the tensors' "
                f"{BINARY_SIZE} add up to {offset}",
            }
        )
    return parts, errors


def _column_tensors(
    tensors: list[Any], schema: InputSchema, raw: dict[int, bytes]
) -> tuple[dict[str, _Tensor], list[dict[str, Any]]]:
    """Each column's tensor index and flat data; errors for the tensors' structure."""
    columns: dict[str, _Tensor] = {}
    errors: list[dict[str, Any]] = []
    for i, tensor in enumerate(tensors):
        data, tensor_errors = _tensor_data(i, tensor, schema, raw.get(i))
        errors += tensor_errors
        if data is None:
            continue
        name = tensor["name"]
        if name in columns:
            errors.append(
                {"loc": ["body", "inputs", i, "name"], "msg": f"duplicate tensor {describe(name)}"}
            )
        else:
            columns[name] = _Tensor(i, tensor["datatype"], data)
    # A malformed tensor for a column has been reported already; only absent ones are missing.
    named = {
        t.get("name") for t in tensors if isinstance(t, dict) and isinstance(t.get("name"), str)
    }
    errors += [
        {"loc": ["body", "inputs"], "msg": f"missing tensor {describe(column)}"}
        for column in schema.order
        if column not in named
    ]
    if columns:
        # The first well-formed tensor sets the row count; every other one is measured by it.
        first, reference = next(iter(columns.items()))
        errors += [
            {
                "loc": ["body", "inputs", tensor.position, "shape"],
                "msg": f"tensor {describe(name)} has {len(tensor.data)} rows; tensor {describe(first)} has "
                f"{len(reference.data)}",
            }
            for name, tensor in columns.items()
            if len(tensor.data) != len(reference.data)
        ]
    return columns, errors


def _tensor_data(
    index: int, tensor: Any, schema: InputSchema, raw: bytes | None
) -> tuple[list[Any] | None, list[dict[str, Any]]]:
    """The tensor's data as a flat list, or None with the reasons it is malformed.

    ``raw`` is its binary data when it declared a ``binary_data_size``.
    """
    where: list[Any] = ["body", "inputs", index]
    if not isinstance(tensor, dict):
        return None, [{"loc": where, "msg": f"expected an object, got {type(tensor).__name__}"}]
    name = tensor.get("name")
    if not isinstance(name, str):
        return None, [
            {"loc": [*where, "name"], "msg": f"expected a tensor name, got {describe(name)}"}
        ]
    if name not in schema.order:
        return None, [
            {
                "loc": [*where, "name"],
                "msg": f"unknown tensor {describe(name)}; inputs: {schema.order}",
            }
        ]
    errors = [
        {"loc": [*where, key], "msg": f"tensor {describe(name)}: unknown field"}
        for key in sorted(set(tensor) - _TENSOR_KEYS, key=str)
    ]
    errors += _datatype_errors(where, name, tensor.get("datatype"), schema)
    errors += _parameter_errors(where, name, tensor.get("parameters", {}))
    shape = _shape(tensor.get("shape"))
    if shape is None:
        errors.append(
            {
                "loc": [*where, "shape"],
                "msg": f"tensor {describe(name)}: expected shape [n] or [n, 1], got "
                f"{describe(tensor.get('shape'))}",
            }
        )
    parameters = tensor.get("parameters")
    if raw is not None or (isinstance(parameters, dict) and BINARY_SIZE in parameters):
        return _binary_data(where, name, tensor, raw, shape, errors)
    data = tensor.get("data")
    if not isinstance(data, list):
        errors.append(
            {"loc": [*where, "data"], "msg": f"tensor {describe(name)}: expected a list of values"}
        )
        return None, errors
    flat = _flatten(data)
    if flat is None:
        errors.append(
            {
                "loc": [*where, "data"],
                "msg": f"tensor {describe(name)}: expected a flat list, or one-element lists",
            }
        )
    elif shape is not None and flat is not data and len(shape) != 2:
        errors.append(
            {
                "loc": [*where, "data"],
                "msg": f"tensor {describe(name)}: nested data needs shape [n, 1]",
            }
        )
    elif shape is not None and shape[0] != len(flat):
        errors.append(
            {
                "loc": [*where, "shape"],
                "msg": f"tensor {describe(name)}: shape {shape} does not match {len(flat)} values",
            }
        )
    return (flat if not errors else None), errors


def _datatype_errors(
    where: list[Any], name: str, datatype: Any, schema: InputSchema
) -> list[dict[str, Any]]:
    allowed = sorted(NUMERIC_DATATYPES) if name in schema.numeric else [TEXT_DATATYPE]
    if datatype in allowed:
        return []
    return [
        {
            "loc": [*where, "datatype"],
            "msg": f"tensor {describe(name)}: datatype {describe(datatype)} is not one of {allowed}",
        }
    ]


def _binary_data(
    where: list[Any],
    name: str,
    tensor: dict[str, Any],
    raw: bytes | None,
    shape: list[int] | None,
    errors: list[dict[str, Any]],
) -> tuple[list[Any] | None, list[dict[str, Any]]]:
    """A binary tensor's elements; NaN in a float tensor is a missing value.

    Binary data has no ``null``: NaN is the only way it can say "missing", so here (unlike
    in JSON, which has ``null``) it reads as missing.
    """
    if "data" in tensor:
        errors.append(
            {
                "loc": [*where, "data"],
                "msg": f"tensor {describe(name)}: has both 'data' and a {BINARY_SIZE}",
            }
        )
    if raw is None or errors:
        return None, errors  # the size's own error is reported by _binary_parts
    try:
        array = decode_tensor(tensor["datatype"], raw)
    except TensorDataError as exc:
        return None, [
            {"loc": [*where, "parameters", BINARY_SIZE], "msg": f"tensor {describe(name)}: {exc}"}
        ]
    if shape is not None and shape[0] != len(array):
        return None, [
            {
                "loc": [*where, "shape"],
                "msg": f"tensor {describe(name)}: shape {shape} does not match the "
                f"{len(array)} values of its binary data",
            }
        ]
    if array.dtype.kind == "f":
        return [None if v != v else v for v in array.tolist()], []
    return array.tolist(), []


def _parameter_errors(where: list[Any], name: str, parameters: Any) -> list[dict[str, Any]]:
    if not isinstance(parameters, dict):
        return [
            {"loc": [*where, "parameters"], "msg": f"tensor {describe(name)}: expected an object"}
        ]
    if _SHARED_MEMORY in parameters:
        return [
            {
                "loc": [*where, "parameters"],
                "msg": f"tensor {describe(name)}: the shared-memory extension is not supported "
                "(the server runs on other machines); send the values in the body",
            }
        ]
    return []


def _shape(shape: Any) -> list[int] | None:
    """The shape when it is ``[n]`` or ``[n, 1]`` with ``n >= 0``; else None."""
    if not isinstance(shape, list) or len(shape) not in (1, 2):
        return None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return None
    return shape if len(shape) == 1 or shape[1] == 1 else None


def _flatten(data: list[Any]) -> list[Any] | None:
    """``data`` itself when flat; one-element rows unwrapped; None when otherwise nested."""
    if not any(isinstance(value, list) for value in data):
        return data
    if all(isinstance(value, list) and len(value) == 1 for value in data):
        return [value[0] for value in data]
    return None


def _checked_rows(
    columns: dict[str, _Tensor], schema: InputSchema, max_records: int
) -> RequestRows:
    """Check the values as :func:`checked_rows` does, plus what only a tensor can get wrong."""
    records = [dict(zip(schema.order, row, strict=True)) for row in _rows(columns, schema)]
    errors: list[dict[str, Any]] = []
    checked: RequestRows | None = None
    try:
        checked = checked_rows({"records": records}, schema, max_records)
    except RequestError as exc:
        errors = [_tensor_loc(error, columns) for error in exc.errors]
    # One error per value: where the records checks spoke already, theirs is the message.
    reported = {tuple(error["loc"]) for error in errors}
    for column in schema.numeric:
        errors += [
            error
            for error in _number_errors(column, columns[column])
            if tuple(error["loc"]) not in reported
        ]
        if len(errors) >= _MAX_ERRORS:
            break
    if errors or checked is None:
        raise RequestError(422, _summary(errors, "invalid value"), errors[:_MAX_ERRORS])
    return checked


def _number_errors(column: str, tensor: _Tensor) -> list[dict[str, Any]]:
    """NaN, and fractions in an INT tensor: a tensor's values must fit its datatype.

    ``null`` is the missing value. The records checks may refuse NaN too; then theirs wins.
    """
    integer = tensor.datatype in INTEGER_DATATYPES
    errors: list[dict[str, Any]] = []
    for row, value in enumerate(tensor.data):
        if not isinstance(value, float):
            continue
        if math.isnan(value):
            msg = "expected a finite number, got NaN (send null for a missing value)"
        elif integer:
            msg = f"expected an integer ({tensor.datatype}), got {describe(value)}"
        else:
            continue
        errors.append(
            {
                "loc": ["body", "inputs", tensor.position, "data", row],
                "msg": f"tensor {describe(column)} row {row}: {msg}",
            }
        )
    return errors


def _rows(columns: dict[str, _Tensor], schema: InputSchema) -> zip[tuple[Any, ...]]:
    return zip(*(columns[column].data for column in schema.order), strict=True)


def _tensor_loc(error: dict[str, Any], columns: dict[str, _Tensor]) -> dict[str, Any]:
    """A records error (``["body", "records", row, column]``) as the column tensor's error."""
    loc = error["loc"]
    if len(loc) != 4:
        return error
    row, column = loc[2], loc[3]
    return {
        "loc": ["body", "inputs", columns[column].position, "data", row],
        "msg": f"tensor {describe(column)} row {row}: {error['msg']}",
    }
