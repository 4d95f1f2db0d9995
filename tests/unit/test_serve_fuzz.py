"""Property-based fuzzing of the model server's body parsers and answer encoder. Ray-free.

The properties the server promises: whatever bytes a client sends, parsing ends in a result or
a :class:`RequestError` with a 4xx status (never another exception, which would be a 500);
every error body and every answer encodes as strict JSON. Hypothesis runs a fixed, seeded set
of examples here; set ``RAY_MLOPS_FUZZ_EXAMPLES`` (e.g. 20000) for a longer, random search.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ray_mlops.serve.answers import encode_json
from ray_mlops.serve.oip import (
    encode_infer_response,
    infer_response,
    output_names,
    parse_infer_request,
)
from ray_mlops.serve.schema import (
    RequestError,
    RequestRows,
    checked_rows,
    decode_content,
    parse_body,
    request_rows,
)
from ray_mlops.serve.scores import Scores
from ray_mlops.serve.tensors import FIXED_DATATYPES, TensorDataError, split_body
from tests.unit.test_oip import SCHEMA

_EXAMPLES = os.environ.get("RAY_MLOPS_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXAMPLES or 300),
    derandomize=_EXAMPLES is None,  # the suite's examples are the same on every run
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# JSON values as a client can send them: any text (lone surrogates too, which json.loads
# accepts from "\\ud800"), integers past float range, NaN and infinities (Python's json
# reads the NaN and Infinity tokens).
any_text = st.text(st.characters(exclude_categories=()))  # lone surrogates included
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**308, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
column_values = (
    scalars
    | st.sampled_from(["F", "2024-01-02T03:04:00", "1e300", ""])
    | st.sampled_from([1e300, -1e300, 1.7976931348623157e308, 5e-324])
    | json_values
)
names = st.sampled_from([*SCHEMA.order, "extra"]) | any_text
records = st.lists(st.dictionaries(names, column_values, max_size=6), max_size=4)
record_requests = (
    st.fixed_dictionaries({"records": records})
    | st.fixed_dictionaries({"columns": st.dictionaries(names, st.lists(column_values))})
    | json_values
)
datatypes = st.sampled_from([*FIXED_DATATYPES, "BF16", "BYTES", "STRING"]) | json_values
tensors = st.fixed_dictionaries(
    {"name": names, "datatype": datatypes},
    optional={
        "shape": st.lists(st.integers(-1, 4), max_size=3) | json_values,
        "data": st.lists(column_values | st.lists(column_values, max_size=2), max_size=4),
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "shared_memory_region", "x"]),
            st.integers(-2, 40) | json_values,
        )
        | json_values,
    },
)
infer_requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=6)},
    optional={
        "id": json_values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": json_values})
        | json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["prediction", "probabilities"]) | st.text()},
                optional={"parameters": st.dictionaries(st.text(max_size=12), json_values)},
            )
        )
        | json_values,
    },
)


def _strict_json(data: bytes) -> Any:
    """Parse as a strict client would: NaN and Infinity are not JSON."""

    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(data, parse_constant=refuse)


def _refusal_is_answerable(error: RequestError) -> None:
    assert 400 <= error.status < 500, error.message
    assert _strict_json(encode_json(error.to_body()))["error"] == error.message


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(b"1" * 5000)  # json refuses integers over 4300 digits with a ValueError
def test_any_bytes_parse_or_are_a_400(body: bytes) -> None:
    try:
        parse_body(body)
    except RequestError as error:
        assert error.status == 400
        _refusal_is_answerable(error)


@FUZZ
@given(st.integers(1, 20_000), st.sampled_from(["[", '{"a":', '{"records":[{"age":']))
def test_deep_nesting_is_a_4xx_at_any_depth(depth: int, opening: str) -> None:
    closing = {"[": "]", '{"a":': "}", '{"records":[{"age":': "}]}"}[opening]
    body = (opening * depth + "1" + closing * depth).encode()
    try:
        payload = parse_body(body)
        request_rows(payload, SCHEMA, 10)
    except RequestError as error:
        _refusal_is_answerable(error)


def test_five_thousand_levels_of_nesting_is_a_400() -> None:
    """The user's case: 5,000 levels raised RecursionError, a 500."""
    with pytest.raises(RequestError) as caught:
        parse_body(b"[" * 5000 + b"]" * 5000)
    assert caught.value.status == 400 and "nested too deeply" in caught.value.message


@FUZZ
@given(record_requests)
@example({"records": [{"\ud800": 1}]})  # echoed in an "unknown field" error: not UTF-8
def test_any_records_request_is_rows_or_a_4xx(payload: Any) -> None:
    try:
        rows = request_rows(_through_json(payload), SCHEMA, 3)
    except RequestError as error:
        _refusal_is_answerable(error)
        return
    assert len(rows) >= 1
    _strict_json(encode_json(rows.records()))


