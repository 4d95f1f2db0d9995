"""What a training checkpoint holds, and how it is written and read back.

A checkpoint directory is a complete predictor directory (weights, model spec, feature
state: :class:`ray_mlops.models.predictor.TabularPredictor` loads it as is) plus
``training_state.pt``: optimizer, LR scheduler, epoch, step and early-stopping state, so a
restarted worker group or ``--resume`` continues exactly where the last epoch ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ray_mlops.models.predictor import FEATURES_FILE, SPEC_FILE, WEIGHTS_FILE

TRAINING_STATE_FILE = "training_state.pt"


@dataclass
class Progress:
    """Where training stands after an epoch."""

    epoch: int
    global_step: int
    early_stopping: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    # Rank 0's metric steps not yet in MLflow when the checkpoint was written (metrics,
    # step, timestamp in ms): a restart replays them, so no epoch goes missing from the run.
    unlogged_metrics: list[tuple[dict[str, float], int, int]] = field(default_factory=list)


def write_checkpoint(
    directory: Path,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    spec_json: str,
    feature_state_json: str,
) -> None:
    """Write every file of a checkpoint into ``directory``."""
    torch.save(network.state_dict(), directory / WEIGHTS_FILE)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "progress": progress.__dict__,
        },
        directory / TRAINING_STATE_FILE,
    )
    (directory / SPEC_FILE).write_text(spec_json)
    (directory / FEATURES_FILE).write_text(feature_state_json)


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The network's state dict, on the CPU."""
    weights: dict[str, torch.Tensor] = torch.load(
        directory / WEIGHTS_FILE, map_location="cpu", weights_only=True
    )
    return weights


def restore_checkpoint(
    directory: Path,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> Progress:
    """Load weights, optimizer and scheduler state in place; return the saved progress."""
    network.load_state_dict(read_weights(directory))
    state = torch.load(directory / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return Progress(**state["progress"])
