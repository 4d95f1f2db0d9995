"""The per-worker training loop that Ray Train runs on every worker."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ray_mlops.models.mlp import ModelSpec, build_mlp

CHECKPOINT_WEIGHTS = "model.pt"
CHECKPOINT_TRAINING_STATE = "training_state.pt"


def _reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over all workers (identity when training alone)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def _loss_fn(task: str) -> nn.Module:
    return (
        nn.CrossEntropyLoss(reduction="sum")
        if task == "classification"
        else nn.MSELoss(reduction="sum")
    )


def _targets(batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
    return batch["label"].long() if task == "classification" else batch["label"].float()


def _outputs(model: nn.Module, features: torch.Tensor, task: str) -> torch.Tensor:
    out = model(features)
    return out if task == "classification" else out[:, 0]


def evaluate_shard(
    model: nn.Module, shard: Any, task: str, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Loss (and accuracy) over this worker's validation shard, summed over all workers."""
    loss_fn = _loss_fn(task)
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    with torch.inference_mode():
        for batch in shard.iter_torch_batches(batch_size=batch_size, device=device):
            targets = _targets(batch, task)
            outputs = _outputs(model, batch["features"].float(), task)
            loss_sum += float(loss_fn(outputs.float(), targets))
            if task == "classification":
                correct += float((outputs.argmax(dim=1) == targets).sum())
            count += len(targets)
    loss_sum, correct, count = _reduce_sums([loss_sum, correct, count], device)
    metrics = {"val_loss": loss_sum / max(count, 1.0)}
    if task == "classification":
        metrics["val_accuracy"] = correct / max(count, 1.0)
    return metrics


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Train for ``config["epochs"]`` epochs, validating and checkpointing after each.

    Rank 0 logs each epoch's metrics to the MLflow run ``config["run_id"]`` in one batched
    call, and saves the checkpoint; every worker reports so Ray Train can synchronise.
    """
    import ray.train
    import ray.train.torch
    from mlflow.tracking import MlflowClient

    from ray_mlops.tracking import log_metrics

    torch.manual_seed(config["seed"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    task = config["task"]
    spec = ModelSpec.from_json(config["spec"])
    model = ray.train.torch.prepare_model(build_mlp(spec))
    device = ray.train.torch.get_device()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"]
    )
    loss_fn = _loss_fn(task)
    train_shard = ray.train.get_dataset_shard("train")
    validation_shard = ray.train.get_dataset_shard("validation")
    client = MlflowClient(config["tracking_uri"]) if rank == 0 else None
    use_bf16 = device.type == "cuda"

    for epoch in range(config["epochs"]):
        model.train()
        loss_sum, count = 0.0, 0.0
        batches = train_shard.iter_torch_batches(
            batch_size=config["batch_size"],
            device=device,
            local_shuffle_buffer_size=4 * config["batch_size"],
            local_shuffle_seed=config["seed"] * 10_007 + epoch,
        )
        for batch in batches:
            targets = _targets(batch, task)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                outputs = _outputs(model, batch["features"].float(), task)
            loss = loss_fn(outputs.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(targets)).backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            count += len(targets)
        loss_sum, count = _reduce_sums([loss_sum, count], device)
        metrics = {"epoch": epoch, "train_loss": loss_sum / max(count, 1.0)}
        metrics |= evaluate_shard(model, validation_shard, task, config["batch_size"], device)
        if client is not None:
            log_metrics(client, config["run_id"], metrics, step=epoch)
        _report(metrics, model, optimizer, epoch, write_checkpoint=rank == 0)


def _report(
    metrics: dict[str, float],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    write_checkpoint: bool,
) -> None:
    import ray.train

    if not write_checkpoint:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        network: nn.Module = getattr(model, "module", model)  # unwrap DDP
        torch.save(network.state_dict(), Path(tmp) / CHECKPOINT_WEIGHTS)
        torch.save(
            {"optimizer": optimizer.state_dict(), "epoch": epoch},
            Path(tmp) / CHECKPOINT_TRAINING_STATE,
        )
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
