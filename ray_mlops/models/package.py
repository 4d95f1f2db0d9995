"""Write a trained model as an MLflow pyfunc model with signature and input example."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema
from torch import nn

import ray_mlops
from ray_mlops.features.primitives import datetime_values
from ray_mlops.features.state import FeatureState
from ray_mlops.models import pyfunc_model
from ray_mlops.models.predictor import PREDICTION_COLUMN, PROBABILITY_PREFIX, TabularPredictor
from ray_mlops.models.spec import ModelSpec

# Only the Ray-free modules the model imports travel with it, so it loads without Ray.
_MODEL_CODE = (
    "__init__.py",
    "errors.py",
    "exports.py",
    "features/__init__.py",
    "features/primitives.py",
    "features/state.py",
    "features/transform.py",
    "models/__init__.py",
    "models/custom.py",
    "models/factory.py",
    "models/heads.py",
    "models/mlp.py",
    "models/outputs.py",
    "models/predictor.py",
    "models/spec.py",
)


def model_signature(state: FeatureState) -> ModelSignature:
    """Input columns with their types (every input may be missing); output columns.

    Numeric inputs are MLflow ``any``: a ``double`` column refuses int64 ("Can not safely
    convert int64 to float64", MLflow allows only ints of up to 6 bytes), and a ``long`` one
    refuses floats and missing values, so no one MLflow type accepts both the integer
    columns of ``pd.read_csv`` and the floats of a JSON client. The model checks and converts
    them itself (:func:`~ray_mlops.models.predictor.numeric_inputs`), naming a column that
    holds something else. ray-mlops serving reads every input that is neither ``string``
    nor ``datetime`` as numeric.

    Datetime inputs are MLflow ``datetime``: tz-naive ``datetime64`` in UTC, since MLflow's
    schema enforcement refuses strings and tz-aware values for that type.
    """
    inputs = [ColSpec(AnyType(), c) for c in state.numeric]
    inputs += [ColSpec("string", c) for c in state.categorical]
    inputs += [ColSpec("datetime", c) for c in state.datetime]
    if state.labels is None:
        outputs = [ColSpec("double", PREDICTION_COLUMN)]
    else:
        outputs = [ColSpec("string", PREDICTION_COLUMN)]
        outputs += [ColSpec("double", f"{PROBABILITY_PREFIX}{label}") for label in state.labels]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))  # type: ignore[arg-type]


def input_example(holdout: pd.DataFrame, state: FeatureState, rows: int = 3) -> pd.DataFrame:
    """A few real rows, typed as the signature says."""
    example = holdout[state.input_columns].head(rows).copy()
    for column in state.numeric:
        example[column] = example[column].astype("float64")
    for column in state.categorical:
        example[column] = example[column].astype(object).where(example[column].notna(), None)
    for column in state.datetime:
        example[column] = datetime_values(example[column]).astype("datetime64[ns]")
    return example


def _copy_model_code(destination: Path) -> Path:
    package_root = Path(ray_mlops.__file__).parent
    target = destination / "ray_mlops"
    for relative in _MODEL_CODE:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package_root / relative, target / relative)
    return target


def save_pyfunc_model(
    path: Path,
    network: nn.Module,
    spec: ModelSpec,
    state: FeatureState,
    example: pd.DataFrame,
) -> None:
    """Save a self-contained pyfunc model directory at ``path``."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        predictor_dir = Path(tmp) / "predictor"
        TabularPredictor.save(predictor_dir, network, spec, state)
        code = _copy_model_code(Path(tmp) / "code")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=pyfunc_model.__file__,
            artifacts={pyfunc_model.ARTIFACT_KEY: str(predictor_dir)},
            code_paths=[str(code)],
            signature=model_signature(state),
            input_example=example,
            pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    import mlflow
    import numpy
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pd.__version__}",
        f"numpy=={numpy.__version__}",
    ]
