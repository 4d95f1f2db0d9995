"""``ray-mlops monitor`` and ``ray-mlops labels``: drift and live quality of the served model.

The monitor module and MLflow are imported inside each command, so ``ray-mlops --help``
stays quick. Tables go to stdout (Rich), messages to stderr.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from ray_mlops.console import cli_console
from ray_mlops.errors import ConfigError

if TYPE_CHECKING:
    from ray_mlops.monitor.result import WindowResult

out = cli_console()
err = cli_console(stderr=True)

CONFIG_ARG = typer.Argument(..., help="Pipeline config (YAML); its monitor section applies.")

labels_app = typer.Typer(
    name="labels",
    help=(
        "Ground truth that arrives after the prediction: join it to the captured requests by "
        "request id, so the monitor can show realised quality beside the estimate."
    ),
    no_args_is_help=True,
)


def parse_moment(text: str, now: datetime) -> datetime:
    """An ISO date or time (UTC unless it says otherwise), or a duration ago (``2h``, ``30m``).

    Raises:
        ConfigError: neither form.
    """
    from ray_mlops.config import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is neither a time (2026-12-05T10:00, UTC unless it has an offset) nor "
            "a duration ago (90s, 30m, 2h, 1d)"
        ) from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def last_window_end(moment: datetime, window: timedelta) -> datetime:
    """The end of the last whole window of length ``window`` at or before ``moment``; windows
    are aligned to the Unix epoch (a 1h window starts on the hour, a 1d one at midnight UTC)."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((moment - epoch) // window) * window


def monitor(
    config: Path = CONFIG_ARG,
    since: str | None = typer.Option(
        None,
        "--since",
        help="Start of the first window: a time (2026-12-05T10:00) or a duration ago (6h). "
        "Default: the last whole window before --until, aligned to the clock (with a 1h "
        "window at 10:05, 09:00 to 10:00), so a scheduled run judges each window once.",
    ),
    until: str | None = typer.Option(
        None, "--until", help="End of the last window (exclusive). Default: now."
    ),
    every: str | None = typer.Option(
        None,
        "--every",
        help="Run as a service: judge the window that just ended every so often (5m, 1h), "
        "serve the Prometheus series on monitor.metrics_port, until stopped (Ctrl-C, SIGTERM).",
    ),
    fail_on_breach: bool = typer.Option(
        False, "--fail-on-breach", help="Exit 3 when a window broke a limit (for schedulers)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster to use. Default: $RAY_ADDRESS, else a local Ray."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray's worker logs."),
) -> None:
    """Judge the champion's captured traffic against its reference, window by window.

    For each window of monitor.window: drift of every input column and of the predictions
    (Kolmogorov-Smirnov, chi-square, Wasserstein, Jensen-Shannon, PSI; Benjamini-Hochberg
    across columns, so a stable stream rarely alarms by chance), performance estimated from
    the predicted probabilities (CBPE) and, where labels arrived (ray-mlops labels ingest, or
    POST .../feedback), the realised performance and fairness. Each window becomes one MLflow
    run in the monitoring experiment (metrics, window.json, report.html); a window that breaks
    a limit of the monitor section is sent to notify.webhook_url.

    Examples:
        ray-mlops monitor configs/quickstart.yaml --since 6h
        ray-mlops monitor configs/quickstart.yaml --every 5m
    """
    from ray_mlops.config import load_config, parse_duration
    from ray_mlops.notify import notifier_for
    from ray_mlops.workspace import Workspace

    loaded = load_config(config)
    cfg = loaded.pipeline
    workspace = Workspace.of(loaded)
    now = datetime.now(timezone.utc)
    end = parse_moment(until, now) if until else now
    if since:
        start = parse_moment(since, now)
    else:
        end = last_window_end(end, cfg.monitor.window)
        start = end - cfg.monitor.window
    if start >= end:
        raise ConfigError(
            f"--since ({start:%Y-%m-%d %H:%M:%S}) is not before --until ({end:%Y-%m-%d %H:%M:%S})"
        )
    tick = None
    if every is not None:
        try:
            tick = parse_duration(every)
        except ValueError as exc:
            raise ConfigError(f"--every: {exc}") from None
    from ray_mlops.monitor.service import Monitor, monitor_range
    from ray_mlops.runtime import ray_runtime

    notifier = notifier_for(cfg.notify)
    breached = False
    try:
        with ray_runtime(address, verbose):
            watcher = Monitor(
                cfg,
                workspace,
                workspace.tracking_uri(cfg.tracking.tracking_uri),
                notifier,
                config_source=loaded.source,
                console=err,
            )
            if tick is None:
                results = monitor_range(watcher, start, end, on_window=_say)
                _print_table(results)
                breached = any(r.alarmed for r in results)
            else:
                _serve(watcher, tick)
    finally:
        notifier.close(timeout_s=5.0)
    if fail_on_breach and breached:
        raise typer.Exit(3)


def _serve(watcher: Any, tick: timedelta) -> None:
    """Judge the last window every ``tick`` until SIGTERM or Ctrl-C."""
    from ray_mlops.monitor.service import watch

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watch(
        watcher,
        tick,
        stop,
        on_window=_say,
        on_serving=lambda url: err.print(f"monitor: Prometheus series on {url}"),
    )


def _say(result: WindowResult) -> None:
    verdict = (
        "limits broken: " + "; ".join(b.message for b in result.breaches)
        if result.alarmed
        else "ok"
    )
    if not result.tested:
        verdict = f"not tested ({result.rows} records)"
    err.print(
        f"window {result.start:%Y-%m-%d %H:%M}-{result.end:%H:%M}: {result.rows} records, {verdict}"
    )


def _print_table(results: list[WindowResult]) -> None:
    from ray_mlops.monitor.service import summary_rows

    rows = summary_rows(results)
    table = Table(title="monitored windows")
    for column in rows[0] if rows else ["window"]:
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
                for v in row.values()
            )
        )
    out.print(table)


@labels_app.command("ingest")
def ingest(
    file: Path = typer.Argument(
        ..., help="CSV, Parquet or JSON lines: request_id, label[, record_index]."
    ),
    config: Path = typer.Option(
        ..., "--config", "-c", help="Pipeline config: where the labels go."
    ),
) -> None:
    """Store ground-truth labels for captured requests (the last label of a record wins).

    A bad row (missing id or label, bad record_index) fails the whole file, naming the line and
    column, and nothing is stored.
    """
    from ray_mlops.config import load_config
    from ray_mlops.serve.labels import ingest_label_file
    from ray_mlops.workspace import Workspace

    loaded = load_config(config)
    workspace = Workspace.of(loaded)
    location = workspace.capture_location(loaded.pipeline.monitor.labels_path)
    stored = ingest_label_file(file, location)
    err.print(f"stored {stored} labels from {file} in {location}")
