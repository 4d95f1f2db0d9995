"""Raw rows in, predictions out: the inference path shared by evaluation and serving.

Imports torch, numpy and pandas only, so a packaged model loads where Ray is absent.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ray_mlops.features.state import FeatureState
from ray_mlops.features.transform import Columns, transform_features
from ray_mlops.models.factory import build_model
from ray_mlops.models.heads import class_probabilities, head_outputs
from ray_mlops.models.outputs import (  # noqa: F401 (re-exported)
    PREDICTION_COLUMN,
    PROBABILITY_PREFIX,
    probability_labels,
)
from ray_mlops.models.spec import ModelSpec

WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model_spec.json"
FEATURES_FILE = "feature_state.json"
# What pandas' infer_dtype calls a column of numbers (missing values skipped).
_NUMBER_KINDS = frozenset(
    {"integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty"}
)


class TabularPredictor:
    """A trained network with its feature state.

    Args:
        network: The trained module, in eval mode.
        spec: What the network is (its head decides how outputs become predictions).
        state: The fitted feature pipeline.
    """

    def __init__(self, network: torch.nn.Module, spec: ModelSpec, state: FeatureState) -> None:
        self.network = network.eval()
        self.spec = spec
        self.state = state
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> TabularPredictor:
        """Move the network to ``device`` (``"cuda"`` on a GPU replica); inputs follow it."""
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    @classmethod
    def from_directory(cls, directory: str | Path) -> TabularPredictor:
        """Load the three files written by :meth:`save`."""
        directory = Path(directory)
        spec = ModelSpec.from_json((directory / SPEC_FILE).read_text())
        state = FeatureState.from_json((directory / FEATURES_FILE).read_text())
        network = build_model(spec)
        network.load_state_dict(
            torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        )
        return cls(network, spec, state)

    @staticmethod
    def save(
        directory: str | Path, network: torch.nn.Module, spec: ModelSpec, state: FeatureState
    ) -> None:
        """Write weights (a tensor file, not a pickled class), spec and feature state."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), directory / WEIGHTS_FILE)
        (directory / SPEC_FILE).write_text(spec.to_json())
        (directory / FEATURES_FILE).write_text(state.to_json())

    @property
    def output_columns(self) -> list[str]:
        """Columns of :meth:`predict`'s frame."""
        labels = self.state.labels or []
        return [PREDICTION_COLUMN, *(f"{PROBABILITY_PREFIX}{label}" for label in labels)]

    def predict_scores(self, frame: Columns) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` or regression values ``(n,)``.

        ``frame`` is a DataFrame or a mapping of column to array (see ``transform_features``).
        """
        inputs = torch.from_numpy(transform_features(frame, self.state))
        with torch.inference_mode():
            outputs = self.network(inputs.to(self.device, non_blocking=True))
            if self.state.labels is None:
                scaled = head_outputs(outputs, self.spec.head).double().cpu().numpy()
                return scaled * self.state.target_scale + self.state.target_center
            return class_probabilities(outputs, self.spec.head).cpu().numpy()

    def predict_arrays(self, frame: Columns) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted labels (or values), and for classifiers the ``(n, k)`` probabilities."""
        scores = self.predict_scores(frame)
        if self.state.labels is None:
            return scores, None
        labels = np.asarray(self.state.labels, dtype=object)
        return labels[scores.argmax(axis=1)], scores.astype(np.float64, copy=False)

    def predict(self, frame: Columns) -> pd.DataFrame:
        """Predicted label (or value) and, for classifiers, one probability column per class."""
        predictions, probabilities = self.predict_arrays(frame)
        result = {PREDICTION_COLUMN: predictions}
        if probabilities is not None:
            for i, label in enumerate(self.state.labels or []):
                result[f"{PROBABILITY_PREFIX}{label}"] = probabilities[:, i]
        return pd.DataFrame(result)


def numeric_inputs(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` as float64: integer, float, boolean or missing values.

    The packaged model's numeric inputs are declared MLflow ``any`` (see
    ``models.package.model_signature``), so this is where they are checked: text in a
    numeric column is refused here rather than read as missing and imputed.

    Example:
        >>> numeric_inputs(pd.DataFrame({"age": [39, 50], "sex": ["F", "M"]}), ["age"])["age"]
        0    39.0
        1    50.0
        Name: age, dtype: float64

    Raises:
        ValueError: a column holds something other than numbers, named with the first such
            value and its row.
    """
    converted: dict[str, np.ndarray] = {}
    for column in columns:
        if column not in frame.columns:
            continue
        values = frame[column]
        if values.dtype.kind not in "iufb" and (
            pd.api.types.infer_dtype(values, skipna=True) not in _NUMBER_KINDS
        ):
            not_number = values.notna() & pd.to_numeric(values, errors="coerce").isna()
            position = int(np.argmax(not_number.to_numpy(dtype=bool))) if not_number.any() else 0
            raise ValueError(
                f"input column {column!r} must hold numbers; row {position} holds "
                f"{values.iloc[position]!r} ({values.dtype})"
            )
        converted[column] = pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)
    return frame.assign(**converted)
