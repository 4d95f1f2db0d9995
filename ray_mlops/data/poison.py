"""Poisoned data: a new version of a source compared with its last accepted version.

Before training, the valid rows are compared with the snapshot of the previous accepted
version of the same source (:mod:`ray_mlops.data.versions`) on three counts:

- labels that changed on rows seen before (same key: ``data.id_column``, else the features),
  over the rows seen in both versions;
- exact copies of rows injected in bulk: copies beyond those the previous version had (a row
  copied under a fresh id counts, the id is left out of the comparison); the limit is on the
  rise of the share of copies, since a source that grows keeps its natural duplicates;
- per-column distribution jumps, with the monitor's statistics (:mod:`ray_mlops.data.drift`)
  on a sample of each version: a column jumped when its test rejects (false discovery rate
  ``ALPHA`` across columns) and its distance reaches ``min_distance``.

Over a limit, nothing is trained: the report (JSON and HTML) is written beside the snapshots,
the refusal is audited and the caller raises :class:`PoisonedDataError`. Within the limits,
or for the first version of a source, the snapshot moves forward to the new version.

The comparison (``compare_versions``) is Ray-free, on the narrow snapshot columns.

Example:
    >>> before = pd.DataFrame({"key": [1, 2, 3], "content": [10, 20, 30], "label": list("aab")})
    >>> after = pd.DataFrame({"key": [1, 2, 3, 4], "content": [11, 20, 30, 30],
    ...                       "label": list("babb")})
    >>> label_changes(before, after).changed, duplicate_rows(before, after).copies
    (1, 1)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_mlops.config import DataConfig, PoisoningConfig, Task
from ray_mlops.data.drift import ColumnDrift, categorical_drift, decide, numeric_drift
from ray_mlops.data.versions import (
    CONTENT,
    ID,
    KEY,
    LABEL,
    DataVersion,
    Layout,
    VersionStore,
    take_snapshot,
)
from ray_mlops.errors import PoisonedDataError
from ray_mlops.reports.html import note, page, section, table, text_table
from ray_mlops.secrets import redact_uri

if TYPE_CHECKING:
    from ray_mlops.audit import AuditLog
    from ray_mlops.data.stage import PreparedData

# False discovery rate of the per-column tests: a jump must be both significant and large.
ALPHA = 0.01
EXAMPLES = 20
REPORT_JSON = "poisoning.json"
REPORT_HTML = "poisoning.html"


@dataclass
class LabelChanges:
    """Rows seen in both versions (by key) and how many of them changed label."""

    seen: int
    changed: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Changed rows over rows seen before (0 without any)."""
        return self.changed / self.seen if self.seen else 0.0


@dataclass
class DuplicateRows:
    """Copies of rows beyond those the previous version had, and the share of copies."""

    copies: int
    share_before: float
    share_after: float
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rise(self) -> float:
        """How much the share of rows that copy another row rose (negative: fell)."""
        return self.share_after - self.share_before


@dataclass
class Comparison:
    """A new version against the previous accepted one."""

    previous: str
    current: str
    rows_before: int
    rows_after: int
    labels: LabelChanges
    duplicates: DuplicateRows
    columns: list[ColumnDrift]

    @property
    def jumped(self) -> list[ColumnDrift]:
        """The columns whose distribution jumped."""
        return [c for c in self.columns if c.drifted]

    def breaches(self, limits: PoisoningConfig) -> list[str]:
        """Each limit passed, as a sentence naming the count and the limit."""
        found = []
        if self.labels.share > limits.max_changed_label_share:
            found.append(
                f"{self.labels.changed:,} of {self.labels.seen:,} rows seen before changed "
                f"label ({self.labels.share:.2%}), over governance.poisoning."
                f"max_changed_label_share {limits.max_changed_label_share:.2%}"
            )
        if self.duplicates.rise > limits.max_duplicate_share:
            found.append(
                f"{self.duplicates.copies:,} rows are new exact copies of other rows (share of "
                f"copies {self.duplicates.share_before:.2%} -> {self.duplicates.share_after:.2%}"
                f", up {self.duplicates.rise:.2%}), over governance.poisoning."
                f"max_duplicate_share {limits.max_duplicate_share:.2%}"
            )
        if len(self.jumped) > limits.max_jumped_columns:
            named = ", ".join(
                f"{c.column} ({c.distance_name} {c.distance:.3f})" for c in self.jumped
            )
            found.append(
                f"{len(self.jumped)} column(s) jumped in distribution: {named}, over "
                f"governance.poisoning.max_jumped_columns {limits.max_jumped_columns} "
                f"(floors {_floors(limits)})"
            )
        return found

    def counts(self) -> dict[str, Any]:
        """The figures the audit record and the console carry."""
        return {
            "previous": self.previous,
            "current": self.current,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "rows_seen_before": self.labels.seen,
            "labels_changed": self.labels.changed,
            "duplicates": self.duplicates.copies,
            "duplicate_share_before": round(self.duplicates.share_before, 6),
            "duplicate_share_after": round(self.duplicates.share_after, 6),
            "columns_jumped": [c.column for c in self.jumped],
        }


