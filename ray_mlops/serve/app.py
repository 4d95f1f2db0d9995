"""The Ray Serve application: one deployment that serves ``models:/<name>@<alias>``.

``POST /v1/models/{name}:predict`` takes ``{"records": [...]}`` and answers predictions,
class probabilities, and the model name and version that answered. Requests are batched
with ``@serve.batch`` across clients.
"""

import asyncio
import itertools
import json
import tempfile
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from ray_mlops.serve.schema import (
    InputSchema,
    RequestError,
    parse_body,
    predictions_body,
    records_frame,
)

api = FastAPI(
    title="ray-mlops model server",
    description="Predictions from the registered champion model.",
)


@serve.deployment
@serve.ingress(api)
class ModelServer:
    """A replica holding one registered model version.

    Args:
        settings: ``model_name``, ``alias``, ``tracking_uri``, ``max_batch_size``,
            ``batch_wait_timeout_s``, ``max_records``.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        from ray_mlops.registry.champion import load_version

        self.model_name: str = settings["model_name"]
        self.max_records: int = settings["max_records"]
        client = MlflowClient(settings["tracking_uri"])
        version = client.get_model_version_by_alias(self.model_name, settings["alias"])
        self.version = str(version.version)
        self._workdir = tempfile.TemporaryDirectory()
        self.model: Any = load_version(
            settings["tracking_uri"], self.model_name, self.version, self._workdir.name
        )[0]
        self.schema = InputSchema.from_signature(self.model.metadata.get_input_schema())
        self.example = self._example_records()
        # The decorator's defaults are replaced by the config's.
        self.predict_batch.set_max_batch_size(settings["max_batch_size"])  # type: ignore[attr-defined]
        self.predict_batch.set_batch_wait_timeout_s(settings["batch_wait_timeout_s"])  # type: ignore[attr-defined]
        # Warm up before taking traffic: the first call pays for lazy initialisation.
        self.model.predict(records_frame({"records": self.example}, self.schema, 1000))

    def _example_records(self) -> list[dict[str, Any]]:
        example = self.model.input_example
        if not isinstance(example, pd.DataFrame):
            return []
        # JSON-ready: ISO strings for times, None for missing values.
        return json.loads(example.to_json(orient="records", date_format="iso"))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def predict_batch(self, frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
        """One model call for the records of every request in the batch."""
        joined = pd.concat(frames, ignore_index=True)
        predicted = await asyncio.to_thread(self.model.predict, joined)
        bounds = list(itertools.accumulate((len(frame) for frame in frames), initial=0))
        return [predicted.iloc[a:b] for a, b in itertools.pairwise(bounds)]

    @api.get("/v1/models/{name}")
    async def metadata(self, name: str) -> JSONResponse:
        """Model name, version, input columns and an example request body."""
        if name != self.model_name:
            return self._unknown_model(name)
        return JSONResponse(
            {
                "model_name": self.model_name,
                "model_version": self.version,
                "inputs": {"numeric": self.schema.numeric, "categorical": self.schema.categorical},
                "example_request": {"records": self.example},
            }
        )

    @api.post("/v1/models/{name}:predict")
    async def predict(self, name: str, request: Request) -> JSONResponse:
        """Predict for ``{"records": [...]}``."""
        if name != self.model_name:
            return self._unknown_model(name)
        try:
            frame = records_frame(parse_body(await request.body()), self.schema, self.max_records)
        except RequestError as exc:
            return JSONResponse(exc.to_body(), status_code=exc.status)
        predicted = await self.predict_batch(frame)
        return JSONResponse(
            {
                "model_name": self.model_name,
                "model_version": self.version,
                **predictions_body(predicted),
            }
        )

    @api.get("/healthz")
    async def health(self) -> dict[str, str]:
        """Liveness: the replica is up and holds a model."""
        return {"status": "ok", "model_version": self.version}

    def _unknown_model(self, name: str) -> JSONResponse:
        return JSONResponse(
            {"error": f"model {name!r} is not served here; this server serves {self.model_name!r}"},
            status_code=404,
        )
