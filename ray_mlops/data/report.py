"""The dataset profile as one self-contained HTML page: inline CSS, plots embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ray_mlops.data.profile import CategoricalProfile, DatasetProfile, NumericProfile

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
h1 { border-bottom: 2px solid #4c72b0; padding-bottom: .3rem; }
section { border-top: 1px solid #ddd; padding: .5rem 0 1rem; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .15rem .6rem; border-bottom: 1px solid #eee; text-align: right; }
th { text-align: left; font-weight: 600; }
img { max-width: 100%; }
.note { color: #666; font-style: italic; }
"""
_BLUE, _GREY = "#4c72b0", "#b0b0b0"
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
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


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
        figure, ax = _figure(len(profile.target_balance))
        labels, counts = list(profile.target_balance), list(profile.target_balance.values())
        _bars(ax, labels, counts, "rows")
        ax.set_title("Target balance")
        plot = _img(figure, f"balance of {profile.target}")
    elif profile.target_summary is not None:
        figure, ax = _figure()
        _histogram(ax, profile.target_summary)
        ax.set_title("Target distribution")
        plot = _img(figure, f"distribution of {profile.target}")
    else:
        plot = '<p class="note">No target statistics.</p>'
    return _section("Summary", _table(rows) + plot)


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
        return _section(heading, '<p class="note">No feature has a defined association.</p>')
    figure, ax = _figure(len(ranked))
    _bars(ax, [label for label, _ in ranked], [value for _, value in ranked], "association")
    return _section(heading, _img(figure, "feature association with the target"))


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
    figure, ax = _figure()
    _histogram(ax, column)
    ax.set_xlabel(_plain(name))
    return _section(name, _row(_table(rows), _img(figure, f"histogram of {name}")))


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
    figure, ax = _figure(len(ranked))
    if ranked:
        counts = [count for _, count in ranked]
        _bars(ax, [value for value, _ in ranked], counts, "rows", other_last=bool(other))
    else:
        _no_values(ax)
    top = [(value, _share(count, column.count)) for value, count in ranked]
    tables = _table(rows) + _table(top, header=("value", "rows"))
    return _section(name, _row(tables, _img(figure, f"most frequent values of {name}")))


def _figure(bars: int = 0) -> tuple[Figure, Axes]:
    """A figure sized for ``bars`` horizontal bars (or a plain plot when 0).

    Built from ``matplotlib.figure.Figure`` rather than pyplot: no global backend or figure
    registry is touched, so nothing is left open (matplotlib's advice for servers), and saving
    to PNG renders with Agg.
    """
    from matplotlib.figure import Figure

    height = 3.0 if bars == 0 else min(12.0, 1.0 + 0.3 * bars)
    figure = Figure(figsize=(6.0, height), layout="constrained")
    return figure, figure.add_subplot()


def _histogram(ax: Axes, column: NumericProfile) -> None:
    edges, counts = column.histogram_edges, column.histogram_counts
    if not counts:
        _no_values(ax)
    elif len(edges) == 2 and edges[0] == edges[1]:
        ax.bar([_plain(f"{edges[0]:g} (constant)")], counts, color=_BLUE)
    else:
        ax.stairs(counts, edges, fill=True, color=_BLUE)
    ax.set_ylabel("rows")


def _bars(
    ax: Axes, labels: Iterable[str], values: Sequence[float], xlabel: str, other_last: bool = False
) -> None:
    """Horizontal bars, the first label on top; a trailing "other" bar is grey."""
    names = [_plain(label) for label in labels]
    colors = [_BLUE] * len(names)
    if other_last:
        colors[-1] = _GREY
    ax.barh(names[::-1], list(values)[::-1], color=colors[::-1])
    ax.set_xlabel(xlabel)


def _no_values(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _img(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _table(rows: Iterable[tuple[str, object]], header: tuple[str, str] | None = None) -> str:
    head = f"<tr><th>{_esc(header[0])}</th><th>{_esc(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><th>{_esc(key)}</th><td>{_value(v)}</td></tr>" for key, v in rows)
    return f"<table>{head}{body}</table>"


def _section(heading: str, body: str) -> str:
    return f"<section>\n<h2>{_esc(heading)}</h2>\n{body}\n</section>"


def _row(*parts: str) -> str:
    return '<div class="row">' + "".join(f"<div>{part}</div>" for part in parts) + "</div>"


def _share(count: int, total: int) -> str:
    return f"{count:,} ({count / total:.1%})" if total else f"{count:,}"


def _value(value: object) -> str:
    if value is None:
        return "&mdash;"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _esc(str(value))
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _plain(text: str) -> str:
    """Text for a matplotlib label: a ``$`` in the data must not start mathtext."""
    return text.replace("$", r"\$")
