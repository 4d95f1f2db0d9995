"""One search trial: the base config with the trial's values, trained by the project's loop.

With ``search.trial_workers: 1`` the trial trains in its own Tune process on the trial's
resources (:class:`ray_mlops.train.session.TuneTrialSession`): no worker group to start,
which dominates small trials. With more, the trial is the driver of a ``TorchTrainer``
whose data-parallel workers run the same loop (the Ray 2.60 pattern for Train inside Tune),
and ``TuneReportCallback`` forwards each epoch to Tune. Data comes encoded from the search's
driver when the trial keeps the base feature settings; a trial that changes ``features.*``
fits and encodes its own, once per process and feature settings.
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

Arrays = tuple[np.ndarray, np.ndarray]


def features_key(features: FeaturesConfig) -> str:
    """A short hash of the feature settings: trials with the same settings share encodings."""
    text = json.dumps(features.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def to_arrays(rows: pd.DataFrame, state: FeatureState, target: str) -> Arrays:
    """Raw rows encoded as (features, labels) arrays, in ``row_key`` order.

    The same encoding as training's (:func:`ray_mlops.train.encode.to_model_batch`), in this
    process; the order depends only on the rows, so every trial sees them in the same order.
    """
    from ray_mlops.train.encode import to_model_batch

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
        trial_workers: Workers per trial (1: in the trial's process).
        trial_cpus: CPUs each trial worker reserves (its torch threads).
        trial_gpus: GPUs each trial worker reserves.
        trainer_storage: Where multi-worker trials keep their Ray Train runs.
        tracking_uri: MLflow tracking URI, or None to log nothing. The search's driver
            logs each trial (:class:`ray_mlops.search.trial_runs.TrialRuns`); trials
            themselves never open the tracking store.
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
    trial_workers: int
    trial_cpus: float
    trial_gpus: float
    trainer_storage: str
    tracking_uri: str | None = None
    experiment_id: str | None = None
    search_run_id: str | None = None


def trial_config(inputs: SearchInputs, params: dict[str, Any]) -> PipelineConfig:
    """The base config with the trial's values, on the trial's workers and resources."""
    doc = apply_params(inputs.base_doc, decode_params(inputs.space, params))
    doc.setdefault("train", {})
    doc["train"] = {
        **doc["train"],
        "num_workers": inputs.trial_workers,
        "cpus_per_worker": inputs.trial_cpus,
        "use_gpu": inputs.trial_gpus > 0,
        "gpus_per_worker": inputs.trial_gpus or 1.0,
    }
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
    settings = LoopSettings(
        train=cfg.train,
        spec_json=spec.to_json(),
        feature_state_json=state.to_json(),
        task=cfg.task,
        ingest=RESIDENT,
        train_rows_per_worker=len(arrays["train"][1]) // cfg.train.num_workers,
        target_scale=state.target_scale,
        # The search's driver logs every result to the trial's MLflow run (TrialRuns).
        tracking_uri=None,
        run_id=None,
    )
    if cfg.train.num_workers > 1:
        _run_trainer(cfg, settings, arrays, inputs)
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shards = {name: _resident(arrays[name], device) for name in ("train", "validation")}
    run_loop(settings, TuneTrialSession(shards, device))


def _run_trainer(
    cfg: PipelineConfig, settings: Any, arrays: dict[str, Arrays], inputs: SearchInputs
) -> None:
    """Train the trial on a ``TorchTrainer`` worker group, each epoch forwarded to Tune.

    The Train run is named after the trial, so a trial that Tune restarts (a resumed
    search) continues from its last checkpoint.
    """
    import ray
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ray_mlops.settings_env import apply_train
    from ray_mlops.train.trainer import build_torch_trainer

    apply_train()  # results reach Tune, and so ASHA, at each poll
    trainer = build_torch_trainer(
        cfg,
        trial_worker_loop,
        {"settings": settings.to_dict(), "arrays": ray.put(arrays)},
        name=ray.tune.get_context().get_trial_id(),
        storage_path=inputs.trainer_storage,
        callbacks=[TuneReportCallback()],
    )
    trainer.fit()


def trial_worker_loop(config: dict[str, Any]) -> None:
    """One worker of a multi-worker trial: its rank's rows of the trial's arrays."""
    import ray

    from ray_mlops.train.loop import LoopSettings, run_loop
    from ray_mlops.train.session import RayTrainSession

    settings = LoopSettings.from_dict(config["settings"])
    arrays: dict[str, Arrays] = ray.get(config["arrays"])
    session = RayTrainSession()
    world = ray.train.get_context().get_world_size()
    shards = {
        name: _resident(
            rank_rows(arrays[name], session.rank, world, equal=name == "train"), session.device
        )
        for name in ("train", "validation")
    }
    run_loop(settings, _ArraySession(session, shards))


def rank_rows(arrays: Arrays, rank: int, world: int, equal: bool) -> Arrays:
    """This rank's contiguous rows; ``equal``: every rank the same count (same step count)."""
    x, y = arrays
    if equal:
        per = len(y) // world
        start, stop = rank * per, (rank + 1) * per
    else:
        bounds = np.linspace(0, len(y), world + 1).astype(int)
        start, stop = int(bounds[rank]), int(bounds[rank + 1])
    return x[start:stop], y[start:stop]


class _ArraySession:
    """A Ray Train worker's session whose shards are arrays already in memory."""

    def __init__(self, inner: Any, shards: dict[str, ResidentShard]) -> None:
        self._inner = inner
        self.rank = inner.rank
        self.device = inner.device
        self._shards = shards

    def prepare_model(self, network: torch.nn.Module) -> torch.nn.Module:
        prepared: torch.nn.Module = self._inner.prepare_model(network)
        return prepared

    def get_checkpoint(self) -> Any:
        return self._inner.get_checkpoint()

    def open_shard(self, name: str, ingest: str, prefetch_batches: int) -> ResidentShard:
        return self._shards[name]

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        self._inner.report(metrics, checkpoint_dir)


def _resident(arrays: Arrays, device: torch.device) -> ResidentShard:
    x, y = arrays
    return ResidentShard(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
