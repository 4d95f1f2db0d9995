"""Optimizer, learning-rate schedule and early stopping, built from the train config.

Torch-only, so they are unit-tested without Ray and behave the same in every worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ray_mlops.config import ScheduleConfig, TrainConfig


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], train: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """The configured optimizer; fused CUDA kernels on GPU (one launch per step)."""
    fused = True if device.type == "cuda" else None
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=train.learning_rate,
            momentum=train.momentum,
            weight_decay=train.weight_decay,
            fused=fused,
        )
    optimizer_class = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(
        parameters, lr=train.learning_rate, weight_decay=train.weight_decay, fused=fused
    )


def lr_multiplier(
    schedule: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> Callable[[int], float]:
    """Factor of the peak learning rate at each optimizer step (for ``LambdaLR``).

    Example:
        >>> f = lr_multiplier(ScheduleConfig(name="cosine"), steps_per_epoch=10, epochs=2)
        >>> round(f(0), 3), round(f(10), 3), round(f(19), 3)
        (1.0, 0.506, 0.0)
    """
    total = max(steps_per_epoch * epochs, 1)
    warmup = round(schedule.warmup_epochs * steps_per_epoch)
    floor = schedule.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup - 1, 1), 1.0)
        if schedule.name == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if schedule.name == "linear":
            return 1.0 - (1.0 - floor) * progress
        if schedule.name == "step":
            return float(
                schedule.gamma ** ((step // max(steps_per_epoch, 1)) // schedule.step_epochs)
            )
        return 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule; its state (the step count) goes into every checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(train.schedule, steps_per_epoch, train.epochs)
    )


@dataclass
class EarlyStopping:
    """Stops when the metric has not improved by ``min_delta`` for ``patience`` epochs.

    Example:
        >>> stopper = EarlyStopping(mode="min", patience=2, min_delta=0.0)
        >>> [stopper.update(v) for v in (1.0, 0.9, 0.95, 0.91)]
        [False, False, False, True]
    """

    mode: Literal["min", "max"]
    patience: int | None
    min_delta: float
    best: float | None = None
    epochs_without_improvement: int = 0

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> bool:
        """Record one epoch's metric; return whether training should stop now."""
        if self.improved(value):
            self.best = value
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run stops at the same epoch."""
        return {"best": self.best, "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best = state["best"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
