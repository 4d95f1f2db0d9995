"""The feedback endpoint's buffer: labels stored in batches, never silently dropped. Ray-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_mlops.errors import DataError
from ray_mlops.serve import feedback as sink_module
from ray_mlops.serve.feedback import FeedbackSink
from ray_mlops.serve.labels import check_labels, read_labels


def test_posted_labels_are_stored_in_one_batch_and_the_last_wins(tmp_path: Path) -> None:
    sink = FeedbackSink(str(tmp_path), flush_rows=1000, flush_interval_s=30)
    assert sink.offer([{"request_id": "r1", "record_index": 0, "label": "yes"}])
    assert sink.offer([{"request_id": "r1", "record_index": 0, "label": "no"}])
    assert sink.offer([{"request_id": "r2", "record_index": 1, "label": "yes"}])
    sink.close()
    stored = read_labels(str(tmp_path)).sort_values("request_id")
    assert stored[["request_id", "record_index", "label"]].values.tolist() == [
        ["r1", 0, "no"],
        ["r2", 1, "yes"],
    ]
    assert set(stored["source"]) == {"feedback"}
    assert len(list(tmp_path.rglob("*.parquet"))) == 1  # one write for the three posts


def test_a_full_buffer_refuses_the_post(tmp_path: Path) -> None:
    sink = FeedbackSink(str(tmp_path), flush_rows=1000, flush_interval_s=30, max_buffer=2)
    assert sink.offer([{"request_id": "a", "record_index": 0, "label": "x"}] * 2)
    assert not sink.offer([{"request_id": "b", "record_index": 0, "label": "x"}])
    sink.close()
    assert list(read_labels(str(tmp_path))["request_id"]) == ["a"]


def test_a_failed_write_keeps_the_labels_for_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sink_module.write_labels
    calls: list[int] = []

    def flaky(rows, location, *, source):  # type: ignore[no-untyped-def]
        calls.append(len(rows))
        if len(calls) == 1:
            raise OSError("disk full")
        return real(rows, location, source=source)

    monkeypatch.setattr(sink_module, "write_labels", flaky)
    sink = FeedbackSink(str(tmp_path), flush_rows=1, flush_interval_s=0.05)
    assert sink.offer([{"request_id": "r9", "record_index": 0, "label": "yes"}])
    sink.close()
    assert sink.failed_writes == 1 and calls[0] == 1 and len(calls) >= 2
    assert list(read_labels(str(tmp_path))["request_id"]) == ["r9"]


def test_bad_posted_labels_are_named_by_position_and_field() -> None:
    with pytest.raises(DataError, match=r"label 2, request_id"):
        check_labels([{"request_id": "ok", "label": "y"}, {"label": "y"}], where="body.labels")
    with pytest.raises(DataError, match=r"label 1"):
        check_labels(["not an object"], where="body.labels")  # type: ignore[list-item]
