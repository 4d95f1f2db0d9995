"""``ray-mlops audit log|verify``: read and check the audit trail.

The audit package is imported inside each command, so ``ray-mlops --help`` stays instant.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ray_mlops.console import cli_console

if TYPE_CHECKING:
    from ray_mlops.audit import AuditLog, AuditRecord

out = cli_console()
err = cli_console(stderr=True)

audit_app = typer.Typer(
    name="audit",
    help=(
        "The audit trail: every promotion, rollback, deployment, key change, run and refused "
        "attempt, in an append-only, hash-chained log in the workspace. `log` lists and "
        "filters it; `verify` proves nothing in it was edited, deleted, inserted or reordered."
    ),
    no_args_is_help=True,
)

CONFIG_OPT = typer.Option(
    None,
    "--config",
    "-c",
    help="Pipeline config: the log is governance.audit.location, else audit/ under its "
    "workspace.storage. Default: .ray-mlops/audit/ in this directory.",
)
_OUTCOME_STYLE = {"ok": "green", "refused": "yellow", "failed": "red"}


def _audit_log(config: Path | None) -> AuditLog:
    from ray_mlops.audit import audit_log_for
    from ray_mlops.workspace import Workspace

    if config is None:
        return audit_log_for(Workspace.here().storage)
    from ray_mlops.config import load_config

    loaded = load_config(config)
    workspace = Workspace.of(loaded)
    return audit_log_for(
        workspace.storage,
        loaded.pipeline.governance.audit.location,
        workspace.tracking_uri(loaded.pipeline.tracking.tracking_uri),
    )


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time: a duration back from now (``90m``, ``2h``, ``7d``) or an ISO time
    (``2026-12-05``, ``2026-12-05T14:00``, UTC unless it names its zone).

    Raises:
        typer.BadParameter: neither.
    """
    from ray_mlops.config import parse_duration

    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give a duration back from now (90m, 2h, 7d) or an ISO time "
            f"(2026-12-05T14:00, UTC unless a zone is given)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def select(
    records: Iterable[AuditRecord],
    model: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Iterator[AuditRecord]:
    """The records that pass every filter given.

    Args:
        records: Records, oldest first.
        model: Targets ``<model>``, ``<model>/...`` or ``<model>@...``.
        actor: Exactly this actor (``key:<name>`` for a serving key).
        action: This action (``model.promote``) or family (``model``: every ``model.*``).
        since: At or after this time.
        until: Before this time.
    """
    for record in records:
        if model is not None and not (
            record.target == model or record.target.startswith((f"{model}/", f"{model}@"))
        ):
            continue
        if actor is not None and record.actor != actor:
            continue
        if action is not None and not (
            record.action == action or record.action.startswith(f"{action}.")
        ):
            continue
        if since is not None and record.when < since:
            continue
        if until is not None and record.when >= until:
            continue
        yield record


@audit_app.command("log")
def show_log(
    config: Path | None = CONFIG_OPT,
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Only this model's records (targets <model>/v<N> and <model>@<alias>).",
    ),
    actor: str | None = typer.Option(
        None, "--actor", help="Only this actor's records (a user, or key:<name> for a key)."
    ),
    action: str | None = typer.Option(
        None,
        "--action",
        help="Only this action (model.promote) or family (model, serve, key, run, data).",
    ),
    since: str | None = typer.Option(
        None, "--since", help="From this time: a duration back (2h, 7d) or an ISO time."
    ),
    until: str | None = typer.Option(
        None, "--until", help="Before this time: a duration back (2h, 7d) or an ISO time."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per record and line (for jq), not a table."
    ),
) -> None:
    """Who did what, when, to what, with what outcome and why: the log, oldest first.

    Example: `ray-mlops audit log --model adult-income --since 7d`.
    """
    start = parse_when(since) if since else None
    end = parse_when(until) if until else None
    log = _audit_log(config)
    chosen = select(log.records(), model, actor, action, start, end)
    if as_json:
        for record in chosen:
            sys.stdout.write(json.dumps(record.as_dict(), ensure_ascii=False) + "\n")
        return
    table = Table(title=f"audit log {log.location}")
    for column in ("seq", "time (UTC)", "actor", "action", "target", "outcome", "reason"):
        table.add_column(column, justify="right" if column == "seq" else "left")
    shown = 0
    for record in chosen:
        style = _OUTCOME_STYLE.get(record.outcome, "")
        table.add_row(
            str(record.seq),
            record.when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            record.actor,
            record.action,
            record.target,
            f"[{style}]{record.outcome}[/]" if style else record.outcome,
            record.reason,
        )
        shown += 1
    if shown == 0:
        err.print(f"no audit records match in {log.location}")
        return
    out.print(table)


@audit_app.command("verify")
def verify(config: Path | None = CONFIG_OPT) -> None:
    """Check the whole hash chain: exit 0 when intact, else exit 7 naming the first bad record.

    Finds a record edited, deleted, inserted or reordered, a line that is not a record, and
    records cut from the end (the head marker beside the log names the last one written).
    """
    log = _audit_log(config)
    result = log.check()
    out.print(f"{log.location}: {result.message}", highlight=False)
