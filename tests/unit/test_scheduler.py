"""The early-stopping scheduler a search config asks for (ASHA rungs, brackets)."""

from __future__ import annotations

from typing import Any

import pytest

from ray_mlops.config import parse_config
from ray_mlops.errors import ConfigError
from ray_mlops.search.tuner import _scheduler

DATA = {"path": "d.csv", "target": "y", "numeric": ["a"]}
SPACE = {"train.learning_rate": {"loguniform": [1e-4, 1e-1]}}


def _config(epochs: int, **search: Any) -> Any:
    search = {"space": SPACE, "scheduler": "asha", **search}
    return parse_config({"name": "s", "data": DATA, "train": {"epochs": epochs}, "search": search})


def _asha_rungs(epochs: int, **search: Any) -> list[list[int]]:
    """Each bracket's rung milestones (epochs), first rung first."""
    scheduler = _scheduler(_config(epochs, **search))
    # Tune keeps each bracket's rungs as (milestone, recorded results), last rung first.
    return [sorted(milestone for milestone, _ in b._rungs) for b in scheduler._brackets]


def test_one_bracket_stops_trials_from_the_grace_period_on() -> None:
    assert _asha_rungs(12, grace_period=1, reduction_factor=3) == [[1, 3, 9]]


def test_a_second_bracket_gives_its_trials_a_longer_first_rung() -> None:
    rungs = _asha_rungs(12, grace_period=1, reduction_factor=3, brackets=2)
    assert rungs == [[1, 3, 9], [3, 9]]


def test_the_grace_period_is_capped_at_the_epoch_budget() -> None:
    assert _asha_rungs(2, grace_period=5, reduction_factor=3) == [[2]]


def test_brackets_below_one_fail_at_load_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"search\.brackets"):
        _asha_rungs(12, brackets=0)


def test_brackets_with_another_scheduler_fail_at_load_instead_of_being_ignored() -> None:
    with pytest.raises(ConfigError, match=r"brackets: 2 applies to scheduler: asha"):
        _config(12, scheduler="hyperband", brackets=2)
