"""The search leaderboard as HTML: a plot of the metric by trial, then the table."""

from __future__ import annotations

import pandas as pd

from ray_mlops.reports import embed_png, esc, new_figure, page

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
    figure, ax = new_figure()
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
    summary = (
        f"<p>{len(leaderboard)} trials ranked by {esc(metric)} ({mode}imise); "
        f"{int(leaderboard['epochs'].sum())} trial-epochs in all.</p>"
    )
    return page(title, [summary, embed_png(figure, f"{metric} by trial"), table])
