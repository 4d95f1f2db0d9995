"""How a trial ended: the one rule the leaderboard and Optuna's searcher both go by."""

from __future__ import annotations

from typing import Any


def was_pruned(last_result: dict[str, Any], max_epochs: int) -> bool:
    """Whether a trial that ended with this result was stopped by the scheduler.

    It ended before the epoch budget without stopping itself (its own early stopping).
    The leaderboard (:mod:`ray_mlops.search.tuner`) and Optuna
    (:mod:`ray_mlops.search.searcher`) both go by this.
    """
    epochs = int(last_result.get("training_iteration", 0) or 0)
    return epochs < max_epochs and not last_result.get("stopped_early")
