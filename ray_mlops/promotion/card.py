"""The model card of a registered version, as Markdown (for the registry) and as an HTML page.

Both renderings come from the same list of sections, so they always say the same thing: the
sections are built once as plain text blocks, and each renderer only escapes and lays them out.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ray_mlops.evaluate.metrics import higher_is_better
from ray_mlops.reports import esc, page, section, table, text_table

# A fairness difference above this is worth a line in the known limits (a common rule of thumb:
# a 10-point gap in selection or error rates between groups).
FAIRNESS_NOTE_THRESHOLD = 0.1
WORST_SLICES = 10
_FAIRNESS_MEASURES = {
    "demographic_parity_difference": "demographic parity difference",
    "equalized_odds_difference": "equalized odds difference",
}
_SLICE_KEYS = ("name", "rows", "too_small")
_MISSING = "—"


@dataclass
class ModelCard:
    """What a reader needs to judge one model version: its use, data, results and history.

    Attributes:
        name: Registered model name.
        version: Registry version.
        created: When the version was created, ISO-8601.
        description: One or two sentences on what the model predicts.
        intended_use: What the model is for and who uses it.
        limitations: Limits the user stated in the config; they head the known limits.
        data: Source, dataset fingerprint, rows per split, schema... A value that is a dict
            (rows per split, column -> type) gets its own small table.
        metrics: Test metrics of this version.
        champion_metrics: The champion's test metrics, shown side by side; ``None``: no champion.
        slices: One dict per slice: ``name``, ``rows``, metric values, and ``too_small: True``
            for a slice with too few rows to judge.
        fairness: Sensitive column -> ``demographic_parity_difference``,
            ``equalized_odds_difference`` and ``groups`` (group -> metrics).
        gate: Promotion gate rules: dicts with ``rule``, ``measured``, ``threshold``,
            ``passed`` and ``detail``.
        gate_passed: The gate's verdict; ``None``: the gate did not run.
        decision: What happened to the version (promoted, rejected, and why).
        lineage: Ordered (label, value) pairs: training run, dataset fingerprint, config...
        known_limits: The notes for the Known limits section; empty: ``derive_known_limits``.
        primary_metric: The metric that ranks slices (the worst come first) and decides the gate.
    """

    name: str
    version: str
    created: str = ""
    description: str = ""
    intended_use: str = ""
    limitations: list[str] = field(default_factory=list)
    data: dict[str, object] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    slices: list[dict[str, object]] = field(default_factory=list)
    fairness: dict[str, dict[str, object]] = field(default_factory=dict)
    gate: list[dict[str, object]] = field(default_factory=list)
    gate_passed: bool | None = None
    decision: str = ""
    lineage: list[tuple[str, str]] = field(default_factory=list)
    known_limits: list[str] = field(default_factory=list)
    primary_metric: str | None = None


def derive_known_limits(card: ModelCard) -> list[str]:
    """The notes a reader should see before trusting the version, the user's own first.

    After ``card.limitations`` come the failed gate rules, the fairness differences above
    ``FAIRNESS_NOTE_THRESHOLD``, and one note naming the slices too small to judge.

    Args:
        card: The card; its ``known_limits`` are ignored.

    Returns:
        Plain-text notes (not escaped).

    Example:
        >>> card = ModelCard("adult", "3", limitations=["US census data from 1994."],
        ...                  gate=[{"rule": "min roc_auc", "passed": False}])
        >>> derive_known_limits(card)
        ['US census data from 1994.', 'Failed gate rule min roc_auc.']
    """
    notes = list(card.limitations)
    for row in card.gate:
        if _passed(row.get("passed")) is False:
            note = f"Failed gate rule {row.get('rule', '?')}"
            if "measured" in row or "threshold" in row:
                note += (
                    f": measured {_fmt(row.get('measured'))}, "
                    f"threshold {_fmt(row.get('threshold'))}"
                )
            detail = row.get("detail")
            note += f" ({detail})." if detail else "."
            notes.append(note)
    for column, measures in card.fairness.items():
        for key, label in _FAIRNESS_MEASURES.items():
            value = _number(measures.get(key))
            if value is not None and value > FAIRNESS_NOTE_THRESHOLD:
                notes.append(
                    f"The {label} over {column} is {_fmt(value)}, "
                    f"above {FAIRNESS_NOTE_THRESHOLD:g}."
                )
    small = [s for s in card.slices if s.get("too_small")]
    if small:
        listed = ", ".join(f"{s.get('name', '?')} ({_fmt(s.get('rows'))} rows)" for s in small)
        notes.append(f"Slices too small to judge: {listed}.")
    return notes


def render_markdown(card: ModelCard) -> str:
    """The card as GitHub-flavoured Markdown: one ``##`` heading per section, tables for numbers.

    Values are escaped so that a ``|`` cannot split a table cell and a ``<`` cannot open raw
    HTML; floats have 4 significant digits, and a missing or NaN value reads "—".

    Args:
        card: The card to render.

    Returns:
        The Markdown text, ending with a newline.
    """
    out = [f"# {_md(_title(card))}", ""]
    for block in _header(card):
        out += [*_markdown_block(block), ""]
    for heading, blocks in _sections(card):
        out += [f"## {_md(heading)}", ""]
        for block in blocks:
            out += [*_markdown_block(block), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def render_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page (inline CSS, no scripts).

    Every value is HTML-escaped: model, slice and group names come from users and data. Gate
    rows are coloured by result, and slices too small to judge are greyed.

    Args:
        card: The card to render.

    Returns:
        The page, ready to write to a ``.html`` file.
    """
    parts = [_html_block(block) for block in _header(card)]
    for heading, blocks in _sections(card):
        parts.append(section(heading, "\n".join(_html_block(block) for block in blocks)))
    return page(_title(card), parts)


