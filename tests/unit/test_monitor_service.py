"""The monitor's plain parts: windows of a range, MLflow metrics of a result, --since/--until."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ray_mlops.data.drift import categorical_drift, decide, numeric_drift
from ray_mlops.errors import ConfigError, DataError
from ray_mlops.monitor.result import Breach, WindowResult
from ray_mlops.monitor.service import window_metrics, windows
from ray_mlops.monitor_cli import parse_moment

T0 = datetime(2026, 12, 5, 10, tzinfo=timezone.utc)


def test_a_range_is_cut_into_windows_with_a_shorter_last_one() -> None:
    found = list(windows(T0, T0 + timedelta(minutes=150), timedelta(hours=1)))
    assert found == [
        (T0, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
        (T0 + timedelta(hours=2), T0 + timedelta(minutes=150)),
    ]
    assert list(windows(T0, T0, timedelta(hours=1))) == []
    with pytest.raises(DataError):
        list(windows(T0, T0 + timedelta(hours=1), timedelta(0)))


def test_window_metrics_name_each_column_and_leave_out_what_was_not_measured() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    columns = decide(
        [
            numeric_drift("age", rng.normal(0, 1, 2000), rng.normal(1, 1, 2000)),
            categorical_drift("job", {"a": 50, "b": 50}, []),  # empty: untested
        ],
        alpha=0.05,
    )
    result = WindowResult(
        "m", ("3",), T0, T0 + timedelta(hours=1), 2000, 10, True, tuple(columns),
        breaches=(Breach("drift", "age", 1.0, None, "age drifted"),),
    )  # fmt: skip
    metrics = window_metrics(result)
    assert metrics["rows"] == 2000 and metrics["labelled_rows"] == 10 and metrics["breaches"] == 1
    assert metrics["drift_share"] == 1.0  # the untested column does not count
    assert metrics["drift.age.wasserstein_normalised"] > 0.5
    assert not any(k.startswith("drift.job.") and k.endswith("adjusted_p") for k in metrics)


def test_since_and_until_take_a_time_or_a_duration_ago() -> None:
    now = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)
    assert parse_moment("2h", now) == now - timedelta(hours=2)
    assert parse_moment("2026-12-05T10:30", now) == datetime(
        2026, 12, 5, 10, 30, tzinfo=timezone.utc
    )
    offset = parse_moment("2026-12-05T10:30+01:00", now)
    assert offset.utcoffset() == timedelta(hours=1)
    with pytest.raises(ConfigError, match="neither a time"):
        parse_moment("yesterday", now)


def test_the_default_window_is_the_last_whole_one_aligned_to_the_clock() -> None:
    from ray_mlops.monitor_cli import last_window_end

    at = datetime(2026, 12, 5, 10, 5, 30, tzinfo=timezone.utc)
    assert last_window_end(at, timedelta(hours=1)) == at.replace(minute=0, second=0)
    assert last_window_end(at, timedelta(minutes=5)) == at.replace(second=0)
    assert last_window_end(at, timedelta(days=1)) == at.replace(hour=0, minute=0, second=0)
    # A run that starts late still judges the same window.
    late = at.replace(minute=40)
    assert last_window_end(late, timedelta(hours=1)) == last_window_end(at, timedelta(hours=1))
