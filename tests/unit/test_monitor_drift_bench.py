"""What the drift benchmark decides by itself: the windows it injects, the matched cut, the data.

Ray-free and Evidently-free: ``benchmarks/monitor_drift.py`` runs both sides elsewhere; here is
how it builds the windows both sides judge, how it turns per-window scores into rates, and
that the capture files ours reads hold the same rows as the Parquet file Evidently reads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import monitor_drift as bench  # noqa: E402


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    return bench.adult_splits()


def test_reference_and_pool_do_not_share_rows(splits: dict[str, pd.DataFrame]) -> None:
    reference, pool = splits["reference"], splits["pool"]
    assert len(reference) == bench.REFERENCE_ROWS
    assert not set(reference["person_id"]) & set(pool["person_id"])


def test_each_window_carries_only_its_injected_drift(splits: dict[str, pd.DataFrame]) -> None:
    windows = bench.make_windows(splits["pool"], splits["reference"], 4, 5, 4000)
    kinds = [w["kind"] for w in windows]
    assert kinds == ["stable"] * 4 + [k for k in bench.DRIFT_KINDS for _ in range(5)]
    pool_mean = {c: splits["pool"][c].mean() for c in bench.NUMERIC}
    reference_sd = {c: np.nanstd(splits["reference"][c]) for c in bench.NUMERIC}
    for w in windows:
        frame, column = w["frame"], w["column"]
        assert len(frame) == 4000
        if w["kind"] == "numeric_mean_shift":
            shift = (frame[column].mean() - pool_mean[column]) / reference_sd[column]
            assert 0.4 < shift < 0.6, (column, shift)
        if w["kind"] == "unseen_category":
            share = (frame[column] == bench.UNSEEN).mean()
            assert 0.03 < share < 0.07, (column, share)
        if w["kind"] == "category_mix":
            second = splits["reference"][column].value_counts().index[1]
            before = (splits["pool"][column] == second).mean()
            assert (frame[column] == second).mean() > before + 0.06, column
        if w["kind"] != "unseen_category":
            for c in bench.CATEGORICAL:
                assert bench.UNSEEN not in set(frame[c])


def test_the_matched_cut_allows_at_most_the_target_share_of_false_alarms() -> None:
    windows = [{"window": i, "kind": "stable"} for i in range(40)]
    windows += [{"window": 40 + i, "kind": k} for i, k in enumerate(bench.DRIFT_KINDS)]
    judged = {i: {"score": float(i), "alarm": i >= 39} for i in range(40)}
    judged |= {40: {"score": 100.0, "alarm": True}, 41: {"score": 38.5, "alarm": False}}
    judged |= {42: {"score": 36.5, "alarm": False}}
    rates = bench.detection_rates(windows, judged, 0.05)
    # 40 stable scores 0..39: two may alarm, so the cut is the third highest, 37.
    assert rates["matched"]["score_cut"] == 37.0
    assert rates["matched"]["false_alarm_rate"] == pytest.approx(2 / 40)
    assert rates["matched"]["detected_by_kind"] == {
        "numeric_mean_shift": 1.0,
        "category_mix": 1.0,
        "unseen_category": 0.0,
    }
    assert rates["defaults"]["false_alarm_rate"] == pytest.approx(1 / 40)
    assert rates["defaults"]["detected"] == pytest.approx(1 / 3)


def test_the_capture_holds_the_rows_of_the_plain_file(tmp_path: Path) -> None:
    from ray_mlops.serve.capture import CAPTURE_SCHEMA

    paths = bench.ensure_current(1200, home=tmp_path)
    plain = pd.read_parquet(paths["plain"])
    files = sorted(paths["capture"].glob("date=*/*.parquet"))
    capture = pq.read_table(files[0])
    assert capture.schema.equals(CAPTURE_SCHEMA)
    decoded = pd.DataFrame([json.loads(t) for t in capture.column("features").to_pylist()])
    assert len(decoded) == len(plain) == 1200
    for column in [*bench.NUMERIC, *bench.CATEGORICAL]:
        assert decoded[column].fillna("-").astype(str).tolist() == (
            plain[column].fillna("-").astype(str).tolist()
        ), column
    times = capture.column("time").to_pandas()
    assert times.min() >= pd.Timestamp(bench.DAY)
    assert times.max() < pd.Timestamp(bench.DAY) + pd.Timedelta(days=1)
