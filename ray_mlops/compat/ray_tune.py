"""Where this package reaches into Ray Tune's ``OptunaSearch`` (pinned Ray 2.60).

``OptunaSearch`` tells Optuna that every trial ended COMPLETE; marking a scheduler-stopped
trial PRUNED (:mod:`ray_mlops.search.searcher`) needs what it keeps to itself: the study
(``_ot_study``), the Optuna trial of each Tune trial (``_ot_trials``) and the trials already
told (``_completed_trials``). ``tests/unit/test_compat.py`` fails, naming the attribute, when
an upgrade of Ray renames one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

#: The private attributes of ``OptunaSearch`` read or written here.
OPTUNA_SEARCH_ATTRIBUTES = ("_ot_study", "_ot_trials", "_completed_trials")


def optuna_study(searcher: OptunaSearch) -> optuna.Study | None:
    """The searcher's Optuna study; None until it is set up (before the first suggestion)."""
    return searcher._ot_study


def optuna_trials(searcher: OptunaSearch) -> dict[str, optuna.Trial]:
    """The Optuna trial of each Tune trial id the searcher has suggested."""
    return searcher._ot_trials


def was_told(searcher: OptunaSearch, trial_id: str) -> bool:
    """Whether the searcher already told Optuna how this trial ended."""
    return trial_id in searcher._completed_trials


def tell_pruned(searcher: OptunaSearch, trial_id: str) -> None:
    """Tell Optuna the trial was PRUNED, its reported epochs its intermediate values."""
    import optuna

    study = optuna_study(searcher)
    assert study is not None  # set up before the first trial was suggested
    study.tell(searcher._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
    searcher._completed_trials.add(trial_id)