# --- The content, as plain-text blocks both renderers share ---------------------------------


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Sub:
    heading: str


@dataclass(frozen=True)
class _Bullets:
    items: list[str]


@dataclass(frozen=True)
class _Fields:
    pairs: list[tuple[str, str]]


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[list[str]]
    # A CSS class per row ("pass", "fail", "small") or None; Markdown has no colours.
    marks: list[str | None] = field(default_factory=list)


_Block = _Para | _Sub | _Bullets | _Fields | _Table
_Section = tuple[str, list[_Block]]


def _title(card: ModelCard) -> str:
    return f"Model card: {card.name} version {card.version}"


def _header(card: ModelCard) -> list[_Block]:
    verdict = {True: "passed", False: "failed", None: "not run"}[card.gate_passed]
    blocks: list[_Block] = [_Para(card.description)] if card.description else []
    blocks.append(
        _Fields(
            [
                ("Model", card.name),
                ("Version", str(card.version)),
                ("Created", card.created or _MISSING),
                ("Decision", card.decision or _MISSING),
                ("Promotion gate", verdict),
            ]
        )
    )
    return blocks


def _sections(card: ModelCard) -> list[_Section]:
    limits = card.known_limits or derive_known_limits(card)
    return [
        ("Intended use", [_Para(card.intended_use or "Not stated.")]),
        ("Data", _data_blocks(card.data)),
        ("Metrics", _metric_blocks(card)),
        ("Slices", _slice_blocks(card)),
        ("Fairness", _fairness_blocks(card.fairness)),
        ("Promotion gate", _gate_blocks(card)),
        (
            "Lineage",
            [_Table(["item", "value"], [[label, value] for label, value in card.lineage])]
            if card.lineage
            else [_Para("Not recorded.")],
        ),
        ("Known limits", [_Bullets(limits)] if limits else [_Para("None recorded.")]),
    ]


def _data_blocks(data: dict[str, object]) -> list[_Block]:
    if not data:
        return [_Para("Not recorded.")]
    flat = [[key, _fmt(value)] for key, value in data.items() if not isinstance(value, dict)]
    blocks: list[_Block] = [_Table(["item", "value"], flat)] if flat else []
    for key, value in data.items():
        if isinstance(value, dict):
            rows = [[str(k), _fmt(v)] for k, v in value.items()]
            blocks += [_Sub(key), _Table(["name", "value"], rows)]
    return blocks


def _metric_blocks(card: ModelCard) -> list[_Block]:
    if not card.metrics and not card.champion_metrics:
        return [_Para("Not recorded.")]

    def label(metric: str) -> str:
        return f"{metric} (primary)" if metric == card.primary_metric else metric

    if card.champion_metrics is None:
        rows = [[label(m), _fmt(v)] for m, v in card.metrics.items()]
        return [_Para("No champion to compare with."), _Table(["metric", "value"], rows)]
    names = _union([card.metrics, card.champion_metrics])
    table = []
    for metric in names:
        ours, theirs = card.metrics.get(metric), card.champion_metrics.get(metric)
        a, b = _number(ours), _number(theirs)
        difference = _MISSING if a is None or b is None else f"{a - b:+.4g}"
        table.append([label(metric), _fmt(ours), _fmt(theirs), difference])
    return [_Table(["metric", "this version", "champion", "difference"], table)]


def _slice_blocks(card: ModelCard) -> list[_Block]:
    if not card.slices:
        return [_Para("Not recorded.")]
    ordered, note = _order_slices(card.slices, card.primary_metric)
    metrics = _union([{k: v for k, v in s.items() if k not in _SLICE_KEYS} for s in ordered])
    any_small = any(s.get("too_small") for s in ordered)
    header = ["slice", "rows", *metrics] + (["note"] if any_small else [])
    rows, marks = [], []
    for s in ordered:
        row = [_fmt(s.get("name")), _fmt(s.get("rows")), *(_fmt(s.get(m)) for m in metrics)]
        if any_small:
            row.append("too small to judge" if s.get("too_small") else "")
        rows.append(row)
        marks.append("small" if s.get("too_small") else None)
    blocks: list[_Block] = [_Para(note)] if note else []
    return [*blocks, _Table(header, rows, marks)]


