"""The ``monitor:`` config section: defaults, durations, limits and the names it shares with
the monitor's modules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ray_mlops.config import (
    DRIFT_DISTANCES,
    MONITOR_SIGNALS,
    PipelineConfig,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from ray_mlops.data import drift
from ray_mlops.errors import ConfigError
from ray_mlops.monitor import result

ROOT = Path(__file__).resolve().parents[2]
MINIMAL: dict[str, Any] = {
    "name": "demo",
    "data": {"path": "x.csv", "target": "y", "numeric": ["a"]},
}


def _with_monitor(monitor: dict[str, Any]) -> dict[str, Any]:
    return {**MINIMAL, "monitor": monitor}


def _problems(monitor: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(_with_monitor(monitor), origin="p.yaml")
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_names_shared_with_the_monitor_modules_stay_equal() -> None:
    # config.py may not import the monitor (import layers), so it spells the names itself.
    assert DRIFT_DISTANCES == drift.DISTANCE_NAMES
    assert MONITOR_SIGNALS == result.SIGNALS


def test_every_config_of_the_repository_stays_valid_with_the_defaults() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        monitor = load_config(path).pipeline.monitor
        assert monitor.window == timedelta(hours=1), path
        assert monitor.retrain.enabled is False, path


def test_defaults_are_the_documented_ones() -> None:
    cfg = parse_config(MINIMAL)
    monitor = cfg.monitor
    assert monitor.window == timedelta(hours=1)
    assert monitor.alpha == 0.05
    assert monitor.min_distance == {"wasserstein_normalised": 0.1, "jensen_shannon": 0.1}
    assert (monitor.min_rows, monitor.sample_rows, monitor.reference_rows) == (200, 100_000, 20_000)
    assert monitor.labels_path == "labels"
    assert monitor.minimums == {} and monitor.maximums == {}
    assert monitor.metrics_port is None
    assert monitor.retrain.on == ["drift", "estimated", "realised"]
    assert monitor.retrain.min_labelled_rows == 500
    assert monitor.retrain.cooldown == timedelta(hours=24)
    assert cfg.monitoring_experiment_name == "demo-monitoring"


def test_monitoring_experiment_follows_the_tracking_experiment_unless_set() -> None:
    tracked = parse_config({**MINIMAL, "tracking": {"experiment": "income"}})
    assert tracked.monitoring_experiment_name == "income-monitoring"
    named = parse_config(_with_monitor({"experiment": "watch"}))
    assert named.monitoring_experiment_name == "watch"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        (" 15 m ", timedelta(minutes=15)),
    ],
)
def test_durations_parse_in_each_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_config(_with_monitor({"window": text})).monitor.window == expected


@pytest.mark.parametrize("text", ["1x", "1.5h", "-5m", "h", "", "1 hour", "PT1H"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="90s, 5m, 1h or 2d"):
        parse_duration(text)


def test_bad_durations_name_the_key_and_the_value() -> None:
    message = _problems({"window": "1w", "retrain": {"cooldown": "0h"}})
    assert "monitor.window: " in message and "given: '1w'" in message
    assert "monitor.retrain.cooldown: " in message and "longer than zero" in message
    # A bare number is ambiguous (seconds? minutes?): it needs its unit.
    assert "given: 60" in _problems({"window": 60})


def test_durations_write_back_in_their_largest_whole_unit() -> None:
    assert [format_duration(parse_duration(t)) for t in ("90s", "120s", "90m", "48h")] == [
        "90s",
        "2m",
        "90m",
        "2d",
    ]
    cfg = parse_config(_with_monitor({"window": "30m", "retrain": {"cooldown": "36h"}}))
    dumped = cfg.model_dump(mode="json")["monitor"]
    assert (dumped["window"], dumped["retrain"]["cooldown"]) == ("30m", "36h")
    # The dumped config reads back as the same config (search.space relies on it).
    again = PipelineConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg and again.config_hash() == cfg.config_hash()


def test_a_timedelta_given_in_python_is_accepted_only_in_whole_seconds() -> None:
    cfg = PipelineConfig.model_validate(_with_monitor({"window": timedelta(minutes=10)}))
    assert cfg.model_dump(mode="json")["monitor"]["window"] == "10m"
    with pytest.raises(ValueError, match="whole number of seconds"):
        PipelineConfig.model_validate(_with_monitor({"window": timedelta(milliseconds=1500)}))


def test_search_space_can_vary_the_window() -> None:
    cfg = parse_config(
        {**MINIMAL, "search": {"space": {"monitor.window": {"choice": ["1h", "2h"]}}}}
    )
    assert cfg.monitor.window == timedelta(hours=1)
    space = {"monitor.window": {"choice": ["1h", "soon"]}}
    with pytest.raises(ConfigError, match=r"search\.space\.monitor\.window: value 'soon'"):
        parse_config({**MINIMAL, "search": {"space": space}})


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1])
def test_alpha_must_lie_strictly_between_zero_and_one(alpha: float) -> None:
    assert "monitor.alpha: " in _problems({"alpha": alpha})


def test_alpha_inside_the_interval_is_kept() -> None:
    assert parse_config(_with_monitor({"alpha": 0.01})).monitor.alpha == 0.01


def test_min_distance_names_only_the_drift_distances() -> None:
    message = _problems({"min_distance": {"ks": 0.1}})
    assert "monitor.min_distance.ks" in message
    assert "'wasserstein_normalised'" in message and "'jensen_shannon'" in message
    floors = parse_config(_with_monitor({"min_distance": {"jensen_shannon": 0.2}}))
    # The given mapping replaces the default: a distance left out has no floor.
    assert floors.monitor.min_distance == {"jensen_shannon": 0.2}


@pytest.mark.parametrize("floor", [-0.1, float("nan"), float("inf")])
def test_min_distance_floors_are_finite_and_non_negative(floor: float) -> None:
    message = _problems({"min_distance": {"wasserstein_normalised": floor}})
    assert "monitor.min_distance.wasserstein_normalised: " in message


def test_the_default_floors_are_accepted_by_the_drift_decision() -> None:
    # The config's floors go straight to drift.decide, which checks them again.
    floors = parse_config(MINIMAL).monitor.min_distance
    assert drift.decide([], alpha=0.05, min_distance=floors) == []


def test_retrain_signals_are_those_of_the_window_result() -> None:
    message = _problems({"retrain": {"on": ["drift", "psi"]}})
    assert "monitor.retrain.on.1: " in message and "given: 'psi'" in message
    assert "'fairness'" in message
    assert "monitor.retrain.on: " in _problems({"retrain": {"on": []}})
    assert "lists a signal twice" in _problems({"retrain": {"on": ["drift", "drift"]}})
    every = parse_config(_with_monitor({"retrain": {"on": list(result.SIGNALS)}}))
    assert tuple(every.monitor.retrain.on) == result.SIGNALS


def test_counts_and_limits_are_range_checked() -> None:
    message = _problems(
        {
            "min_rows": 0,
            "reference_rows": 0,
            "metrics_port": 70000,
            "max_demographic_parity_difference": 1.5,
            "retrain": {"min_labelled_rows": -1},
        }
    )
    for key in (
        "monitor.min_rows",
        "monitor.reference_rows",
        "monitor.metrics_port",
        "monitor.max_demographic_parity_difference",
        "monitor.retrain.min_labelled_rows",
    ):
        assert f"{key}: " in message, key


def test_sample_must_reach_the_rows_that_make_a_window_testable() -> None:
    message = _problems({"min_rows": 500, "sample_rows": 100})
    assert "sample_rows (100) is below min_rows (500)" in message
    cfg = parse_config(_with_monitor({"min_rows": 500, "sample_rows": 500}))
    assert cfg.monitor.sample_rows == 500


def test_unknown_monitor_keys_list_the_allowed_ones() -> None:
    message = _problems({"windw": "1h", "retrain": {"cool_down": "1h"}})
    assert "monitor.windw: unknown key" in message and "window" in message
    assert "monitor.retrain.cool_down: unknown key" in message and "cooldown" in message


def test_metric_limits_are_kept_as_given() -> None:
    cfg = parse_config(
        _with_monitor({"minimums": {"accuracy": 0.8, "roc_auc": 0.85}, "maximums": {"rmse": 3}})
    )
    assert cfg.monitor.minimums == {"accuracy": 0.8, "roc_auc": 0.85}
    assert cfg.monitor.maximums == {"rmse": 3.0}
    assert "monitor.minimums.accuracy: " in _problems({"minimums": {"accuracy": "high"}})
