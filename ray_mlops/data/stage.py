"""The data stage: read, validate with quarantine, fingerprint, split and profile.

Streaming on Ray Data from the read on; the driver only ever receives aggregates (counts,
statistics, offending keys), never the rows. The parsed rows are materialized once in the
object store (spilling to disk when larger), so the source is read and parsed only once; the
valid rows are materialized once more with their split, and each split is an Arrow filter of
that copy, so no later stage hashes a row again to find its split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from ray_mlops.config import ColumnContract, DataConfig, Task
from ray_mlops.data.contract import MAX_INFERRED_CATEGORIES, infer_contract
from ray_mlops.data.fingerprint import dataset_fingerprint
from ray_mlops.data.partials import count_by
from ray_mlops.data.profile import DatasetProfile, profile_dataset
from ray_mlops.data.source import DataSource, resolve_source
from ray_mlops.data.split import SPLITS, SplitPlan, assign_by_plan, plan_splits
from ray_mlops.data.validate import (
    FEATURE_HASH_COLUMN,
    RAW_VALUE_COLUMN,
    REASON_COLUMN,
    ROW_HASH_COLUMN,
    DatasetWideIssues,
    RowRules,
    check_batch,
    find_dataset_wide_issues,
    mark_dataset_wide_issues,
)
from ray_mlops.errors import DataError

if TYPE_CHECKING:
    import ray.data

SPLIT_COLUMN = "_ray_mlops_split"
QUARANTINE_REASON = "quarantine_reason"
QUARANTINE_RAW_VALUE = "quarantine_raw_value"


@dataclass
class QuarantineReport:
    """Rows set aside, why, and where they were written.

    ``by_reason`` counts each reason (``unparseable:age``); messages group them by kind
    (``unparseable``) with the columns listed, so a cause spread over many columns still ranks
    by its total. ``hint`` says what to change in the config, when that is known.

    Example:
        >>> report = QuarantineReport(
        ...     rows=6, by_reason={"unparseable:age": 2, "unparseable:fnlwgt": 2, "null:c": 3}
        ... )
        >>> report.top_reasons()
        'unparseable (4: age 2, fnlwgt 2), null (3: c 3)'
    """

    rows: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    path: str | None = None
    hint: str | None = None

    def top_reasons(self, n: int = 3, columns_shown: int = 4) -> str:
        """The most frequent kinds of reason, with their columns, for messages."""
        kinds: dict[str, dict[str, int]] = {}
        for reason, count in self.by_reason.items():
            kind, _, column = reason.partition(":")
            kinds.setdefault(kind, {})[column] = count
        ranked = sorted(kinds.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:n]
        parts = []
        for kind, columns in ranked:
            named = sorted(((c, k) for c, k in columns.items() if c), key=lambda ck: -ck[1])
            listed = [f"{c} {k:,}" for c, k in named[:columns_shown]]
            if len(named) > columns_shown:
                listed.append(f"{len(named) - columns_shown} more columns")
            detail = f": {', '.join(listed)}" if listed else ""
            parts.append(f"{kind} ({sum(columns.values()):,}{detail})")
        return ", ".join(parts)

    def describe(self) -> str:
        """The top reasons, then the hint if any."""
        return self.top_reasons() + (f". {self.hint}" if self.hint else "")


@dataclass
class PreparedData:
    """The valid rows of one dataset, split, with everything known about them."""

    source: DataSource
    fingerprint: str
    rows_read: int
    schema: dict[str, str]
    quarantine: QuarantineReport
    plan: SplitPlan
    splits: dict[str, ray.data.Dataset]
    split_counts: dict[str, int]
    profile: DatasetProfile
    contract: dict[str, ColumnContract]
    contract_declared: bool


def read_source(source: DataSource, data: DataConfig, task: Task) -> ray.data.Dataset:
    """Open the files as a lazy Ray Dataset.

    CSV columns that must be numeric are read as text and parsed row by row in validation:
    one bad value then quarantines one row instead of failing the whole read.
    """
    import ray.data
    from pyarrow import csv as pacsv

    kwargs = {"filesystem": source.filesystem} if source.filesystem else {}
    if source.format == "csv":
        as_text = [*data.numeric, *([data.target] if task == "regression" else [])]
        as_text += [c for c, s in (data.contract or {}).items() if s.dtype in ("int", "float")]
        options = pacsv.ConvertOptions(
            strings_can_be_null=True, column_types={c: pa.string() for c in as_text}
        )
        return ray.data.read_csv(source.files, convert_options=options, **kwargs)
    if source.format == "parquet":
        return ray.data.read_parquet(source.files, **kwargs)
    return ray.data.read_json(source.files, lines=True, **kwargs)


def check_columns(schema: pa.Schema, data: DataConfig, origin: str) -> None:
    """Fail with every missing column at once, listing the ones available."""
    named = {
        "target": [data.target],
        "id_column": [data.id_column] if data.id_column else [],
        "group_column": [data.group_column] if data.group_column else [],
        "timestamp_column": [data.timestamp_column] if data.timestamp_column else [],
        "numeric": data.numeric,
        "categorical": data.categorical,
        "sensitive": data.sensitive,
        "contract": list(data.contract or {}),
    }
    problems = [
        f"data.{key}: column {column!r} is not in the data"
        for key, columns in named.items()
        for column in columns
        if column not in schema.names
    ]
    if problems:
        raise DataError(
            f"{origin} does not match the config:\n  - "
            + "\n  - ".join(problems)
            + f"\n  columns available: {', '.join(schema.names)}"
        )


def _with_split(batch: pd.DataFrame, plan: SplitPlan, data: DataConfig) -> pd.DataFrame:
    names = assign_by_plan(batch, plan, data.split_key, data.target, data.timestamp_column)
    return batch.assign(**{SPLIT_COLUMN: names})


def prepare_data(
    data: DataConfig,
    task: Task,
    base_dir: Path,
    quarantine_location: str,
    frozen_plan: Callable[[str], SplitPlan | None] = lambda fingerprint: None,
) -> PreparedData:
    """Run the data stage.

    Args:
        data: The config's data section.
        task: classification or regression.
        base_dir: Folder relative data paths start from.
        quarantine_location: Folder or object store URI where bad rows are written as
            Parquet (only if any).
        frozen_plan: Returns the split plan already used for a fingerprint, if any, so the
            test split of a dataset never changes.

    Raises:
        DataError: unreadable source, missing columns, or too many bad rows.
    """
    from ray.data.expressions import col

    source = resolve_source(data.path, base_dir)
    raw = read_source(source, data, task)
    try:
        schema = raw.schema(fetch_if_missing=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {data.path}: {exc}") from None
    if schema is None:
        raise DataError(f"{data.path} holds no rows")
    check_columns(schema, data, origin=data.path)

    rules = RowRules.from_config(data, task)
    checked = raw.map_batches(
        partial(check_batch, rules=rules), batch_format="pandas"
    ).materialize()
    schema_text = ",".join(f"{n}:{t}" for n, t in zip(schema.names, schema.types, strict=True))
    fingerprint, rows = dataset_fingerprint(checked, ROW_HASH_COLUMN, schema_text)
    issues = find_dataset_wide_issues(checked, data, task)
    marked = checked.map_batches(
        partial(mark_dataset_wide_issues, issues=issues, id_column=data.id_column),
        batch_format="pandas",
    )
    quarantine = _quarantine(marked, rows, data, quarantine_location, issues)
    valid = marked.filter(expr=col(REASON_COLUMN) == "").drop_columns(
        [REASON_COLUMN, RAW_VALUE_COLUMN, FEATURE_HASH_COLUMN, ROW_HASH_COLUMN]
    )
    plan = frozen_plan(fingerprint)
    if plan is None:
        if data.split.strategy != "hash":  # the cuts depend on the rows: look at them once
            valid = valid.materialize()
        plan = plan_splits(valid, data)
    # The valid rows, each with its split, are kept once; the splits are Arrow filters of it.
    tagged = valid.map_batches(
        partial(_with_split, plan=plan, data=data), batch_format="pandas"
    ).materialize()
    del checked, marked, valid  # free the object store copy of the unsplit rows
    splits: dict[str, ray.data.Dataset] = {
        name: tagged.filter(expr=col(SPLIT_COLUMN) == name).drop_columns([SPLIT_COLUMN])
        for name in SPLITS
    }
    counts = _split_counts(tagged)
    empty = [name for name in SPLITS if not counts.get(name)]
    if empty:
        raise DataError(
            f"{data.path}: split(s) {', '.join(empty)} got no rows from {rows - quarantine.rows} "
            "valid rows; use more data or larger data.split shares"
        )
    sensitive_only = [c for c in data.sensitive if c not in data.feature_columns]
    profile = profile_dataset(
        tagged,
        data.numeric,
        [*data.categorical, *sensitive_only],
        data.target,
        task,
        top_k=MAX_INFERRED_CATEGORIES,
    )
    declared = data.contract is not None
    return PreparedData(
        source=source,
        fingerprint=fingerprint,
        rows_read=rows,
        schema={n: str(t) for n, t in zip(schema.names, schema.types, strict=True)},
        quarantine=quarantine,
        plan=plan,
        splits=splits,
        split_counts=counts,
        profile=profile,
        contract=dict(data.contract) if declared else infer_contract(schema, data, profile),  # type: ignore[arg-type]
        contract_declared=declared,
    )


def _quarantine(
    marked: ray.data.Dataset,
    rows: int,
    data: DataConfig,
    location: str,
    issues: DatasetWideIssues,
) -> QuarantineReport:
    """Count bad rows by reason, write them with their reason and the value as read, fail
    over the limit."""
    from ray.data.expressions import col

    by_reason = count_by(marked.select_columns([REASON_COLUMN]), [REASON_COLUMN])
    counts = {
        str(reason): int(n)
        for reason, n in zip(by_reason[REASON_COLUMN], by_reason["count"], strict=True)
        if reason
    }
    report = QuarantineReport(
        rows=sum(counts.values()), by_reason=counts, hint=_group_hint(data, issues)
    )
    if not report.rows:
        return report
    bad = marked.filter(expr=col(REASON_COLUMN) != "").drop_columns(
        [FEATURE_HASH_COLUMN, ROW_HASH_COLUMN]
    )
    bad = bad.rename_columns(
        {REASON_COLUMN: QUARANTINE_REASON, RAW_VALUE_COLUMN: QUARANTINE_RAW_VALUE}
    )
    # Ray Data writes a folder or an object store prefix alike (pyarrow filesystems).
    bad.write_parquet(location)
    report.path = location
    share = report.rows / max(rows, 1)
    if share > data.quarantine.max_bad_fraction:
        # Name what was checked: a declared contract, or only the built-in row checks.
        checked = (
            "break the data contract (data.contract)"
            if data.contract
            else "fail the row checks (no data.contract declared: numeric columns must parse, "
            "the target must be present, the data.quarantine rules)"
        )
        raise DataError(
            f"{data.path}: {report.rows:,} of {rows:,} rows ({share:.1%}) {checked}, over "
            f"data.quarantine.max_bad_fraction "
            f"{data.quarantine.max_bad_fraction:.1%}. Top reasons: {report.describe()}. "
            f"The rows and their reasons are in {location}"
        )
    return report


def _group_hint(data: DataConfig, issues: DatasetWideIssues) -> str | None:
    """What to change when rows share an id: often an entity id with many rows (panel data)."""
    if not issues.duplicate_id_rows:
        return None
    key, ids = data.id_column, len(issues.duplicate_ids)
    return (
        f"{issues.duplicate_id_rows:,} rows share {ids:,} value{'s' if ids > 1 else ''} of "
        f"data.id_column {key!r} (up to {issues.most_rows_per_id:,} rows each). If one {key!r} "
        f"has several rows by design (panel data), name it as the group instead: "
        f"`group_column: {key}` in the data section in place of `id_column: {key}`; a group's "
        "rows then share one split and are not duplicates"
    )


def _split_counts(tagged: ray.data.Dataset) -> dict[str, int]:
    counted = count_by(tagged.select_columns([SPLIT_COLUMN]), [SPLIT_COLUMN])
    found = dict(zip(counted[SPLIT_COLUMN], counted["count"].astype(int), strict=True))
    return {name: found.get(name, 0) for name in SPLITS}
