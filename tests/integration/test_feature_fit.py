"""Fitting with Ray Data aggregations matches pandas; Ray Data batches encode like single rows."""

import numpy as np
import pandas as pd
import pytest

from ray_mlops.config import DataConfig, FeaturesConfig
from ray_mlops.errors import DataError
from ray_mlops.features.fit import fit_feature_state
from ray_mlops.features.state import FeatureState
from ray_mlops.features.transform import transform_features

pytestmark = pytest.mark.usefixtures("ray_session")

DATA = DataConfig(
    path="unused.csv",
    target="income",
    numeric=["age", "education_num", "capital_gain", "hours_per_week"],
    categorical=["workclass", "education", "occupation", "native_country", "sex"],
    datetime=["signup"],
)
FEATURES = FeaturesConfig.model_validate(
    {
        "categorical": {"max_categories": 5},
        "numeric_columns": {
            "age": {"impute": "mean", "scale": "robust", "buckets": 4},
            "capital_gain": {
                "log1p": True,
                "impute": "most_frequent",
                "scale": "minmax",
                "buckets": [1000, 10000],
            },
            "hours_per_week": {"impute": "constant", "fill_value": 40},
        },
        "categorical_columns": {
            "workclass": {"impute": "most_frequent", "max_categories": 3},
            "occupation": {"impute": "constant", "fill_value": "unknown", "encode": "ordinal"},
            "native_country": {"encode": "hashing", "hash_buckets": 16},
        },
        "datetime_parts": ["year", "month", "dayofweek", "hour"],
        "crosses": [["sex", "workclass"]],
    }
)


@pytest.fixture(scope="module")
def frame(adult_sample: pd.DataFrame) -> pd.DataFrame:
    """The sample with missing numbers and a datetime column holding nulls and offsets."""
    rng = np.random.default_rng(0)
    frame = adult_sample.copy()
    frame["age"] = frame["age"].astype("float64").mask(rng.random(len(frame)) < 0.1)
    starts = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 4 * 365 * 24 * 60, len(frame)), unit="min"
    )
    signup = pd.Series(starts.strftime("%Y-%m-%dT%H:%M:%SZ"), index=frame.index, dtype=object)
    # Some rows carry another offset for the same instant, as clients in other zones send.
    tokyo = pd.Series(starts.tz_convert("Asia/Tokyo"), index=frame.index).map(
        pd.Timestamp.isoformat
    )
    signup = signup.mask(rng.random(len(frame)) < 0.2, tokyo)
    frame["signup"] = signup.mask(rng.random(len(frame)) < 0.1)
    frame["row"] = np.arange(len(frame))
    return frame


@pytest.fixture(scope="module")
def state(frame: pd.DataFrame) -> FeatureState:
    import ray.data

    # Several blocks, so the aggregations really combine partial results.
    dataset = ray.data.from_pandas(frame).repartition(6)
    return fit_feature_state(dataset, DATA, FEATURES, "classification")


def _ranked(counts: pd.Series) -> list[str]:
    """Values by decreasing count, ties by value (the fit's order)."""
    table = counts.rename("n").rename_axis("value").reset_index()
    table["value"] = table["value"].astype(str)
    return table.sort_values(["n", "value"], ascending=[False, True])["value"].tolist()


def test_numeric_statistics_match_pandas(frame: pd.DataFrame, state: FeatureState) -> None:
    age = frame["age"].dropna()
    q1, median, q3 = age.quantile([0.25, 0.5, 0.75])
    assert state.numeric["age"].fill == pytest.approx(age.mean())
    assert state.numeric["age"].center == pytest.approx(median)
    assert state.numeric["age"].scale == pytest.approx(q3 - q1)
    # Ray's Quantile interpolates linearly between order statistics, as pandas does.
    assert state.numeric["age"].bucket_edges == pytest.approx(sorted({q1, median, q3}))

    education = frame["education_num"].astype("float64")
    assert state.numeric["education_num"].fill == pytest.approx(education.median())
    assert state.numeric["education_num"].center == pytest.approx(education.mean())
    assert state.numeric["education_num"].scale == pytest.approx(education.std(ddof=0))

    gain = state.numeric["capital_gain"]
    logged = np.log1p(frame["capital_gain"].astype("float64"))
    assert gain.log1p
    assert gain.fill == pytest.approx(float(logged.mode().min()))
    assert gain.center == pytest.approx(logged.min())
    assert gain.scale == pytest.approx(logged.max() - logged.min())
    assert gain.bucket_edges == pytest.approx(np.log1p([1000.0, 10000.0]).tolist())

    hours = frame["hours_per_week"].astype("float64")
    assert state.numeric["hours_per_week"].fill == 40.0
    assert state.numeric["hours_per_week"].center == pytest.approx(hours.mean())
    assert state.numeric["hours_per_week"].scale == pytest.approx(hours.std(ddof=0))


