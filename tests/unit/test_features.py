import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ray_mlops.config import DataConfig, FeaturesConfig, parse_config
from ray_mlops.errors import ConfigError
from ray_mlops.features.fit import check_feature_columns
from ray_mlops.features.primitives import arrow_strings, category_codes, stable_hash
from ray_mlops.features.state import (
    CategoricalState,
    CrossState,
    DatetimeState,
    FeatureState,
    NumericState,
)
from ray_mlops.features.transform import encode_labels, transform_features

STATE = FeatureState(
    numeric={"age": NumericState(fill=40.0, center=38.0, scale=2.0)},
    categorical={"color": CategoricalState(categories=["red", "blue"])},
    labels=["no", "yes"],
)

# Every transform at once: the single-row, JSON and naming tests use it.
FULL = FeatureState(
    numeric={
        "age": NumericState(fill=40.0, center=38.0, scale=2.0, bucket_edges=[30.0, 50.0]),
        "income": NumericState(fill=1.0, center=0.5, scale=2.0, log1p=True),
    },
    categorical={
        "color": CategoricalState(categories=["red", "blue"]),
        "size": CategoricalState(categories=["s", "m", "l"], encode="ordinal"),
        "city": CategoricalState(categories=[], encode="hashing", fill="Paris", hash_buckets=8),
    },
    datetime={
        "signup": DatetimeState(
            parts=["year", "month", "dayofweek", "hour"],
            centers=[2024.0, 6.0, 3.0, 12.0],
            scales=[1.0, 3.0, 2.0, 6.0],
        )
    },
    crosses=[CrossState(columns=["color", "city"], buckets=4)],
    labels=["no", "yes"],
)
FULL_FRAME = pd.DataFrame(
    {
        "age": [30.0, None, 64.0, 12.0],
        "income": [0.0, 1000.0, None, -5.0],
        "color": ["blue", None, "pink", "red"],
        "size": ["m", "xl", None, "s"],
        "city": ["Lyon", None, "Paris", "Nice"],
        "signup": ["2024-03-10T15:30:00+02:00", None, "not a date", "2023-12-31 23:59"],
    }
)


def _numeric(state: NumericState, values: list[float | None]) -> np.ndarray:
    frame = pd.DataFrame({"x": values})
    return transform_features(frame, FeatureState(numeric={"x": state}))


@pytest.mark.parametrize(
    ("impute", "fill"),
    [("mean", 3.5), ("median", 2.0), ("most_frequent", 2.0), ("constant", -1.0)],
)
def test_missing_numbers_take_the_fitted_fill(impute: str, fill: float) -> None:
    # The fills fitted on [1, 2, 2, 9] by each impute mode; the transform only reads `fill`.
    out = _numeric(NumericState(fill=fill, center=0.0, scale=1.0), [1.0, 2.0, 2.0, 9.0, None])
    assert out[:, 0].tolist() == [1.0, 2.0, 2.0, 9.0, fill]


@pytest.mark.parametrize(
    ("center", "scale", "expected"),
    [
        (2.0, 1.0, [-1.0, 1.0, 3.0]),  # standard: mean 2, std 1
        (1.0, 4.0, [0.0, 0.5, 1.0]),  # minmax: min 1, max 5
        (3.0, 0.5, [-4.0, 0.0, 4.0]),  # robust: median 3, IQR 0.5
        (0.0, 1.0, [1.0, 3.0, 5.0]),  # none
    ],
)
def test_scalers_subtract_the_center_and_divide_by_the_scale(
    center: float, scale: float, expected: list[float]
) -> None:
    out = _numeric(NumericState(fill=0.0, center=center, scale=scale), [1.0, 3.0, 5.0])
    assert out[:, 0].tolist() == expected
    assert out.dtype == np.float32


def test_log1p_is_signed_and_comes_before_imputation_and_scaling() -> None:
    state = NumericState(fill=0.5, center=0.0, scale=2.0, log1p=True)
    out = _numeric(state, [-1.0, 0.0, math.e - 1, None])
    assert out[:, 0] == pytest.approx([-math.log(2) / 2, 0.0, 0.5, 0.25])


