"""How trials that a scheduler stopped reach Optuna (PruningAwareOptunaSearch)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from ray_mlops.search.searcher import PruningAwareOptunaSearch


def _space(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-3, 1.0, log=True)


def _searcher() -> PruningAwareOptunaSearch:
    return PruningAwareOptunaSearch(
        space=_space,
        metric="val_loss",
        mode="min",
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_epochs=3,
    )


def _report(searcher: PruningAwareOptunaSearch, trial_id: str, losses: list[float]) -> dict:
    result: dict = {}
    for epoch, loss in enumerate(losses, start=1):
        result = {"val_loss": loss, "training_iteration": epoch, "stopped_early": 0.0}
        searcher.on_trial_result(trial_id, result)
    return result


def _by_trial(searcher: PruningAwareOptunaSearch) -> dict[str, optuna.trial.FrozenTrial]:
    study = searcher._ot_study
    assert study is not None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    return {tid: trials[ot.number] for tid, ot in searcher._ot_trials.items()}


def test_a_trial_trained_to_the_end_is_complete_with_its_best_epoch() -> None:
    searcher = _searcher()
    searcher.suggest("full")
    last = _report(searcher, "full", [0.5, 0.3, 0.4])
    searcher.on_trial_complete("full", last)
    trial = _by_trial(searcher)["full"]
    assert trial.state == TrialState.COMPLETE
    # The best epoch (whose checkpoint the search keeps), not the last one.
    assert trial.value == 0.3


def test_a_trial_the_scheduler_stopped_is_pruned_with_its_epochs_as_intermediate_values() -> None:
    searcher = _searcher()
    searcher.suggest("cut")
    last = _report(searcher, "cut", [0.6])
    searcher.on_trial_complete("cut", last)
    trial = _by_trial(searcher)["cut"]
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.6}


def test_a_trial_that_stopped_itself_early_is_complete_and_a_failed_one_fails() -> None:
    searcher = _searcher()
    searcher.suggest("patient")
    searcher.suggest("broken")
    _report(searcher, "patient", [0.7])
    last = {"val_loss": 0.65, "training_iteration": 2, "stopped_early": 1.0}
    searcher.on_trial_result("patient", last)
    searcher.on_trial_complete("patient", last)
    searcher.on_trial_complete("broken", error=True)
    trials = _by_trial(searcher)
    assert trials["patient"].state == TrialState.COMPLETE and trials["patient"].value == 0.65
    assert trials["broken"].state == TrialState.FAIL


def test_a_restored_searcher_keeps_the_epoch_budget_and_the_running_bests(tmp_path: Path) -> None:
    searcher = _searcher()
    searcher.suggest("running")
    _report(searcher, "running", [0.5, 0.2])
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = PruningAwareOptunaSearch(
        space=_space,
        metric="val_loss",
        mode="min",
        sampler=optuna.samplers.RandomSampler(seed=1),
        max_epochs=99,
    )
    restored.restore(str(tmp_path / "searcher.pkl"))
    last = {"val_loss": 0.4, "training_iteration": 3, "stopped_early": 0.0}
    restored.on_trial_result("running", last)
    restored.on_trial_complete("running", last)
    trial = _by_trial(restored)["running"]
    # max_epochs 3 came back with the state: 3 epochs is complete, at the best value so far.
    assert trial.state == TrialState.COMPLETE and trial.value == 0.2
