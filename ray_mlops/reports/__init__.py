"""The HTML report kit: one page shell, one stylesheet, escaping, tables and embedded plots,
shared by the profile, evaluation, model card and search leaderboard pages.

Importing it is cheap: matplotlib is imported only when a figure is drawn.
"""

from ray_mlops.reports.figures import BLUE, GREY, embed_png, new_figure, no_values, plain
from ray_mlops.reports.html import (
    CSS,
    esc,
    format_value,
    note,
    page,
    row,
    section,
    table,
    text_table,
)

__all__ = [
    "BLUE",
    "CSS",
    "GREY",
    "embed_png",
    "esc",
    "format_value",
    "new_figure",
    "no_values",
    "note",
    "page",
    "plain",
    "row",
    "section",
    "table",
    "text_table",
]
