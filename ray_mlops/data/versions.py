"""Snapshots of the accepted versions of a data source, kept to compare the next version with.

A snapshot is narrow: per valid row an identity key (a hash of ``data.id_column``, else of the
feature columns), a content hash (every column but the id: an injected copy of a row under a
fresh id still matches) and the label as text, plus a seeded sample of the feature columns for
the distribution tests. The hashes are computed where the blocks live (Ray Data), over values
put in one canonical form first (numbers as float64, everything else as text, columns in name
order), so they do not depend on which columns a config parses as numbers.

Layout under the workspace storage (a folder or an object store URI)::

    data_versions/<source key>/latest.json              the accepted version's fingerprint
    data_versions/<source key>/<fingerprint>/rows.parquet    key, content, label, id
    data_versions/<source key>/<fingerprint>/sample.parquet  sampled feature columns and label
    data_versions/<source key>/<fingerprint>/version.json    source, rows, time, run

The source key names the source and what a row's identity means (path, target, id column or
feature columns), so two configs reading one file with different keys keep apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ray_mlops.config import DataConfig, Task
from ray_mlops.errors import DataError
from ray_mlops.storage import join, open_location

if TYPE_CHECKING:
    import ray.data

VERSIONS_FOLDER = "data_versions"
LATEST_FILE = "latest.json"
ROWS_FILE = "rows.parquet"
SAMPLE_FILE = "sample.parquet"
VERSION_FILE = "version.json"
# Rows of the sample kept for the distribution tests: enough for a KS test to see a shift of a
# tenth of a standard deviation, small enough to store with every version.
SAMPLE_ROWS = 20_000
SAMPLE_SEED = 0

KEY, CONTENT, LABEL, ID = "key", "content", "label", "id"


@dataclass(frozen=True)
class Layout:
    """What a snapshot reads from the rows: the label, the identity, the sampled columns."""

    source: str
    target: str
    id_column: str | None
    feature_columns: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @classmethod
    def of(cls, data: DataConfig, task: Task, source: str) -> Layout:
        """The layout of ``data`` over the resolved source URI or path ``source``."""
        numeric = [*data.numeric, *([data.target] if task == "regression" else [])]
        categorical = [*data.categorical, *([data.target] if task == "classification" else [])]
        return cls(
            source=source,
            target=data.target,
            id_column=data.id_column,
            feature_columns=tuple(data.feature_columns),
            numeric=tuple(dict.fromkeys(numeric)),
            categorical=tuple(dict.fromkeys(categorical)),
        )

    @property
    def source_key(self) -> str:
        """A folder name for the source: its file name, and a hash of what a row's key means."""
        identity = [self.source, self.target]
        identity += [f"id:{self.id_column}"] if self.id_column else sorted(self.feature_columns)
        digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:12]
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.source.rstrip("/").rsplit("/", 1)[-1])
        return f"{name[:40]}-{digest}"


@dataclass
class DataVersion:
    """One version's snapshot: its rows (narrow) and a sample of its columns."""

    fingerprint: str
    rows: pd.DataFrame
    sample: pd.DataFrame
    info: dict[str, Any]


def canonical(values: pd.Series) -> np.ndarray:
    """``values`` in the form that is hashed: float64 (NaN missing) for numbers, else text."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return values.astype("string").to_numpy(dtype=object, na_value=None)


def _hash(batch: pd.DataFrame, columns: list[str]) -> np.ndarray:
    frame = pd.DataFrame({c: canonical(batch[c]) for c in sorted(columns)}, index=batch.index)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def label_text(values: pd.Series) -> np.ndarray:
    """Labels as text, numbers written as float64 so that 1 and 1.0 read the same."""
    canon = canonical(values)
    if canon.dtype == np.float64:
        return np.array([None if np.isnan(v) else repr(float(v)) for v in canon], dtype=object)
    return canon


def narrow_rows(batch: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """The snapshot's columns of one batch: key, content hash, label, and the id as text."""
    content = [c for c in batch.columns if c != layout.id_column]
    identity = [layout.id_column] if layout.id_column else list(layout.feature_columns)
    columns = {
        KEY: _hash(batch, identity),
        CONTENT: _hash(batch, content),
        LABEL: label_text(batch[layout.target]),
    }
    if layout.id_column:  # to name the rows in the report
        ids = batch[layout.id_column].astype("string")
        columns[ID] = ids.to_numpy(dtype=object, na_value=None)
    return pd.DataFrame(columns)


