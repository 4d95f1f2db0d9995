"""The dataset profile computed with Ray Data agrees with pandas on the same rows, number by number."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import ray
from scipy.stats.contingency import association

from ray_mlops.data.profile import (
    QUANTILES,
    CategoricalProfile,
    DatasetProfile,
    NumericProfile,
    profile_dataset,
)
from ray_mlops.errors import DataError

pytestmark = pytest.mark.usefixtures("ray_session")

ADULT_NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_CATEGORICAL = [
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
]
CLOSE = {"rel": 1e-9, "abs": 1e-9}
COLORS = ["red", "blue", None, "red", "gray", "blue", "red", None, "tan", "blue", "gray", "red"]


def _dataset(frame: pd.DataFrame, blocks: int = 3) -> ray.data.Dataset:
    """Several blocks, so that every statistic is combined across partial results."""
    size = math.ceil(len(frame) / blocks)
    return ray.data.from_pandas([frame.iloc[i : i + size] for i in range(0, len(frame), size)])


def _crafted() -> pd.DataFrame:
    """Nulls of each kind (a whole block of them in x), a constant and an all-null column, ties."""
    return pd.DataFrame(
        {
            "x": [1.5, np.nan, 3.0, None, np.nan, None, 3.0, 7.25, 0.0, 4.0, 5.0, 3.0],
            "n": pd.array([1, 2, pd.NA, 4, 5, 6, 7, 8, 9, 10, pd.NA, 12], dtype="Int64"),
            "constant": [2.5] * 12,
            "empty": [np.nan] * 12,
            "color": COLORS,
            "size": ["s", "m", "l", "s", "m", "l", "s", "m", "l", "xl", "xl", None],
            "label": ["a", "b", "a", "b", "a", "a", None, "b", "a", "b", "b", "a"],
            "y": [1.0, 2.0, 2.5, None, 8.0, -1.0, 3.5, 6.0, 0.5, 4.0, 4.5, 3.0],
        }
    )


@pytest.fixture(scope="module")
def adult_profile(adult_sample: pd.DataFrame) -> DatasetProfile:
    return profile_dataset(
        _dataset(adult_sample), ADULT_NUMERIC, ADULT_CATEGORICAL, "income", "classification"
    )


def _check_numeric(profile: NumericProfile, values: pd.Series, bins: int) -> None:
    present = values.dropna().astype(float)
    assert profile.count == len(present)
    assert profile.missing == values.isna().sum()
    assert profile.distinct == present.nunique()
    if present.empty:
        assert (profile.mean, profile.std, profile.min, profile.max) == (None, None, None, None)
        assert profile.quantiles == {}
        assert profile.histogram_edges == profile.histogram_counts == []
        return
    assert profile.mean == pytest.approx(present.mean(), **CLOSE)
    std = present.std()  # ddof=1
    assert profile.std is None if math.isnan(std) else profile.std == pytest.approx(std, **CLOSE)
    assert (profile.min, profile.max) == (present.min(), present.max())
    # Arrow's and numpy's quantiles interpolate linearly by default, as pandas does.
    expected = {key: present.quantile(q, interpolation="linear") for key, q in QUANTILES.items()}
    assert profile.quantiles == pytest.approx(expected, **CLOSE)
    if present.min() == present.max():
        assert profile.histogram_edges == [present.min()] * 2
        assert profile.histogram_counts == [len(present)]
        return
    counts, edges = np.histogram(present, bins=bins)
    assert profile.histogram_counts == counts.tolist()
    assert profile.histogram_edges == pytest.approx(edges.tolist(), **CLOSE)


def _check_categorical(profile: CategoricalProfile, values: pd.Series, top_k: int) -> None:
    present = values.dropna().astype(str)
    counts = present.value_counts()
    ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    assert profile.count == len(present)
    assert profile.missing == values.isna().sum()
    assert profile.distinct == present.nunique()
    assert profile.top == [(value, int(n)) for value, n in ranked[:top_k]]
    assert profile.other_count == sum(n for _, n in ranked[top_k:])


def _eta(frame: pd.DataFrame, value: str, group: str) -> float | None:
    """Correlation ratio from its definition, on rows where both columns are present."""
    both = frame[[value, group]].dropna()
    values = both[value].astype(float)
    total = ((values - values.mean()) ** 2).sum()
    groups = values.groupby(both[group])
    if total == 0 or groups.ngroups < 2:
        return None
    between = (groups.size() * (groups.mean() - values.mean()) ** 2).sum()
    return math.sqrt(between / total)


def _cramers_v(frame: pd.DataFrame, column: str, target: str) -> float | None:
    table = pd.crosstab(frame[column], frame[target])  # leaves out rows with a missing value
    if min(table.shape) < 2:
        return None
    return float(association(table.to_numpy(), method="cramer", correction=False))


def _pearson(frame: pd.DataFrame, column: str, target: str) -> float | None:
    both = frame[[column, target]].dropna().astype(float)
    if both[column].nunique() < 2 or both[target].nunique() < 2:
        return None
    return float(both[column].corr(both[target]))


def _check_association(actual: float | None, expected: float | None) -> None:
    assert (actual is None) == (expected is None)
    if expected is not None:
        assert actual == pytest.approx(expected, **CLOSE)


def test_adult_profile_matches_pandas(
    adult_profile: DatasetProfile, adult_sample: pd.DataFrame
) -> None:
    assert adult_profile.rows == len(adult_sample)
    assert (adult_profile.task, adult_profile.target) == ("classification", "income")
    for column in ADULT_NUMERIC:
        _check_numeric(adult_profile.numeric[column], adult_sample[column], bins=20)
        expected = _eta(adult_sample, column, "income")
        _check_association(adult_profile.numeric[column].target_association, expected)
    for column in ADULT_CATEGORICAL:
        _check_categorical(adult_profile.categorical[column], adult_sample[column], top_k=20)
        expected = _cramers_v(adult_sample, column, "income")
        _check_association(adult_profile.categorical[column].target_association, expected)
    assert adult_profile.target_balance == adult_sample["income"].value_counts().to_dict()
    assert adult_profile.target_summary is None
    assert adult_profile.categorical["workclass"].missing > 0


def test_crafted_classification_with_nulls_constant_and_empty_columns() -> None:
    frame = _crafted()
    numeric, categorical = ["x", "n", "constant", "empty"], ["color", "size"]
    profile = profile_dataset(
        _dataset(frame, blocks=4), numeric, categorical, "label", "classification", 5, 2
    )
    assert profile.rows == len(frame)
    for column in numeric:
        _check_numeric(profile.numeric[column], frame[column], bins=5)
    for column in categorical:
        _check_categorical(profile.categorical[column], frame[column], top_k=2)
    assert profile.categorical["color"].top == [("red", 4), ("blue", 3)]
    assert profile.target_balance == {"a": 6, "b": 5}
    for column in ["x", "n"]:
        _check_association(profile.numeric[column].target_association, _eta(frame, column, "label"))
    assert profile.numeric["constant"].target_association is None
    assert profile.numeric["empty"].target_association is None
    for column in categorical:
        expected = _cramers_v(frame, column, "label")
        _check_association(profile.categorical[column].target_association, expected)


def test_regression_profile_matches_pandas(adult_sample: pd.DataFrame) -> None:
    numeric, categorical = ["age", "education_num", "capital_gain"], ["workclass", "sex", "race"]
    frame = adult_sample[[*numeric, *categorical, "hours_per_week"]]
    profile = profile_dataset(_dataset(frame), numeric, categorical, "hours_per_week", "regression")
    assert profile.target_balance is None and profile.target_summary is not None
    _check_numeric(profile.target_summary, frame["hours_per_week"], bins=20)
    assert profile.target_summary.target_association is None
    for column in numeric:
        _check_numeric(profile.numeric[column], frame[column], bins=20)
        expected = _pearson(frame, column, "hours_per_week")
        _check_association(profile.numeric[column].target_association, expected)
    for column in categorical:
        expected = _eta(frame, "hours_per_week", column)
        _check_association(profile.categorical[column].target_association, expected)


def test_crafted_regression_leaves_missing_and_constant_out() -> None:
    frame = _crafted()
    numeric, categorical = ["x", "n", "constant", "empty"], ["color", "size"]
    profile = profile_dataset(_dataset(frame, blocks=4), numeric, categorical, "y", "regression")
    assert profile.target_summary is not None
    _check_numeric(profile.target_summary, frame["y"], bins=20)
    for column in numeric:
        _check_association(profile.numeric[column].target_association, _pearson(frame, column, "y"))
    for column in categorical:
        _check_association(profile.categorical[column].target_association, _eta(frame, "y", column))


def test_float_nan_counts_as_missing() -> None:
    """Ray Data aggregations take NaN for a value; the profile must not."""
    nan = float("nan")
    table = pa.table(
        {
            "x": pa.array([1.0, nan, 2.0, nan, 4.0], from_pandas=False),
            "y": pa.array([0.5, 1.0, nan, 2.0, 3.0], from_pandas=False),
        }
    )
    assert table["x"].null_count == 0
    profile = profile_dataset(ray.data.from_arrow(table), ["x"], [], "y", "regression", bins=3)
    x = profile.numeric["x"]
    assert (x.count, x.missing, x.distinct, x.min, x.max) == (3, 2, 3, 1.0, 4.0)
    assert x.mean == pytest.approx(7 / 3)
    assert x.histogram_counts == [1, 1, 1]
    assert profile.target_summary is not None and profile.target_summary.missing == 1
    expected = pd.Series([1.0, 4.0]).corr(pd.Series([0.5, 3.0]))
    assert x.target_association == pytest.approx(expected)


def test_json_round_trip_is_exact(adult_profile: DatasetProfile) -> None:
    text = adult_profile.to_json()
    assert json.loads(text)["format_version"] == 1
    assert DatasetProfile.from_json(text) == adult_profile
    crafted = profile_dataset(
        _dataset(_crafted()), ["x", "constant", "empty"], ["color"], "y", "regression"
    )
    assert DatasetProfile.from_json(crafted.to_json()) == crafted


def test_unknown_format_version_is_refused(adult_profile: DatasetProfile) -> None:
    document = json.loads(adult_profile.to_json())
    document["format_version"] = 2
    with pytest.raises(DataError, match="format_version"):
        DatasetProfile.from_json(json.dumps(document))


def test_bad_arguments_name_the_problem(adult_sample: pd.DataFrame) -> None:
    ds = ray.data.from_pandas(adult_sample.head(10))
    with pytest.raises(DataError, match="task"):
        profile_dataset(ds, ["age"], [], "income", "ranking")
    with pytest.raises(DataError, match="nope"):
        profile_dataset(ds, ["age", "nope"], [], "income", "classification")
    with pytest.raises(DataError, match="more than once"):
        profile_dataset(ds, ["age"], ["age"], "income", "classification")
    with pytest.raises(DataError, match=r"non-numeric.*income"):
        profile_dataset(ds, ["age"], [], "income", "regression")


def test_empty_dataset_gives_an_empty_profile() -> None:
    empty = _dataset(_crafted()).limit(0)
    profile = profile_dataset(empty, ["x", "empty"], ["color"], "label", "classification")
    assert profile.rows == 0 and profile.target_balance == {}
    assert profile.numeric["x"].count == 0 and profile.numeric["x"].quantiles == {}
    assert profile.categorical["color"].top == []
    assert DatasetProfile.from_json(profile.to_json()) == profile
