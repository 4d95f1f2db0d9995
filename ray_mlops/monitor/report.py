"""One monitored window as a standalone HTML page: verdict, drift, distributions, quality, trends.

The page reads the :class:`~ray_mlops.monitor.result.WindowResult` every output of the monitor
reads, plus the reference and the window's records for the distributions (a result keeps only
statistics). It is written with the project's report kit, like the profile and evaluation pages:
inline CSS, no scripts, every text from the data escaped, matplotlib ``Figure`` objects (never
pyplot) embedded as PNG without metadata, so the same inputs give the same bytes. Ray-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ray_mlops.data.drift import ColumnDrift, drift_share
from ray_mlops.errors import DataError
from ray_mlops.models.outputs import PROBABILITY_PREFIX
from ray_mlops.monitor.result import Breach, WindowResult
from ray_mlops.monitor.window import PREDICTION, Limits, Reference, Window
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
    text_table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_COLUMN_PLOTS = 25
"""Input columns drawn at most; drifted columns are always drawn, the rest by distance."""
MAX_CATEGORIES = 15
"""Bars of a categorical plot; the categories least frequent on both sides are pooled."""
HISTOGRAM_BINS = 40
SCORE_BINS = 20

_DRIFT_HEADER = (
    "column",
    "kind",
    "test",
    "statistic",
    "adjusted p",
    "distance",
    "value",
    "PSI",
    "missing",
    "out of range",
    "unseen",
    "drifted",
)
_FAIRNESS_LIMITS = {
    "demographic_parity_difference": "max_demographic_parity_difference",
    "equalized_odds_difference": "max_equalized_odds_difference",
}


def render_window_report(
    result: WindowResult,
    reference: Reference,
    window: Window,
    history: Sequence[WindowResult] = (),
    *,
    limits: Limits | None = None,
) -> str:
    """Render one window's findings as a standalone HTML page.

    The page has a summary with the verdict (every broken limit), the drift table of the input
    columns and model outputs, each input column's reference and current distribution (drifted
    columns first, at most :data:`MAX_COLUMN_PLOTS`), the score and predicted class
    distributions, the estimated beside the realised performance, fairness per sensitive
    column, and plots over time from ``history`` and this window. An untested window (too few
    records) gives a short page that says why, without plots.

    Args:
        result: The window's result from ``evaluate_window``.
        reference: The reference the window was judged against.
        window: The window's decoded records (the distributions are drawn from them).
        history: Earlier results of the model, in any order; one with this window's start and
            end is replaced by ``result``.
        limits: The thresholds the window was held to, to show every limit and not only the
            broken ones (which the breaches carry).

    Returns:
        The page, ready to write to a ``.html`` file.

    Raises:
        DataError: A column of the result is missing from the window's records.

    Example:
        >>> from datetime import datetime, timezone
        >>> when = datetime(2026, 12, 5, tzinfo=timezone.utc)
        >>> quiet = WindowResult("m", (), when, when, rows=0, labelled_rows=0, tested=False)
        >>> frame = pd.DataFrame()
        >>> "no traffic" in render_window_report(quiet, Reference(), Window("m", when, when, frame))
        True
    """
    title = f"Monitoring of {result.model}: {_when(result.start)} to {_when(result.end)}"
    summary = section("Summary", _summary(result, limits))
    if not result.tested:
        return page(title, [summary])
    absent = [c.column for c in result.columns if c.column not in window.frame]
    if absent:
        raise DataError(f"the window's records lack the columns {absent} of its result")
    sections = [
        summary,
        section("Drift", _drift_table(result)),
        section("Input distributions", _distributions(result.columns, reference, window)),
    ]
    outputs = _output_plots(reference, window)
    if outputs:
        sections.append(section("Model outputs", row(*outputs)))
    if result.estimated is not None or result.realised is not None:
        sections.append(section("Performance", _performance(result, limits)))
    if result.fairness:
        sections.append(section("Fairness", _fairness(result, limits)))
    sections.append(section("Over time", _over_time(result, history, limits)))
    return page(title, sections)


def _summary(result: WindowResult, limits: Limits | None) -> str:
    facts: list[tuple[str, object]] = [
        ("Model", result.model),
        ("Versions", ", ".join(result.versions) or None),
        ("Window start", _when(result.start)),
        ("Window end", _when(result.end)),
        ("Rows", result.rows),
        ("Labelled rows", result.labelled_rows),
    ]
    if not result.tested:
        facts.append(("Tested", f"no: {_untested_reason(result, limits)}"))
        why = note(
            "An untested window has no drift tests and no performance estimate, and raises "
            "no drift alarm."
        )
        return table(facts) + why
    inputs = len(result.columns)
    facts += [
        ("Tested", "yes"),
        ("Drifted input columns", f"{len(result.drifted_columns)} of {inputs}"),
        (
            "Verdict",
            f"{len(result.breaches)} limits broken" if result.alarmed else "no limit broken",
        ),
    ]
    return table(facts) + _breaches(result.breaches)


def _untested_reason(result: WindowResult, limits: Limits | None) -> str:
    if result.rows == 0:
        return "no traffic in the window"
    floor = f"monitor.min_rows ({limits.min_rows:,})" if limits else "monitor.min_rows"
    return f"{result.rows:,} records, fewer than {floor}"


def _breaches(breaches: Sequence[Breach]) -> str:
    header = ("signal", "name", "value", "limit", "message")
    if not breaches:
        return text_table(header, [("—", "—", "—", "—", "no limit broken")], ["pass"])
    rows = [(b.signal, b.name, _number(b.value), _number(b.limit), b.message) for b in breaches]
    return text_table(header, rows, ["fail"] * len(rows))


def _drift_table(result: WindowResult) -> str:
    drifts = [*result.columns, *result.predictions]
    rows = [
        (
            c.column,
            c.kind,
            c.test,
            _number(c.statistic),
            _number(c.adjusted_p),
            c.distance_name,
            _number(c.distance),
            _number(c.psi),
            _percent(c.missing_share),
            _percent(c.out_of_range_share),
            _percent(c.unseen_share),
            "yes" if c.drifted else "no",
        )
        for c in drifts
    ]
    marks = ["fail" if c.drifted else None if c.tested else "small" for c in drifts]
    explained = note(
        "Adjusted p: Benjamini-Hochberg over all the window's tests. A column drifted when its "
        "adjusted p is at most alpha and its distance reaches the floor; grey rows had no "
        "values to test."
    )
    return text_table(_DRIFT_HEADER, rows, marks) + explained


def _distributions(columns: Sequence[ColumnDrift], reference: Reference, window: Window) -> str:
    if not columns:
        return note("The reference has no input columns.")
    # Drifted first, then the columns closest to drifting (largest distance), stable otherwise.
    ranked = sorted(
        range(len(columns)),
        key=lambda i: (
            not columns[i].drifted,
            columns[i].distance is None,
            -(columns[i].distance or 0.0),
            i,
        ),
    )
    drifted = sum(c.drifted for c in columns)
    shown = [columns[i] for i in ranked[: max(MAX_COLUMN_PLOTS, drifted)]]
    plots = [_column_plot(c, reference, window) for c in shown]
    left_out = len(columns) - len(shown)
    if not left_out:
        return row(*plots)
    return note(
        f"{len(shown)} of {len(columns)} columns drawn: every drifted one, then the largest "
        f"distances; {left_out} left out (all in the drift table)."
    ) + row(*plots)


def _column_plot(drift: ColumnDrift, reference: Reference, window: Window) -> str:
    name = drift.column
    current = window.frame[name]
    if name in reference.numeric:
        figure = _histograms(
            np.asarray(reference.numeric[name], dtype=float),
            pd.to_numeric(current, errors="coerce").to_numpy(dtype=float),
            name,
        )
    else:
        other = reference.categorical_other.get(name, 0)
        labels, ref, cur = _category_shares(reference.categorical.get(name, {}), other, current)
        figure = _share_bars(labels, ref, cur)
    figure.axes[0].set_title(plain(f"{name} (drifted)" if drift.drifted else name))
    return embed_png(figure, f"reference and current distribution of {name}")


def _output_plots(reference: Reference, window: Window) -> list[str]:
    frame = window.frame
    plots = []
    scores = _scores(reference, frame)
    if scores is not None:
        reference_scores, current_scores, what = scores
        value_range = (0.0, 1.0) if reference.labels else None
        bins = SCORE_BINS if reference.labels else HISTOGRAM_BINS
        figure = _histograms(reference_scores, current_scores, what, bins, value_range)
        figure.axes[0].set_title(plain(what))
        plots.append(embed_png(figure, f"reference and current distribution of {what}"))
    if reference.prediction_counts and PREDICTION in frame:
        labels, ref, cur = _category_shares(reference.prediction_counts, 0, frame[PREDICTION])
        figure = _share_bars(labels, ref, cur)
        figure.axes[0].set_title("predicted class")
        plots.append(embed_png(figure, "reference and current predicted class shares"))
    return plots


def _scores(reference: Reference, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The reference's and the window's scores, as ``prediction_score_drift`` reads them."""
    if reference.scores is None:
        return None
    if not reference.labels:
        if PREDICTION not in frame:
            return None
        served = pd.to_numeric(frame[PREDICTION], errors="coerce").to_numpy(dtype=float)
        return np.asarray(reference.scores, dtype=float), served, "predicted value"
    labels = list(reference.labels)
    columns = [f"{PROBABILITY_PREFIX}{label}" for label in labels]
    if any(c not in frame for c in columns):
        return None
    current = frame[columns].to_numpy(dtype=float)
    ref = np.asarray(reference.scores, dtype=float)
    if len(labels) == 2:
        positive = reference.positive or labels[1]
        index = labels.index(positive)
        return ref[:, index], current[:, index], f"P({positive})"
    return ref.max(axis=1), current.max(axis=1), "top class probability"


