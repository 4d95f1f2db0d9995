"""What the user sees at the end of a run: metrics, model version, alias, where to look."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ray_mlops.mlflow_names import CONTRACT_FILE, PROFILE_HTML_FILE, PROFILE_JSON_FILE
from ray_mlops.pipeline import DataResult, PipelineResult
from ray_mlops.secrets import redact_uri


def print_run_summary(result: PipelineResult, config_path: str, console: Console) -> None:
    """A table of the run's outcome and the next commands to try."""
    resumed = " (resumed)" if result.resumed else ""
    table = Table(
        title=f"ray-mlops: {result.pipeline}{resumed}", show_header=False, title_justify="left"
    )
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths whole (folded on a narrow terminal), never cut
    for name, value in result.test_metrics.items():
        marker = " (primary)" if name == result.primary_metric else ""
        table.add_row(f"test {name}{marker}", f"{value:.4f}")
    table.add_row("rows", ", ".join(f"{k} {v:,}" for k, v in result.rows.items() if v))
    table.add_row("dataset fingerprint", result.dataset_fingerprint)
    if result.training is not None:
        training = result.training
        early = ", stopped early" if training.stopped_early else ""
        restarts = f", recovered {training.restarts}x" if training.restarts else ""
        table.add_row(
            "training",
            f"best epoch {training.best_epoch} of {training.epochs_run}{early}{restarts}; "
            f"{training.ingest} ingest",
        )
        table.add_row("best checkpoint", training.checkpoint)
    if result.search is not None:
        search = result.search
        table.add_row(
            "search",
            f"{search.trials} trials ({search.pruned} pruned by the scheduler, "
            f"{search.trial_epochs} trial-epochs); best trial {search.best_trial}: "
            f"{search.best_metric}",
        )
        params = search.best_params
        table.add_row("best values", ", ".join(f"{k}={v}" for k, v in params.items()))
        table.add_row("leaderboard", search.leaderboard)
    if result.model_version is not None:
        table.add_row("model version", f"{result.model_name} v{result.model_version}")
        verdict = "[green]promoted[/]" if result.promoted else "[yellow]not promoted[/]"
        champion = f"v{result.champion_version}" if result.champion_version else "none"
        table.add_row(f"alias @{result.alias}", f"{verdict}: {result.decision}; now {champion}")
    else:
        table.add_row("model", f"{result.model_uri} ({result.decision})")
    if result.gate:
        colour = {"passed": "green", "failed": "red"}.get(result.gate, "yellow")
        table.add_row("promotion gate", f"[{colour}]{result.gate}[/]")
    for name, link in result.reports.items():
        table.add_row(name, link)
    table.add_row("MLflow run", f"{result.run_id} (experiment {result.experiment_id})")
    tracking_uri = redact_uri(result.tracking_uri)  # printed: no password
    table.add_row("tracking URI", tracking_uri)
    console.print(table)
    ui = f"mlflow ui --backend-store-uri {tracking_uri}"
    if not tracking_uri.startswith("sqlite"):
        ui = f"open {tracking_uri}"
    console.print(f"[bold]Look:[/]  {ui}")
    if result.model_version is not None:
        console.print(f"[bold]Serve:[/] ray-mlops serve {config_path}")
    else:
        console.print(f"[bold]Register and promote:[/] ray-mlops run {config_path}")


def print_data_summary(result: DataResult, console: Console) -> None:
    """Rows read, quarantined by reason, splits, fingerprint, and where the reports are."""
    data = result.data
    table = Table(title="ray-mlops data", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths whole (folded on a narrow terminal), never cut
    table.add_row("source", f"{data.source.uri} ({len(data.source.files)} file(s))")
    table.add_row("rows read", f"{data.rows_read:,}")
    quarantined = f"{data.quarantine.rows:,}"
    if data.quarantine.rows:
        quarantined += f" in {data.quarantine.path}"
    table.add_row("quarantined", quarantined)
    for reason, count in sorted(data.quarantine.by_reason.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", f"{count:,}")
    if data.quarantine.hint:
        table.add_row("  hint", data.quarantine.hint)
    table.add_row("splits", ", ".join(f"{k} {v:,}" for k, v in data.split_counts.items()))
    table.add_row("split plan", data.plan.strategy)
    table.add_row("fingerprint", data.fingerprint)
    contract = "declared in the config" if data.contract_declared else "inferred"
    table.add_row("data contract", f"{contract}: {result.artifact_uri}/{CONTRACT_FILE}")
    table.add_row("profile (HTML)", f"{result.artifact_uri}/{PROFILE_HTML_FILE}")
    table.add_row("profile (JSON)", f"{result.artifact_uri}/{PROFILE_JSON_FILE}")
    table.add_row("MLflow run", result.run_id)
    console.print(table)
