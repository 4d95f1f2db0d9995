"""The dataset profile as one self-contained HTML page: inline CSS, plots embedded as PNG."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ray_mlops.data.profile import CategoricalProfile, DatasetProfile, NumericProfile
from ray_mlops.reports import (
    BLUE,
    GREY,
    embed_png,
    new_figure,
    no_values,
    note,
    page,
    plain,
    row,
    section,
    table,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# The association measure of (numeric, categorical) features, as ``profile_dataset`` defines them.
_MEASURES = {"classification": ("eta", "Cramér's V"), "regression": ("Pearson r", "eta")}


def render_profile_html(profile: DatasetProfile, title: str) -> str:
    """Render ``profile`` as a standalone HTML page (no scripts, no external resources).

    The page has a summary (rows, columns, target balance or distribution), a ranked chart of
    the features' association with the target, and a section per column with its numbers and
    a plot: a histogram for numeric columns, the most frequent values for categorical ones.
    Every name and value that comes from the data is HTML-escaped.

    Args:
        profile: The profile from ``profile_dataset`` (or ``DatasetProfile.from_json``).
        title: Page title and heading.

    Returns:
        The page as a string, ready to write to a ``.html`` file.

    Example:
        >>> from ray_mlops.data.profile import DatasetProfile
        >>> empty = DatasetProfile(0, {}, {}, "y", "classification", {}, None)
        >>> render_profile_html(empty, "Empty").startswith("<!DOCTYPE html>")
        True
    """
    numeric_measure, categorical_measure = _MEASURES.get(profile.task, ("", ""))
    sections = [_summary_section(profile), _association_section(profile)]
    sections += [_numeric_section(n, c, numeric_measure) for n, c in profile.numeric.items()]
    sections += [
        _categorical_section(n, c, categorical_measure) for n, c in profile.categorical.items()
    ]
    return page(title, sections)


def _summary_section(profile: DatasetProfile) -> str:
    columns = len(profile.numeric) + len(profile.categorical)
    missing = sum(c.missing for c in profile.numeric.values()) + sum(
        c.missing for c in profile.categorical.values()
    )
    rows = [
        ("Rows", profile.rows),
        ("Feature columns", f"{columns} ({len(profile.numeric)} numeric)"),
        ("Missing feature values", missing),
        ("Task", profile.task),
        ("Target", profile.target),
    ]
    if profile.target_balance is not None:
        figure, ax = new_figure(len(profile.target_balance))
        labels, counts = list(profile.target_balance), list(profile.target_balance.values())
        _bars(ax, labels, counts, "rows")
        ax.set_title("Target balance")
        plot = embed_png(figure, f"balance of {profile.target}")
    elif profile.target_summary is not None:
        figure, ax = new_figure()
        _histogram(ax, profile.target_summary)
        ax.set_title("Target distribution")
        plot = embed_png(figure, f"distribution of {profile.target}")
    else:
        plot = note("No target statistics.")
    return section("Summary", table(rows) + plot)


def _association_section(profile: DatasetProfile) -> str:
    numeric_name, categorical_name = _MEASURES.get(profile.task, ("", ""))
    scores = [
        (f"{name} ({numeric_name})", c.target_association) for name, c in profile.numeric.items()
    ] + [
        (f"{name} ({categorical_name})", c.target_association)
        for name, c in profile.categorical.items()
    ]
    ranked = sorted(
        ((label, value) for label, value in scores if value is not None),
        key=lambda pair: -abs(pair[1]),
    )
    heading = f"Association with {profile.target}"
    if not ranked:
        return section(heading, note("No feature has a defined association."))
    figure, ax = new_figure(len(ranked))
    _bars(ax, [label for label, _ in ranked], [value for _, value in ranked], "association")
    return section(heading, embed_png(figure, "feature association with the target"))


def _numeric_section(name: str, column: NumericProfile, measure: str) -> str:
    rows: list[tuple[str, object]] = [
        ("count", column.count),
        ("missing", _share(column.missing, column.count + column.missing)),
        ("distinct", column.distinct),
        ("mean", column.mean),
        ("std", column.std),
        ("min", column.min),
        *column.quantiles.items(),
        ("max", column.max),
        (f"association ({measure})", column.target_association),
    ]
    figure, ax = new_figure()
    _histogram(ax, column)
    ax.set_xlabel(plain(name))
    return section(name, row(table(rows), embed_png(figure, f"histogram of {name}")))


def _categorical_section(name: str, column: CategoricalProfile, measure: str) -> str:
    total = column.count + column.missing
    rows: list[tuple[str, object]] = [
        ("count", column.count),
        ("missing", _share(column.missing, total)),
        ("distinct", column.distinct),
        (f"association ({measure})", column.target_association),
    ]
    other = [("(other values)", column.other_count)] if column.other_count else []
    ranked = [*column.top, *other]
    figure, ax = new_figure(len(ranked))
    if ranked:
        counts = [count for _, count in ranked]
        _bars(ax, [value for value, _ in ranked], counts, "rows", other_last=bool(other))
    else:
        no_values(ax)
    top = [(value, _share(count, column.count)) for value, count in ranked]
    tables = table(rows) + table(top, header=("value", "rows"))
    return section(name, row(tables, embed_png(figure, f"most frequent values of {name}")))


def _histogram(ax: Axes, column: NumericProfile) -> None:
    edges, counts = column.histogram_edges, column.histogram_counts
    if not counts:
        no_values(ax)
    elif len(edges) == 2 and edges[0] == edges[1]:
        ax.bar([plain(f"{edges[0]:g} (constant)")], counts, color=BLUE)
    else:
        ax.stairs(counts, edges, fill=True, color=BLUE)
    ax.set_ylabel("rows")


def _bars(
    ax: Axes, labels: Iterable[str], values: Sequence[float], xlabel: str, other_last: bool = False
) -> None:
    """Horizontal bars, the first label on top; a trailing "other" bar is grey."""
    names = [plain(label) for label in labels]
    colors = [BLUE] * len(names)
    if other_last:
        colors[-1] = GREY
    ax.barh(names[::-1], list(values)[::-1], color=colors[::-1])
    ax.set_xlabel(xlabel)


def _share(count: int, total: int) -> str:
    return f"{count:,} ({count / total:.1%})" if total else f"{count:,}"