def _histograms(
    reference: np.ndarray,
    current: np.ndarray,
    xlabel: str,
    bins: int = HISTOGRAM_BINS,
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """Densities of both sides over shared bins (missing values left out)."""
    ref, cur = reference[~np.isnan(reference)], current[~np.isnan(current)]
    figure, ax = new_figure()
    both = np.concatenate([ref, cur])
    if both.size == 0:
        no_values(ax)
        return figure
    edges = np.histogram_bin_edges(both, bins=bins, range=value_range)
    for values, color, side, fill in (
        (ref, GREY, "reference", True),
        (cur, BLUE, "current", False),
    ):
        if values.size:
            density, _ = np.histogram(values, bins=edges, density=True)
            ax.stairs(density, edges, fill=fill, color=color, label=f"{side} ({values.size:,})")
    ax.set_xlabel(plain(xlabel))
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    return figure


def _category_shares(
    reference_counts: Mapping[str, int], reference_other: int, current: pd.Series
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Shares per category of both sides, as ``categorical_drift`` forms its cells.

    Current categories outside the reference's list go to one ``<unseen>`` bar, or to the
    ``<other>`` bar when the reference lists only its top categories (they may be among its
    rest). Beyond :data:`MAX_CATEGORIES`, the categories least frequent on both sides are
    pooled into one bar, so that a plot stays readable.
    """
    ref = {str(k): int(v) for k, v in reference_counts.items() if v > 0}
    cur: dict[str, int] = {}
    for value, n in current.astype(object).value_counts(dropna=True).items():
        cur[str(value)] = cur.get(str(value), 0) + int(n)
    ref_total = sum(ref.values()) + reference_other
    cur_total = sum(cur.values())
    ref_share = {k: n / ref_total for k, n in ref.items()} if ref_total else {}
    cur_share = {k: cur.get(k, 0) / cur_total for k in ref} if cur_total else {}
    ranked = sorted(ref, key=lambda k: (-max(ref_share.get(k, 0.0), cur_share.get(k, 0.0)), k))
    labels, pooled = ranked[:MAX_CATEGORIES], ranked[MAX_CATEGORIES:]
    ref_values = [ref_share.get(k, 0.0) for k in labels]
    cur_values = [cur_share.get(k, 0.0) for k in labels]
    if pooled:
        labels.append(f"({len(pooled)} more categories)")
        ref_values.append(sum(ref_share.get(k, 0.0) for k in pooled))
        cur_values.append(sum(cur_share.get(k, 0.0) for k in pooled))
    outside = cur_total - sum(cur.get(k, 0) for k in ref)
    if reference_other or outside:
        labels.append("<other>" if reference_other else "<unseen>")
        ref_values.append(reference_other / ref_total if ref_total else 0.0)
        cur_values.append(outside / cur_total if cur_total else 0.0)
    return labels, np.asarray(ref_values), np.asarray(cur_values)


def _share_bars(labels: list[str], reference: np.ndarray, current: np.ndarray) -> Figure:
    """Horizontal bars of both sides per category, the first category on top."""
    figure, ax = new_figure(len(labels) + 2)
    if not labels:
        no_values(ax)
        return figure
    y = np.arange(len(labels))[::-1]
    height = 0.4
    ax.barh(y + height / 2, reference, height, color=GREY, label="reference")
    ax.barh(y - height / 2, current, height, color=BLUE, label="current")
    ax.set_yticks(y, [plain(label) for label in labels])
    ax.set_xlabel("share of non-missing values")
    ax.legend(fontsize="small")
    return figure


def _performance(result: WindowResult, limits: Limits | None) -> str:
    estimated = result.estimated.metrics if result.estimated else {}
    realised = result.realised.metrics if result.realised else {}
    names = [*estimated, *(m for m in realised if m not in estimated)]
    broken = {b.name for b in result.breaches if b.signal in ("estimated", "realised")}
    rows, marks = [], []
    for metric in names:
        limit = _metric_limit(metric, limits, result.breaches)
        rows.append((metric, _number(estimated.get(metric)), _number(realised.get(metric)), limit))
        marks.append("fail" if metric in broken else "pass" if limit != "—" else None)
    facts = []
    if result.estimated is not None:
        facts.append(f"estimated from the probabilities of {result.estimated.n_rows:,} rows")
    if result.realised is not None:
        facts.append(f"realised on {result.realised.n_labelled:,} labelled rows")
    else:
        facts.append("no labels joined yet: the realised metrics follow once labels arrive")
    sentence = "; ".join(facts)
    header = ("metric", "estimated", "realised", "limit")
    return text_table(header, rows, marks) + note(sentence[0].upper() + sentence[1:] + ".")


def _metric_limit(metric: str, limits: Limits | None, breaches: Sequence[Breach]) -> str:
    bounds = []
    if limits is not None:
        if metric in limits.minimums:
            bounds.append(f"≥ {limits.minimums[metric]:g}")
        if metric in limits.maximums:
            bounds.append(f"≤ {limits.maximums[metric]:g}")
    if not bounds:  # the breaches carry the limits they broke
        found = {b.limit for b in breaches if b.name == metric and b.limit is not None}
        bounds = [f"{limit:g}" for limit in sorted(found)]
    return ", ".join(bounds) or "—"


def _fairness(result: WindowResult, limits: Limits | None) -> str:
    broken = {b.name for b in result.breaches if b.signal == "fairness"}
    rows, marks = [], []
    for column, measures in result.fairness.items():
        for measure, value in measures.items():
            attribute = _FAIRNESS_LIMITS.get(measure)
            limit = getattr(limits, attribute) if limits is not None and attribute else None
            rows.append((column, measure, _number(value), "—" if limit is None else f"≤ {limit:g}"))
            failed = f"{column}:{measure}" in broken
            marks.append("fail" if failed else "pass" if limit is not None else None)
    header = ("sensitive column", "measure", "value", "limit")
    return text_table(header, rows, marks) + note("On the labelled rows of the window.")


def _over_time(result: WindowResult, history: Sequence[WindowResult], limits: Limits | None) -> str:
    windows = {(w.start, w.end): w for w in history}
    windows[(result.start, result.end)] = result
    timeline = sorted(windows.values(), key=lambda w: (w.end, w.start))
    if len(timeline) < 2:
        return note("Only this window so far: the plots over time start with the second window.")
    ends = [w.end for w in timeline]
    plots = [
        _trend(
            ends,
            {"drift share": [drift_share(w.columns) for w in timeline]},
            "drift share",
            value_range=(0.0, 1.0),
        ),
        _trend(
            ends,
            {
                "rows": [float(w.rows) for w in timeline],
                "labelled rows": [float(w.labelled_rows) for w in timeline],
            },
            "rows",
        ),
    ]
    metrics: list[str] = []
    for w in timeline:
        if w.estimated is not None:
            metrics += [m for m in w.estimated.metrics if m not in metrics]
    for metric in metrics:
        series = {
            "estimated": [
                w.estimated.metrics.get(metric) if w.estimated else None for w in timeline
            ],
            "realised": [w.realised.metrics.get(metric) if w.realised else None for w in timeline],
        }
        floors = [
            (limits.minimums.get(metric), "minimum") if limits else (None, ""),
            (limits.maximums.get(metric), "maximum") if limits else (None, ""),
        ]
        plots.append(_trend(ends, series, metric, [(v, n) for v, n in floors if v is not None]))
    untested = sum(not w.tested for w in timeline)
    gaps = note(f"Untested windows (too few records) leave gaps: {untested}.") if untested else ""
    return gaps + row(*plots)


def _trend(
    ends: list[datetime],
    series: Mapping[str, Sequence[float | None]],
    what: str,
    limits: Sequence[tuple[float, str]] = (),
    value_range: tuple[float, float] | None = None,
) -> str:
    """One line per series over the window ends (a missing value leaves a gap), and a dashed
    line per limit.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num

    figure, ax = new_figure()
    days = date2num(ends)  # matplotlib's date axis, which the locator and formatter read
    for (label, values), color in zip(series.items(), (BLUE, GREY), strict=False):
        points = [np.nan if v is None else float(v) for v in values]
        ax.plot(days, points, marker="o", color=color, label=label)
    for value, name in limits:
        ax.axhline(value, color="#c44e52", linestyle="--", linewidth=1, label=f"{name} {value:g}")
    if value_range is not None:
        low, high = value_range
        margin = 0.05 * (high - low)
        ax.set_ylim(low - margin, high + margin)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("window end (UTC)")
    ax.set_title(plain(what))
    ax.legend(fontsize="small")
    return embed_png(figure, f"{what} over time")


def _when(moment: datetime) -> str:
    return moment.isoformat()


def _number(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.4g}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"
