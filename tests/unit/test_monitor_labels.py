"""The label store: whole Parquet files, corrections by time, checked label files, the join."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ray_mlops.errors import DataError
from ray_mlops.serve import labels as store
from ray_mlops.serve.capture import CAPTURE_SCHEMA, read_capture
from ray_mlops.serve.labels import (
    FEEDBACK_SOURCE,
    LABEL_SCHEMA,
    MAX_REPORTED_PROBLEMS,
    ingest_label_file,
    ingest_source,
    join_labels,
    read_label_file,
    read_labels,
    write_labels,
)

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _keyed(frame: pd.DataFrame) -> dict[tuple[str, int], str]:
    return {(r.request_id, int(r.record_index)): r.label for r in frame.itertuples(index=False)}


# -- the store -----------------------------------------------------------------------------


def test_written_labels_read_back_with_the_schema_and_day_partition(tmp_path: Path) -> None:
    location = str(tmp_path / "labels")
    rows = [
        {"request_id": "r1", "label": "yes"},
        {"request_id": "r1", "record_index": 1, "label": "no"},
        {"request_id": "r2", "record_index": 0, "label": "yes"},
    ]
    assert write_labels(rows, location, source=FEEDBACK_SOURCE, received=T0) == 3

    files = _files(tmp_path / "labels")
    assert len(files) == 1 and files[0].startswith("date=2026-12-05/part-")
    assert not any(Path(f).name.startswith(".") for f in files)  # no temporary left
    assert pq.read_schema(tmp_path / "labels" / files[0]).remove_metadata() == LABEL_SCHEMA

    back = read_labels(location)
    assert list(back.columns) == LABEL_SCHEMA.names
    assert _keyed(back) == {("r1", 0): "yes", ("r1", 1): "no", ("r2", 0): "yes"}
    assert set(back["source"]) == {"feedback"}
    assert (back["time"] == pd.Timestamp(T0)).all()
    assert str(back["record_index"].dtype) == "int32"


def test_an_empty_or_absent_store_reads_as_no_labels(tmp_path: Path) -> None:
    back = read_labels(str(tmp_path / "nothing-yet"))
    assert back.empty and list(back.columns) == LABEL_SCHEMA.names
    assert write_labels([], str(tmp_path / "labels"), source=FEEDBACK_SOURCE) == 0
    assert not (tmp_path / "labels").exists()


def test_a_correction_received_later_replaces_the_label(tmp_path: Path) -> None:
    location = str(tmp_path / "labels")
    write_labels([{"request_id": "r1", "label": "yes"}], location, source="feedback", received=T0)
    write_labels(
        [{"request_id": "r1", "label": "no"}, {"request_id": "r2", "label": "yes"}],
        location,
        source="feedback",
        received=T0 + timedelta(minutes=5),
    )
    # Written last but received first (a late ingest of an old export): it does not win.
    write_labels(
        [{"request_id": "r1", "label": "maybe"}],
        location,
        source="ingest:old.csv",
        received=T0 - timedelta(days=1),
    )
    assert _keyed(read_labels(location)) == {("r1", 0): "no", ("r2", 0): "yes"}
    every = read_labels(location, latest=False)
    assert len(every) == 4
    assert list(every["time"]) == sorted(every["time"])  # oldest first
    assert len(_files(tmp_path / "labels")) == 3  # two days: 2026-12-04 and 2026-12-05
    assert {f.split("/")[0] for f in _files(tmp_path / "labels")} == {
        "date=2026-12-04",
        "date=2026-12-05",
    }


def test_labels_received_at_the_same_time_resolve_to_the_later_write(tmp_path: Path) -> None:
    location = str(tmp_path / "labels")
    for label in ("a", "b", "c"):
        write_labels([{"request_id": "r", "label": label}], location, source="s", received=T0)
    assert _keyed(read_labels(location)) == {("r", 0): "c"}


def test_within_one_batch_the_last_label_of_a_record_is_kept(tmp_path: Path) -> None:
    location = str(tmp_path / "labels")
    rows = [
        {"request_id": "r", "label": "first"},
        {"request_id": "r", "label": "second"},
        {"request_id": "q", "label": "x"},
    ]
    assert write_labels(rows, location, source="s", received=T0) == 2
    assert _keyed(read_labels(location, latest=False)) == {("r", 0): "second", ("q", 0): "x"}


def test_rows_carrying_their_own_time_go_to_their_day(tmp_path: Path) -> None:
    location = str(tmp_path / "labels")
    rows = [
        {"request_id": "late", "label": "a", "time": "2026-12-04T23:59:59Z"},
        {"request_id": "early", "label": "b", "time": datetime(2026, 12, 5, 0, 0, 1)},  # naive
        {"request_id": "now", "label": "c", "time": None},
    ]
    write_labels(rows, location, source=FEEDBACK_SOURCE, received=T0)
    assert {f.split("/")[0] for f in _files(tmp_path / "labels")} == {
        "date=2026-12-04",
        "date=2026-12-05",
    }
    times = read_labels(location).set_index("request_id")["time"]
    assert times["late"] == pd.Timestamp("2026-12-04T23:59:59Z")
    assert times["early"] == pd.Timestamp("2026-12-05T00:00:01Z")
    assert times["now"] == pd.Timestamp(T0)


def test_bad_rows_are_refused_by_number_and_nothing_is_written(tmp_path: Path) -> None:
    location = tmp_path / "labels"
    rows = [
        {"request_id": "ok", "label": "yes"},
        {"request_id": None, "label": "yes"},
        {"request_id": "r3", "label": "  ", "record_index": -1},
    ]
    with pytest.raises(DataError) as caught:
        write_labels(rows, str(location), source=FEEDBACK_SOURCE, received=T0)
    message = str(caught.value)
    assert "3 bad label value(s); nothing was written" in message
    assert "row 2, request_id: missing" in message
    assert "row 3, record_index: -1 is outside 0 to 2147483647" in message
    assert "row 3, label: missing" in message
    assert "row 1" not in message
    assert not location.exists()
    with pytest.raises(DataError, match="need a source"):
        write_labels([{"request_id": "r", "label": "y"}], str(location), source=" ")


def test_a_failed_write_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = pq.write_table
    calls = []

    def fail_on_second_day(table: pa.Table, where: Any, **kwargs: Any) -> None:
        calls.append(where)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", fail_on_second_day)
    rows = [
        {"request_id": "a", "label": "x", "time": "2026-12-04T12:00:00Z"},
        {"request_id": "b", "label": "y", "time": "2026-12-05T12:00:00Z"},
    ]
    with pytest.raises(OSError, match="disk full"):
        write_labels(rows, str(tmp_path / "labels"), source="s", received=T0)
    # The first day's file was staged, but never renamed into place, and is gone.
    assert len(calls) == 2
    assert _files(tmp_path / "labels") == []
    assert read_labels(str(tmp_path / "labels")).empty


class _AutoParentHandler(pafs.FileSystemHandler):
    """An object store double: a local folder where writing a key needs no parent folders."""

    def __init__(self, root: Path) -> None:
        self.fs = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
        self.root = root

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        return self.fs.open_output_stream(path)

    def get_type_name(self) -> str:
        return "double"

    def get_file_info(self, paths: list[str]) -> Any:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> Any:
        return self.fs.get_file_info(selector)

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def open_input_stream(self, path: str) -> Any:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        raise NotImplementedError

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        raise NotImplementedError

    def delete_root_dir_contents(self) -> None:
        raise NotImplementedError

    def delete_file(self, path: str) -> None:
        raise NotImplementedError

    def move(self, src: str, dest: str) -> None:
        raise NotImplementedError  # an object store has no rename: the store must not need one

    def copy_file(self, src: str, dest: str) -> None:
        raise NotImplementedError

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        raise NotImplementedError


def test_an_object_store_location_gets_whole_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = pafs.PyFileSystem(_AutoParentHandler(tmp_path))

    def open_double(location: str) -> tuple[pafs.FileSystem, str]:
        assert location.startswith("s3://")
        return bucket, location.removeprefix("s3://")

    monkeypatch.setattr(store, "open_location", open_double)
    location = "s3://bucket/prefix/labels"
    write_labels([{"request_id": "r", "label": "yes"}], location, source="s", received=T0)
    write_labels([{"request_id": "r", "label": "no"}], location, source="s", received=T0)
    files = _files(tmp_path)
    assert len(files) == 2
    assert all(f.startswith("bucket/prefix/labels/date=2026-12-05/part-") for f in files)
    assert _keyed(read_labels(location)) == {("r", 0): "no"}


# -- label files ---------------------------------------------------------------------------


def test_csv_labels_keep_their_text_and_default_the_index(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    # A byte order mark, a blank line, a column we do not need, a label with a leading space
    # (the Adult data's " >50K"), and an empty index.
    path.write_text(
        "\ufeffrequest_id,label,record_index,note\n"
        "r1, >50K,0,x\n"
        "\n"
        'r1,"<=50K, revised",1,y\n'
        "r2,1,,z\n",
        encoding="utf-8",
    )
    frame = read_label_file(path)
    assert list(frame.columns) == ["request_id", "record_index", "label"]
    assert frame.to_dict("records") == [
        {"request_id": "r1", "record_index": 0, "label": " >50K"},
        {"request_id": "r1", "record_index": 1, "label": "<=50K, revised"},
        {"request_id": "r2", "record_index": 0, "label": "1"},
    ]
    assert str(frame["record_index"].dtype) == "int32"


def test_parquet_labels_read_as_the_target_becomes_class_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    table = pa.table(
        {
            "request_id": ["a", "b", "c"],
            # A float column (an integer target with gaps, once through pandas): 1.0 is "1".
            "label": [1.0, 0.0, 2.5],
            "record_index": pa.array([0, 3, None], pa.int64()),
        }
    )
    pq.write_table(table, path)
    frame = read_label_file(path)
    assert _keyed(frame) == {("a", 0): "1", ("b", 3): "0", ("c", 0): "2.5"}


def test_json_lines_labels_of_several_types(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl.gz"
    lines = [
        {"request_id": "a", "label": "cat"},
        {"request_id": 17, "label": True, "record_index": 2},
        {"request_id": "c", "label": 3, "record_index": 1.0},
    ]
    path.write_bytes(gzip.compress(("\n".join(map(json.dumps, lines)) + "\n\n").encode()))
    assert _keyed(read_label_file(path)) == {("a", 0): "cat", ("17", 2): "True", ("c", 1): "3"}


def test_every_bad_csv_row_is_named_with_its_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "request_id,label,record_index\n"
        "ok,yes,0\n"
        ",yes,0\n"  # line 3
        "r4,,0\n"  # line 4
        "r5,yes,first\n"  # line 5
        "r6,yes,2147483648\n"  # line 6
        "r7,yes\n"  # line 7
        "r8,yes,1.5\n"  # line 8
    )
    with pytest.raises(DataError) as caught:
        read_label_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 6 bad label value(s)")
    for expected in (
        "line 3, request_id: missing",
        "line 4, label: missing",
        "line 5, record_index: not a whole number: 'first'",
        "line 6, record_index: 2147483648 is outside 0 to 2147483647",
        "line 7: 2 fields where the header has 3",
        "line 8, record_index: not a whole number: '1.5'",
    ):
        assert expected in message
    assert "line 2" not in message


def _refusal(path: Path, content: str | bytes) -> str:
    """The message of read_label_file's DataError for a file holding ``content``."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError) as caught:
        read_label_file(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        # A quoted newline does not shift the line numbers that follow.
        ("multi.csv", 'request_id,label\nr1,"two\nlines"\n,yes\n', "line 4, request_id: missing"),
        ("wrong.csv", "id,target\nr1,yes\n", "no column request_id or label; "),
        ("wrong.csv", "id,target\nr1,yes\n", "(found: ['id', 'target'])"),
        ("wrong.jsonl", '{"request_id": "a", "target": "x"}\n', "no column label"),
        ("empty.csv", "", "empty file"),
        ("labels.xlsx", b"PK", "unknown kind of label file; name it with one of .csv, .csv.gz"),
        ("broken.parquet", b"not parquet at all", "cannot read it as parquet"),
    ],
)
def test_files_that_cannot_be_ingested_say_why(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    message = _refusal(tmp_path / name, content)
    assert message.startswith(str(tmp_path / name)) and expected in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"label file not found: .*absent\.csv"):
        read_label_file(tmp_path / "absent.csv")


