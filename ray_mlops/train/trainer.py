"""Set up and run the TorchTrainer for one pipeline, and pick the best checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ray_mlops.config import SELECTION_METRICS, PipelineConfig
from ray_mlops.features.state import FeatureState
from ray_mlops.models.factory import build_model
from ray_mlops.models.spec import ModelSpec
from ray_mlops.settings_env import apply_train
from ray_mlops.storage import location_of, ray_storage
from ray_mlops.train.checkpoint import read_weights
from ray_mlops.train.encode import encode_split, rank_shards, shard_name
from ray_mlops.train.loop import RESIDENT, LoopSettings, train_loop_per_worker
from ray_mlops.train.session import WORKER_NODES

if TYPE_CHECKING:
    import ray.data
    from ray.train.torch import TorchTrainer

STREAM = "stream"


@dataclass
class TrainingOutcome:
    """The best epoch's network and metrics, and how the run went."""

    network: torch.nn.Module
    spec: ModelSpec
    best_metrics: dict[str, float]
    last_metrics: dict[str, float]
    checkpoint_path: str
    ingest: str
    epochs_run: int
    stopped_early: bool
    restarts: int
    worker_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingSummary:
    """A finished training run, as ``PipelineResult.training`` carries it.

    Attributes:
        best_epoch: The best epoch by the selection metric, counted from 1.
        epochs_run: Epochs trained.
        stopped_early: Whether early stopping ended the run.
        restarts: Worker-group restarts from a checkpoint after failures.
        ingest: ``resident`` or ``stream``.
        checkpoint: Path of the best checkpoint.
    """

    best_epoch: int
    epochs_run: int
    stopped_early: bool
    restarts: int
    ingest: str
    checkpoint: str

    @classmethod
    def of(cls, outcome: TrainingOutcome) -> TrainingSummary:
        """The summary of ``outcome``."""
        return cls(
            best_epoch=int(outcome.best_metrics.get("epoch", -1)) + 1,
            epochs_run=outcome.epochs_run,
            stopped_early=outcome.stopped_early,
            restarts=outcome.restarts,
            ingest=outcome.ingest,
            checkpoint=outcome.checkpoint_path,
        )


def choose_ingest(cfg: PipelineConfig, encoded_train_bytes: int) -> str:
    """``resident`` when each worker's share of the encoded train split fits the limit."""
    if cfg.train.ingest != "auto":
        return cfg.train.ingest
    per_worker_mib = encoded_train_bytes / cfg.train.num_workers / 2**20
    return RESIDENT if per_worker_mib <= cfg.train.resident_max_mib else STREAM


def build_torch_trainer(
    cfg: PipelineConfig,
    loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    *,
    name: str,
    storage_path: str,
    datasets: dict[str, ray.data.Dataset | Callable[[], ray.data.Dataset]] | None = None,
    datasets_to_split: list[str] | None = None,
    callbacks: list[Any] | None = None,
) -> TorchTrainer:
    """The ``TorchTrainer`` of a training run and of a multi-worker search trial.

    ``cfg.train`` gives the workers, their resources and the restarts allowed; the best
    checkpoint by the selection metric is kept (Ray Train also keeps the latest, to resume
    from). A run ``name`` that already has checkpoints under ``storage_path`` continues from
    the latest one.

    Args:
        cfg: The pipeline config (its ``train`` section and task).
        loop: The function each worker runs, given ``loop_config``.
        loop_config: The loop's settings (plain, picklable values).
        name: The Train run's name (the training run's, or the Tune trial's id).
        storage_path: Where Ray Train writes checkpoints.
        datasets: Ray datasets handed to the workers; ``None`` when the loop brings its own.
        datasets_to_split: Which of ``datasets`` Ray shards across workers; ``None``: Ray's
            default.
        callbacks: Train callbacks (a search trial's ``TuneReportCallback``).
    """
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    train_cfg = cfg.train
    metric = train_cfg.selection_metric
    resources = {"CPU": train_cfg.cpus_per_worker}
    path, filesystem = ray_storage(storage_path)
    if train_cfg.use_gpu:
        resources["GPU"] = train_cfg.gpus_per_worker
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=train_cfg.num_workers,
            use_gpu=train_cfg.use_gpu,
            resources_per_worker=resources,
            placement_strategy=train_cfg.placement_strategy,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=path,
            storage_filesystem=filesystem,
            callbacks=callbacks,
            checkpoint_config=CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=metric,
                checkpoint_score_order=SELECTION_METRICS[cfg.task][metric],
            ),
            failure_config=FailureConfig(max_failures=train_cfg.max_failures),
        ),
        datasets=datasets,
        dataset_config=None
        if datasets_to_split is None
        else DataConfig(datasets_to_split=datasets_to_split),
    )


