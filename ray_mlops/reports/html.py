"""Self-contained HTML pages: the page shell, the one stylesheet, escaping and tables.

Every page is standalone (inline CSS, no scripts, no external resources), and every piece of
text that may come from users or data goes through :func:`esc`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
h1 { border-bottom: 2px solid #4c72b0; padding-bottom: .3rem; }
section { border-top: 1px solid #ddd; padding: .5rem 0 1rem; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { padding: .15rem .6rem; border-bottom: 1px solid #eee; text-align: right; }
th { text-align: left; font-weight: 600; }
table.text td { text-align: left; }
tr.pass td { background: #e9f5ec; }
tr.fail td { background: #fdecea; }
tr.small td { color: #888; }
img { max-width: 100%; }
.note { color: #666; font-style: italic; }
"""


def esc(text: str) -> str:
    """``text`` HTML-escaped, quotes included (safe in element text and attribute values)."""
    return html.escape(text, quote=True)


def page(title: str, sections: Iterable[str]) -> str:
    """A standalone page: ``title`` as title and heading, then the (already HTML) sections.

    Example:
        >>> page("A & B", []).splitlines()[0]
        '<!DOCTYPE html>'
    """
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def section(heading: str, body: str) -> str:
    """A ``<section>`` with an escaped ``<h2>`` heading over ``body`` (HTML)."""
    return f"<section>\n<h2>{esc(heading)}</h2>\n{body}\n</section>"


def row(*parts: str) -> str:
    """The HTML ``parts`` side by side, wrapping on narrow screens."""
    return '<div class="row">' + "".join(f"<div>{part}</div>" for part in parts) + "</div>"


def note(text: str) -> str:
    """A muted paragraph of plain ``text`` (escaped)."""
    return f'<p class="note">{esc(text)}</p>'


def format_value(value: object) -> str:
    """A table cell's text: thousands-separated ints, 6 significant digits, ``—`` for none.

    ``None`` and NaN both read as missing; anything that is not a number is escaped text.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&mdash;"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(str(value))
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


def table(rows: Iterable[Sequence[object]], header: Sequence[str] | None = None) -> str:
    """A table of labelled rows: the first cell of each row is its (escaped) label, the others
    values formatted by :func:`format_value`. The header row is left out when it is all blank.
    """
    head = ""
    if header and any(header):
        head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
    body = "".join(
        f"<tr><th>{esc(str(first))}</th>"
        + "".join(f"<td>{format_value(value)}</td>" for value in rest)
        + "</tr>"
        for first, *rest in rows
    )
    return f"<table>{head}{body}</table>"


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], marks: Sequence[str | None] = ()
) -> str:
    """A table of escaped text cells, left-aligned; ``marks[i]`` is row ``i``'s CSS class
    (``pass``, ``fail``, ``small``) or ``None``.
    """
    head = "<tr>" + "".join(f"<th>{esc(cell)}</th>" for cell in header) + "</tr>"
    body = []
    for index, cells in enumerate(rows):
        mark = marks[index] if index < len(marks) else None
        attribute = f' class="{mark}"' if mark else ""
        body.append(f"<tr{attribute}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="text">{head}{"".join(body)}</table>'
