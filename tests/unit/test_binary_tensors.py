"""The binary tensor data extension, as tritonclient's defaults send and read it. Ray-free."""

from __future__ import annotations

import json
from typing import Any

import ml_dtypes
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from ray_mlops.serve.oip import encode_infer_response, infer_response, parse_infer_request
from ray_mlops.serve.schema import RequestError, parse_body
from ray_mlops.serve.scores import Scores
from ray_mlops.serve.tensors import (
    FIXED_DATATYPES,
    TensorDataError,
    decode_tensor,
    encode_tensor,
    split_body,
)
from tests.unit.test_oip import SCHEMA

NUMERIC = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": ml_dtypes.bfloat16,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
}


def _input(name: str, values: np.ndarray, datatype: str, binary: bool = True) -> Any:
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    return tensor


def _inputs(binary: bool = True, age: np.ndarray | None = None, datatype: str = "FP64") -> list:
    age = np.array([30.0, 41.5, 52.0]) if age is None else age
    return [
        _input("age", age, datatype, binary),
        _input("sex", np.array([["F"], ["Mé"], ["F"]], dtype=object), "BYTES", binary),
        _input("hours", np.array([40, 38, 45], dtype=np.int64), "INT64", binary),
        _input("seen", np.array(["2024-01-02T03:04:00"] * 3, dtype=object), "BYTES", binary),
    ]


def _parse(inputs: list, **kwargs: Any) -> Any:
    """What the server makes of tritonclient's request: header length, body split, parse."""
    body, header_length = triton.InferenceServerClient.generate_request_body(inputs, **kwargs)
    length = None if header_length is None else str(header_length)
    header, binary = split_body(body, length)
    return parse_infer_request(parse_body(header), SCHEMA, 10, binary=binary)


def _classifier() -> Scores:
    frame = pd.DataFrame(
        {
            "prediction": np.array(["<=50K", ">50K", "<=50K"], dtype=object),
            "probability_<=50K": [0.9, 0.2, 0.6],
            "probability_>50K": [0.1, 0.8, 0.4],
        }
    )
    return Scores.from_frame(frame)


def test_the_clients_default_binary_request_gives_the_frame_of_its_json_request() -> None:
    binary = _parse(_inputs(binary=True))
    as_json = _parse(_inputs(binary=False))
    pd.testing.assert_frame_equal(binary.frame, as_json.frame)
    assert binary.frame["sex"].tolist() == ["F", "Mé", "F"]
    # No outputs named: the client asks for every output in binary (with JSON inputs too).
    assert binary.binary("prediction") and binary.binary("probabilities")
    hand_written = parse_infer_request({"inputs": _tensors(data=[1.0], parameters={})}, SCHEMA, 10)
    assert not hand_written.binary("prediction")


@pytest.mark.parametrize("datatype", sorted(NUMERIC))
def test_every_numeric_datatype_arrives_as_its_values(datatype: str) -> None:
    values = np.array([1, 2, 100], dtype=NUMERIC[datatype])
    request = _parse(_inputs(age=values, datatype=datatype))
    assert request.frame["age"].tolist() == [1.0, 2.0, 100.0]
    assert request.frame["age"].dtype == "float64"


def test_binary_nan_is_a_missing_value_and_infinity_is_refused() -> None:
    request = _parse(_inputs(age=np.array([np.nan, 1.0, 2.0])))
    assert np.isnan(request.frame["age"].iloc[0])
    with pytest.raises(RequestError) as caught:
        _parse(_inputs(age=np.array([np.inf, 1.0, 2.0])))
    assert caught.value.status == 422
    assert caught.value.errors[0]["loc"] == ["body", "inputs", 0, "data", 0]


def test_the_client_reads_a_binary_answer_and_a_mixed_one() -> None:
    request = _parse(_inputs())
    body = infer_response("adult", "3", "req-1", _classifier(), request.outputs)
    content, header_length = encode_infer_response(body, request.binary)
    assert header_length is not None and header_length < len(content)
    result = triton.InferenceServerClient.parse_response_body(content, header_length=header_length)
    assert result.as_numpy("prediction").tolist() == [b"<=50K", b">50K", b"<=50K"]
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]
    )
    assert result.get_output("probabilities")["parameters"]["labels"] == ["<=50K", ">50K"]

    outputs = [
        triton.InferRequestedOutput("prediction", binary_data=False),
        triton.InferRequestedOutput("probabilities"),  # binary, the client's default
    ]
    mixed = _parse(_inputs(), outputs=outputs)
    body = infer_response("adult", "3", None, _classifier(), mixed.outputs)
    content, header_length = encode_infer_response(body, mixed.binary)
    header = json.loads(content[:header_length])
    assert header["outputs"][0]["data"] == ["<=50K", ">50K", "<=50K"]
    assert header["outputs"][1]["parameters"]["binary_data_size"] == 6 * 8
    result = triton.InferenceServerClient.parse_response_body(content, header_length=header_length)
    assert result.as_numpy("probabilities").shape == (3, 2)


