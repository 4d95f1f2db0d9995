"""The packaged pyfunc takes raw CSV frames: integer columns the model reads as numbers.

Issue 23: ``mlflow.pyfunc.load_model(...).predict(pd.read_csv(...))`` failed with "Can not
safely convert int64 to float64", MLflow's schema enforcement of a ``double`` signature.
Ray-free: a small network packaged exactly as the pipeline packages one.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch

from ray_mlops.datasets import adult_path
from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
from ray_mlops.models.factory import build_model
from ray_mlops.models.package import input_example, model_signature, save_pyfunc_model
from ray_mlops.models.predictor import TabularPredictor
from ray_mlops.models.spec import ModelSpec
from ray_mlops.serve.schema import InputSchema

NUMERIC = ["age", "education_num", "hours_per_week"]


@pytest.fixture(scope="module")
def raw_rows() -> pd.DataFrame:
    with gzip.open(adult_path(), "rt") as handle:
        return pd.read_csv(handle, nrows=200)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory, raw_rows: pd.DataFrame) -> Path:
    state = FeatureState(
        numeric={c: NumericState(fill=40.0, center=40.0, scale=12.0) for c in NUMERIC},
        categorical={"sex": CategoricalState(categories=["Male", "Female"])},
        labels=["<=50K", ">50K"],
    )
    spec = ModelSpec(n_inputs=state.n_features, n_outputs=1, head="binary", hidden_sizes=[8])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pyfunc") / "model"
    save_pyfunc_model(path, build_model(spec), spec, state, input_example(raw_rows, state))
    return path


def test_a_frame_read_with_read_csv_is_accepted_as_it_is(
    packaged: Path, raw_rows: pd.DataFrame
) -> None:
    assert all(raw_rows[c].dtype == np.int64 for c in NUMERIC)  # as a user's frame is
    model = mlflow.pyfunc.load_model(str(packaged))
    got = model.predict(raw_rows)
    as_floats = raw_rows.astype({c: "float64" for c in NUMERIC})
    expected = model.predict(as_floats)
    assert len(got) == 200
    pd.testing.assert_frame_equal(got, expected)
    predictor = TabularPredictor.from_directory(packaged / "artifacts" / "predictor")
    pd.testing.assert_frame_equal(got, predictor.predict(as_floats))
    # Missing values (float NaN, a nullable Int64 column) are still imputed, not refused.
    holes = raw_rows.head(3).astype({"age": "Int64"})
    holes.loc[0, "age"] = pd.NA
    assert model.predict(holes)["prediction"].notna().all()


def test_text_in_a_numeric_column_is_refused_with_its_name(
    packaged: Path, raw_rows: pd.DataFrame
) -> None:
    model = mlflow.pyfunc.load_model(str(packaged))
    bad = raw_rows.head(3).astype({"age": object})
    bad.loc[1, "age"] = "thirty"
    with pytest.raises(
        ValueError, match=r"input column 'age' must hold numbers; row 1 holds 'thirty'"
    ):
        model.predict(bad)


def test_serving_still_reads_the_numeric_inputs_as_numbers() -> None:
    state = FeatureState(
        numeric={"age": NumericState(fill=0.0, center=0.0, scale=1.0)},
        categorical={"sex": CategoricalState(categories=["F"])},
    )
    schema = InputSchema.from_signature(model_signature(state).inputs)
    assert schema.numeric == ["age"] and schema.categorical == ["sex"]
