"""The Open Inference Protocol v2 functions, driven by tritonclient's own request builder."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from ray_mlops.serve.oip import (
    InferRequest,
    infer_response,
    model_metadata,
    output_names,
    parse_infer_request,
)
from ray_mlops.serve.schema import InputSchema, RequestError, parse_body, records_frame
from ray_mlops.serve.scores import Scores

SCHEMA = InputSchema(
    numeric=["age", "hours"],
    categorical=["sex"],
    datetime=["seen"],
    order=["age", "sex", "hours", "seen"],
)
LABELS = ["<=50K", ">50K"]


def _client_input(name: str, values: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=False)
    return tensor


def _client_body(inputs: list[triton.InferInput], **kwargs: Any) -> Any:
    """What tritonclient would POST, decoded as the server decodes it."""
    body, header_length = triton.InferenceServerClient.generate_request_body(inputs, **kwargs)
    assert header_length is None  # all JSON, no binary tail
    return parse_body(body)


def _client_inputs(n: int = 3) -> list[triton.InferInput]:
    stamps = pd.date_range("2024-01-02 03:04", periods=n, freq="h")
    return [
        _client_input("age", np.arange(30.0, 30.0 + n), "FP64"),
        _client_input("sex", np.array([["F"], ["M"], ["F"]][:n], dtype=object), "BYTES"),
        _client_input("hours", np.arange(40, 40 + n, dtype=np.int64), "INT64"),
        _client_input("seen", np.array(list(stamps), dtype=object), "BYTES"),
    ]


def _tensors(n: int = 2) -> list[dict[str, Any]]:
    """A valid hand-written request's tensors, to break one field at a time."""
    return [
        {"name": "age", "shape": [n], "datatype": "FP64", "data": [30.5, None][:n]},
        {"name": "sex", "shape": [n], "datatype": "BYTES", "data": ["F", None][:n]},
        {"name": "hours", "shape": [n, 1], "datatype": "INT32", "data": [40, 38][:n]},
        {"name": "seen", "shape": [n], "datatype": "BYTES", "data": ["2024-01-02T03:04:00Z"] * n},
    ]


