"""One search trial: the base config with the trial's values, trained by the project's loop.

Runs inside a Ray Tune trial on the trial's own resources, as a single worker (see
:class:`ray_mlops.train.session.TuneTrialSession`). Data comes encoded from the driver when
the trial keeps the base feature settings; a trial that changes ``features.*`` fits and
encodes its own, once per worker process and feature settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ray_mlops.config import FeaturesConfig, PipelineConfig, parse_config
from ray_mlops.features.state import FeatureState
from ray_mlops.search.space import apply_params, decode_params
from ray_mlops.train.ingest import FEATURES, LABEL, ResidentShard

if TYPE_CHECKING:
    from ray_mlops.config import Dimension

TAG_TRIAL_ID = "ray_mlops.trial_id"
TAG_BEST_TRIAL = "ray_mlops.best_trial"
TAG_TRIAL_STATUS = "ray_mlops.trial_status"

Arrays = tuple[np.ndarray, np.ndarray]


def features_key(features: FeaturesConfig) -> str:
    """A short hash of the feature settings: trials with the same settings share encodings."""
    text = json.dumps(features.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def to_arrays(rows: pd.DataFrame, state: FeatureState, target: str) -> Arrays:
    """Raw rows encoded as (features, labels) arrays, in ``row_key`` order.

    The same encoding as training's (:func:`ray_mlops.train.trainer.to_model_batch`), in this
    process; the order depends only on the rows, so every trial sees them in the same order.
    """
    from ray_mlops.train.trainer import to_model_batch

    batch = to_model_batch(rows, state, target)
    return np.asarray(batch[FEATURES], dtype=np.float32), np.asarray(batch[LABEL])


@dataclass
class SearchInputs:
    """What every trial receives (through the object store, once per search).

    Attributes:
        base_doc: The pipeline config document the trial's values are applied to.
        space: The search space, to decode Optuna's values.
        base_dir: Folder of the config file (custom model builders are relative to it).
        train: Valid rows of the train split, for trials with other features: fitted and
            encoded in the trial's process, since Ray Data tasks would wait for the CPUs
            that the trials hold.
        validation: Valid rows of the validation split.
        base_features: ``features_key`` of the base feature settings.
        base_state_json: The feature state fitted on the train split with them.
        base_arrays: Train and validation encoded with that state.
        trial_cpus: CPUs each trial reserves (its torch threads).
        tracking_uri: MLflow tracking URI, or None to log nothing.
        experiment_id: MLflow experiment of the search run.
        search_run_id: The search's MLflow run; each trial is a nested run under it.
    """

    base_doc: dict[str, Any]
    space: dict[str, Dimension]
    base_dir: str
    train: pd.DataFrame
    validation: pd.DataFrame
    base_features: str
    base_state_json: str
    base_arrays: dict[str, Arrays]
    trial_cpus: float
    tracking_uri: str | None = None
    experiment_id: str | None = None
    search_run_id: str | None = None


def trial_config(inputs: SearchInputs, params: dict[str, Any]) -> PipelineConfig:
    """The base config with the trial's values, trained as one in-process worker."""
    doc = apply_params(inputs.base_doc, decode_params(inputs.space, params))
    doc.setdefault("train", {})
    doc["train"] = {**doc["train"], "num_workers": 1, "cpus_per_worker": inputs.trial_cpus}
    return parse_config(doc, origin="search trial")


# Encodings a worker process already made, by feature settings: a process runs many trials.
_ENCODINGS: dict[str, tuple[FeatureState, dict[str, Arrays]]] = {}


def encoded_data(
    cfg: PipelineConfig, inputs: SearchInputs
) -> tuple[FeatureState, dict[str, Arrays]]:
    """The feature state and encoded splits for the trial's feature settings."""
    key = features_key(cfg.features)
    if key == inputs.base_features:
        return FeatureState.from_json(inputs.base_state_json), inputs.base_arrays
    if key not in _ENCODINGS:
        from ray_mlops.features.fit import fit_feature_state_frame

        state = fit_feature_state_frame(inputs.train, cfg.data, cfg.features, cfg.task)
        arrays = {
            name: to_arrays(rows, state, cfg.data.target)
            for name, rows in (("train", inputs.train), ("validation", inputs.validation))
        }
        _ENCODINGS[key] = (state, arrays)
    return _ENCODINGS[key]


def _trial_run(inputs: SearchInputs, params: dict[str, Any]) -> str | None:
    """The trial's nested MLflow run: found again by trial id when a search resumes."""
    if not (inputs.tracking_uri and inputs.experiment_id and inputs.search_run_id):
        return None
    import ray.tune
    from mlflow.tracking import MlflowClient

    context = ray.tune.get_context()
    trial_id = context.get_trial_id()
    client = MlflowClient(inputs.tracking_uri)
    found = client.search_runs(
        [inputs.experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{inputs.search_run_id}' "
            f"and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
        ),
        max_results=1,
    )
    if found:
        return str(found[0].info.run_id)
    run = client.create_run(
        inputs.experiment_id,
        run_name=context.get_trial_name(),
        tags={"mlflow.parentRunId": inputs.search_run_id, TAG_TRIAL_ID: trial_id},
    )
    values = decode_params(inputs.space, params)
    client.log_batch(
        run.info.run_id,
        params=[_param(k, v) for k, v in sorted(values.items())],
    )
    return str(run.info.run_id)


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    text = value if isinstance(value, str) else json.dumps(value)
    return Param(key, text[:6000])


def run_trial(params: dict[str, Any], inputs: SearchInputs) -> None:
    """The Tune trainable: train one configuration, reporting every epoch with a checkpoint."""
    from ray_mlops.models.from_config import make_spec
    from ray_mlops.train.loop import RESIDENT, LoopSettings, run_loop
    from ray_mlops.train.session import TuneTrialSession

    cfg = trial_config(inputs, params)
    state, arrays = encoded_data(cfg, inputs)
    spec = make_spec(
        cfg.model,
        cfg.task,
        state.n_features,
        len(state.labels) if state.labels else None,
        Path(inputs.base_dir),
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shards = {name: _resident(arrays[name], device) for name in ("train", "validation")}
    settings = LoopSettings(
        train=cfg.train,
        spec_json=spec.to_json(),
        feature_state_json=state.to_json(),
        task=cfg.task,
        ingest=RESIDENT,
        train_rows_per_worker=len(arrays["train"][1]),
        target_scale=state.target_scale,
        tracking_uri=inputs.tracking_uri,
        run_id=_trial_run(inputs, params),
    )
    run_loop(settings, TuneTrialSession(shards, device))


def _resident(arrays: Arrays, device: torch.device) -> ResidentShard:
    x, y = arrays
    return ResidentShard(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