def sample_columns(batch: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """The sampled columns of one batch in canonical form (numbers float64, the rest text)."""
    columns = [*layout.numeric, *layout.categorical]
    return pd.DataFrame({c: canonical(batch[c]) for c in dict.fromkeys(columns)})


def take_snapshot(
    splits: Mapping[str, ray.data.Dataset], layout: Layout, fingerprint: str
) -> DataVersion:
    """The snapshot of the valid rows of every split, computed with Ray Data.

    Only the narrow columns (about 30 bytes a row) and the sample reach the driver.
    """
    datasets = list(splits.values())
    rows = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    narrow = rows.map_batches(partial(narrow_rows, layout=layout), batch_format="pandas")
    frame = narrow.to_pandas()
    total = len(frame)
    sampled = rows
    if total > SAMPLE_ROWS:
        sampled = rows.random_sample(SAMPLE_ROWS / total, seed=SAMPLE_SEED)
    sample = sampled.map_batches(
        partial(sample_columns, layout=layout), batch_format="pandas"
    ).to_pandas()
    info = {
        "fingerprint": fingerprint,
        "source": layout.source,
        "target": layout.target,
        "id_column": layout.id_column,
        "rows": total,
    }
    return DataVersion(fingerprint, _typed(frame), sample, info)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({KEY: np.uint64, CONTENT: np.uint64})


class VersionStore:
    """The accepted versions of one source under ``<storage>/data_versions/<source key>``."""

    def __init__(self, storage: str, source_key: str) -> None:
        self.location = join(storage, VERSIONS_FOLDER, source_key)
        self.filesystem, self.root = open_location(self.location)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def latest_fingerprint(self) -> str | None:
        """The fingerprint of the last accepted version, None for a source never accepted."""
        path = self._path(LATEST_FILE)
        if self.filesystem.get_file_info(path).type.name == "NotFound":
            return None
        with self.filesystem.open_input_stream(path) as stream:
            return str(json.loads(stream.read().decode())["fingerprint"])

    def load(self, fingerprint: str) -> DataVersion:
        """The snapshot of an accepted version.

        Raises:
            DataError: Its files are missing or unreadable (named, with how to start over).
        """
        try:
            rows = pq.read_table(self._path(fingerprint, ROWS_FILE), filesystem=self.filesystem)
            sample = pq.read_table(self._path(fingerprint, SAMPLE_FILE), filesystem=self.filesystem)
            with self.filesystem.open_input_stream(self._path(fingerprint, VERSION_FILE)) as f:
                info = json.loads(f.read().decode())
        except (OSError, ValueError, pa.ArrowInvalid) as exc:
            raise DataError(
                f"the snapshot of accepted data version {fingerprint} in {self.location} "
                f"cannot be read ({exc}); remove {join(self.location, LATEST_FILE)} to make "
                "the next version the new baseline"
            ) from None
        return DataVersion(fingerprint, _typed(rows.to_pandas()), sample.to_pandas(), info)

    def accept(self, version: DataVersion, run_id: str | None) -> str:
        """Store ``version``'s snapshot, then point ``latest.json`` at it; its folder."""
        folder = self._path(version.fingerprint)
        self.filesystem.create_dir(folder, recursive=True)
        rows = pa.Table.from_pandas(version.rows, preserve_index=False)
        pq.write_table(rows, self._path(version.fingerprint, ROWS_FILE), filesystem=self.filesystem)
        sample = pa.Table.from_pandas(version.sample, preserve_index=False)
        pq.write_table(
            sample, self._path(version.fingerprint, SAMPLE_FILE), filesystem=self.filesystem
        )
        info = version.info | {
            "accepted_at": datetime.now(timezone.utc).isoformat(),
            "run_id": run_id,
        }
        self._write_text(self._path(version.fingerprint, VERSION_FILE), json.dumps(info, indent=2))
        # The pointer last: a snapshot half written is never the baseline.
        self._write_text(self._path(LATEST_FILE), json.dumps({"fingerprint": version.fingerprint}))
        return join(self.location, version.fingerprint)

    def write_report(self, name: str, files: Mapping[str, str]) -> str:
        """Write a refusal's report files under ``refused/<name>``; the folder's location."""
        folder = self._path("refused", name)
        self.filesystem.create_dir(folder, recursive=True)
        for file, text in files.items():
            self._write_text(self._path("refused", name, file), text)
        return join(self.location, "refused", name)

    def _write_text(self, path: str, text: str) -> None:
        with self.filesystem.open_output_stream(path) as stream:
            stream.write(text.encode())
