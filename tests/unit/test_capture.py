"""Traffic capture: sampling, bounded buffer, atomic Parquet files, failures that stay quiet."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ray_mlops.config import CaptureConfig
from ray_mlops.serve.capture import CAPTURE_SCHEMA, TrafficCapture, read_capture

COLUMNS = [*CAPTURE_SCHEMA.names, "date"]
WHEN = datetime(2024, 5, 17, 12, 30, 0, 123456, tzinfo=timezone.utc)


def _offer(capture: TrafficCapture, request_id: str = "r", n: int = 1, **kw: Any) -> bool:
    records = [{"age": 30 + i, "sex": "F"} for i in range(n)]
    args: dict[str, Any] = {
        "request_id": request_id,
        "model_name": "adult",
        "model_version": "3",
        "records": records,
        "predictions": [">50K"] * n,
        "probabilities": [{"<=50K": 0.25, ">50K": 0.75}] * n,
        "latency_ms": 4.5,
        "time": WHEN,
    }
    args.update(kw)
    return capture.offer(**args)


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class _SlowCapture(TrafficCapture):
    """A capture whose filesystem takes ``delay_s`` per file."""

    delay_s = 0.2

    def _write_table(self, table: pa.Table, target: Path) -> None:
        time.sleep(self.delay_s)
        super()._write_table(table, target)


class _BlockedCapture(TrafficCapture):
    """A capture whose writes wait until ``release`` is set: the buffer can only fill."""

    release = threading.Event()

    def _write_table(self, table: pa.Table, target: Path) -> None:
        self.release.wait(10)
        super()._write_table(table, target)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., TrafficCapture]]:
    made: list[TrafficCapture] = []

    def factory(cls: type[TrafficCapture] = TrafficCapture, **kw: Any) -> TrafficCapture:
        settings: dict[str, Any] = {
            "sample_rate": 1.0,
            "max_buffer": 10_000,
            "flush_rows": 1000,
            "flush_interval_s": 60.0,
            "replica": "rep#1",
            "seed": 0,
        }
        settings.update(kw)
        path = settings.pop("path", tmp_path / "capture")
        capture = cls(path, **settings)
        made.append(capture)
        return capture

    yield factory
    for capture in made:
        capture.close(timeout_s=5)


def test_every_record_is_captured_with_its_columns(make: Callable[..., TrafficCapture]) -> None:
    capture = make()
    assert _offer(capture, "a", n=2)
    assert capture.offer(
        request_id="b",
        model_name="adult",
        model_version="3",
        records=[{"age": float("nan"), "when": datetime(2020, 1, 1), "n": np.int64(7)}],
        predictions=[np.float64(1.5)],
        probabilities=None,
        latency_ms=1.0,
        time=WHEN,
    )
    capture.close()

    frame = read_capture(capture.path)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 3
    first = frame[frame["request_id"] == "a"].sort_values("record_index")
    assert first["record_index"].tolist() == [0, 1]
    assert first["model_name"].tolist() == ["adult", "adult"]
    assert first["model_version"].tolist() == ["3", "3"]
    assert first["latency_ms"].tolist() == [4.5, 4.5]
    assert first["time"].tolist() == [WHEN, WHEN]
    assert str(frame["time"].dtype) == "datetime64[us, UTC]"
    assert first["date"].tolist() == ["2024-05-17"] * 2
    assert [json.loads(f) for f in first["features"]] == [
        {"age": 30, "sex": "F"},
        {"age": 31, "sex": "F"},
    ]
    assert [json.loads(p) for p in first["prediction"]] == [">50K", ">50K"]
    assert json.loads(first["probabilities"].iloc[0]) == {"<=50K": 0.25, ">50K": 0.75}

    odd = frame[frame["request_id"] == "b"].iloc[0]
    assert json.loads(odd["features"]) == {"age": None, "when": "2020-01-01 00:00:00", "n": 7}
    assert json.loads(odd["prediction"]) == 1.5
    assert pd.isna(odd["probabilities"])

    assert capture.stats() == {
        "offered": 2,
        "sampled": 2,
        "written": 3,
        "dropped": 0,
        "failed_writes": 0,
    }
    files = list(capture.path.glob("date=2024-05-17/part-rep_1-*.parquet"))
    assert len(files) == 1


def test_sample_rate_zero_captures_nothing(make: Callable[..., TrafficCapture]) -> None:
    capture = make(sample_rate=0.0)
    assert not any(_offer(capture, str(i)) for i in range(200))
    capture.close()
    frame = read_capture(capture.path)
    assert frame.empty and list(frame.columns) == COLUMNS
    assert capture.stats()["offered"] == 200 and capture.stats()["sampled"] == 0
    assert not capture.path.exists()


def test_seeded_sample_rate_is_respected(make: Callable[..., TrafficCapture]) -> None:
    capture = make(sample_rate=0.3, seed=42)
    kept = sum(_offer(capture, str(i)) for i in range(2000))
    capture.close()
    assert abs(kept / 2000 - 0.3) <= 0.05
    assert read_capture(capture.path)["request_id"].nunique() == kept
    assert capture.stats()["sampled"] == kept

    again = make(sample_rate=0.3, seed=42, path=capture.path.parent / "again")
    assert sum(_offer(again, str(i)) for i in range(2000)) == kept


def test_drawing_first_samples_like_offer_alone(make: Callable[..., TrafficCapture]) -> None:
    # The server draws before it builds a request's rows; the same seed keeps the same ones.
    alone = make(sample_rate=0.3, seed=7)
    kept_alone = [_offer(alone, str(i)) for i in range(500)]
    drawn = make(sample_rate=0.3, seed=7, path=alone.path.parent / "drawn")
    kept_drawn = [drawn.draw() and _offer(drawn, str(i), drawn=True) for i in range(500)]
    assert kept_drawn == kept_alone and any(kept_alone)
    for capture in (alone, drawn):
        capture.close()
    assert drawn.stats() == alone.stats()
    assert drawn.stats()["offered"] == 500


def test_offer_is_fast_while_the_writer_is_slow(make: Callable[..., TrafficCapture]) -> None:
    capture = make(_SlowCapture, flush_rows=100, max_buffer=500)
    n = 10_000
    started = time.perf_counter()
    for i in range(n):
        _offer(capture, str(i))
    mean_s = (time.perf_counter() - started) / n
    assert mean_s < 0.25e-3, f"offer took {mean_s * 1e6:.0f} us on average"
    stats = capture.stats()
    # The slow disk cannot keep up: the buffer filled and the surplus was dropped.
    assert stats["dropped"] > 0
    assert stats["offered"] == n


def test_a_full_buffer_drops_and_counts(make: Callable[..., TrafficCapture]) -> None:
    _BlockedCapture.release = threading.Event()
    capture = make(_BlockedCapture, max_buffer=10, flush_rows=5)
    started = time.perf_counter()
    results = [_offer(capture, str(i), n=2) for i in range(20)]
    assert time.perf_counter() - started < 0.5
    # The writer holds at most one batch (5 rows) while blocked; the buffer holds 10 more.
    stats = capture.stats()
    assert stats["sampled"] == 20
    assert 10 <= 40 - stats["dropped"] <= 15
    assert results[0] and not results[-1]
    _BlockedCapture.release.set()
    capture.close()
    stats = capture.stats()
    assert stats["written"] + stats["dropped"] == 40
    assert len(read_capture(capture.path)) == stats["written"]


def test_a_partial_request_keeps_what_fits(make: Callable[..., TrafficCapture]) -> None:
    _BlockedCapture.release = threading.Event()
    capture = make(_BlockedCapture, max_buffer=3, flush_rows=1000)
    assert _offer(capture, "a", n=5)
    assert capture.stats()["dropped"] == 2
    _BlockedCapture.release.set()
    capture.close()
    assert read_capture(capture.path)["record_index"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_a_failing_write_is_counted_and_offer_goes_on(
    make: Callable[..., TrafficCapture],
    tmp_path: Path,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if kind == "file":
        target = tmp_path / "not-a-folder"
        target.write_text("x")
    else:
        target = tmp_path / "locked"
        target.mkdir()
        target.chmod(0o500)
        probe = target / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as a user that ignores permissions")
    try:
        capture = make(path=target, flush_rows=2, flush_interval_s=0.05)
        for i in range(10):
            assert _offer(capture, str(i))
            time.sleep(0.005)
        assert _wait_for(lambda: capture.stats()["failed_writes"] >= 2)
        assert _offer(capture, "after")
        capture.close()
        stats = capture.stats()
        assert stats["written"] == 0
        assert stats["dropped"] == 11
        assert "could not write" in caplog.text
    finally:
        if kind == "read-only":
            target.chmod(0o700)


def test_offer_never_raises(make: Callable[..., TrafficCapture]) -> None:
    capture = make()
    assert not capture.offer(
        request_id="x",
        model_name="m",
        model_version="1",
        records=None,  # type: ignore[arg-type]
        predictions=[],
        probabilities=None,
        latency_ms=1.0,
    )
    # An unencodable record costs its own row, not the file.
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert _offer(capture, "loop", records=[loop])
    assert _offer(capture, "fine")
    capture.close()
    assert read_capture(capture.path)["request_id"].tolist() == ["fine"]
    assert capture.stats()["dropped"] == 2


def test_files_appear_complete(make: Callable[..., TrafficCapture]) -> None:
    capture = make(_SlowCapture, flush_rows=3)
    for i in range(10):
        _offer(capture, str(i))
    capture.close()
    assert not list(capture.path.rglob("*.tmp"))
    assert not [p for p in capture.path.rglob("*") if p.name.startswith(".")]
    files = list(capture.path.rglob("*.parquet"))
    assert len(files) == 4
    assert len(read_capture(capture.path)) == 10


def test_interval_flush(make: Callable[..., TrafficCapture]) -> None:
    capture = make(flush_interval_s=0.05)
    _offer(capture, "a")
    assert _wait_for(lambda: capture.stats()["written"] == 1)
    assert len(read_capture(capture.path)) == 1


def test_rows_split_by_day(make: Callable[..., TrafficCapture]) -> None:
    capture = make()
    _offer(capture, "a", time=datetime(2024, 1, 1, 23, 59))
    _offer(capture, "b", time=datetime(2024, 1, 2, 0, 1))
    capture.close()
    frame = read_capture(capture.path)
    assert dict(zip(frame["request_id"], frame["date"], strict=True)) == {
        "a": "2024-01-01",
        "b": "2024-01-02",
    }


def test_close_is_idempotent_and_flushes(make: Callable[..., TrafficCapture]) -> None:
    capture = make()
    _offer(capture, "a", n=3)
    capture.close()
    assert capture.stats()["written"] == 3
    capture.close()
    capture.close(timeout_s=0.1)
    assert not _offer(capture, "late")
    assert capture.stats()["written"] == 3 and capture.stats()["dropped"] == 1
    assert len(read_capture(capture.path)) == 3


def test_from_config(tmp_path: Path) -> None:
    assert TrafficCapture.from_config(CaptureConfig(), str(tmp_path), "r") is None
    cfg = CaptureConfig(enabled=True, sample_rate=0.5, path="cap", flush_rows=7)
    capture = TrafficCapture.from_config(cfg, str(tmp_path / "cap"), "r")
    assert capture is not None
    try:
        assert capture.path == tmp_path / "cap"
        assert capture.sample_rate == 0.5 and capture.flush_rows == 7
    finally:
        capture.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"sample_rate": 1.5},
        {"max_buffer": 0},
        {"flush_rows": 0},
        {"flush_interval_s": 0.0},
        {"flush_interval_s": math.nan},
    ],
)
def test_bad_settings(tmp_path: Path, bad: dict[str, Any]) -> None:
    settings: dict[str, Any] = {
        "sample_rate": 1.0,
        "max_buffer": 10,
        "flush_rows": 5,
        "flush_interval_s": 1.0,
    }
    settings.update(bad)
    with pytest.raises(ValueError):
        TrafficCapture(tmp_path, **settings)


def test_read_capture_of_nothing(tmp_path: Path) -> None:
    assert list(read_capture(tmp_path / "missing").columns) == COLUMNS
    assert read_capture(tmp_path).empty
