"""Read one window of captured traffic with Ray Data, decoded into columns.

The capture (``ray_mlops/serve/capture.py``) keeps each record's features, prediction and
probabilities as JSON text, in Hive partitions by day. A window reads only the days it
spans, keeps the rows of one model inside ``[start, end)``, and decodes the JSON with
Arrow's JSON reader (a whole batch at once, in C++), in Ray Data tasks, so the driver only
ever holds the window's sample. A window larger than ``sample_rows`` is sampled uniformly
(each row kept with the same chance), because the drift tests and the estimate need a sample,
not every row: the count of rows and the versions are still taken over the whole window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.json as pajson

from ray_mlops.models.outputs import PREDICTION_COLUMN, PROBABILITY_PREFIX
from ray_mlops.serve.capture import PARTITION_COLUMN
from ray_mlops.storage import join, open_location

WINDOW_COLUMN = "_ray_mlops_window"
"""Index of a record's window among those read together (dropped from the result)."""
KEYS = ("request_id", "record_index", "model_version", "time")
COUNT_COLUMNS = ("time", "model_name", "model_version")
"""Capture columns the counting pass reads."""
DECODE_COLUMNS = (*KEYS, "model_name", "features", "prediction", "probabilities")
"""Capture columns the decoding pass reads."""
"""Capture columns a window keeps beside the decoded ones (the label join needs the first two)."""


@dataclass(frozen=True)
class WindowRecords:
    """What :func:`read_window` found.

    Attributes:
        frame: The (sampled) records: :data:`KEYS`, the input columns, ``prediction`` and the
            ``probability_<label>`` columns.
        rows: Records of the model in the window, before sampling.
        versions: Model versions among them, oldest first by their first record.
    """

    frame: pd.DataFrame
    rows: int
    versions: tuple[str, ...]


def partition_days(start: datetime, end: datetime) -> list[str]:
    """The ``date=`` partitions a window ``[start, end)`` spans (UTC days)."""
    first = _utc(start).date()
    last = (_utc(end) - timedelta(microseconds=1)).date()
    days: list[date] = []
    while first <= last:
        days.append(first)
        first += timedelta(days=1)
    return [f"{PARTITION_COLUMN}={d.isoformat()}" for d in days]


def read_window(
    capture: str,
    model: str,
    start: datetime,
    end: datetime,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    labels: Sequence[str] | None,
    sample_rows: int | None = None,
    seed: int = 0,
) -> WindowRecords:
    """The records ``model`` answered in ``[start, end)``, decoded, sampled to ``sample_rows``.

    Args:
        capture: The capture folder or object store URI.
        model: Registered model name.
        start: Window start (inclusive; naive times are UTC).
        end: Window end (exclusive).
        numeric: Numeric input columns, decoded as float64 (missing: NaN).
        categorical: Categorical input columns, decoded as strings (missing: None).
        labels: A classifier's classes, for its probability columns; None for a regressor.
        sample_rows: Keep about this many records when the window holds more; None: all.
        seed: Seed of the sampling.

    Returns:
        The window's records.
    """
    (found,) = read_windows(
        capture,
        model,
        [(start, end)],
        numeric=numeric,
        categorical=categorical,
        labels=labels,
        sample_rows=sample_rows,
        seed=seed,
    )
    return found


