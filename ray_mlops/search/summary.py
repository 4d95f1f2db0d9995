"""What a search run tells the end-of-run summary: trials, the best one, the leaderboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_mlops.search.tuner import SearchOutcome


@dataclass(frozen=True)
class SearchSummary:
    """A finished search, as ``PipelineResult.search`` carries it.

    Attributes:
        trials: Trials run.
        pruned: Trials the scheduler stopped.
        trial_epochs: Epochs trained over all trials.
        best_trial: Tune's id of the best trial.
        best_metric: The ranking metric and the best trial's value, e.g. ``val_loss 0.3120``.
        best_params: The best trial's values of the searched dimensions.
        leaderboard: Where the leaderboard page is (an artifact URI).
    """

    trials: int
    pruned: int
    trial_epochs: int
    best_trial: str
    best_metric: str
    best_params: dict[str, Any]
    leaderboard: str

    @classmethod
    def of(cls, outcome: SearchOutcome, metric: str, leaderboard_uri: str) -> SearchSummary:
        """The summary of ``outcome``, ranked by ``metric``, its page at ``leaderboard_uri``."""
        board = outcome.leaderboard
        return cls(
            trials=len(board),
            pruned=int((board["status"] == "pruned").sum()),
            trial_epochs=outcome.trial_epochs,
            best_trial=outcome.best_trial_id,
            best_metric=f"{metric} {outcome.best_metrics[metric]:.4f}",
            best_params=outcome.best_params,
            leaderboard=leaderboard_uri,
        )
