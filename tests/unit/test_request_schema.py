import math

import pytest

from ray_mlops.serve.schema import InputSchema, RequestError, parse_body, records_frame

SCHEMA = InputSchema(numeric=["age"], categorical=["sex"], order=["age", "sex"])


def _status(payload: object, limit: int = 10) -> RequestError:
    with pytest.raises(RequestError) as caught:
        records_frame(payload, SCHEMA, limit)
    return caught.value


def test_valid_records_become_a_typed_frame() -> None:
    frame = records_frame(
        {"records": [{"age": 30, "sex": "F"}, {"age": None, "sex": None}]}, SCHEMA, 10
    )
    assert frame["age"].dtype == "float64"
    assert math.isnan(frame["age"].iloc[1]) and frame["sex"].iloc[1] is None


def test_each_bad_field_is_named() -> None:
    error = _status({"records": [{"age": "old", "sex": 1, "extra": 2}, {"sex": "M"}]})
    assert error.status == 422
    by_loc = {tuple(e["loc"]): e["msg"] for e in error.errors}
    assert "expected a number" in by_loc[("body", "records", 0, "age")]
    assert "expected a string" in by_loc[("body", "records", 0, "sex")]
    assert by_loc[("body", "records", 0, "extra")] == "unknown field"
    assert by_loc[("body", "records", 1, "age")] == "field required"


def test_shape_errors_and_limits() -> None:
    assert _status({"rows": []}).status == 422
    assert _status({"records": []}).status == 422
    assert _status({"records": [1]}).errors[0]["msg"].startswith("expected an object")
    assert _status({"records": [{"age": True, "sex": "F"}]}).status == 422
    assert _status({"records": [{"age": 1, "sex": "F"}] * 11}).status == 413


def test_malformed_json_is_a_400() -> None:
    with pytest.raises(RequestError) as caught:
        parse_body(b"{not json")
    assert caught.value.status == 400