def test_bad_parquet_and_json_rows_are_named_by_row_and_line(tmp_path: Path) -> None:
    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"request_id": ["a", None], "label": [None, "y"]}), parquet)
    with pytest.raises(DataError) as caught:
        read_label_file(parquet)
    assert "row 1, label: missing" in str(caught.value)
    assert "row 2, request_id: missing" in str(caught.value)

    message = _refusal(
        tmp_path / "bad.jsonl",
        '{"request_id": "a", "label": "x"}\n'
        "not json\n"
        "[1, 2]\n"
        '{"request_id": "d", "label": {"nested": 1}}\n'
        '{"request_id": "e"}\n',
    )
    assert "line 2: not JSON" in message
    assert "line 3: not a JSON object but list" in message
    assert "line 4, label: expected text or a number" in message
    assert "line 5, label: missing" in message
    assert "line 1" not in message


def test_a_file_bad_on_every_row_is_summarised(tmp_path: Path) -> None:
    path = tmp_path / "shifted.csv"
    path.write_text("request_id,label\n" + ",x\n" * (MAX_REPORTED_PROBLEMS + 7))
    with pytest.raises(DataError) as caught:
        read_label_file(path)
    message = str(caught.value)
    assert f"{MAX_REPORTED_PROBLEMS + 7} bad label value(s)" in message
    assert message.count("request_id: missing") == MAX_REPORTED_PROBLEMS
    assert message.endswith("... and 7 more")


