"""Baseline (b1) of ``serve_load.py``: FastAPI + uvicorn serving the trained torch network.

What a user writes who serves this model without MLflow on the request path: a pydantic
request model, the network rebuilt in torch from its spec and weights, and the feature
transform written by hand in numpy from the fitted parameters the model ships
(``feature_state.json``: medians, means and standard deviations, bucket edges, category
lists, hash buckets). No pyfunc call per request, no schema enforcement beyond pydantic's.

The files are those of the registered model's ``artifacts/predictor`` folder: ``model.pt``
(the state dict), ``model_spec.json`` and ``feature_state.json``.

Run (two worker processes, one torch thread each):
    MODEL_DIR=.../artifacts/predictor uvicorn serve_fastapi:app --workers 2 --port 8001 \
        --app-dir benchmarks/baselines

``POST /predict`` with ``{"records": [{column: value, ...}, ...]}`` answers
``{"predictions": [label, ...], "probabilities": [{label: p, ...}, ...]}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastapi import FastAPI
from pydantic import BaseModel
from torch import nn

# The key of the SipHash the training code used for hashed categories (its docs give it).
HASH_KEY = "0123456789123456"
MISSING = "<missing>"


class Record(BaseModel):
    """One census row: what the model reads (every field may be missing)."""

    age: float | None = None
    education_num: float | None = None
    capital_gain: float | None = None
    capital_loss: float | None = None
    hours_per_week: float | None = None
    workclass: str | None = None
    education: str | None = None
    marital_status: str | None = None
    occupation: str | None = None
    relationship: str | None = None
    race: str | None = None
    sex: str | None = None
    native_country: str | None = None


class PredictRequest(BaseModel):
    """The request body: one or more rows."""

    records: list[Record]


class Encoder:
    """The fitted feature transform of ``feature_state.json``, in numpy."""

    def __init__(self, state: dict[str, Any]) -> None:
        if state.get("datetime") or state.get("crosses"):
            raise ValueError("this server encodes numeric and categorical columns only")
        self.numeric: dict[str, dict[str, Any]] = state["numeric"]
        self.categorical: dict[str, dict[str, Any]] = state["categorical"]
        self.lookups = {
            column: {value: i for i, value in enumerate(spec["categories"])}
            for column, spec in self.categorical.items()
        }
        self.labels: list[str] | None = state["labels"]
        self.width = sum(
            1 if spec.get("bucket_edges") is None else len(spec["bucket_edges"]) + 2
            for spec in self.numeric.values()
        ) + sum(self._categorical_width(spec) for spec in self.categorical.values())

    @staticmethod
    def _categorical_width(spec: dict[str, Any]) -> int:
        if spec["encode"] == "hashing":
            return int(spec["hash_buckets"])
        if spec["encode"] == "ordinal":
            return 1
        return len(spec["categories"]) + 1 + (spec["fill"] is None)

    def encode(self, rows: Sequence[Any]) -> np.ndarray:
        """``(len(rows), width)`` float32 inputs of the network; ``rows`` have attributes."""
        n = len(rows)
        out = np.zeros((n, self.width), dtype=np.float32)
        index = np.arange(n)
        offset = 0
        for column, spec in self.numeric.items():
            values = np.array([getattr(r, column) for r in rows], dtype=np.float64)
            if spec["log1p"]:
                values = np.sign(values) * np.log1p(np.abs(values))
            values = np.where(np.isnan(values), spec["fill"], values)
            out[:, offset] = (values - spec["center"]) / spec["scale"]
            offset += 1
            edges = spec.get("bucket_edges")
            if edges is not None:
                out[index, offset + np.searchsorted(edges, values, side="right")] = 1.0
                offset += len(edges) + 1
        for column, spec in self.categorical.items():
            fill = spec["fill"]
            values = [getattr(r, column) for r in rows]
            if spec["encode"] == "hashing":
                strings = np.array(
                    [
                        v if v is not None else (fill if fill is not None else MISSING)
                        for v in values
                    ],
                    dtype=object,
                )
                hashed = pd.util.hash_array(
                    strings, encoding="utf8", hash_key=HASH_KEY, categorize=True
                )
                buckets = int(spec["hash_buckets"])
                out[index, offset + (hashed % np.uint64(buckets)).astype(np.int64)] = 1.0
                offset += buckets
                continue
            lookup, k = self.lookups[column], len(spec["categories"])
            codes = np.array(
                [
                    lookup.get(v, k)
                    if v is not None
                    else (k + 1 if fill is None else lookup.get(fill, k))
                    for v in values
                ],
                dtype=np.int64,
            )
            if spec["encode"] == "ordinal":
                out[:, offset] = codes / (k + 1)
                offset += 1
                continue
            out[index, offset + codes] = 1.0
            offset += self._categorical_width(spec)
        return out


def build_network(spec: dict[str, Any]) -> nn.Sequential:
    """The MLP of ``model_spec.json``: Linear, [norm], ReLU, Dropout per hidden layer."""
    if spec["kind"] not in ("mlp", "linear"):
        raise ValueError(f"this server rebuilds MLPs only, not {spec['kind']!r}")
    layers: list[nn.Module] = []
    width = spec["n_inputs"]
    for hidden in spec["hidden_sizes"] if spec["kind"] == "mlp" else []:
        layers.append(nn.Linear(width, hidden))
        if spec["normalization"] == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        elif spec["normalization"] == "layer":
            layers.append(nn.LayerNorm(hidden))
        layers += [nn.ReLU(), nn.Dropout(spec["dropout"])]
        width = hidden
    layers.append(nn.Linear(width, spec["n_outputs"]))
    return nn.Sequential(*layers)


class Model:
    """Network, transform and labels, loaded from the model's ``predictor`` folder."""

    def __init__(self, directory: str | Path, device: str = "cpu") -> None:
        directory = Path(directory)
        self.spec = json.loads((directory / "model_spec.json").read_text())
        self.encoder = Encoder(json.loads((directory / "feature_state.json").read_text()))
        self.device = torch.device(device)
        self.network = build_network(self.spec)
        weights = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        self.network.load_state_dict(weights)
        self.network.eval().to(self.device)

    def predict(self, rows: Sequence[Any]) -> dict[str, list[Any]]:
        """Labels and per-label probabilities of ``rows`` (objects with one attribute a column)."""
        inputs = torch.from_numpy(self.encoder.encode(rows)).to(self.device)
        with torch.inference_mode():
            logits = self.network(inputs).double()
        labels = self.encoder.labels or []
        if self.spec["head"] == "binary":
            positive = torch.sigmoid(logits[:, 0])
            probabilities = torch.stack([1.0 - positive, positive], dim=1).cpu().numpy()
        else:
            probabilities = torch.softmax(logits, dim=1).cpu().numpy()
        chosen = probabilities.argmax(axis=1)
        return {
            "predictions": [labels[i] for i in chosen],
            "probabilities": [dict(zip(labels, p.tolist(), strict=True)) for p in probabilities],
        }


models: dict[str, Model] = {}


@asynccontextmanager
async def lifespan(_: FastAPI):
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    models["adult"] = Model(os.environ["MODEL_DIR"], os.environ.get("DEVICE", "cpu"))
    yield
    models.clear()


app = FastAPI(lifespan=lifespan)


@app.post("/predict")
async def predict(request: PredictRequest) -> dict[str, list[Any]]:
    """Predictions for every record of the request."""
    return models["adult"].predict(request.records)