def test_buckets_one_hot_the_imputed_value_beside_the_scaled_value() -> None:
    state = NumericState(fill=5.0, center=0.0, scale=10.0, bucket_edges=[0.0, 10.0])
    out = _numeric(state, [-5.0, 0.0, 5.0, 10.0, 20.0, None])
    assert out.tolist() == [
        [-0.5, 1, 0, 0],
        [0.0, 0, 1, 0],
        [0.5, 0, 1, 0],
        [1.0, 0, 0, 1],
        [2.0, 0, 0, 1],
        [0.5, 0, 1, 0],
    ]
    assert FeatureState(numeric={"x": state}).output_columns == [
        "x",
        "x=bucket0",
        "x=bucket1",
        "x=bucket2",
    ]


def test_numeric_columns_are_imputed_then_scaled() -> None:
    out = transform_features(pd.DataFrame({"age": [42.0, None], "color": ["red", "red"]}), STATE)
    assert out[:, 0].tolist() == [2.0, 1.0]
    assert out.dtype == np.float32


def test_categories_unseen_and_missing_have_their_own_slots() -> None:
    frame = pd.DataFrame({"age": [1.0] * 4, "color": ["red", "blue", "green", None]})
    onehot = transform_features(frame, STATE)[:, 1:]
    assert onehot.tolist() == [
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ]
    assert STATE.output_columns == [
        "age",
        "color=red",
        "color=blue",
        "color=<other>",
        "color=<missing>",
    ]


def test_imputed_categorical_has_no_missing_slot() -> None:
    state = FeatureState(categorical={"c": CategoricalState(categories=["a", "b"], fill="b")})
    out = transform_features(pd.DataFrame({"c": ["a", None, "z"]}), state)
    assert out.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert state.output_columns == ["c=a", "c=b", "c=<other>"]


def test_ordinal_codes_are_ranks_scaled_to_the_unit_interval() -> None:
    state = FeatureState(
        categorical={"c": CategoricalState(categories=["a", "b"], encode="ordinal")}
    )
    out = transform_features(pd.DataFrame({"c": ["a", "b", "z", None]}), state)
    assert out[:, 0] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert state.output_columns == ["c"]


def test_hashing_puts_a_value_in_a_fixed_slot() -> None:
    state = FeatureState(
        categorical={"c": CategoricalState(categories=[], encode="hashing", hash_buckets=32)}
    )
    out = transform_features(pd.DataFrame({"c": ["Male", None, "Male"]}), state)
    # Pinned: a change here re-buckets every model fitted before it.
    assert out.argmax(axis=1).tolist() == [11, 2, 11]  # None hashes as "<missing>"
    assert out.sum(axis=1).tolist() == [1, 1, 1]
    assert state.output_columns[11] == "c=#11"


def test_hashing_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import numpy as np; from ray_mlops.features.primitives import stable_hash; "
        "print(stable_hash(np.array(['Male', 'Female'], dtype=object), 1024).tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    here = stable_hash(np.array(["Male", "Female"], dtype=object), 1024).tolist()
    assert json.loads(result.stdout) == here
    assert here[0] == 43


def test_datetime_parts_are_read_as_utc_and_standardised() -> None:
    parts = ["year", "month", "day", "dayofweek", "hour", "minute"]
    state = FeatureState(datetime={"t": DatetimeState(parts, [0.0] * 6, [1.0] * 6)})
    frame = pd.DataFrame({"t": ["2024-03-10T15:30:00+02:00", None, "not a date"]})
    out = transform_features(frame, state)
    # 13:30 UTC on Sunday (dayofweek 6); missing and unparseable times encode as 0.
    assert out.tolist() == [[2024, 3, 10, 6, 13, 30], [0] * 6, [0] * 6]
    scaled = FeatureState(datetime={"t": DatetimeState(["hour"], [12.0], [2.0])})
    assert transform_features(frame, scaled)[:, 0].tolist() == [0.5, 0.0, 0.0]
    assert state.output_columns == [f"t.{part}" for part in parts]


def test_naive_aware_and_string_times_encode_alike() -> None:
    state = FeatureState(datetime={"t": DatetimeState(["day", "hour"], [0.0, 0.0], [1.0, 1.0])})
    aware = pd.Series(pd.to_datetime(["2024-01-05T23:00:00-02:00", None], utc=True))
    frames = [
        pd.DataFrame({"t": aware}),
        pd.DataFrame({"t": aware.dt.tz_convert(None)}),
        pd.DataFrame({"t": ["2024-01-06T01:00:00Z", None]}),
        pd.DataFrame({"t": ["2024-01-06 01:00", None]}),
    ]
    for frame in frames:
        assert transform_features(frame, state).tolist() == [[6, 1], [0, 0]]