def train_model(
    cfg: PipelineConfig,
    train: ray.data.Dataset,
    validation: ray.data.Dataset,
    state: FeatureState,
    spec: ModelSpec,
    storage_path: str,
    run_name: str,
    tracking_uri: str | None = None,
    run_id: str | None = None,
) -> TrainingOutcome:
    """Train on ``cfg.train.num_workers`` workers; return the best epoch by the selection metric.

    A run whose ``run_name`` already has checkpoints under ``storage_path`` continues from
    the latest one (this is how ``--resume`` works); worker failures restart the worker
    group from the latest checkpoint up to ``train.max_failures`` times.
    """
    return train_encoded(
        cfg,
        encode_split(train, state, cfg.data.target),
        encode_split(validation, state, cfg.data.target),
        spec,
        state,
        storage_path,
        run_name,
        tracking_uri,
        run_id,
    )


def train_encoded(
    cfg: PipelineConfig,
    encoded_train: ray.data.Dataset,
    encoded_validation: ray.data.Dataset,
    spec: ModelSpec,
    state: FeatureState,
    storage_path: str,
    run_name: str,
    tracking_uri: str | None = None,
    run_id: str | None = None,
) -> TrainingOutcome:
    """:func:`train_model` on splits already encoded by
    :func:`ray_mlops.train.encode.encode_split` (or built with the same ``features``,
    ``label`` and ``row_key`` columns, as the benchmarks do)."""
    train_cfg = cfg.train
    ingest = choose_ingest(cfg, encoded_train.size_bytes())
    rows_per_worker = encoded_train.count() // train_cfg.num_workers
    settings = LoopSettings(
        train=train_cfg,
        spec_json=spec.to_json(),
        feature_state_json=state.to_json(),
        task=cfg.task,
        ingest=ingest,
        train_rows_per_worker=rows_per_worker,
        target_scale=state.target_scale,
        tracking_uri=tracking_uri,
        run_id=run_id,
        tracking=cfg.tracking,
    )
    if ingest == RESIDENT:
        # Fixed row ranges per rank, handed to each worker whole (nothing for Ray to split).
        datasets: dict[str, ray.data.Dataset | Callable[[], ray.data.Dataset]] = {}
        for split, dataset in (("train", encoded_train), ("validation", encoded_validation)):
            shards = rank_shards(dataset, train_cfg.num_workers, equal=split == "train")
            datasets |= {shard_name(split, rank): shard for rank, shard in enumerate(shards)}
        split_by_ray: list[str] = []
    else:
        datasets = {"train": encoded_train, "validation": encoded_validation}
        split_by_ray = ["train", "validation"]
    metric = train_cfg.selection_metric
    mode = SELECTION_METRICS[cfg.task][metric]
    apply_train()
    trainer = build_torch_trainer(
        cfg,
        train_loop_per_worker,
        settings.to_dict(),
        name=run_name,
        storage_path=storage_path,
        datasets=datasets,
        datasets_to_split=split_by_ray,
    )
    result = trainer.fit()
    reported = result.best_checkpoints or []
    if not reported:
        raise RuntimeError(f"training run {run_name} reported no checkpoint")
    sign = 1.0 if mode == "min" else -1.0
    best_checkpoint, best_metrics = min(
        reported, key=lambda pair: (sign * pair[1][metric], pair[1]["epoch"])
    )
    network = build_model(spec)
    with best_checkpoint.as_directory() as directory:
        network.load_state_dict(read_weights(Path(directory)))
    last = {k: float(v) for k, v in (result.metrics or {}).items() if is_finite_number(v)}
    return TrainingOutcome(
        network=network.eval(),
        spec=spec,
        best_metrics={k: float(v) for k, v in best_metrics.items() if is_finite_number(v)},
        last_metrics=last,
        checkpoint_path=location_of(best_checkpoint.filesystem, best_checkpoint.path),
        ingest=ingest,
        epochs_run=int(last.get("epoch", -1)) + 1,
        stopped_early=bool(last.get("stopped_early", 0.0)),
        restarts=int(last.get("restarts", 0)),
        worker_nodes=tuple(
            node for node in str((result.metrics or {}).get(WORKER_NODES, "")).split(",") if node
        ),
    )


def is_finite_number(value: object) -> bool:
    """Whether a reported metric ``value`` is a finite int or float (not NaN, not a string)."""
    return isinstance(value, int | float) and math.isfinite(float(value))
