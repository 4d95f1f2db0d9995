"""Plots for the HTML pages: matplotlib figures that touch no global state, embedded as PNG."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from ray_mlops.reports.html import esc

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BLUE, GREY = "#4c72b0", "#b0b0b0"


def new_figure(bars: int = 0) -> tuple[Figure, Axes]:
    """A figure sized for ``bars`` horizontal bars (or a plain plot when 0).

    Built from ``matplotlib.figure.Figure`` rather than pyplot: no global backend or figure
    registry is touched, so nothing is left open (matplotlib's advice for servers), and saving
    to PNG renders with Agg.
    """
    from matplotlib.figure import Figure

    height = 3.0 if bars == 0 else min(12.0, 1.0 + 0.3 * bars)
    figure = Figure(figsize=(6.0, height), layout="constrained")
    return figure, figure.add_subplot()


def embed_png(figure: Figure, alt: str) -> str:
    """``figure`` as an ``<img>`` with the PNG inline (base64), ``alt`` escaped.

    The PNG carries no "Software" metadata, so the same figure gives the same bytes.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def no_values(ax: Axes) -> None:
    """Mark an empty plot as such instead of drawing blank axes."""
    ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plain(text: str) -> str:
    """Text for a matplotlib label: a ``$`` in the data must not start mathtext."""
    return text.replace("$", r"\$")