def test_ingest_writes_a_good_file_and_nothing_of_a_bad_one(tmp_path: Path) -> None:
    location = str(tmp_path / "labels")
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,label\nr1,yes\nr2,\n")
    with pytest.raises(DataError, match="line 3, label: missing"):
        ingest_label_file(bad, location, received=T0)
    assert not (tmp_path / "labels").exists()

    good = tmp_path / "export-12.csv"
    good.write_text("request_id,label\nr1,yes\nr2,no\nr1,no\n")
    assert ingest_label_file(good, location, received=T0) == 2  # r1 twice: the last counts
    back = read_labels(location)
    assert _keyed(back) == {("r1", 0): "no", ("r2", 0): "no"}
    assert set(back["source"]) == {"ingest:export-12.csv"} == {ingest_source(good)}
    assert ingest_source("s3://bucket/drop/labels.parquet") == "ingest:labels.parquet"


# -- the join ------------------------------------------------------------------------------


def _capture(tmp_path: Path, keys: list[tuple[str, int]]) -> pd.DataFrame:
    """A capture folder written in the capture's own format, read back by read_capture."""
    n = len(keys)
    table = pa.Table.from_pydict(
        {
            "request_id": [k[0] for k in keys],
            "time": [T0 + timedelta(seconds=i) for i in range(n)],
            "model_name": ["m"] * n,
            "model_version": ["1"] * n,
            "latency_ms": [1.0] * n,
            "record_index": [k[1] for k in keys],
            "features": ["{}"] * n,
            "prediction": ['"yes"'] * n,
            "probabilities": [None] * n,
        },
        schema=CAPTURE_SCHEMA,
    )
    folder = tmp_path / "capture" / "date=2026-12-05"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    return read_capture(tmp_path / "capture")


