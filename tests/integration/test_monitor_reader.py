"""Windows of real captured traffic read back with Ray Data (real TrafficCapture files)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from ray_mlops.monitor.reader import partition_days, read_window, read_windows
from ray_mlops.serve.capture import TrafficCapture

LABELS = ["<=50K", ">50K"]
DAY = datetime(2026, 12, 5, tzinfo=timezone.utc)


def _capture(folder: Path) -> None:
    """Two days of traffic: model m v1 then v2 around midnight, and another model."""
    capture = TrafficCapture(
        folder, sample_rate=1.0, max_buffer=10_000, flush_rows=500, flush_interval_s=0.2
    )
    for i in range(3000):
        when = DAY - timedelta(hours=1) + timedelta(seconds=2 * i)  # 23:00 to 00:40
        version = "1" if i < 1800 else "2"
        age = None if i % 100 == 0 else float(20 + i % 50)
        capture.offer(
            request_id=f"r{i}",
            model_name="m",
            model_version=version,
            records=[{"age": age, "job": None if i % 50 == 0 else f"j{i % 3}"}],
            predictions=[">50K" if i % 4 == 0 else "<=50K"],
            probabilities=[{"<=50K": 0.7, ">50K": 0.3}],
            latency_ms=1.0,
            time=when,
        )
        capture.offer(
            request_id=f"o{i}",
            model_name="other",
            model_version="9",
            records=[{"age": 99.0, "job": "x"}],
            predictions=["<=50K"],
            probabilities=None,
            latency_ms=1.0,
            time=when,
        )
    capture.close()
    assert capture.stats()["written"] == 6000


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("capture")
    _capture(folder)
    return folder


def test_partition_days_span_the_window() -> None:
    assert partition_days(DAY - timedelta(hours=1), DAY + timedelta(hours=1)) == [
        "date=2026-12-04",
        "date=2026-12-05",
    ]
    assert partition_days(DAY, DAY + timedelta(days=1)) == ["date=2026-12-05"]


def test_a_window_across_midnight_decodes_one_models_records(
    ray_session: None, captured: Path
) -> None:
    start, end = DAY - timedelta(minutes=30), DAY + timedelta(minutes=30)
    found = read_window(
        str(captured), "m", start, end, numeric=["age"], categorical=["job"], labels=LABELS
    )
    # Records every 2 s from 23:00: those at 23:30:00 (i=900) up to 00:29:58 (i=2699).
    assert found.rows == 1800 and len(found.frame) == 1800
    assert found.versions == ("1", "2")
    frame = found.frame.sort_values("time").reset_index(drop=True)
    assert frame["request_id"].iloc[0] == "r900" and frame["request_id"].iloc[-1] == "r2699"
    assert frame["age"].isna().sum() == 18 and frame["job"].isna().sum() == 36
    assert set(frame["job"].dropna()) == {"j0", "j1", "j2"}
    assert set(frame["prediction"]) == {">50K", "<=50K"}
    assert np.allclose(frame["probability_>50K"], 0.3)
    assert (frame["record_index"] == 0).all()


def test_a_large_window_is_sampled_reproducibly_and_counts_every_row(
    ray_session: None, captured: Path
) -> None:
    args = (str(captured), "m", DAY - timedelta(hours=2), DAY + timedelta(hours=2))
    kwargs = {"numeric": ["age"], "categorical": ["job"], "labels": LABELS, "sample_rows": 600}
    first = read_window(*args, **kwargs, seed=1)
    again = read_window(*args, **kwargs, seed=1)
    assert first.rows == 3000
    assert 450 < len(first.frame) < 750
    assert sorted(first.frame["request_id"]) == sorted(again.frame["request_id"])


def test_an_empty_window_and_a_missing_capture_give_no_rows(
    ray_session: None, captured: Path, tmp_path: Path
) -> None:
    later = DAY + timedelta(days=3)
    for location in (str(captured), str(tmp_path / "nothing")):
        found = read_window(
            location, "m", later, later + timedelta(hours=1), numeric=["age"],
            categorical=["job"], labels=LABELS,
        )  # fmt: skip
        assert found.rows == 0 and found.frame.empty and found.versions == ()
        assert {"age", "job", "prediction", "probability_>50K"} <= set(found.frame.columns)


def test_windows_read_in_one_scan_equal_windows_read_one_by_one(
    ray_session: None, captured: Path
) -> None:
    # Three 20-minute windows around midnight, a gap, then one more (across two versions).
    edges = [DAY - timedelta(minutes=40) + timedelta(minutes=20 * k) for k in range(4)]
    bounds = [
        *pairwise(edges),
        (edges[3] + timedelta(minutes=5), edges[3] + timedelta(minutes=15)),
    ]
    kwargs = {"numeric": ["age"], "categorical": ["job"], "labels": LABELS, "sample_rows": 400}
    together = read_windows(str(captured), "m", bounds, **kwargs)
    for (start, end), found in zip(bounds, together, strict=True):
        alone = read_window(str(captured), "m", start, end, **kwargs)
        assert found.rows == alone.rows and found.versions == alone.versions
        assert sorted(found.frame["request_id"]) == sorted(alone.frame["request_id"])
        assert list(found.frame.columns) == list(alone.frame.columns)
    # 600 records per 20 minutes, sampled to about 400; 300 in the 10 minutes after the gap.
    assert [w.rows for w in together] == [600, 600, 600, 300]
    assert together[1].versions == ("1",) and together[3].versions == ("2",)
    assert all(len(w.frame) < 600 for w in together[:3]) and len(together[3].frame) == 300
    with pytest.raises(ValueError, match="in order"):
        read_windows(str(captured), "m", bounds[::-1], **kwargs)