def read_windows(
    capture: str,
    model: str,
    bounds: Sequence[tuple[datetime, datetime]],
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    labels: Sequence[str] | None,
    sample_rows: int | None = None,
    seed: int = 0,
) -> list[WindowRecords]:
    """Several consecutive windows in one scan of the capture (see :func:`read_window`).

    Each window is counted and sampled on its own (to ``sample_rows``), so the result is the
    same as reading them one by one, at the cost of one Ray Data read instead of one per
    window.

    Args:
        bounds: ``(start, end)`` of each window, in time order, not overlapping.

    Returns:
        The records of each window, in the order of ``bounds``.
    """
    import ray.data

    if not bounds:
        return []
    starts = [_utc(a) for a, _ in bounds]
    ends = [_utc(b) for _, b in bounds]
    if any(b <= a for a, b in zip(starts, ends, strict=True)) or any(
        ends[i] > starts[i + 1] for i in range(len(bounds) - 1)
    ):
        raise ValueError(f"windows must be non-empty, in order and apart: {bounds}")
    empty = _empty(numeric, categorical, labels)
    nothing = [WindowRecords(empty, 0, ()) for _ in bounds]
    filesystem, root = open_location(capture)
    paths = [
        join(root, day)
        for day in partition_days(starts[0], ends[-1])
        if filesystem.get_file_info(join(root, day)).type == pafs.FileType.Directory
    ]
    if not paths:
        return nothing
    keep = partial(_keep, model=model, starts=starts, ends=ends)
    counts = _count(paths, filesystem, keep, model, starts[0], ends[-1])
    if counts.empty or int(counts["n"].sum()) == 0:
        return nothing
    rows = counts.groupby(WINDOW_COLUMN)["n"].sum()
    shares = [
        None
        if sample_rows is None or int(rows.get(i, 0)) <= sample_rows
        else sample_rows / int(rows[i])
        for i in range(len(bounds))
    ]
    decode = partial(
        _decode,
        numeric=list(numeric),
        categorical=list(categorical),
        labels=list(labels) if labels else None,
        shares=shares,
        seed=seed,
    )
    dataset = ray.data.read_parquet(
        paths, filesystem=filesystem, file_extensions=["parquet"], columns=list(DECODE_COLUMNS)
    )
    kept = dataset.map_batches(keep, batch_format="pyarrow")
    frame = kept.map_batches(decode, batch_format="pyarrow").to_pandas()
    if frame.empty:
        frame = empty.assign(**{WINDOW_COLUMN: pd.Series(dtype="int32")})
    found = []
    for i in range(len(bounds)):
        mine = counts[counts[WINDOW_COLUMN] == i]
        firsts = mine.groupby("model_version")["first"].min().sort_values()
        part = frame[frame[WINDOW_COLUMN] == i].drop(columns=WINDOW_COLUMN)
        found.append(
            WindowRecords(
                part.reset_index(drop=True) if not part.empty else empty,
                int(mine["n"].sum()),
                tuple(firsts.index.astype(str)),
            )
        )
    return found


def _count(
    paths: list[str],
    filesystem: pafs.FileSystem,
    keep: Callable[[pa.Table], pa.Table],
    model: str,
    start: datetime,
    end: datetime,
) -> pd.DataFrame:
    """Records per window and version, and the first time of each version.

    Read here, by Arrow's multi-threaded scanner, rather than by a Ray Data pass: it reads
    three narrow columns (time, model, version; not the JSON ones that are most of the bytes),
    batch by batch with the time and model filter pushed down, so its memory stays flat; a
    second distributed pass cost more in scheduling than this scan takes (about 25 ms per
    million records on one core, see benchmarks/monitor_drift.py). The decoding, the heavy
    part, stays on Ray Data.
    """
    import pyarrow.dataset as pads

    days = pads.dataset(
        [pads.dataset(path, filesystem=filesystem, format="parquet") for path in paths]
    )
    time_type = days.schema.field("time").type
    wanted = (
        (pads.field("time") >= pa.scalar(start, time_type))
        & (pads.field("time") < pa.scalar(end, time_type))
        & (pads.field("model_name") == model)
    )
    parts = [
        _count_versions(keep(pa.Table.from_batches([batch])))
        for batch in days.to_batches(columns=list(COUNT_COLUMNS), filter=wanted)
        if batch.num_rows
    ]
    return pa.concat_tables(parts or [_count_versions(_empty_kept())]).to_pandas()


def _empty_kept() -> pa.Table:
    return pa.table({WINDOW_COLUMN: pa.array([], pa.int32())})


def _keep(batch: pa.Table, model: str, starts: list[datetime], ends: list[datetime]) -> pa.Table:
    """The batch's rows of ``model`` inside a window, with the window's index."""
    times = batch.column("time")
    mask = pc.and_(
        pc.and_(
            pc.greater_equal(times, pa.scalar(starts[0], times.type)),
            pc.less(times, pa.scalar(ends[-1], times.type)),
        ),
        pc.equal(batch.column("model_name"), model),
    )
    kept = batch.filter(mask)
    micros = kept.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False)
    edges = np.array([int(t.timestamp() * 1_000_000) for t in starts], dtype=np.int64)
    index = np.searchsorted(edges, micros, side="right") - 1
    stops = np.array([int(t.timestamp() * 1_000_000) for t in ends], dtype=np.int64)
    inside = micros < stops[np.clip(index, 0, len(stops) - 1)]  # not in a gap between windows
    return kept.append_column(WINDOW_COLUMN, pa.array(index, pa.int32())).filter(inside)