def _order_slices(
    slices: Sequence[dict[str, object]], metric: str | None
) -> tuple[list[dict[str, object]], str]:
    """The worst ``WORST_SLICES`` by ``metric`` first, then the rest in their given order.

    Too-small slices are never ranked among the worst: their metric is mostly noise.
    """
    if metric is None:
        return list(slices), ""
    judged = [s for s in slices if not s.get("too_small") and _number(s.get(metric)) is not None]
    if not judged:
        return list(slices), ""
    ascending = higher_is_better(metric)
    worst = sorted(judged, key=lambda s: _number(s.get(metric)) or 0.0, reverse=not ascending)
    worst = worst[:WORST_SLICES]
    chosen = {id(s) for s in worst}
    rest = [s for s in slices if id(s) not in chosen]
    direction = "lowest" if ascending else "highest"
    note = f"The {len(worst)} worst slices by {metric} ({direction} first) come first"
    note += "; the others follow in the order given." if rest else "."
    return worst + rest, note


def _fairness_blocks(fairness: dict[str, dict[str, object]]) -> list[_Block]:
    if not fairness:
        return [_Para("Not recorded.")]
    blocks: list[_Block] = []
    for column, measures in fairness.items():
        rows, marks = [], []
        for key, value in measures.items():
            if key == "groups":
                continue
            rows.append([_FAIRNESS_MEASURES.get(key, key), _fmt(value)])
            number = _number(value) if key in _FAIRNESS_MEASURES else None
            above = number is not None and number > FAIRNESS_NOTE_THRESHOLD
            marks.append("fail" if above else None)
        blocks += [_Sub(column), _Table(["measure", "value"], rows, marks)]
        groups = measures.get("groups")
        if isinstance(groups, dict) and groups:
            per_group = {str(g): m if isinstance(m, dict) else {} for g, m in groups.items()}
            columns = _union(per_group.values())
            table = [[g, *(_fmt(m.get(c)) for c in columns)] for g, m in per_group.items()]
            blocks.append(_Table(["group", *columns], table))
    return blocks


def _gate_blocks(card: ModelCard) -> list[_Block]:
    verdict = {True: "PASSED", False: "FAILED", None: "not run"}[card.gate_passed]
    lines = f"Result: {verdict}." + (f" Decision: {card.decision}" if card.decision else "")
    if not card.gate:
        return [_Para(lines)]
    rows, marks = [], []
    for rule in card.gate:
        passed = _passed(rule.get("passed"))
        result = _MISSING if passed is None else "PASS" if passed else "FAIL"
        detail = rule.get("detail")
        rows.append(
            [
                _fmt(rule.get("rule")),
                _fmt(rule.get("measured")),
                _fmt(rule.get("threshold")),
                result,
                "" if detail is None else _fmt(detail),
            ]
        )
        marks.append(None if passed is None else "pass" if passed else "fail")
    header = ["rule", "measured", "threshold", "result", "detail"]
    return [_Para(lines), _Table(header, rows, marks)]


# --- Values --------------------------------------------------------------------------------


def _fmt(value: object) -> str:
    """Plain text of a value: 4 significant digits for floats, "—" for missing and NaN."""
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        number = float(value)
        return _MISSING if math.isnan(number) else f"{number:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _number(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, NaN, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _passed(value: object) -> bool | None:
    # ``bool()`` rather than ``is True``: gate code may hand over numpy booleans.
    return None if value is None else bool(value)


def _union(dicts: Iterable[Mapping[str, object]]) -> list[str]:
    """The keys of all ``dicts``, in the order first seen."""
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(str(k) for k in d))
    return list(seen)


# --- Markdown ------------------------------------------------------------------------------


def _markdown_block(block: _Block) -> list[str]:
    if isinstance(block, _Para):
        return [_md(block.text, inline=False)]
    if isinstance(block, _Sub):
        return [f"### {_md(block.heading)}"]
    if isinstance(block, _Bullets):
        return [f"- {_md(item)}" for item in block.items]
    if isinstance(block, _Fields):
        return [f"- **{_md(label)}:** {_md(value)}" for label, value in block.pairs]
    lines = [_md_row(block.header), "|" + " --- |" * len(block.header)]
    return lines + [_md_row(row) for row in block.rows]


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_md(cell) or " " for cell in cells) + " |"


def _md(text: str, inline: bool = True) -> str:
    """Markdown-safe text: ``|`` cannot end a table cell, ``<`` cannot open raw HTML.

    The backslash is escaped first so that a value's own ``\\`` cannot undo the escapes.
    A table cell or list item must stay on one line, so ``inline`` text loses its newlines.
    """
    escaped = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
    return " ".join(escaped.split()) if inline else escaped


# --- HTML ----------------------------------------------------------------------------------


def _html_block(block: _Block) -> str:
    if isinstance(block, _Para):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, _Sub):
        return f"<h3>{esc(block.heading)}</h3>"
    if isinstance(block, _Bullets):
        return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, _Fields):
        return table(block.pairs)
    return text_table(block.header, block.rows, block.marks)