def test_crosses_hash_the_joined_values() -> None:
    state = FeatureState(crosses=[CrossState(columns=["a", "b"], buckets=32)])
    out = transform_features(pd.DataFrame({"a": ["a", "a"], "b": ["x", None]}), state)
    assert out.argmax(axis=1).tolist() == [5, 23]  # "a\x1fx", "a\x1f<missing>"
    assert out.sum().tolist() == 2
    assert state.output_columns[:2] == ["a*b=#0", "a*b=#1"]


def test_full_state_names_every_slot_in_order() -> None:
    assert FULL.output_columns == [
        "age",
        "age=bucket0",
        "age=bucket1",
        "age=bucket2",
        "income",
        "color=red",
        "color=blue",
        "color=<other>",
        "color=<missing>",
        "size",
        *(f"city=#{i}" for i in range(8)),
        "signup.year",
        "signup.month",
        "signup.dayofweek",
        "signup.hour",
        *(f"color*city=#{i}" for i in range(4)),
    ]
    assert FULL.input_columns == ["age", "income", "color", "size", "city", "signup"]
    assert transform_features(FULL_FRAME, FULL).shape == (4, FULL.n_features)


@pytest.mark.parametrize("state", [STATE, FULL], ids=["onehot", "every-transform"])
def test_single_row_equals_the_same_row_in_a_batch(state: FeatureState) -> None:
    frame = FULL_FRAME.copy()
    batch = transform_features(frame, state)
    for i in range(len(frame)):
        assert np.array_equal(transform_features(frame.iloc[[i]], state)[0], batch[i]), i
    # As a JSON request arrives: objects with None for missing values.
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    for i, record in enumerate(records):
        assert np.array_equal(transform_features(pd.DataFrame([record]), state)[0], batch[i]), i


@pytest.mark.parametrize("state", [STATE, FULL], ids=["onehot", "every-transform"])
def test_state_round_trips_through_json(state: FeatureState) -> None:
    assert FeatureState.from_json(state.to_json()) == state


def test_format_1_reads_with_its_meaning_and_other_formats_are_refused() -> None:
    version_1 = {
        "format_version": 1,
        "numeric": {"age": {"fill": 40.0, "center": 38.0, "scale": 2.0}},
        "categorical": {"color": {"categories": ["red", "blue"]}},
        "labels": ["no", "yes"],
        "target_center": 0.0,
        "target_scale": 1.0,
    }
    assert FeatureState.from_json(json.dumps(version_1)) == STATE
    with pytest.raises(ValueError, match="format"):
        FeatureState.from_json('{"format_version": 99}')


def test_labels_are_indices_and_regression_targets_standardised() -> None:
    assert encode_labels(pd.Series(["yes", "no", "maybe"]), STATE).tolist() == [1, 0, -1]
    regression = FeatureState(numeric=STATE.numeric, target_center=10.0, target_scale=5.0)
    assert encode_labels(pd.Series([20.0, 5.0]), regression).tolist() == [2.0, -1.0]


def test_feature_overrides_and_crosses_must_name_columns_of_the_right_kind() -> None:
    data = DataConfig(path="x.csv", target="y", numeric=["salary"], categorical=["sex", "city"])
    features = FeaturesConfig.model_validate(
        {
            "numeric_columns": {"salry": {"log1p": True}},
            "categorical_columns": {"salary": {"encode": "hashing"}},
            "crosses": [["sex", "city"], ["sex", "salary"]],
        }
    )
    with pytest.raises(ConfigError) as caught:
        check_feature_columns(data, features)
    message = str(caught.value)
    assert "features.numeric_columns.salry: not a numeric column of data.numeric" in message
    assert "features.categorical_columns.salary: not a categorical column" in message
    assert "features.crosses.1: 'salary' not categorical" in message
    assert "crosses.0" not in message
    check_feature_columns(data, FeaturesConfig(crosses=[["sex", "city"]]))


@pytest.mark.parametrize(
    ("features", "path"),
    [
        ({"numeric": {"buckets": [3, 1]}}, "features.numeric"),
        ({"numeric": {"buckets": 1}}, "features.numeric"),
        ({"numeric_columns": {"a": {"scale": "zscore"}}}, "features.numeric_columns.a.scale"),
        ({"categorical": {"hash_buckets": 1}}, "features.categorical.hash_buckets"),
        ({"crosses": [["a"]]}, "features"),
        ({"datetime_parts": ["week"]}, "features.datetime_parts.0"),
    ],
)
def test_bad_feature_settings_fail_with_their_key_path(features: dict, path: str) -> None:
    raw = {"name": "demo", "data": {"path": "x.csv", "target": "y", "numeric": ["a"]}}
    with pytest.raises(ConfigError, match=rf"{path}\W"):
        parse_config({**raw, "features": features})