def _count_versions(batch: pa.Table) -> pa.Table:
    """Rows and first time per window and model version in the batch."""
    if batch.num_rows == 0:
        return pa.table(
            {
                WINDOW_COLUMN: pa.array([], pa.int32()),
                "model_version": pa.array([], pa.string()),
                "n": pa.array([], pa.int64()),
                "first": pa.array([], pa.timestamp("us", tz="UTC")),
            }
        )
    grouped = batch.group_by([WINDOW_COLUMN, "model_version"]).aggregate(
        [("time", "count"), ("time", "min")]
    )
    return pa.table(
        {
            WINDOW_COLUMN: grouped.column(WINDOW_COLUMN),
            "model_version": grouped.column("model_version"),
            "n": grouped.column("time_count").cast(pa.int64()),
            "first": grouped.column("time_min"),
        }
    )


def _decode(
    batch: pa.Table,
    numeric: list[str],
    categorical: list[str],
    labels: list[str] | None,
    shares: list[float | None],
    seed: int,
) -> pa.Table:
    """The batch's records with features, prediction and probabilities as columns; a record
    of a window with a share is kept when its draw falls below that share."""
    if any(share is not None for share in shares) and batch.num_rows:
        limits = np.array([1.0 if share is None else share for share in shares])
        window = batch.column(WINDOW_COLUMN).to_numpy(zero_copy_only=False)
        batch = batch.filter(pa.array(_draw(batch, seed) < limits[window]))
    schema = pa.schema(
        [
            *(pa.field(c, pa.float64()) for c in numeric),
            *(pa.field(c, pa.string()) for c in categorical),
        ]
    )
    columns = {k: batch.column(k) for k in (*KEYS, WINDOW_COLUMN)}
    features = _json_lines(batch.column("features"), schema)
    for name in schema.names:
        columns[name] = features.column(name)
    # A prediction is a JSON value (a class name, or a number for a regressor).
    wrapped = pc.binary_join_element_wise('{"p":', batch.column("prediction"), "}", "")
    kind = pa.string() if labels else pa.float64()
    columns[PREDICTION_COLUMN] = _json_lines(wrapped, pa.schema([pa.field("p", kind)])).column("p")
    if labels:
        probabilities = pc.fill_null(batch.column("probabilities"), "{}")
        found = _json_lines(
            probabilities, pa.schema([pa.field(label, pa.float64()) for label in labels])
        )
        for label in labels:
            columns[f"{PROBABILITY_PREFIX}{label}"] = found.column(label)
    return pa.table(columns)


def _draw(batch: pa.Table, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per record, from its request id and index: the same record
    draws the same number however Ray Data cuts the window into batches."""
    ids = batch.column("request_id").to_numpy(zero_copy_only=False)
    # One C pass over the ids (no joined key strings), then the index mixed in numerically.
    hashed = pd.util.hash_array(ids, hash_key=f"{seed:016d}"[-16:], categorize=False)
    index = batch.column("record_index").to_numpy(zero_copy_only=False).astype(np.uint64)
    return _mix(hashed ^ (index * _GOLDEN)) / float(2**64)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: every input bit affects every output bit (wrapping uint64)."""
    with np.errstate(over="ignore"):
        z = values + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _json_lines(values: pa.ChunkedArray | pa.Array, schema: pa.Schema) -> pa.Table:
    """One JSON object per value, parsed by Arrow with ``schema`` (other keys ignored)."""
    if len(values) == 0:
        return schema.empty_table()
    flat = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    flat = flat.cast(pa.large_string())
    # All values joined by newlines in one Arrow call: no Python loop over the rows.
    one_list = pa.LargeListArray.from_arrays(pa.array([0, len(flat)], pa.int64()), flat)
    text = pc.binary_join(one_list, pa.scalar("\n", pa.large_string()))[0].as_buffer()
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    return pajson.read_json(pa.BufferReader(text), parse_options=options)


def _empty(
    numeric: Sequence[str], categorical: Sequence[str], labels: Sequence[str] | None
) -> pd.DataFrame:
    columns: dict[str, Any] = {k: pd.Series(dtype=object) for k in KEYS}
    columns |= {c: pd.Series(dtype=float) for c in numeric}
    columns |= {c: pd.Series(dtype=object) for c in categorical}
    columns[PREDICTION_COLUMN] = pd.Series(dtype=object if labels else float)
    for label in labels or []:
        columns[f"{PROBABILITY_PREFIX}{label}"] = pd.Series(dtype=float)
    return pd.DataFrame(columns)


def _utc(when: datetime) -> datetime:
    return (
        when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    )