def test_join_puts_each_records_latest_label_beside_it(tmp_path: Path) -> None:
    capture = _capture(tmp_path, [("r1", 0), ("r1", 1), ("r2", 0), ("r3", 0)])
    location = str(tmp_path / "labels")
    write_labels(
        [
            {"request_id": "r1", "record_index": 1, "label": "no"},
            {"request_id": "r2", "label": "yes"},
            {"request_id": "elsewhere", "label": "yes"},  # a request not in this capture
        ],
        location,
        source="s",
        received=T0,
    )
    write_labels(
        [{"request_id": "r2", "label": "no"}], location, source="s", received=T0 + timedelta(1)
    )
    joined = join_labels(capture, read_labels(location))
    assert len(joined) == len(capture)
    assert list(joined.index) == list(capture.index)
    pd.testing.assert_frame_equal(joined.drop(columns="label"), capture)
    assert joined["label"].tolist() == [None, "no", "no", None]
    # Every label row, corrections included: the join still takes the latest by time.
    every = join_labels(capture, read_labels(location, latest=False))
    assert every["label"].tolist() == [None, "no", "no", None]


def test_join_with_no_labels_or_no_capture(tmp_path: Path) -> None:
    capture = _capture(tmp_path, [("r1", 0), ("r2", 0)])
    joined = join_labels(capture, read_labels(str(tmp_path / "none")))
    assert joined["label"].tolist() == [None, None]
    empty = join_labels(
        capture.iloc[:0], pd.DataFrame({"request_id": ["r1"], "record_index": [0], "label": ["y"]})
    )
    assert empty.empty and "label" in empty.columns


def test_join_refuses_frames_it_cannot_join(tmp_path: Path) -> None:
    capture = _capture(tmp_path, [("r1", 0)])
    labels = pd.DataFrame({"request_id": ["r1"], "record_index": [0], "label": ["y"]})
    with pytest.raises(DataError, match="already has a label column"):
        join_labels(capture.assign(label="x"), labels)
    with pytest.raises(DataError, match=r"labels frame has no column \['record_index'\]"):
        join_labels(capture, labels.drop(columns="record_index"))
