"""What the user sees at the end of a run: metrics, model version, alias, where to look."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ray_mlops.pipeline import PipelineResult


def print_run_summary(result: PipelineResult, config_path: str, console: Console) -> None:
    """A table of the run's outcome and the next commands to try."""
    table = Table(
        title=f"ray-mlops run: {result.pipeline}", show_header=False, title_justify="left"
    )
    table.add_column(style="bold")
    table.add_column()
    for name, value in result.test_metrics.items():
        marker = " (primary)" if name == result.primary_metric else ""
        table.add_row(f"test {name}{marker}", f"{value:.4f}")
    table.add_row("rows", ", ".join(f"{k} {v:,}" for k, v in result.rows.items() if v))
    table.add_row("dataset fingerprint", result.dataset_fingerprint)
    table.add_row("model version", f"{result.model_name} v{result.model_version}")
    verdict = "[green]promoted[/]" if result.promoted else "[yellow]not promoted[/]"
    champion = f"v{result.champion_version}" if result.champion_version else "none"
    table.add_row(f"alias @{result.alias}", f"{verdict}: {result.decision}; now {champion}")
    table.add_row("MLflow run", f"{result.run_id} (experiment {result.experiment_id})")
    table.add_row("tracking URI", result.tracking_uri)
    console.print(table)
    ui = f"mlflow ui --backend-store-uri {result.tracking_uri}"
    if not result.tracking_uri.startswith("sqlite"):
        ui = f"open {result.tracking_uri}"
    console.print(f"[bold]Look:[/]  {ui}")
    console.print(f"[bold]Serve:[/] ray-mlops serve {config_path}")
