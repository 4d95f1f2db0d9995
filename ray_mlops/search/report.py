"""The search leaderboard as HTML: a plot of the metric by trial, then the table."""

from __future__ import annotations

import html

import pandas as pd

from ray_mlops.data.report import _figure, _img

_STATUS_COLORS = {
    "completed": "#1f77b4",
    "stopped early": "#2ca02c",
    "pruned": "#bbbbbb",
    "failed": "#d62728",
}


def render_leaderboard_html(leaderboard: pd.DataFrame, metric: str, mode: str, title: str) -> str:
    """A page with the metric of every trial in the order they started, and the ranked table.

    Each dot is a trial's best epoch, coloured by how it ended (pruned trials are grey); the
    line is the best value found so far, which is what a search buys over time.
    """
    figure, ax = _figure()
    by_trial = leaderboard.sort_values("trial")
    for status, rows in by_trial.groupby("status"):
        ax.scatter(
            rows["trial"],
            rows[metric],
            label=str(status),
            color=_STATUS_COLORS.get(str(status), "#9467bd"),
            s=24,
        )
    running = by_trial[metric].cummin() if mode == "min" else by_trial[metric].cummax()
    ax.step(
        by_trial["trial"], running, where="post", color="black", linewidth=1, label="best so far"
    )
    ax.set_xlabel("trial (in the order started)")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    table = leaderboard.to_html(index=False, float_format=lambda v: f"{v:.6g}", na_rep="—")
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:2px 6px;font-size:13px}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p>{len(leaderboard)} trials ranked by {html.escape(metric)} ({mode}imise); "
        f"{int(leaderboard['epochs'].sum())} trial-epochs in all.</p>\n"
        f"{_img(figure, f'{metric} by trial')}\n{table}\n</body></html>\n"
    )