def _refused(payload: Any, limit: int = 10, **kwargs: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_infer_request(payload, SCHEMA, limit, **kwargs)
    return caught.value


def _classifier_predictions() -> Scores:
    return Scores.from_frame(
        pd.DataFrame(
            {
                "prediction": np.array(["<=50K", ">50K", "<=50K"], dtype=object),
                "probability_<=50K": [0.9, 0.2, 0.6],
                "probability_>50K": [0.1, 0.8, 0.4],
            }
        )
    )


def _client_result(body: dict[str, Any]) -> Any:
    """Parse a response as tritonclient does, from the bytes the server would send."""
    return triton.InferenceServerClient.parse_response_body(json.dumps(body).encode())


def test_client_request_becomes_the_frame_a_records_request_gives() -> None:
    payload = _client_body(_client_inputs(), request_id="req-1")
    request = parse_infer_request(payload, SCHEMA, 10)
    assert isinstance(request, InferRequest)
    assert request.id == "req-1" and request.outputs is None
    records = [
        {"age": 30.0 + i, "sex": sex, "hours": 40 + i, "seen": f"2024-01-02T0{3 + i}:04:00"}
        for i, sex in enumerate(["F", "M", "F"])
    ]
    expected = records_frame({"records": records}, SCHEMA, 10)
    pd.testing.assert_frame_equal(request.frame, expected)
    assert request.frame["age"].dtype == "float64" and request.frame["hours"].dtype == "float64"


def test_client_fp32_and_int32_inputs_are_accepted() -> None:
    inputs = _client_inputs()
    inputs[0] = _client_input("age", np.array([1.5, 2.5, 3.5], dtype=np.float32), "FP32")
    inputs[2] = _client_input("hours", np.array([[1], [2], [3]], dtype=np.int32), "INT32")
    frame = parse_infer_request(_client_body(inputs), SCHEMA, 10).frame
    assert frame["age"].tolist() == [1.5, 2.5, 3.5] and frame["hours"].tolist() == [1.0, 2.0, 3.0]


def test_client_requested_outputs_restrict_the_response() -> None:
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    request = parse_infer_request(_client_body(_client_inputs(), outputs=outputs), SCHEMA, 10)
    assert request.outputs == ["probabilities"]
    body = infer_response("adult", "3", None, _classifier_predictions(), request.outputs)
    assert [o["name"] for o in body["outputs"]] == ["probabilities"] and "id" not in body
    result = _client_result(body)
    assert result.as_numpy("prediction") is None
    assert result.as_numpy("probabilities").shape == (3, 2)


def test_client_reads_a_classifier_response() -> None:
    body = infer_response("adult", "3", "req-1", _classifier_predictions(), None)
    assert body["model_name"] == "adult" and body["model_version"] == "3"
    result = _client_result(body)
    assert result.get_response()["id"] == "req-1"
    assert result.as_numpy("prediction").tolist() == ["<=50K", ">50K", "<=50K"]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert result.get_output("probabilities")["parameters"]["labels"] == LABELS
    assert result.get_output("prediction")["datatype"] == "BYTES"


def test_client_reads_a_regression_response() -> None:
    predictions = pd.DataFrame({"prediction": [1.25, -3.0]})
    body = infer_response("price", "7", None, Scores.from_frame(predictions), None)
    assert [o["name"] for o in body["outputs"]] == ["prediction"]
    assert body["outputs"][0]["datatype"] == "FP64" and body["outputs"][0]["shape"] == [2]
    result = _client_result(body)
    prediction = result.as_numpy("prediction")
    assert prediction.dtype == np.float64 and prediction.tolist() == [1.25, -3.0]
    assert result.as_numpy("probabilities") is None


def test_regression_refuses_probabilities() -> None:
    payload = {"inputs": _tensors(), "outputs": [{"name": "probabilities"}]}
    error = _refused(payload, known_outputs=output_names(None))
    assert error.status == 422 and "probabilities" in error.errors[0]["msg"]
    with pytest.raises(RequestError) as caught:
        infer_response(
            "price",
            "7",
            None,
            Scores.from_frame(pd.DataFrame({"prediction": [1.0]})),
            ["probabilities"],
        )
    assert caught.value.status == 422


def test_client_nan_is_refused_and_none_arrives_as_a_string() -> None:
    # tritonclient writes numpy NaN as a JSON NaN token and None in a BYTES array as "None":
    # the protocol's missing value is null, which only a hand-written body can send.
    inputs = _client_inputs()
    inputs[0] = _client_input("age", np.array([1.0, np.nan, 3.0]), "FP64")
    inputs[1] = _client_input("sex", np.array(["F", None, "M"], dtype=object), "BYTES")
    error = _refused(_client_body(inputs))
    assert error.status == 422
    assert [e["loc"] for e in error.errors] == [["body", "inputs", 0, "data", 1]]
    assert "'age'" in error.message and "finite" in error.message
    inputs[0] = _client_input("age", np.array([1.0, 2.0, 3.0]), "FP64")
    frame = parse_infer_request(_client_body(inputs), SCHEMA, 10).frame
    assert frame["sex"].tolist() == ["F", "None", "M"]


def test_null_is_missing_and_parameters_are_ignored() -> None:
    payload = {"id": "x", "parameters": {"binary_data_output": True}, "inputs": _tensors()}
    frame = parse_infer_request(payload, SCHEMA, 10).frame
    assert math.isnan(frame["age"].iloc[1]) and frame["sex"].iloc[1] is None
    assert frame["hours"].tolist() == [40.0, 38.0]


def test_nested_data_is_accepted_for_shape_n_by_1() -> None:
    tensors = _tensors()
    tensors[1] |= {"shape": [2, 1], "data": [["F"], ["M"]]}
    assert parse_infer_request({"inputs": tensors}, SCHEMA, 10).frame["sex"].tolist() == ["F", "M"]


def _with(index: int, **changes: Any) -> dict[str, Any]:
    tensors = _tensors()
    tensors[index] = tensors[index] | changes
    return {"inputs": tensors}


# (payload, tensor named in the message, the error's loc)
BAD_REQUESTS = {
    "missing tensor": ({"inputs": _tensors()[:3]}, "seen", ["body", "inputs"]),
    "unknown tensor": (
        {"inputs": [*_tensors(), {"name": "zip", "shape": [2], "datatype": "BYTES", "data": []}]},
        "zip",
        ["body", "inputs", 4, "name"],
    ),
    "duplicate tensor": (
        {"inputs": [*_tensors(), _tensors()[0]]},
        "age",
        ["body", "inputs", 4, "name"],
    ),
    "inconsistent lengths": (
        _with(2, shape=[3], data=[1, 2, 3]),
        "hours",
        ["body", "inputs", 2, "shape"],
    ),
    "shape not matching data": (_with(0, shape=[3]), "age", ["body", "inputs", 0, "shape"]),
    "shape of two columns": (_with(0, shape=[1, 2]), "age", ["body", "inputs", 0, "shape"]),
    "nested data with shape [n]": (
        _with(1, data=[["F"], ["M"]]),
        "sex",
        ["body", "inputs", 1, "data"],
    ),
    "ragged nested data": (
        _with(1, shape=[2, 1], data=[["F", "M"], ["M"]]),
        "sex",
        ["body", "inputs", 1, "data"],
    ),
    "text datatype for a number": (
        _with(0, datatype="BYTES"),
        "age",
        ["body", "inputs", 0, "datatype"],
    ),
    "BOOL for a number": (_with(0, datatype="BOOL"), "age", ["body", "inputs", 0, "datatype"]),
    "number datatype for text": (
        _with(1, datatype="FP64"),
        "sex",
        ["body", "inputs", 1, "datatype"],
    ),
    "number datatype for a time": (
        _with(3, datatype="INT64"),
        "seen",
        ["body", "inputs", 3, "datatype"],
    ),
    "string in a number tensor": (
        _with(0, data=[1.0, "old"]),
        "age",
        ["body", "inputs", 0, "data", 1],
    ),
    "bool in a number tensor": (
        _with(0, data=[True, 1.0]),
        "age",
        ["body", "inputs", 0, "data", 0],
    ),
    "fraction in an INT tensor": (
        _with(2, data=[1, 2.5]),
        "hours",
        ["body", "inputs", 2, "data", 1],
    ),
    "number in a BYTES tensor": (_with(1, data=["F", 1]), "sex", ["body", "inputs", 1, "data", 1]),
    "unparseable time": (
        _with(3, data=["yesterday", None]),
        "seen",
        ["body", "inputs", 3, "data", 0],
    ),
    "binary data": (
        _with(0, parameters={"binary_data_size": 16}),
        "age",
        ["body", "inputs", 0, "parameters"],
    ),
    "unknown tensor field": (_with(0, dims=[2]), "age", ["body", "inputs", 0, "dims"]),
    "no data": (
        {"inputs": [*_tensors()[:3], {"name": "seen", "shape": [2], "datatype": "BYTES"}]},
        "seen",
        ["body", "inputs", 3, "data"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_each_bad_tensor_is_a_422_naming_it(case: str) -> None:
    payload, tensor, loc = BAD_REQUESTS[case]
    error = _refused(payload)
    assert error.status == 422
    assert loc in [e["loc"] for e in error.errors], error.errors
    assert f"'{tensor}'" in error.message
    assert all(f"'{tensor}'" in e["msg"] for e in error.errors if e["loc"] == loc)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_refused(token: str) -> None:
    body = json.dumps({"inputs": _tensors()}).replace("30.5", token).encode()
    error = _refused(parse_body(body))
    assert error.status == 422
    assert error.errors[0]["loc"] == ["body", "inputs", 0, "data", 0]
    assert "'age'" in error.errors[0]["msg"] and "finite" in error.errors[0]["msg"]


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        {"records": []},
        {"inputs": {"age": [1]}},
        {"inputs": _tensors(), "extra": 1},
        {"inputs": _tensors(), "id": 7},
        {"inputs": _tensors(), "outputs": [{"name": "logits"}]},
        {"inputs": _tensors(), "outputs": "prediction"},
        {"inputs": _tensors(0)},
    ],
    ids=[
        "not an object",
        "no inputs",
        "inputs not a list",
        "unknown key",
        "id not a string",
        "unknown output",
        "outputs not a list",
        "no rows",
    ],
)
def test_malformed_requests_are_422(payload: Any) -> None:
    assert _refused(payload).status == 422


def test_more_rows_than_the_limit_is_413() -> None:
    error = _refused({"inputs": _tensors()}, limit=1)
    assert error.status == 413 and "limit is 1" in error.message


def test_metadata_lists_columns_and_outputs() -> None:
    classifier = model_metadata("adult", ["3"], SCHEMA, LABELS)
    assert classifier["name"] == "adult" and classifier["versions"] == ["3"]
    assert classifier["platform"] == "ray-mlops"
    assert classifier["inputs"] == [
        {"name": "age", "datatype": "FP64", "shape": [-1]},
        {"name": "sex", "datatype": "BYTES", "shape": [-1]},
        {"name": "hours", "datatype": "FP64", "shape": [-1]},
        {"name": "seen", "datatype": "BYTES", "shape": [-1]},
    ]
    assert classifier["outputs"] == [
        {"name": "prediction", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
    ]
    regression = model_metadata("price", ["7"], SCHEMA, None)
    assert regression["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    assert output_names(None) == ["prediction"]
    assert output_names(LABELS) == ["prediction", "probabilities"]
