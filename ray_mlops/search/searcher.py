"""Optuna behind Ray Tune, told how each trial really ended.

Ray's ``OptunaSearch`` tells Optuna that every trial a scheduler stopped is COMPLETE, with
its last epoch's value: TPE then ranks a configuration cut after one epoch by that early
loss against configurations trained to the end, which are not comparable (early losses
favour large learning rates). Optuna's own contract for this is a PRUNED trial: TPE ranks
pruned trials after completed ones, by how far they got and their last intermediate value.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from ray_mlops.compat.ray_tune import tell_pruned, was_told
from ray_mlops.search.pruning import was_pruned


class PruningAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that marks scheduler-stopped trials PRUNED.

    A trial that ends before ``max_epochs`` without stopping itself (``stopped_early``) was
    stopped by the scheduler: PRUNED, its epochs already reported as intermediate values.
    A trial that ends on its own is COMPLETE with its best value over epochs, the epoch
    whose checkpoint the search keeps, not merely its last.

    Its state (the best values so far included) is pickled with the searcher, so a
    resumed search goes on with it.
    """

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._best: dict[str, float] = {}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        super().on_trial_result(trial_id, result)
        value = result.get(self.metric)
        if isinstance(value, int | float):
            sign = 1.0 if self.mode == "min" else -1.0
            best = self._best.get(trial_id)
            if best is None or sign * value < sign * best:
                self._best[trial_id] = float(value)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        best = self._best.pop(trial_id, None)
        if error or not result or was_told(self, trial_id):
            super().on_trial_complete(trial_id, result, error)
            return
        if was_pruned(result, self._max_epochs):
            tell_pruned(self, trial_id)
            return
        if best is not None:
            result = {**result, self.metric: best}
        super().on_trial_complete(trial_id, result, error)