def test_a_json_only_answer_has_no_header_length() -> None:
    body = infer_response("adult", "3", None, _classifier(), None)
    content, header_length = encode_infer_response(body, lambda name: False)
    assert header_length is None and json.loads(content)["outputs"][0]["data"][1] == ">50K"


def _binary_request(tensors: list[dict[str, Any]], tail: bytes) -> RequestError:
    header = json.dumps({"inputs": tensors}).encode()
    body, binary = split_body(header + tail, str(len(header)))
    with pytest.raises(RequestError) as caught:
        parse_infer_request(parse_body(body), SCHEMA, 10, binary=binary)
    return caught.value


def _tensors(**age: Any) -> list[dict[str, Any]]:
    return [
        {"name": "age", "shape": [1], "datatype": "FP64", "parameters": {}} | age,
        {"name": "sex", "shape": [1], "datatype": "BYTES", "data": ["F"]},
        {"name": "hours", "shape": [1], "datatype": "INT32", "data": [40]},
        {"name": "seen", "shape": [1], "datatype": "BYTES", "data": [None]},
    ]


ONE = np.array([1.0]).tobytes()
# (age tensor's changes, binary part, where the error is, what its message says)
BAD_BINARY: dict[str, tuple[dict[str, Any], bytes, list[Any], str]] = {
    "sizes short of the data": (
        {"parameters": {"binary_data_size": 8}},
        ONE + b"x",
        ["body", "inputs"],
        "add up to 8",
    ),
    "size past the data": (
        {"parameters": {"binary_data_size": 16}},
        ONE,
        ["body", "inputs"],
        "add up to 16",
    ),
    "size and shape disagree": (
        {"parameters": {"binary_data_size": 16}},
        ONE + ONE,
        ["body", "inputs", 0, "shape"],
        "does not match",
    ),
    "size not whole elements": (
        {"parameters": {"binary_data_size": 7}},
        ONE[:7],
        ["body", "inputs", 0, "parameters", "binary_data_size"],
        "whole number",
    ),
    "negative size": (
        {"parameters": {"binary_data_size": -1}},
        b"",
        ["body", "inputs", 0, "parameters", "binary_data_size"],
        "byte count",
    ),
    "both data and binary": (
        {"parameters": {"binary_data_size": 8}, "data": [1.0]},
        ONE,
        ["body", "inputs", 0, "data"],
        "both",
    ),
    "shared memory": (
        {"parameters": {"shared_memory_region": "r"}, "data": [1.0]},
        b"",
        ["body", "inputs", 0, "parameters"],
        "shared-memory",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BINARY))
def test_each_bad_binary_tensor_is_a_422_naming_it(case: str) -> None:
    changes, tail, loc, words = BAD_BINARY[case]
    error = _binary_request(_tensors(**changes), tail)
    assert error.status == 422
    messages = {tuple(e["loc"]): e["msg"] for e in error.errors}
    assert tuple(loc) in messages, error.errors
    assert words in messages[tuple(loc)]


def test_bytes_elements_that_are_truncated_or_not_utf8_are_named() -> None:
    tensors = _tensors(parameters={"binary_data_size": 8})
    tensors[1] = {"name": "sex", "shape": [1], "datatype": "BYTES"}
    for raw, words in [
        (b"\x05\x00\x00\x00F", "declares 5 bytes"),
        (b"\x01\x00", "4-byte length"),
        (b"\x01\x00\x00\x00\xff", "not UTF-8"),
    ]:
        tensors[1]["parameters"] = {"binary_data_size": len(raw)}
        error = _binary_request(tensors, ONE + raw)
        assert error.status == 422
        assert any("'sex'" in e["msg"] and words in e["msg"] for e in error.errors), error.errors


def test_binary_size_without_a_binary_body_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        parse_infer_request({"inputs": _tensors(parameters={"binary_data_size": 8})}, SCHEMA, 10)
    assert "Inference-Header-Content-Length" in caught.value.errors[0]["msg"]


@pytest.mark.parametrize("length", ["abc", "-1", "999"])
def test_a_header_length_outside_the_body_is_refused(length: str) -> None:
    with pytest.raises(TensorDataError, match="Inference-Header-Content-Length"):
        split_body(b"{}", length)


@pytest.mark.parametrize("datatype", sorted(FIXED_DATATYPES.keys() | {"BF16", "BYTES"}))
def test_encoding_then_decoding_gives_the_values_back(datatype: str) -> None:
    values: list[Any] = [True, False] if datatype == "BOOL" else [0, 1, 2, 64]
    if datatype == "BYTES":
        values = ["", "a", "é", "\u4e2d"]
    assert decode_tensor(datatype, encode_tensor(datatype, values)).tolist() == values
