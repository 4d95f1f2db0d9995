"""The label store: ground truth that arrives after the prediction, joined to the capture. Ray-free.

Labels come from two doors, the feedback endpoint (``POST /v1/models/{name}/feedback``) and
``ray-mlops labels ingest FILE``; both end in :func:`write_labels`, which adds Parquet files
under ``<location>/date=YYYY-MM-DD/`` (the day a label was received), each written whole: under
a hidden temporary name and renamed in a folder, as one upload in an object store, as the
capture does. Nothing is ever rewritten: a correction is a newer row, and :func:`read_labels`
keeps the last label received for each (request_id, record_index). :func:`join_labels` puts
them beside the captured predictions.

Labels are kept as text, the way the training data's target becomes class labels (a whole
float reads as an integer: ``1.0`` is ``"1"``), so a label compares equal to the class the
model predicted.

Example:
    >>> import tempfile
    >>> store = tempfile.mkdtemp()
    >>> write_labels([{"request_id": "r1", "label": "yes"}], store, source=FEEDBACK_SOURCE)
    1
    >>> write_labels([{"request_id": "r1", "label": "no"}], store, source=FEEDBACK_SOURCE)
    1
    >>> read_labels(store)[["request_id", "record_index", "label"]].to_dict("records")
    [{'request_id': 'r1', 'record_index': 0, 'label': 'no'}]
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from ray_mlops.errors import DataError
from ray_mlops.storage import is_object_store, join, open_location

LABEL_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("record_index", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
"""Columns of every label file, in this order. ``time``: when the label was received;
``source``: :data:`FEEDBACK_SOURCE` or ``ingest:<file name>`` (:func:`ingest_source`)."""

KEY = ("request_id", "record_index")
"""A label belongs to one captured record: its request and its place in the request."""

FEEDBACK_SOURCE = "feedback"
"""``source`` of the labels posted to the feedback endpoint."""

PARTITION_COLUMN = "date"
"""Hive partition folder of the files (``date=YYYY-MM-DD``, the UTC day received)."""

LABEL_FILE_FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
}
"""File endings :func:`read_label_file` reads, and their format."""

# A label file with a systematic fault (a shifted column) is bad on every row: the first ones
# say what is wrong, the count says how much.
MAX_REPORTED_PROBLEMS = 50
# record_index is an int32 in the capture and here.
_MAX_RECORD_INDEX = 2**31 - 1


def ingest_source(path: str | os.PathLike[str]) -> str:
    """``source`` of the labels ingested from ``path``: ``ingest:<file name>``."""
    return f"ingest:{os.fspath(path).rstrip('/').rsplit('/', 1)[-1]}"


def read_label_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The labels of a CSV, Parquet or JSON-lines file, every row checked.

    The file has the columns ``request_id`` and ``label`` and optionally ``record_index``
    (the record's place in its request; 0 when the column or the value is absent); other
    columns are ignored. A row without an id or a label, or with an index that is not a whole
    number from 0 to 2**31 - 1, makes the whole file fail: one error names every such row (up
    to :data:`MAX_REPORTED_PROBLEMS`) by its line (CSV, JSON lines; the CSV header is line 1) or
    row (Parquet, from 1) and column.

    Args:
        path: A local file or an object store URI, ending in one of :data:`LABEL_FILE_FORMATS`.

    Returns:
        Columns ``request_id`` and ``label`` (text) and ``record_index`` (int32), in file order.

    Raises:
        DataError: the file is missing, unreadable or of an unknown kind, lacks a column, or
            holds bad rows.
    """
    location = os.fspath(path)
    kind = _label_file_format(location)
    filesystem, file_path = open_location(location)
    if filesystem.get_file_info(file_path).type != pafs.FileType.File:
        raise DataError(f"label file not found: {location}")
    rows: Iterable[_Row]
    try:
        if kind == "parquet":
            rows = _parquet_rows(filesystem, file_path, location)
            return _checked_frame(rows, where=location, position="row")
        with filesystem.open_input_stream(file_path) as stream:  # .gz: decompressed
            text = stream.read().decode("utf-8-sig")
        rows = _csv_rows(text, location) if kind == "csv" else _json_rows(text, location)
        return _checked_frame(rows, where=location, position="line")
    except (OSError, pa.ArrowException, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{location}: cannot read it as {kind}: {exc}") from None


def write_labels(
    labels: pd.DataFrame | Iterable[Mapping[str, Any]],
    location: str,
    *,
    source: str,
    received: datetime | None = None,
) -> int:
    """Add labels to the store at ``location``: whole files, nothing half-written.

    Rows are checked as :func:`read_label_file` checks them, and none is written when one is
    bad. A row may carry its own ``time`` (a buffered feedback post: when it was received);
    the others take ``received``. Of several labels for one record in the batch, the last
    (by time, then order) is kept. One file per UTC day of the rows; in a folder every file is
    staged under a hidden name before any is renamed into place.

    Args:
        labels: Rows with ``request_id``, ``label`` and optionally ``record_index`` and
            ``time``: a DataFrame (:func:`read_label_file`'s) or mappings (the endpoint's).
        location: The store: an absolute folder or an object store URI.
        source: Where the labels came from: :data:`FEEDBACK_SOURCE` or :func:`ingest_source`.
        received: When they were received (UTC; a naive time is taken as UTC); now when None.

    Returns:
        Label rows written.

    Raises:
        DataError: a bad row (named by its row number, from 1), or an empty ``source``.
        OSError: the store could not be written; in a folder no file of the batch is left.
    """
    if not source.strip():
        raise DataError("labels need a source (feedback, or ingest:<file name>)")
    frame = labels if isinstance(labels, pd.DataFrame) else pd.DataFrame(list(labels))
    if frame.empty:
        return 0
    checked = _checked_frame(_frame_rows(frame), where="labels", position="row")
    if checked.empty:
        return 0
    now = pd.Timestamp(_as_utc(received or datetime.now(timezone.utc)))
    if "time" in frame.columns:
        checked["time"] = _row_times(frame, now).set_axis(checked.index)
    else:
        checked["time"] = pd.Series(now, index=checked.index, dtype="datetime64[us, UTC]")
    checked["source"] = source
    latest = _latest(checked)
    tables = {
        day: pa.Table.from_pandas(rows, schema=LABEL_SCHEMA, preserve_index=False)
        for day, rows in latest.groupby(latest["time"].dt.strftime("%Y-%m-%d"), sort=True)
    }
    _write_tables(tables, location)
    return len(latest)


def check_labels(rows: Iterable[Mapping[str, Any]], where: str) -> pd.DataFrame:
    """Label rows as the store keeps them (request_id, record_index, label), checked.

    What the feedback endpoint runs before it answers, so a bad post is a 4xx naming the
    row and field rather than a label lost later in the writer.

    Raises:
        DataError: every bad row, numbered from 1, in one message.
    """
    records = [dict(r) if isinstance(r, Mapping) else {_UNPARSED: "not an object"} for r in rows]
    return _checked_frame(enumerate(records, start=1), where=where, position="label")


def ingest_label_file(
    path: str | os.PathLike[str], location: str, *, received: datetime | None = None
) -> int:
    """``ray-mlops labels ingest``: read and check ``path``, then add its labels to the store.

    Args:
        path: The label file (see :func:`read_label_file`).
        location: The store (see :func:`write_labels`).
        received: When the labels were received; now when None.

    Returns:
        Label rows written (a record labelled twice in the file counts once: the last wins).

    Raises:
        DataError: the file is unreadable or has a bad row; nothing is written then.
    """
    frame = read_label_file(path)
    return write_labels(frame, location, source=ingest_source(path), received=received)


def read_labels(location: str, *, latest: bool = True) -> pd.DataFrame:
    """The labels in the store, oldest first.

    Args:
        location: The store: an absolute folder or an object store URI.
        latest: Keep only the last label received for each (request_id, record_index), so a
            correction replaces the label it corrects; False: every label row ever written.

    Returns:
        The :data:`LABEL_SCHEMA` columns; empty, with the same columns, when the store is.
    """
    import pyarrow.dataset as ds

    filesystem, root = open_location(location)
    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        return LABEL_SCHEMA.empty_table().to_pandas()
    partition = pa.schema([pa.field(PARTITION_COLUMN, pa.string())])
    dataset = ds.dataset(
        root,
        filesystem=filesystem,
        format="parquet",
        schema=pa.schema([*LABEL_SCHEMA, *partition]),
        partitioning=ds.partitioning(partition, flavor="hive"),
    )
    # Files are named by when they were written: equal times resolve to the later file.
    table = dataset.to_table(columns=[*LABEL_SCHEMA.names, "__filename"])
    table = table.sort_by([("time", "ascending"), ("__filename", "ascending")])
    frame = table.drop_columns(["__filename"]).to_pandas()
    return _latest(frame) if latest else frame


def join_labels(capture: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The captured records with their labels.

    Args:
        capture: Captured records (``read_capture``'s frame, or any with ``request_id`` and
            ``record_index``).
        labels: :func:`read_labels`'s frame; where it holds several labels for a record, the
            last by ``time`` counts.

    Returns:
        ``capture``'s rows, index and order, with a ``label`` column: the text label, None
        where the record has none.

    Raises:
        DataError: a frame lacks a key column, or ``capture`` already has a ``label`` column.
    """
    for name, frame in (("capture", capture), ("labels", labels)):
        missing = [c for c in (*KEY, *(("label",) if name == "labels" else ())) if c not in frame]
        if missing:
            raise DataError(f"join_labels: the {name} frame has no column {missing}")
    if "label" in capture.columns:
        raise DataError("join_labels: the capture frame already has a label column")
    known = (
        _latest(labels) if "time" in labels.columns else labels.drop_duplicates(KEY, keep="last")
    )
    keys = pd.MultiIndex.from_arrays(
        [known["request_id"].astype(str), known["record_index"].astype("int64")]
    )
    by_key = pd.Series(known["label"].to_numpy(dtype=object), index=keys)
    wanted = pd.MultiIndex.from_arrays(
        [capture["request_id"].astype(str), capture["record_index"].astype("int64")]
    )
    found = by_key.reindex(wanted).to_numpy(dtype=object)
    joined = capture.copy()
    joined["label"] = pd.Series(
        [None if pd.isna(v) else v for v in found], index=capture.index, dtype=object
    )
    return joined


# -- reading and checking rows ---------------------------------------------------------------

# A row of a label file by its line or row number; a row that did not parse holds only the
# reason, under a key no column can have.
_Row = tuple[int, Mapping[str, Any]]
_UNPARSED = ""


def _label_file_format(location: str) -> str:
    name = location.lower()
    for ending in sorted(LABEL_FILE_FORMATS, key=len, reverse=True):
        if name.endswith(ending):
            return LABEL_FILE_FORMATS[ending]
    raise DataError(
        f"{location}: unknown kind of label file; name it with one of "
        f"{', '.join(LABEL_FILE_FORMATS)}"
    )


def _csv_rows(text: str, location: str) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{location}: empty file; expected a header with request_id and label")
    _require_columns(header, location)
    for record in reader:
        if not record:  # a blank line
            continue
        if len(record) != len(header):
            reason = f"{len(record)} fields where the header has {len(header)}"
            yield reader.line_num, {_UNPARSED: reason}
            continue
        # CSV holds text: an empty field is a missing value.
        yield (
            reader.line_num,
            {k: (v if v != "" else None) for k, v in zip(header, record, strict=True)},
        )


def _json_rows(text: str, location: str) -> list[_Row]:
    rows: list[_Row] = []
    keys: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            row = {_UNPARSED: f"not JSON ({exc.msg})"}
        if not isinstance(row, dict):
            row = {_UNPARSED: f"not a JSON object but {type(row).__name__}"}
        keys.update(row)
        rows.append((number, row))
    # A column no row has is the file's fault, named once; a row without it, that row's.
    if rows:
        _require_columns(sorted(keys - {_UNPARSED}), location)
    return rows


def _parquet_rows(filesystem: pafs.FileSystem, file_path: str, location: str) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    with filesystem.open_input_file(file_path) as handle:
        table = pq.read_table(handle)
    _require_columns(table.column_names, location)
    present = [c for c in ("request_id", "record_index", "label") if c in table.column_names]
    rows = table.select(present).to_pylist()
    return iter(enumerate(rows, start=1))


def _frame_rows(frame: pd.DataFrame) -> Iterator[_Row]:
    _require_columns(list(frame.columns), "labels")
    present = [c for c in ("request_id", "record_index", "label") if c in frame.columns]
    records = frame[present].astype(object).to_dict("records")
    return iter(enumerate(records, start=1))


def _require_columns(columns: list[str], where: str) -> None:
    missing = [c for c in ("request_id", "label") if c not in columns]
    if missing:
        raise DataError(
            f"{where}: no column {' or '.join(missing)}; a label file has the columns "
            f"request_id, label and optionally record_index (found: {list(columns)})"
        )


def _checked_frame(rows: Iterable[_Row], *, where: str, position: str) -> pd.DataFrame:
    """The rows as a frame of the key and the label, or a DataError naming every bad row."""
    ids: list[str] = []
    indices: list[int] = []
    texts: list[str] = []
    problems: list[str] = []
    for number, row in rows:
        if _UNPARSED in row:
            problems.append(f"{position} {number}: {row[_UNPARSED]}")
            continue
        found = []
        for column, check in _CHECKS:
            try:
                found.append(check(row.get(column)))
            except ValueError as exc:
                problems.append(f"{position} {number}, {column}: {exc}")
        if len(found) == len(_CHECKS):
            ids.append(found[0])
            indices.append(found[1])
            texts.append(found[2])
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise DataError(
            f"{where}: {len(problems)} bad label value(s); nothing was written\n"
            + "\n".join(f"  - {p}" for p in shown)
            + (f"\n  ... and {more} more" if more else "")
        )
    return pd.DataFrame(
        {
            "request_id": pd.Series(ids, dtype=object),
            "record_index": pd.Series(indices, dtype="int32"),
            "label": pd.Series(texts, dtype=object),
        }
    )


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def _request_id(value: Any) -> str:
    if _missing(value):
        raise ValueError("missing")
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    raise ValueError(f"expected text, got {value!r}")


def _record_index(value: Any) -> int:
    if _missing(value):
        return 0
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"not a whole number: {value!r}") from None
    if isinstance(number, numbers.Real) and float(number).is_integer():
        number = int(float(number))
    if isinstance(value, bool | np.bool_) or not isinstance(number, int):
        raise ValueError(f"not a whole number: {value!r}")
    if not 0 <= number <= _MAX_RECORD_INDEX:
        raise ValueError(f"{number} is outside 0 to {_MAX_RECORD_INDEX}")
    return number


def _label(value: Any) -> str:
    if _missing(value):
        raise ValueError("missing")
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"not a finite number: {value!r}")
        # As the target becomes class labels (features.primitives.as_strings): 1.0 is "1".
        return str(int(number)) if number.is_integer() else str(number)
    raise ValueError(f"expected text or a number, got {value!r}")


_CHECKS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("request_id", _request_id),
    ("record_index", _record_index),
    ("label", _label),
)


# -- the store -----------------------------------------------------------------------------


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    """The last label of each record by ``time`` (ties: the later row), oldest first."""
    ordered = frame.sort_values("time", kind="stable")
    return ordered.drop_duplicates(list(KEY), keep="last").reset_index(drop=True)


def _row_times(frame: pd.DataFrame, default: pd.Timestamp) -> pd.Series:
    """Each row's own time (naive: UTC), ``default`` where it has none."""
    try:
        times = pd.to_datetime(frame["time"].reset_index(drop=True), utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(f"labels: time is not a date and time: {exc}") from None
    return times.fillna(default).astype("datetime64[us, UTC]")


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _write_tables(tables: Mapping[str, pa.Table], location: str) -> None:
    """One file per day; in a folder, all staged under hidden names before any is renamed."""
    import pyarrow.parquet as pq

    # A sortable write time first: read_labels resolves equal label times by file name.
    name = f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"
    targets = {day: join(location, f"{PARTITION_COLUMN}={day}", name) for day in tables}
    if is_object_store(location):
        # An object appears whole when its upload completes.
        for day, table in tables.items():
            filesystem, key = open_location(targets[day])
            with filesystem.open_output_stream(key) as stream:
                pq.write_table(table, stream)
        return
    staged: list[tuple[Path, Path]] = []
    try:
        for day, table in tables.items():
            target = Path(targets[day])
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.tmp")
            staged.append((temporary, target))
            pq.write_table(table, temporary)
        for temporary, target in staged:
            os.replace(temporary, target)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