def test_categories_are_the_most_frequent_within_the_cap(
    frame: pd.DataFrame, state: FeatureState
) -> None:
    education = state.categorical["education"]
    assert education.categories == _ranked(frame["education"].value_counts())[:5]
    assert education.fill is None

    workclass = state.categorical["workclass"]
    mode = _ranked(frame["workclass"].value_counts())[0]
    assert workclass.fill == mode
    assert workclass.categories == _ranked(frame["workclass"].fillna(mode).value_counts())[:3]

    occupation = state.categorical["occupation"]
    assert frame["occupation"].isna().sum() > 100, "the sample should hold missing occupations"
    imputed = frame["occupation"].fillna("unknown").value_counts()
    assert occupation.encode == "ordinal" and occupation.fill == "unknown"
    # An override replaces the whole spec: the default cap of 50, not the default section's 5.
    assert occupation.categories == _ranked(imputed)
    assert "unknown" in occupation.categories

    country = state.categorical["native_country"]
    assert (country.encode, country.categories, country.hash_buckets) == ("hashing", [], 16)
    assert state.labels == sorted(frame["income"].unique())


def test_datetime_parts_are_standardised_with_train_moments(
    frame: pd.DataFrame, state: FeatureState
) -> None:
    stamps = pd.to_datetime(frame["signup"], utc=True, format="ISO8601").dt
    parts = {
        "year": stamps.year,
        "month": stamps.month,
        "dayofweek": stamps.dayofweek,
        "hour": stamps.hour,
    }
    signup = state.datetime["signup"]
    assert signup.parts == list(parts)
    assert signup.centers == pytest.approx([v.mean() for v in parts.values()])
    assert signup.scales == pytest.approx([v.std(ddof=0) for v in parts.values()])
    assert state.input_columns[-1] == "signup"
    assert [c.columns for c in state.crosses] == [["sex", "workclass"]]


def test_ray_data_batches_encode_like_single_rows(frame: pd.DataFrame, state: FeatureState) -> None:
    import ray.data

    def encode(batch: pd.DataFrame) -> dict[str, np.ndarray]:
        return {"row": batch["row"].to_numpy(), "features": transform_features(batch, state)}

    encoded = (
        ray.data.from_pandas(frame).repartition(5).map_batches(encode, batch_format="pandas")
    ).to_pandas()
    encoded = encoded.sort_values("row")
    batch_features = np.stack(encoded["features"].to_list())
    assert encoded["row"].tolist() == frame["row"].tolist()
    assert batch_features.shape == (len(frame), state.n_features)
    assert np.isfinite(batch_features).all()
    for i in range(len(frame)):
        assert np.array_equal(transform_features(frame.iloc[[i]], state)[0], batch_features[i]), i


def test_regression_target_is_standardised(frame: pd.DataFrame) -> None:
    import ray.data

    data = DataConfig(path="unused.csv", target="age", numeric=["education_num"])
    state = fit_feature_state(ray.data.from_pandas(frame), data, FeaturesConfig(), "regression")
    assert state.labels is None
    assert state.target_center == pytest.approx(frame["age"].mean())
    assert state.target_scale == pytest.approx(frame["age"].std(ddof=0))


def test_a_datetime_column_without_parseable_times_is_named(frame: pd.DataFrame) -> None:
    import ray.data

    data = DataConfig(path="unused.csv", target="income", numeric=["age"], datetime=["signup"])
    broken = frame.assign(signup="last tuesday")
    with pytest.raises(DataError, match="datetime column 'signup'"):
        fit_feature_state(ray.data.from_pandas(broken), data, FeaturesConfig(), "classification")
