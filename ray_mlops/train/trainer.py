"""Set up and run the TorchTrainer for one pipeline, and pick the best checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from ray_mlops.config import PipelineConfig
from ray_mlops.features.state import FeatureState
from ray_mlops.features.transform import encode_labels, transform_features
from ray_mlops.models.mlp import ModelSpec, build_mlp
from ray_mlops.train.loop import CHECKPOINT_WEIGHTS, train_loop_per_worker

if TYPE_CHECKING:
    import ray.data

SELECTION_METRIC = "val_loss"


@dataclass
class TrainingOutcome:
    """The best epoch's network and metrics."""

    network: torch.nn.Module
    spec: ModelSpec
    best_metrics: dict[str, float]
    checkpoint_path: str


def model_spec_for(cfg: PipelineConfig, state: FeatureState) -> ModelSpec:
    """The network shape that fits the encoded features and the task."""
    n_outputs = len(state.labels) if state.labels is not None else 1
    return ModelSpec(
        n_inputs=state.n_features,
        n_outputs=n_outputs,
        hidden_sizes=list(cfg.model.hidden_sizes),
        dropout=cfg.model.dropout,
    )


def to_model_batch(frame: pd.DataFrame, state: FeatureState, target: str) -> dict[str, object]:
    """Raw rows -> ``{"features": float32 (n, d), "label": (n,)}`` with the serving transform."""
    return {
        "features": transform_features(frame, state),
        "label": encode_labels(frame[target], state),
    }


def encode_split(split: ray.data.Dataset, state: FeatureState, target: str) -> ray.data.Dataset:
    """Encode a split once, materialized in the object store, so epochs re-read tensors only.

    Materializing also keeps Ray Data's transform tasks from competing with the training
    workers for CPUs during training.
    """
    return split.map_batches(
        partial(to_model_batch, state=state, target=target), batch_format="pandas"
    ).materialize()


def train_model(
    cfg: PipelineConfig,
    train: ray.data.Dataset,
    validation: ray.data.Dataset,
    state: FeatureState,
    tracking_uri: str,
    run_id: str,
    storage_path: Path,
) -> TrainingOutcome:
    """Train on ``cfg.train.num_workers`` workers; return the epoch with the lowest val loss."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    spec = model_spec_for(cfg, state)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "spec": spec.to_json(),
            "task": cfg.task,
            "epochs": cfg.train.epochs,
            "batch_size": cfg.train.batch_size,
            "learning_rate": cfg.train.learning_rate,
            "weight_decay": cfg.train.weight_decay,
            "seed": cfg.train.seed,
            "tracking_uri": tracking_uri,
            "run_id": run_id,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=f"{cfg.name}-{run_id}",
            storage_path=str(storage_path.resolve()),
            checkpoint_config=CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=SELECTION_METRIC,
                checkpoint_score_order="min",
            ),
        ),
        datasets={
            "train": encode_split(train, state, cfg.data.target),
            "validation": encode_split(validation, state, cfg.data.target),
        },
    )
    result = trainer.fit()
    best_checkpoint, best_metrics = min(
        result.best_checkpoints or [], key=lambda pair: pair[1][SELECTION_METRIC]
    )
    network = build_mlp(spec)
    with best_checkpoint.as_directory() as directory:
        weights = torch.load(
            Path(directory) / CHECKPOINT_WEIGHTS, map_location="cpu", weights_only=True
        )
    network.load_state_dict(weights)
    return TrainingOutcome(
        network=network.eval(),
        spec=spec,
        best_metrics={k: float(v) for k, v in best_metrics.items()},
        checkpoint_path=best_checkpoint.path,
    )