def label_changes(
    before: pd.DataFrame, after: pd.DataFrame, examples: int = EXAMPLES
) -> LabelChanges:
    """Rows seen in both versions whose label changed.

    A key with several rows (identical features without an id column) is matched as a
    multiset: ``min(rows before, rows after)`` of its rows are seen in both, and of those,
    the ones whose label no row of the other version keeps have changed.

    Args:
        before: The previous version's ``key`` and ``label`` columns.
        after: The new version's, with ``id`` when the source has an id column.
        examples: Changed keys listed with their labels before and after.
    """
    b = before.groupby([KEY, LABEL], dropna=False, sort=False).size()
    a = after.groupby([KEY, LABEL], dropna=False, sort=False).size()
    both = pd.concat({"before": b, "after": a}, axis=1).fillna(0).astype(np.int64)
    per_key = both.groupby(level=0, sort=False).sum()
    kept = both.min(axis=1).groupby(level=0, sort=False).sum()
    seen = per_key.min(axis=1)
    changed = (seen - kept).clip(lower=0)
    changed = changed[changed > 0]
    listed = []
    for key in changed.index[:examples]:
        row: dict[str, Any] = {"key": f"{int(key):016x}"}
        mine = after[after[KEY] == key]
        if ID in after.columns:
            row["id"] = ", ".join(str(i) for i in mine[ID].head(3))
        row["before"] = sorted(str(x) for x in before.loc[before[KEY] == key, LABEL].unique())
        row["after"] = sorted(str(x) for x in mine[LABEL].unique())
        listed.append(row)
    return LabelChanges(seen=int(seen.sum()), changed=int(changed.sum()), examples=listed)


def duplicate_rows(
    before: pd.DataFrame, after: pd.DataFrame, examples: int = EXAMPLES
) -> DuplicateRows:
    """Rows added since the previous version that copy another row exactly.

    A row is added when its key is new, or when its key has more rows than before (an exact
    copy under the same id); a row seen before whose content changed (a flipped label) is not
    added, so it never counts here even when it now equals another row. An added row is a copy
    when another row of the new version has the same content: of ``a`` added rows of one
    content, all ``a`` are copies when that content has other rows, else ``a - 1``. So ``k``
    copies of a row count ``k``, however many copies it had before.

    Args:
        before: The previous version's ``key`` and ``content`` columns.
        after: The new version's, with ``id`` when the source has an id column.
        examples: The most copied contents listed.
    """
    pairs_now = after.groupby([KEY, CONTENT], sort=True).size()
    pairs_then = before.groupby([KEY, CONTENT], sort=False).size()
    pairs_then = pairs_then.reindex(pairs_now.index, fill_value=0)
    keys = pairs_now.index.get_level_values(0)
    growth = (
        pairs_now.groupby(level=0).sum()
        - before.groupby(KEY).size().reindex(pairs_now.index.unique(0), fill_value=0)
    ).clip(lower=0)
    # The key's new rows are its pairs' excess rows, counted until the key's growth is used.
    excess = (pairs_now - pairs_then).clip(lower=0).to_numpy()
    room = growth.reindex(keys).to_numpy() - (
        pd.Series(excess, index=pairs_now.index).groupby(level=0).cumsum().to_numpy() - excess
    )
    added = pd.Series(np.clip(np.minimum(excess, room), 0, None), index=pairs_now.index)
    added = added[added > 0].groupby(level=1).sum()
    now = after[CONTENT].value_counts(sort=False)
    others = now.reindex(added.index) - added
    copies = (added - (others == 0)).astype(np.int64)
    copies = copies[copies > 0].sort_values(ascending=False, kind="stable")
    then = before[CONTENT].value_counts(sort=False)
    listed = []
    for content, count in copies.head(examples).items():
        row: dict[str, Any] = {"content": f"{int(content):016x}", "new_copies": int(count)}
        row["rows_now"], row["rows_before"] = int(now[content]), int(then.get(content, 0))
        if ID in after.columns:
            ids = after.loc[after[CONTENT] == content, ID].head(3)
            row["ids"] = ", ".join(str(i) for i in ids)
        listed.append(row)
    return DuplicateRows(
        copies=int(copies.sum()),
        share_before=_copy_share(len(before), len(then)),
        share_after=_copy_share(len(after), len(now)),
        examples=listed,
    )


def _copy_share(rows: int, distinct: int) -> float:
    return (rows - distinct) / rows if rows else 0.0


