"""Row-level validation: every bad row gets a reason and goes to quarantine, never dropped.

Per-row checks (unparseable value, null where not allowed, out of range, unknown category,
missing target) are vectorised over each batch; a failed check keeps the value as read beside
its reason. Checks that need the whole dataset (duplicate ids, identical features with
conflicting labels) stream compact keys to the driver; only the offending keys go back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ray_mlops.config import ColumnContract, DataConfig, Task

if TYPE_CHECKING:
    import ray.data

REASON_COLUMN = "_ray_mlops_reason"
FEATURE_HASH_COLUMN = "_ray_mlops_feature_hash"
ROW_HASH_COLUMN = "_ray_mlops_row_hash"
RAW_VALUE_COLUMN = "_ray_mlops_raw_value"
MISSING_TARGET = "missing_target"
DUPLICATE_ID = "duplicate_id"
CONFLICTING_LABELS = "conflicting_labels"


@dataclass(frozen=True)
class RowRules:
    """What each row is checked against, derived from the config once."""

    numeric_columns: list[str]
    contract: dict[str, ColumnContract]
    target: str
    feature_columns: list[str]

    @classmethod
    def from_config(cls, data: DataConfig, task: Task) -> RowRules:
        """Columns that must parse as numbers, plus the declared contract (if any)."""
        contract = dict(data.contract or {})
        numeric = list(data.numeric)
        if task == "regression":
            numeric.append(data.target)
        numeric += [c for c, spec in contract.items() if spec.dtype in ("int", "float")]
        return cls(
            numeric_columns=list(dict.fromkeys(numeric)),
            contract=contract,
            target=data.target,
            feature_columns=data.feature_columns,
        )


def _first_reason(reasons: np.ndarray, mask: np.ndarray, reason: str) -> None:
    """Record ``reason`` where ``mask`` holds and no earlier check already failed."""
    reasons[mask & (reasons == "")] = reason


class _Verdicts:
    """The first failed check of each row, and the value it failed on, as read."""

    def __init__(self, rows: int) -> None:
        self.reasons = np.full(rows, "", dtype=object)
        self.raw_values = np.full(rows, None, dtype=object)

    def fail(self, mask: np.ndarray, reason: str, raw: pd.Series | None = None) -> None:
        """Record ``reason`` (and the value from ``raw``) where no earlier check failed."""
        new = mask & (self.reasons == "")
        self.reasons[new] = reason
        if raw is not None and new.any():
            self.raw_values[new] = [
                None if pd.isna(v) else str(v) for v in raw.to_numpy(dtype=object)[new]
            ]


def check_batch(batch: pd.DataFrame, rules: RowRules) -> pd.DataFrame:
    """Parse numeric columns, then add the first failed check of each row (``""`` if none).

    Also adds the failing value as read (text, null for a row that passed or a missing
    value), a hash of each whole row (the dataset fingerprint sums them) and of its feature
    values (to find conflicting labels).
    """
    frame = batch.copy()
    verdicts = _Verdicts(len(frame))
    as_read: dict[str, pd.Series] = {}
    for column in rules.numeric_columns:
        if column not in frame.columns:
            continue
        raw = as_read[column] = frame[column]
        parsed = pd.to_numeric(raw, errors="coerce").astype("Float64")
        # NaN from a float source is a missing value, not a parse failure.
        parsed = parsed.where(parsed.notna() & ~np.isnan(parsed.fillna(0.0)), pd.NA)
        verdicts.fail((raw.notna() & parsed.isna()).to_numpy(), f"unparseable:{column}", raw)
        frame[column] = parsed
    verdicts.fail(frame[rules.target].isna().to_numpy(), MISSING_TARGET)
    for column, spec in rules.contract.items():
        values = frame[column]
        raw = as_read.get(column, values)
        if spec.dtype == "int":
            fractional = values.notna() & (values.astype("Float64") % 1 != 0)
            verdicts.fail(fractional.fillna(False).to_numpy(bool), f"not_integer:{column}", raw)
        elif spec.dtype == "timestamp":
            parsed = pd.to_datetime(values, errors="coerce", utc=True)
            bad = (values.notna() & parsed.isna()).to_numpy(bool)
            verdicts.fail(bad, f"unparseable:{column}", raw)
        if not spec.nullable:
            verdicts.fail(values.isna().to_numpy(), f"null:{column}")
        if spec.min is not None:
            below = (values < spec.min).fillna(False).to_numpy(bool)
            verdicts.fail(below, f"below_min:{column}", raw)
        if spec.max is not None:
            above = (values > spec.max).fillna(False).to_numpy(bool)
            verdicts.fail(above, f"above_max:{column}", raw)
        if spec.categories is not None:
            unknown = values.notna() & ~values.astype("string").isin(spec.categories)
            verdicts.fail(unknown.to_numpy(bool), f"unknown_category:{column}", raw)
    # Hash the values as parsed (no string conversion): cheap, and equal within a run.
    frame[ROW_HASH_COLUMN] = _as_int64(pd.util.hash_pandas_object(frame, index=False))
    frame[FEATURE_HASH_COLUMN] = _as_int64(
        pd.util.hash_pandas_object(frame[rules.feature_columns], index=False)
    )
    frame[REASON_COLUMN] = verdicts.reasons
    # Arrow-backed, so that Ray Data keeps it a string column in a batch where it is all
    # null (it turns other all-null columns into Arrow's null type, which then fails to cast).
    frame[RAW_VALUE_COLUMN] = pd.Series(
        verdicts.raw_values, index=frame.index, dtype=pd.ArrowDtype(pa.string())
    )
    return frame


def _as_int64(hashes: pd.Series) -> np.ndarray:
    return hashes.to_numpy(dtype=np.uint64).view(np.int64)


@dataclass
class DatasetWideIssues:
    """Keys whose rows break a rule only visible across the whole dataset.

    ``duplicate_id_rows`` and ``most_rows_per_id`` tell a duplicated row key (a few ids, twice
    each) from an entity id with many rows each, which belongs in ``data.group_column``.
    """

    duplicate_ids: list[Any] = field(default_factory=list)
    conflicting_feature_hashes: list[int] = field(default_factory=list)
    duplicate_id_rows: int = 0
    most_rows_per_id: int = 0


def find_dataset_wide_issues(
    checked: ray.data.Dataset, data: DataConfig, task: Task
) -> DatasetWideIssues:
    """Duplicate ids and identical feature rows with different labels, among rows still valid.

    Only three compact key columns (id, feature hash, label hash, computed where the blocks
    live) stream to the driver, about 24 bytes a row, and are deduplicated with pandas' hash
    tables: on this kind of machine a Ray Data shuffle costs several times more than the
    whole check.
    """
    from ray.data.expressions import col

    issues = DatasetWideIssues()
    id_column = data.id_column if data.quarantine.duplicate_ids else None
    conflicting_labels = data.quarantine.checks_conflicting_labels(task)
    if not (id_column or conflicting_labels):
        return issues
    columns = [FEATURE_HASH_COLUMN, data.target, *([id_column] if id_column else [])]
    keys = (
        checked.filter(expr=col(REASON_COLUMN) == "")
        .select_columns(columns)
        .map_batches(
            partial(_dedup_keys, target=data.target, id_column=id_column), batch_format="pandas"
        )
    )
    ids, feature_hashes, label_hashes = [], [], []
    for batch in keys.iter_batches(batch_size=None, batch_format="numpy"):
        feature_hashes.append(batch[FEATURE_HASH_COLUMN])
        label_hashes.append(batch[_LABEL_HASH])
        if id_column:
            ids.append(batch[id_column])
    if not feature_hashes:
        return issues
    if id_column:
        all_ids = pd.Series(np.concatenate(ids))
        repeated_ids = all_ids[all_ids.duplicated(keep=False)]
        issues.duplicate_ids = repeated_ids.unique().tolist()
        issues.duplicate_id_rows = len(repeated_ids)
        if len(repeated_ids):
            issues.most_rows_per_id = int(repeated_ids.value_counts().iloc[0])
    if conflicting_labels:
        features = pd.Series(np.concatenate(feature_hashes))
        # Only rows whose features occur more than once can conflict: usually very few.
        repeated = features.duplicated(keep=False).to_numpy()
        pairs = pd.DataFrame(
            {"features": features[repeated], "label": np.concatenate(label_hashes)[repeated]}
        )
        labels = pairs.groupby("features")["label"].nunique()
        issues.conflicting_feature_hashes = [int(h) for h in labels.index[labels > 1]]
    return issues


_LABEL_HASH = "_ray_mlops_label_hash"


def _dedup_keys(batch: pd.DataFrame, target: str, id_column: str | None) -> pd.DataFrame:
    """The id, the feature hash and a hash of the label: what the dataset-wide checks need."""
    label = pd.util.hash_pandas_object(batch[target].astype("string"), index=False)
    keys = {FEATURE_HASH_COLUMN: batch[FEATURE_HASH_COLUMN], _LABEL_HASH: _as_int64(label)}
    return pd.DataFrame(keys | ({id_column: batch[id_column]} if id_column else {}))


def mark_dataset_wide_issues(
    batch: pd.DataFrame, issues: DatasetWideIssues, id_column: str | None
) -> pd.DataFrame:
    """Add the dataset-wide reasons to rows that passed the per-row checks."""
    reasons = batch[REASON_COLUMN].to_numpy(dtype=object).copy()
    if id_column and issues.duplicate_ids:
        _first_reason(
            reasons, batch[id_column].isin(issues.duplicate_ids).to_numpy(bool), DUPLICATE_ID
        )
    if issues.conflicting_feature_hashes:
        conflicted = batch[FEATURE_HASH_COLUMN].isin(issues.conflicting_feature_hashes)
        _first_reason(reasons, conflicted.to_numpy(bool), CONFLICTING_LABELS)
    return batch.assign(**{REASON_COLUMN: reasons})
