"""The per-worker training loop that Ray Train runs on every worker.

Reproducible by construction: weights start from ``seed``; each epoch reseeds dropout from
(seed, epoch, rank) and shuffles the resident shard from (seed, epoch, rank), so a run
restored from the checkpoint of epoch ``k`` continues exactly as an uninterrupted run
would. Per-step work stays on the device: losses accumulate in a device tensor that is
read once per ``log_every_n_steps`` steps and once per epoch.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ray_mlops.config import SELECTION_METRICS, TrackingConfig, TrainConfig
from ray_mlops.models.factory import build_model
from ray_mlops.models.heads import loss_sum, predicted_class
from ray_mlops.models.spec import ModelSpec
from ray_mlops.settings_env import apply_tracking
from ray_mlops.train.checkpoint import Progress, restore_checkpoint, write_checkpoint
from ray_mlops.train.ingest import Shard
from ray_mlops.train.metric_log import MetricLogger
from ray_mlops.train.optim import EarlyStopping, build_optimizer, build_scheduler
from ray_mlops.train.session import RESIDENT as RESIDENT  # re-exported: the ingest names live there
from ray_mlops.train.session import LoopSession


@dataclass(frozen=True)
class LoopSettings:
    """What the driver sends each worker (plain JSON-able values)."""

    train: TrainConfig
    spec_json: str
    feature_state_json: str
    task: str
    ingest: str
    train_rows_per_worker: int
    target_scale: float
    tracking_uri: str | None
    run_id: str | None
    # How rank 0 waits for a tracking server that does not answer; applied in the worker,
    # which may run on another node than the driver that read the config.
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        """The ``train_loop_config`` of the trainer."""
        return {
            **self.__dict__,
            "train": self.train.model_dump(mode="json"),
            "tracking": self.tracking.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> LoopSettings:
        """Inverse of :meth:`to_dict`."""
        return cls(
            **{
                **config,
                "train": TrainConfig.model_validate(config["train"]),
                "tracking": TrackingConfig.model_validate(config.get("tracking", {})),
            }
        )

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch on every worker (equal shards, same count)."""
        return max(math.ceil(self.train_rows_per_worker / self.train.batch_size), 1)