def column_jumps(
    before: pd.DataFrame, after: pd.DataFrame, layout: Layout, limits: PoisoningConfig
) -> list[ColumnDrift]:
    """The monitor's drift statistics per column between the two versions' samples, decided.

    Only the columns of the layout found in both samples are compared, and only with the
    distances ``limits.min_distance`` names (a distance left out is not checked).
    """
    floors: dict[str, float] = {str(name): floor for name, floor in limits.min_distance.items()}
    results = []
    if "wasserstein_normalised" in floors:
        for column in layout.numeric:
            if column in before.columns and column in after.columns:
                reference = pd.to_numeric(before[column], errors="coerce").to_numpy(np.float64)
                if np.isnan(reference).all():
                    continue
                current = pd.to_numeric(after[column], errors="coerce").to_numpy(np.float64)
                results.append(numeric_drift(column, reference, current))
    if "jensen_shannon" in floors:
        for column in layout.categorical:
            if column in before.columns and column in after.columns:
                counts = before[column].dropna().astype(str).value_counts()
                if counts.empty:
                    continue
                reference = {str(k): int(v) for k, v in counts.items()}
                current = after[column].dropna().astype(str).value_counts()
                results.append(
                    categorical_drift(
                        column, reference, {str(k): int(v) for k, v in current.items()}
                    )
                )
    return decide(results, alpha=ALPHA, min_distance=floors)


def compare_versions(
    previous: DataVersion, current: DataVersion, layout: Layout, limits: PoisoningConfig
) -> Comparison:
    """``current`` against ``previous``: changed labels, new copies, jumped columns."""
    return Comparison(
        previous=previous.fingerprint,
        current=current.fingerprint,
        rows_before=len(previous.rows),
        rows_after=len(current.rows),
        labels=label_changes(previous.rows, current.rows),
        duplicates=duplicate_rows(previous.rows, current.rows),
        columns=column_jumps(previous.sample, current.sample, layout, limits),
    )


@dataclass
class PoisoningCheck:
    """What the check did with one version of a source: compared, accepted or refused."""

    source: str
    store: str
    fingerprint: str
    previous: str | None
    comparison: Comparison | None = None
    breaches: list[str] = field(default_factory=list)
    report: str | None = None
    seconds: float = 0.0

    @property
    def refused(self) -> bool:
        """Whether the data passed a limit (nothing may train on it)."""
        return bool(self.breaches)

    def describe(self) -> str:
        """One line for the console: what was compared and what was found."""
        if self.previous is None:
            return f"first version of this source: {self.fingerprint} is the baseline"
        if self.comparison is None:
            return f"same data as accepted version {self.previous}: nothing to compare"
        c = self.comparison
        found = (
            f"vs version {self.previous}: {c.labels.changed:,} labels changed, "
            f"{c.duplicates.copies:,} duplicates, {len(c.jumped)} columns jumped"
        )
        return found + (" (refused)" if self.refused else "")

    def error(self) -> PoisonedDataError:
        """The error that stops the run, naming the counts, the limits and the report."""
        return PoisonedDataError(
            f"{self.source}: the data changed beyond the poisoning limits against accepted "
            f"version {self.previous} (this version {self.fingerprint}); nothing was trained. "
            + "; ".join(self.breaches)
            + f". Report: {self.report}/{REPORT_HTML}. If the change is intended, raise those "
            "limits or set governance.poisoning.enabled: false for this run"
        )

    def report_files(self, limits: PoisoningConfig) -> dict[str, str]:
        """The report as files: ``poisoning.json`` and ``poisoning.html``."""
        return {REPORT_JSON: self.to_json(limits), REPORT_HTML: render_report(self, limits)}

    def to_json(self, limits: PoisoningConfig) -> str:
        """Everything the check found, as JSON."""
        c = self.comparison
        body: dict[str, Any] = {
            "source": self.source,
            "snapshots": self.store,
            "fingerprint": self.fingerprint,
            "previous": self.previous,
            "refused": self.refused,
            "breaches": self.breaches,
            "limits": limits.model_dump(mode="json"),
        }
        if c is not None:
            body |= {
                "rows_before": c.rows_before,
                "rows_after": c.rows_after,
                "labels": asdict(c.labels) | {"share": c.labels.share},
                "duplicates": asdict(c.duplicates) | {"rise": c.duplicates.rise},
                "columns": [col.to_dict() for col in c.columns],
                "columns_jumped": [col.column for col in c.jumped],
            }
        return json.dumps(body, indent=2)