def test_transform_leaves_the_input_frame_unchanged() -> None:
    frame = FULL_FRAME.astype(object)
    before = frame.copy()
    transform_features(frame, FULL)
    pd.testing.assert_frame_equal(frame, before)


def test_integer_categories_match_whether_they_arrive_as_ints_floats_or_strings() -> None:
    state = FeatureState(categorical={"grade": CategoricalState(categories=["1", "2", "2.5"])})
    # A batch of an integer column with missing values holds floats; a request sends ints.
    as_floats = transform_features(pd.DataFrame({"grade": [1.0, None, 2.5]}), state)
    as_ints = transform_features(pd.DataFrame({"grade": [1, None, 2.5]}, dtype=object), state)
    as_text = transform_features(pd.DataFrame({"grade": ["1", None, "2.5"]}), state)
    assert as_floats.argmax(axis=1).tolist() == [0, 4, 2]
    assert np.array_equal(as_floats, as_ints) and np.array_equal(as_floats, as_text)


@pytest.mark.parametrize("fill", [None, "b"])
def test_arrow_text_and_python_objects_get_the_same_codes(fill: str | None) -> None:
    values = ["a", None, "z", "b", "", "a"]
    arrow = pd.Series(values, dtype=pd.StringDtype("pyarrow"))
    objects = pd.Series(values, dtype=object)
    assert arrow_strings(arrow) is not None and arrow_strings(objects) is None
    fast, fast_missing = category_codes(arrow, ["a", "b", ""], fill)
    slow, slow_missing = category_codes(objects, ["a", "b", ""], fill)
    assert fast.tolist() == slow.tolist() == [0, 1 if fill else -1, -1, 1, 2, 0]
    assert fast_missing.tolist() == slow_missing.tolist() == [False, fill is None, *[False] * 4]
    state = FeatureState(labels=["a", "b"])
    assert encode_labels(arrow, state).tolist() == encode_labels(objects, state).tolist()


@pytest.mark.parametrize("state", [STATE, FULL], ids=["onehot", "every-transform"])
def test_a_served_requests_arrays_encode_as_its_frame_does(state: FeatureState) -> None:
    """Serving hands the transform numpy columns, not a DataFrame: same numbers."""
    from ray_mlops.serve.schema import InputSchema, checked_rows, join_columns

    schema = InputSchema(
        numeric=["age", "income"],
        categorical=["color", "size", "city"],
        datetime=["signup"],
        order=list(FULL_FRAME.columns),
    )
    records = FULL_FRAME.astype(object).where(FULL_FRAME.notna(), None).to_dict("records")
    # "not a date" is a 422 at the door; a missing time takes its place here.
    records[2]["signup"] = None
    frame = pd.DataFrame(records)
    batch = transform_features(frame, state)
    rows = checked_rows({"records": records}, schema, 10)
    assert np.array_equal(transform_features(join_columns([rows]), state), batch)
    assert np.array_equal(transform_features(rows.frame(), state), batch)
    one_by_one = [checked_rows({"records": [r]}, schema, 1) for r in records]
    assert np.array_equal(transform_features(join_columns(one_by_one), state), batch)


@pytest.mark.parametrize("fill", [None, "b"])
def test_small_and_large_batches_get_the_same_codes(fill: str | None) -> None:
    """Up to 512 values are looked up in a dict, more through pandas: the same codes."""
    rng = np.random.default_rng(0)
    pool = np.array(["a", "b", "", "z", None, "A"], dtype=object)
    values = pd.Series(pool[rng.integers(0, len(pool), 2000)], dtype=object)
    categories = ["a", "b", ""]
    large, large_missing = category_codes(values, categories, fill)
    small = [
        category_codes(values.iloc[i : i + 100], categories, fill) for i in range(0, 2000, 100)
    ]
    assert np.array_equal(np.concatenate([codes for codes, _ in small]), large)
    assert np.array_equal(np.concatenate([missing for _, missing in small]), large_missing)
    assert set(large.tolist()) == {-1, 0, 1, 2}
