"""A replica's scoring: the packaged predictor called directly equals the pyfunc path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ray_mlops.config import ModelConfig
from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
from ray_mlops.models.factory import build_model
from ray_mlops.models.from_config import make_spec
from ray_mlops.models.predictor import TabularPredictor
from ray_mlops.serve.schema import InputSchema, checked_rows
from ray_mlops.serve.slots import ModelSlot

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


class _PyfuncLike:
    """What ``mlflow.pyfunc.load_model`` gives for a model without a ray-mlops predictor:
    only ``predict(frame)``, here backed by the same network."""

    def __init__(self, predictor: TabularPredictor) -> None:
        self._predictor = predictor

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self._predictor.predict(frame)


def _slot(predictor: TabularPredictor | None, model: object) -> ModelSlot:
    workdir = tempfile.TemporaryDirectory()
    return ModelSlot("champion", "1", model, SCHEMA, RECORDS, ["no", "yes"], workdir, predictor)


def _predictor() -> TabularPredictor:
    torch.manual_seed(0)
    spec = make_spec(
        ModelConfig(hidden_sizes=[8]), "classification", STATE.n_features, 2, Path(".")
    )
    return TabularPredictor(build_model(spec), spec, STATE)


def test_direct_and_pyfunc_scoring_agree_request_by_request() -> None:
    predictor = _predictor()
    fast = _slot(predictor, _PyfuncLike(predictor))
    slow = _slot(None, _PyfuncLike(predictor))
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
