"""Which trial checkpoints a search keeps, and when the others go.

Tune's ``CheckpointConfig(num_to_keep=...)`` deletes a trial's older checkpoints as soon as
a newer one arrives, while the experiment state that Tune saved up to a second earlier may
still name one of them as the trial's latest: a search killed in that window cannot resume
that trial ("checkpoint does not exist on storage anymore"). So Tune keeps every
checkpoint, and :class:`CheckpointPruner` deletes all but a trial's best once the trial has
ended and Tune has certainly saved it as ended (``PRUNE_AFTER_S`` later, or at the end of
the search). A running trial holds at most one checkpoint per epoch; an ended one, one.
Trials that failed keep theirs: ``--resume`` restarts them from their latest.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ray.tune import Callback

# Several of Tune's experiment-state saves (TUNE_GLOBAL_CHECKPOINT_S, 1 s in a search).
PRUNE_AFTER_S = 10.0


class CheckpointPruner(Callback):
    """Delete every checkpoint of an ended trial except its best (Tune's score order)."""

    def __init__(self) -> None:
        self._ended: dict[str, tuple[float, Any]] = {}  # trial id -> (ended at, trial)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the experiment state: trials still to prune stay behind.
        return {"_ended": {}}

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended[str(trial.trial_id)] = (time.monotonic(), trial)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        for trial_id, (ended, trial) in list(self._ended.items()):
            if now - ended >= PRUNE_AFTER_S:
                prune_to_best(trial)
                del self._ended[trial_id]

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for _, trial in self._ended.values():
            prune_to_best(trial)
        self._ended.clear()


def prune_to_best(trial: Any) -> None:
    """Delete the trial's checkpoints other than its best."""
    manager = trial.run_metadata.checkpoint_manager
    best = manager.best_checkpoint_result
    for result in manager.best_checkpoint_results:  # all of them: num_to_keep is None
        if result is best or result.checkpoint is None:
            continue
        checkpoint = result.checkpoint
        with contextlib.suppress(FileNotFoundError, OSError):
            checkpoint.filesystem.delete_dir(checkpoint.path)
