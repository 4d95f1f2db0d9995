"""The packaged model's code ("models from code": this file is the model, nothing pickled).

MLflow copies this file into the model and runs it on load; it registers a
:class:`TabularModel` with ``mlflow.models.set_model``. It imports torch, pandas and the
Ray-free parts of ray_mlops (shipped with the model as code), never Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from ray_mlops.models.predictor import TabularPredictor, numeric_inputs

ARTIFACT_KEY = "predictor"


class TabularModel(PythonModel):
    """Raw feature rows in; ``prediction`` and ``probability_<label>`` columns out."""

    def load_context(self, context: PythonModelContext) -> None:
        self._predictor = TabularPredictor.from_directory(Path(context.artifacts[ARTIFACT_KEY]))

    @property
    def predictor(self) -> TabularPredictor:
        """The network and feature state behind ``predict``: the serving fast path calls it
        directly, without the pyfunc's per-call schema enforcement."""
        return self._predictor

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        numeric = self._predictor.state.numeric
        return self._predictor.predict(numeric_inputs(pd.DataFrame(model_input), numeric))


mlflow.models.set_model(TabularModel())