def _reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over all workers (identity when training alone)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def evaluate_shard(
    model: torch.nn.Module,
    shard: Shard,
    spec: ModelSpec,
    batch_size: int,
    device: torch.device,
    target_scale: float,
) -> dict[str, float]:
    """Validation metrics over every worker's shard: summed, then divided once.

    Classification: ``val_loss`` (mean cross-entropy) and ``val_accuracy``. Regression:
    ``val_loss`` (mean squared error of the standardised target) and ``val_rmse`` and
    ``val_mae`` in the target's units.
    """
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct or |error|, n
    with torch.inference_mode():
        for features, labels in shard.batches(batch_size, shuffle_seed=None):
            outputs = model(features)
            sums[0] += loss_sum(outputs, labels, spec.head).double()
            if spec.head == "regression":
                sums[1] += (outputs[:, 0].double() - labels.double()).abs().sum()
            else:
                sums[1] += (predicted_class(outputs, spec.head) == labels.long()).sum()
            sums[2] += len(labels)
    loss, second, count = _reduce_sums(sums.tolist(), device)
    count = max(count, 1.0)
    if spec.head == "regression":
        return {
            "val_loss": loss / count,
            "val_rmse": math.sqrt(loss / count) * target_scale,
            "val_mae": second / count * target_scale,
        }
    return {"val_loss": loss / count, "val_accuracy": second / count}


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's entry point on every worker: :func:`run_loop` in a Ray Train session.

    Resumes from ``ray.train.get_checkpoint()`` when Ray Train restarts the worker group
    after a failure, or when a run with the same name and storage is started again.
    """
    from ray_mlops.train.session import RayTrainSession

    run_loop(LoopSettings.from_dict(config), RayTrainSession())


def run_loop(settings: LoopSettings, session: LoopSession) -> None:
    """Train until the last epoch or early stopping; validate and checkpoint every epoch.

    ``session`` says where this runs (a Ray Train worker or a Ray Tune trial): rank, device,
    data, the checkpoint to resume from, and where each epoch is reported.
    """
    train = settings.train
    rank = session.rank
    device = session.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:  # as many compute threads as CPUs reserved, whatever the process inherited
        torch.set_num_threads(max(1, round(train.cpus_per_worker)))

    spec = ModelSpec.from_json(settings.spec_json)
    torch.manual_seed(train.seed)
    network = build_model(spec)
    model = session.prepare_model(network)
    optimizer = build_optimizer(model.parameters(), train, device)
    scheduler = build_scheduler(optimizer, train, settings.steps_per_epoch)
    mode = SELECTION_METRICS[settings.task][train.selection_metric]
    stopper = EarlyStopping(mode, train.early_stopping.patience, train.early_stopping.min_delta)
    progress = Progress(epoch=-1, global_step=0)

    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = restore_checkpoint(Path(directory), network, optimizer, scheduler)
        stopper.load_state_dict(progress.early_stopping)
        progress.restarts += 1

    train_shard = session.open_shard("train", settings.ingest, train.prefetch_batches)
    validation_shard = session.open_shard("validation", settings.ingest, train.prefetch_batches)
    # Rank 0 logs, when there is a run: search trials have none (their driver logs them).
    tracked = rank == 0 and settings.tracking_uri and settings.run_id
    if tracked:
        apply_tracking(settings.tracking)
    # What an earlier attempt stored after its last checkpoint (or before any, when it died
    # first) is trained again, and must not be logged a second time: with new timestamps,
    # the store would keep both. The logger reads how far the run got (stored_step).
    logger = (
        MetricLogger(settings.tracking_uri, settings.run_id, read_stored=_STORED_KEYS)
        if tracked
        else None
    )
    if logger is not None and checkpoint is not None:
        logger.replay(progress.unlogged_metrics)
        # Step = the epoch training continues with, like the per-epoch metrics.
        logger.log({"resumed_from_epoch": progress.epoch}, progress.epoch + 1)
    autocast = _autocast_dtype(train.precision, device)

    for epoch in range(progress.epoch + 1, train.epochs):
        started = time.perf_counter()
        torch.manual_seed(_epoch_seed(train.seed, epoch, rank))
        model.train()
        loss_total = torch.zeros((), dtype=torch.float64, device=device)
        window = torch.zeros((), dtype=torch.float64, device=device)
        rows, window_rows = 0, 0
        for features, labels in train_shard.batches(
            train.batch_size, shuffle_seed=_epoch_seed(train.seed, epoch, rank)
        ):
            with torch.autocast(
                device.type, dtype=autocast or torch.float32, enabled=autocast is not None
            ):
                outputs = model(features)
            loss = loss_sum(outputs, labels, spec.head)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(labels)).backward()
            if train.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            progress.global_step += 1
            detached = loss.detach().double()
            loss_total += detached
            window += detached
            rows += len(labels)
            window_rows += len(labels)
            if (
                logger is not None
                and train.log_every_n_steps
                and progress.global_step % train.log_every_n_steps == 0
                and progress.global_step > logger.stored_step("train_loss_step")
            ):
                logger.log(
                    {
                        "train_loss_step": float(window) / max(window_rows, 1),
                        "learning_rate": float(scheduler.get_last_lr()[0]),
                    },
                    progress.global_step,
                )
                window.zero_()
                window_rows = 0
        epoch_loss = float(loss_total)  # waits for the device: the epoch's time is all in
        train_seconds = time.perf_counter() - started
        loss_sum_all, rows_all = _reduce_sums([epoch_loss, float(rows)], device)
        metrics: dict[str, float] = {
            "epoch": epoch,
            "train_loss": loss_sum_all / max(rows_all, 1.0),
            "samples_per_s": rows_all / max(train_seconds, 1e-9),
            "epoch_seconds": train_seconds,
        }
        metrics |= evaluate_shard(
            model, validation_shard, spec, train.batch_size, device, settings.target_scale
        )
        stop = stopper.update(metrics[train.selection_metric])
        progress.epoch = epoch
        progress.early_stopping = stopper.state_dict()
        metrics["stopped_early"] = float(stop and epoch < train.epochs - 1)
        metrics["restarts"] = progress.restarts
        if logger is not None:
            if epoch > logger.stored_step("epoch"):
                logger.log(metrics, epoch)
            metrics["logging_seconds"] = logger.seconds
            progress.unlogged_metrics = logger.unwritten()
        _report(session, metrics, network, optimizer, scheduler, progress, settings)
        if logger is not None:
            # A writer that gave up ends the attempt here, where the checkpoint just made
            # holds every step not stored: a restart from it replays them, none twice.
            logger.raise_if_failed()
        if stop:
            break
    if logger is not None:
        logger.flush()


# The per-epoch and per-step keys whose stored steps a (re)started rank 0 skips.
_STORED_KEYS = ("epoch", "train_loss_step")


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """One seed per (run seed, epoch, worker): resuming at any epoch replays the same stream."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2**63)


def _report(
    session: LoopSession,
    metrics: dict[str, float],
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    settings: LoopSettings,
) -> None:
    """Report the epoch; rank 0 attaches the checkpoint (the weights are in sync)."""
    if session.rank != 0:
        session.report(metrics, None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_checkpoint(
            Path(tmp),
            network,
            optimizer,
            scheduler,
            progress,
            settings.spec_json,
            settings.feature_state_json,
        )
        session.report(metrics, Path(tmp))