def render_report(check: PoisoningCheck, limits: PoisoningConfig) -> str:
    """A short HTML page of the check: the verdict, the counts, examples, the columns."""
    c = check.comparison
    verdict = "refused: " + "; ".join(check.breaches) if check.refused else "accepted"
    sections = [
        section(
            "Verdict",
            note(verdict)
            + table(
                [
                    ("source", check.source),
                    ("this version", check.fingerprint),
                    ("previous accepted version", check.previous or "none"),
                ]
            ),
        )
    ]
    if c is not None:
        sections.append(
            section(
                "Counts",
                table(
                    [
                        ("rows", c.rows_before, c.rows_after, ""),
                        ("rows seen before", c.labels.seen, "", ""),
                        (
                            "labels changed",
                            "",
                            c.labels.changed,
                            f"{limits.max_changed_label_share:.2%} of seen",
                        ),
                        (
                            "share of rows that copy another",
                            c.duplicates.share_before,
                            c.duplicates.share_after,
                            f"rise {limits.max_duplicate_share:.2%}",
                        ),
                        ("new exact copies", "", c.duplicates.copies, ""),
                        ("columns jumped", "", len(c.jumped), str(limits.max_jumped_columns)),
                    ],
                    ["", "previous", "this version", "limit"],
                ),
            )
        )
        if c.labels.examples:
            sections.append(_examples("Labels changed (first rows)", c.labels.examples))
        if c.duplicates.examples:
            sections.append(_examples("Most copied rows", c.duplicates.examples))
        rows = [
            [
                col.column,
                col.kind,
                col.distance_name,
                "" if col.distance is None else f"{col.distance:.3f}",
                "" if col.adjusted_p is None else f"{col.adjusted_p:.2g}",
                "jumped" if col.drifted else "",
            ]
            for col in c.columns
        ]
        sections.append(
            section(
                "Columns",
                note(
                    f"Floors {_floors(limits)}; a jump is significant at FDR {ALPHA} and reaches its floor."
                )
                + text_table(
                    ["column", "kind", "distance", "value", "adjusted p", ""],
                    rows,
                    ["fail" if col.drifted else None for col in c.columns],
                ),
            )
        )
    return page(f"Poisoning check of {check.source}", sections)


def _examples(heading: str, examples: list[dict[str, Any]]) -> str:
    header = list(examples[0])
    rows = [[_cell(e.get(h)) for h in header] for e in examples]
    return section(heading, text_table(header, rows))


def _cell(value: Any) -> str:
    return " | ".join(map(str, value)) if isinstance(value, list) else str(value)


def _floors(limits: PoisoningConfig) -> str:
    return ", ".join(f"{name} {floor}" for name, floor in limits.min_distance.items()) or "none"


def check_data_version(
    prepared: PreparedData,
    data: DataConfig,
    task: Task,
    limits: PoisoningConfig,
    storage: str,
    *,
    run_id: str | None = None,
    audit: AuditLog | None = None,
) -> PoisoningCheck:
    """Compare the prepared data with the last accepted version of its source.

    The first version of a source becomes its baseline; the same fingerprint as the last
    accepted version has nothing to compare; otherwise the versions are compared, and a
    version within the limits becomes the new accepted one. A version over a limit is
    refused: its report is written under the source's snapshots and, with ``audit``, a
    ``data.poisoning_refused`` record is appended. The caller stops the run
    (``check.error()``).

    Args:
        prepared: The data stage's result (valid rows, split, with the fingerprint).
        data: The config's data section (target, id column, feature columns).
        task: classification or regression (which columns are numeric).
        limits: ``governance.poisoning``.
        storage: The workspace storage (folder or object store URI).
        run_id: The run, recorded with an accepted version and in a refused one's report.
        audit: Where a refusal is recorded.

    Returns:
        What was compared and found; ``refused`` says whether the data may be trained on.
    """
    start = time.perf_counter()
    layout = Layout.of(data, task, prepared.source.uri)
    store = VersionStore(storage, layout.source_key)
    check = PoisoningCheck(
        source=redact_uri(data.path),  # a presigned or credentialed URI keeps its secret
        store=store.location,
        fingerprint=prepared.fingerprint,
        previous=store.latest_fingerprint(),
    )
    if check.previous == prepared.fingerprint:
        return check
    current = take_snapshot(prepared.splits, layout, prepared.fingerprint)
    if check.previous is not None:
        before = store.load(check.previous)
        check.comparison = compare_versions(before, current, layout, limits)
        check.breaches = check.comparison.breaches(limits)
    if check.refused:
        name = f"{prepared.fingerprint}-{run_id}" if run_id else prepared.fingerprint
        check.report = store.write_report(name, check.report_files(limits))
        if audit is not None and check.comparison is not None:
            from ray_mlops.audit.actions import DATA_REFUSED

            audit.append(
                action=DATA_REFUSED,
                target=check.source,
                outcome="refused",
                reason="; ".join(check.breaches),
                details=check.comparison.counts() | {"report": check.report, "run_id": run_id},
            )
    else:
        store.accept(current, run_id)
    check.seconds = time.perf_counter() - start
    return check