@FUZZ
@given(infer_requests, st.binary(max_size=48) | st.none())
def test_any_infer_request_is_rows_or_a_4xx(payload: Any, binary: bytes | None) -> None:
    try:
        request = parse_infer_request(_through_json(payload), SCHEMA, 3, binary=binary)
    except RequestError as error:
        _refusal_is_answerable(error)
        return
    assert len(request.rows) >= 1


@FUZZ
@given(st.binary(max_size=64), st.text(max_size=8) | st.none())
def test_any_binary_body_splits_or_is_refused(body: bytes, header_length: str | None) -> None:
    try:
        header, binary = split_body(body, header_length)
    except TensorDataError as error:
        assert "Inference-Header-Content-Length" in str(error)
        return
    assert header + (binary or b"") == body


@FUZZ
@given(st.binary(max_size=64), st.sampled_from(["gzip", "deflate", "br", None, "identity"]))
def test_any_encoded_body_decodes_or_is_a_4xx(body: bytes, encoding: str | None) -> None:
    try:
        decode_content(body, encoding, limit=1024)
    except RequestError as error:
        _refusal_is_answerable(error)


def _through_json(payload: Any) -> Any:
    """The payload as the server would receive it (NaN and big numbers included)."""
    try:
        text = json.dumps(payload)
    except ValueError:  # a huge integer json cannot print: send it as it is
        return payload
    return parse_body(text.encode())


# -- the answer encoder -------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True)
labels = st.lists(st.text(min_size=1), min_size=2, max_size=3, unique=True)


@st.composite
def scored(draw: st.DrawFn) -> tuple[Scores, RequestRows]:
    """A model's answers for 1-4 rows (any floats, any labels) and the rows they answer."""
    n = draw(st.integers(1, 4))
    rows = checked_rows(
        {
            "records": [
                {"age": draw(floats.filter(np.isfinite)), "sex": "F", "hours": None, "seen": None}
                for _ in range(n)
            ]
        },
        SCHEMA,
        10,
    )
    if draw(st.booleans()):
        return Scores(np.array(draw(st.lists(floats, min_size=n, max_size=n))), None, None), rows
    names = draw(labels)
    probabilities = np.array(
        draw(st.lists(st.lists(floats, min_size=len(names), max_size=len(names)), min_size=n))
    )[:n]
    predictions = np.array([draw(st.sampled_from(names)) for _ in range(n)], dtype=object)
    return Scores(predictions, probabilities, names), rows


@FUZZ
@given(scored(), st.booleans(), st.booleans())
def test_any_answer_encodes_as_strict_json_or_is_a_422(
    answer: tuple[Scores, RequestRows], binary_prediction: bool, binary_probabilities: bool
) -> None:
    scores, rows = answer
    try:
        scores.check_finite(rows, lambda row, column: ["body", "records", row, column])
    except RequestError as error:
        assert error.status == 422 and scores.non_finite_rows()
        _refusal_is_answerable(error)
        return
    assert _strict_json(encode_json(scores.body()))["predictions"] is not None
    binary = {"prediction": binary_prediction, "probabilities": binary_probabilities}
    body = infer_response("m", "1", "\ud800", scores, None)
    content, header_length = encode_infer_response(body, binary.__getitem__)
    header = _strict_json(content[:header_length] if header_length else content)
    assert [o["name"] for o in header["outputs"]] == output_names(scores.labels)


def test_an_overflowing_input_is_a_422_naming_it() -> None:
    """The user's case: ``"age": 1e300`` made the network's float32 arithmetic overflow, its
    probabilities NaN, and the JSON answer failed to encode (a 500)."""
    rows = checked_rows(
        {
            "records": [{"age": 30, "sex": "F", "hours": 1, "seen": None}] * 1
            + [{"age": 1e300, "sex": "M", "hours": 40, "seen": None}]
        },
        SCHEMA,
        10,
    )
    scores = Scores(
        np.array(["a", "b"], dtype=object), np.array([[0.2, 0.8], [np.nan, np.nan]]), ["a", "b"]
    )
    with pytest.raises(ValueError, match="Out of range float values"):
        from starlette.responses import JSONResponse

        JSONResponse(scores.body())  # what the server answered with before
    with pytest.raises(RequestError) as caught:
        scores.check_finite(rows, lambda row, column: ["body", "records", row, column])
    assert caught.value.status == 422
    assert caught.value.errors == [
        {
            "loc": ["body", "records", 1, "age"],
            "msg": "row 1: the model has no finite answer; its largest value is age=1e+300",
        }
    ]
