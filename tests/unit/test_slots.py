"""A replica's scoring: the packaged predictor called directly equals the pyfunc path."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from ray_mlops.config import ModelConfig
from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
from ray_mlops.models.factory import build_model
from ray_mlops.models.from_config import make_spec
from ray_mlops.models.predictor import TabularPredictor
from ray_mlops.serve.schema import InputSchema, checked_rows
from ray_mlops.serve.slots import ModelSlot, _fast_predictor

STATE = FeatureState(
    numeric={"age": NumericState(fill=40.0, center=38.0, scale=2.0)},
    categorical={"color": CategoricalState(categories=["red", "blue"])},
    labels=["no", "yes"],
)
SCHEMA = InputSchema(numeric=["age"], categorical=["color"], order=["age", "color"])
RECORDS = [
    {"age": 30, "color": "red"},
    {"age": None, "color": "blue"},
    {"age": 51.5, "color": None},
    {"age": 64, "color": "pink"},
]


class _OtherModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model not packaged by ray-mlops (no ``predictor``), on the same network."""

    def __init__(self, network: TabularPredictor) -> None:
        self.network = network

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.network.predict(model_input)


def _saved_pyfunc(predictor: TabularPredictor, tmp_path: Path) -> Any:
    """A real MLflow pyfunc model, saved and loaded back."""
    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=_OtherModel(predictor))
    return mlflow.pyfunc.load_model(str(tmp_path / "model"))


def _slot(predictor: TabularPredictor | None, model: object) -> ModelSlot:
    workdir = tempfile.TemporaryDirectory()
    return ModelSlot("champion", "1", model, SCHEMA, RECORDS, ["no", "yes"], workdir, predictor)


def _predictor() -> TabularPredictor:
    torch.manual_seed(0)
    spec = make_spec(
        ModelConfig(hidden_sizes=[8]), "classification", STATE.n_features, 2, Path(".")
    )
    return TabularPredictor(build_model(spec), spec, STATE)


def test_direct_and_pyfunc_scoring_agree_request_by_request(tmp_path: Path) -> None:
    predictor = _predictor()
    other = _saved_pyfunc(predictor, tmp_path)
    assert _fast_predictor(other, "cpu") is None  # not ours: it goes through model.predict
    fast = _slot(predictor, other)
    slow = _slot(None, other)
    parts = [checked_rows({"records": [r]}, SCHEMA, 1) for r in RECORDS]
    direct, through_pyfunc = fast.score(parts), slow.score(parts)
    assert direct.predictions.tolist() == through_pyfunc.predictions.tolist()
    np.testing.assert_allclose(direct.probabilities, through_pyfunc.probabilities)
    assert direct.labels == through_pyfunc.labels == ["no", "yes"]
    # A batch of requests sliced back gives each request what it gets alone (float32 matrix
    # products may round differently by batch size: equal to 1e-6, not bit for bit).
    for i, part in enumerate(parts):
        alone, in_batch = fast.score([part]), direct.rows(i, i + 1)
        assert alone.predictions.tolist() == in_batch.predictions.tolist()
        np.testing.assert_allclose(alone.probabilities, in_batch.probabilities, rtol=1e-6)


def test_the_predictor_follows_its_device() -> None:
    predictor = _predictor().to("cpu")
    assert predictor.device == torch.device("cpu")
    assert next(predictor.network.parameters()).device == torch.device("cpu")
    frame = pd.DataFrame(RECORDS).astype({"age": "float64"})
    predictions, probabilities = predictor.predict_arrays(frame)
    assert probabilities is not None and probabilities.shape == (4, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert predictions.tolist() == np.array(["no", "yes"])[probabilities.argmax(axis=1)].tolist()
