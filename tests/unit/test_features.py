import numpy as np
import pandas as pd
import pytest

from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
from ray_mlops.features.transform import encode_labels, transform_features

STATE = FeatureState(
    numeric={"age": NumericState(fill=40.0, center=38.0, scale=2.0)},
    categorical={"color": CategoricalState(categories=["red", "blue"])},
    labels=["no", "yes"],
)


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


def test_single_row_equals_the_same_row_in_a_batch() -> None:
    frame = pd.DataFrame({"age": [30.0, None, 50.0], "color": ["blue", None, "pink"]})
    batch = transform_features(frame, STATE)
    for i in range(len(frame)):
        assert (transform_features(frame.iloc[[i]], STATE) == batch[i]).all()


def test_state_round_trips_through_json_and_rejects_other_formats() -> None:
    assert FeatureState.from_json(STATE.to_json()) == STATE
    with pytest.raises(ValueError, match="format"):
        FeatureState.from_json('{"format_version": 99}')


def test_labels_are_indices_and_regression_targets_standardised() -> None:
    assert encode_labels(pd.Series(["yes", "no", "maybe"]), STATE).tolist() == [1, 0, -1]
    regression = FeatureState(numeric=STATE.numeric, target_center=10.0, target_scale=5.0)
    assert encode_labels(pd.Series([20.0, 5.0]), regression).tolist() == [2.0, -1.0]
