"""The data stage: read with Ray Data, check against the config, split, fingerprint."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from ray_mlops.config import DataConfig, Task
from ray_mlops.data.fingerprint import dataset_fingerprint
from ray_mlops.data.source import resolve_source, source_format
from ray_mlops.data.split import SPLITS, assign_splits
from ray_mlops.errors import DataError

if TYPE_CHECKING:
    import ray.data

SPLIT_COLUMN = "_ray_mlops_split"
UNLABELED = "unlabeled"


@dataclass
class PreparedData:
    """The splits of one dataset (rows still raw) and what identifies it."""

    source: str
    fingerprint: str
    rows_read: int
    splits: dict[str, ray.data.Dataset]
    split_counts: dict[str, int] = field(default_factory=dict)
    schema: dict[str, str] = field(default_factory=dict)

    @property
    def rows_unlabeled(self) -> int:
        """Rows left out of every split because their target is missing."""
        return self.split_counts.get(UNLABELED, 0)


def read_source(data: DataConfig, base_dir: Path) -> tuple[str, ray.data.Dataset]:
    """Open the configured source as a lazy Ray Dataset."""
    import ray.data
    from pyarrow import csv as pacsv

    source = resolve_source(data.path, base_dir)
    fmt = source_format(source)
    try:
        if fmt == "csv":
            # Empty CSV fields are missing values, for strings too.
            options = pacsv.ConvertOptions(strings_can_be_null=True)
            return source, ray.data.read_csv(source, convert_options=options)
        if fmt == "parquet":
            return source, ray.data.read_parquet(source)
        return source, ray.data.read_json(source, lines=True)
    except (FileNotFoundError, pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {data.path}: {exc}") from None


def check_columns(schema: pa.Schema, data: DataConfig, task: Task, origin: str) -> None:
    """Fail with every problem at once if the columns the config names are absent or mistyped."""
    present = dict(zip(schema.names, schema.types, strict=True))
    named = {"target": [data.target], "id_column": [data.id_column] if data.id_column else []}
    named |= {"numeric": data.numeric, "categorical": data.categorical, "sensitive": data.sensitive}
    problems = [
        f"data.{key}: column {column!r} is not in the data"
        for key, columns in named.items()
        for column in columns
        if column not in present
    ]
    must_be_numeric = [*data.numeric, *([data.target] if task == "regression" else [])]
    problems += [
        f"column {column!r} must be numeric but has type {present[column]}"
        for column in must_be_numeric
        if column in present and not _is_numeric(present[column])
    ]
    if problems:
        available = ", ".join(schema.names)
        raise DataError(
            f"{origin} does not match the config:\n  - "
            + "\n  - ".join(problems)
            + f"\n  columns available: {available}"
        )


def _is_numeric(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_null(dtype)
    )


def _tag_rows(batch: pd.DataFrame, data: DataConfig) -> pd.DataFrame:
    """Make NaN a missing value and add the split name.

    Every source column is kept: the champion may use columns this config does not.
    """
    frame = batch.copy()
    # Ray Data aggregations skip nulls but not float NaN: make them one thing here.
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            frame[column] = frame[column].astype("Float64")
    splits = assign_splits(frame, data.split, data.id_column)
    # Splitting on the source columns keeps a row's split independent of the feature choice.
    frame[SPLIT_COLUMN] = pd.Series(splits, index=frame.index).where(
        frame[data.target].notna(), UNLABELED
    )
    return frame


def _rows_of_split(batch: pd.DataFrame, name: str) -> pd.DataFrame:
    return batch[batch[SPLIT_COLUMN] == name].drop(columns=[SPLIT_COLUMN])


def load_data(data: DataConfig, task: Task, base_dir: Path) -> PreparedData:
    """Read, check, tag and fingerprint the data, and return its three splits.

    The tagged rows are materialized in the Ray object store (not in the driver), so the
    source is read once however many stages use the splits.
    """
    source, raw = read_source(data, base_dir)
    try:
        schema = raw.schema(fetch_if_missing=True)
    except (FileNotFoundError, pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {data.path}: {exc}") from None
    if schema is None:
        raise DataError(f"{data.path} holds no rows")
    check_columns(schema, data, task, origin=data.path)
    tagged = raw.map_batches(partial(_tag_rows, data=data), batch_format="pandas").materialize()
    fingerprint, rows = dataset_fingerprint(tagged)
    counts = {
        row[SPLIT_COLUMN]: row["count()"] for row in tagged.groupby(SPLIT_COLUMN).count().take_all()
    }
    splits: dict[str, ray.data.Dataset] = {
        name: tagged.map_batches(partial(_rows_of_split, name=name), batch_format="pandas")
        for name in SPLITS
    }
    empty = [name for name in SPLITS if not counts.get(name)]
    if empty:
        raise DataError(
            f"{data.path}: split(s) {', '.join(empty)} got no rows from {rows} labeled rows; "
            "use more data or larger data.split shares"
        )
    return PreparedData(
        source=source,
        fingerprint=fingerprint,
        rows_read=rows,
        splits=splits,
        split_counts={name: int(counts.get(name, 0)) for name in (*SPLITS, UNLABELED)},
        schema={n: str(t) for n, t in zip(schema.names, schema.types, strict=True)},
    )
