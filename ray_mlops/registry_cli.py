"""Registry commands: ``ray-mlops models list|show|search|history|lineage``, ``promote``,
``rollback``. Tables on stdout (Rich), messages on stderr.

MLflow and the registry modules are imported inside each command: ``ray-mlops --help`` and
every other command load this module, and those imports take seconds (the gate's scipy and
torch among them). ``models list``, ``show`` and ``search`` read an embedded SQLite registry
without importing MLflow at all (:mod:`ray_mlops.registry.reader`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ray_mlops.console import cli_console
from ray_mlops.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ray_mlops.config import GovernanceConfig
    from ray_mlops.promotion.gate import GateResult
    from ray_mlops.registry.reader import RegistryReader, VersionRecord
    from ray_mlops.workspace import Workspace

out = cli_console()
err = cli_console(stderr=True)

models_app = typer.Typer(
    name="models",
    help=(
        "The model catalog in MLflow's registry: list models, show versions with their "
        "metrics, gate and aliases, search them, and trace a version's history and lineage."
    ),
    no_args_is_help=True,
)
TRACKING_OPT = typer.Option(
    None,
    "--tracking-uri",
    help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else the embedded SQLite "
    "store under .ray-mlops/ in this directory.",
)
OPERATOR_CONFIG_OPT = typer.Option(
    None,
    "--config",
    "-c",
    help="Pipeline config of this workspace: where the audit log is (workspace), the policy "
    "and four-eyes rule (governance), the tracking URI. Default: this directory's workspace "
    "and the governance settings of the version's own config.",
)


@dataclass(frozen=True)
class _Operator:
    """Where an operator's promote or rollback acts, and under which governance."""

    tracking_uri: str
    workspace: Workspace
    governance: GovernanceConfig | None = None
    base_dir: Path | None = None


def _operator(config: Path | None, tracking_uri: str | None) -> _Operator:
    """This directory's workspace, or that of ``--config`` with its governance section."""
    from ray_mlops.config import load_config
    from ray_mlops.workspace import Workspace

    if config is None:
        here = Workspace.here()
        return _Operator(here.tracking_uri(tracking_uri), here)
    loaded = load_config(config)
    workspace = Workspace.of(loaded)
    cfg = loaded.pipeline
    uri = workspace.tracking_uri(tracking_uri or cfg.tracking.tracking_uri)
    return _Operator(uri, workspace, cfg.governance, loaded.base_dir)


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    from ray_mlops.workspace import Workspace

    return MlflowClient(Workspace.here().tracking_uri(tracking_uri))


def _reader(tracking_uri: str | None) -> RegistryReader:
    from ray_mlops.registry.reader import open_registry
    from ray_mlops.workspace import Workspace

    return open_registry(Workspace.here().tracking_uri(tracking_uri))


def _time(millis: int | None) -> str:
    if not millis:
        return "—"
    return dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@models_app.command("list")
def list_models(tracking_uri: str | None = TRACKING_OPT) -> None:
    """Every registered model: versions, aliases and the newest version's date."""
    reader = _reader(tracking_uri)
    versions: dict[str, list[VersionRecord]] = {}
    for v in reader.versions():
        versions.setdefault(v.name, []).append(v)
    table = Table(title="registered models")
    for column in ("model", "versions", "aliases", "latest", "updated"):
        table.add_column(column)
    for model in reader.models():
        found = versions.get(model.name, [])
        aliases = ", ".join(f"@{a} -> v{v}" for a, v in sorted(model.aliases.items()))
        table.add_row(
            model.name,
            str(len(found)),
            aliases or "—",
            f"v{found[0].version}" if found else "—",
            _time(model.last_updated_timestamp),
        )
    out.print(table)


def _versions_table(title: str, versions: list[VersionRecord]) -> Table:
    """One row per version; the metric it was judged by first, then the others by name."""
    from ray_mlops.mlflow_names import TAG_FINGERPRINT, TAG_GATE
    from ray_mlops.registry.catalog import primary_metric, version_metrics

    table = Table(title=title)
    for column in ("model", "version", "aliases", "gate", "primary metric", "metrics"):
        table.add_column(column)
    table.add_column("fingerprint")
    table.add_column("created", no_wrap=True)
    for v in versions:
        metrics = version_metrics(v)
        primary = primary_metric(v)
        judged = f"{primary} {metrics[primary]:.4f}" if primary in metrics else "—"
        others = sorted((k, val) for k, val in metrics.items() if k != primary)
        table.add_row(
            v.name,
            str(v.version),
            ", ".join("@" + a for a in v.aliases) or "—",
            v.tags.get(TAG_GATE, "—"),
            judged,
            ", ".join(f"{k} {val:.4f}" for k, val in others[:4]) or "—",
            v.tags.get(TAG_FINGERPRINT, "—")[:12],
            _time(v.creation_timestamp),
        )
    return table


@models_app.command()
def show(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str | None = typer.Argument(None, help="A version; all versions if omitted."),
    tracking_uri: str | None = TRACKING_OPT,
) -> None:
    """A model's versions, or one version: metrics, gate result, tags, card, lineage."""
    from ray_mlops.mlflow_names import TAG_CARD, TAG_GATE, TAG_GATE_REASONS, TAG_METRIC_PREFIX
    from ray_mlops.registry.catalog import primary_metric, version_metrics

    reader = _reader(tracking_uri)
    if version is None:
        versions = reader.versions(name)
        if not versions:
            raise RegistryError(f"no registered model named {name!r}")
        out.print(_versions_table(f"{name}: versions", versions))
        return
    found = reader.version(name, version)
    if found is None:
        raise RegistryError(f"model {name!r} has no version {version!r}")
    tags = found.tags
    out.print(f"[bold]{name} v{found.version}[/]  {found.description or ''}")
    out.print(f"aliases: {', '.join('@' + a for a in found.aliases) or 'none'}")
    out.print(f"created: {_time(found.creation_timestamp)}; run: {found.run_id}")
    out.print(f"gate: {tags.get(TAG_GATE, 'not run')}")
    if TAG_GATE_REASONS in tags:
        out.print(f"gate failures: {tags[TAG_GATE_REASONS]}")
    primary = primary_metric(found)
    metrics = Table(title="test metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in sorted(version_metrics(found).items(), key=lambda kv: kv[0] != primary):
        metrics.add_row(f"{key} (primary)" if key == primary else key, f"{value:.4f}")
    out.print(metrics)
    other = {k: v for k, v in tags.items() if not k.startswith(TAG_METRIC_PREFIX)}
    for key in sorted(other):
        out.print(f"  {key} = {other[key]}")
    if TAG_CARD in tags:
        out.print(f"model card: {tags[TAG_CARD]}")


@models_app.command()
def search(
    query: str = typer.Argument(
        ...,
        help="Terms that must all hold: name:GLOB, tag:KEY[=VALUE], fingerprint:PREFIX, "
        "alias:NAME, or METRIC>=NUMBER (>, <, <=, = too). "
        "Example: 'name:adult* roc_auc>=0.85 tag:team=risk'.",
    ),
    tracking_uri: str | None = TRACKING_OPT,
) -> None:
    """Find model versions by name, tag, test metric threshold or dataset fingerprint."""
    from ray_mlops.registry.catalog import search_versions

    try:
        found = search_versions(_reader(tracking_uri), query)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not found:
        err.print(f"no model version matches {query!r}")
        raise typer.Exit(1)
    out.print(_versions_table(f"versions matching {query!r}", found))


@models_app.command()
def history(
    name: str = typer.Argument(..., help="Registered model name."),
    tracking_uri: str | None = TRACKING_OPT,
) -> None:
    """Every alias move of a model: when, from, to, who, why."""
    from mlflow.exceptions import MlflowException

    from ray_mlops.registry.aliases import alias_history

    client = _client(tracking_uri)
    try:
        moves = alias_history(client, name)
    except MlflowException:
        raise RegistryError(f"no registered model named {name!r}") from None
    table = Table(title=f"{name}: alias history")
    for column in ("#", "when (UTC)", "alias", "from", "to", "kind", "who", "why"):
        table.add_column(column)
    for m in moves:
        table.add_row(
            str(m.sequence),
            m.time,
            m.alias,
            f"v{m.from_version}" if m.from_version else "—",
            f"v{m.to_version}",
            m.kind,
            m.who,
            m.why,
        )
    out.print(table)


@models_app.command()
def lineage(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="Model version."),
    tracking_uri: str | None = TRACKING_OPT,
) -> None:
    """Version -> training run -> search trial -> dataset and schema -> config -> git commit."""
    from ray_mlops.registry.lineage import version_lineage

    try:
        chain = version_lineage(_client(tracking_uri), name, version)
    except LookupError as exc:
        raise RegistryError(str(exc)) from None
    for depth, (label, value) in enumerate(chain.steps()):
        arrow = "  " * depth + ("└─ " if depth else "")
        out.print(f"{arrow}[bold]{label}[/]: {value}", highlight=False)


def promote(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="The version to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the alias history."),
    force: bool = typer.Option(
        False, "--force", help="Skip the gate (recorded as forced, with --reason)."
    ),
    tracking_uri: str | None = TRACKING_OPT,
    config: Path | None = OPERATOR_CONFIG_OPT,
) -> None:
    """Make VERSION the champion if it passes the gate against the current champion.

    The gate scores both on the version's frozen test split, with the gate rules of the
    config it was trained with. A failure leaves the champion where it is, tags the version
    with the reasons and exits 1. --force moves the alias without the gate.

    Needs the approver role (--force: admin); an actor without it is refused (exit 4).
    Every attempt is recorded in the audit log.
    """
    from ray_mlops.promotion.operations import promote as run_promote

    op = _operator(config, tracking_uri)
    outcome = run_promote(
        op.tracking_uri,
        name,
        version,
        reason,
        force,
        workspace=op.workspace,
        governance=op.governance,
        base_dir=op.base_dir,
    )
    if outcome.gate is not None:
        _print_gate(outcome.gate)
    if not outcome.moved:
        err.print(f"[red]not promoted:[/] {outcome.reason}", highlight=False)
        raise typer.Exit(1)
    move = outcome.move
    assert move is not None
    previous = f"v{move.from_version}" if move.from_version else "nothing"
    err.print(
        f"[green]@{move.alias}[/] {previous} -> v{move.to_version} ({move.kind}, by {move.who})",
        highlight=False,
    )


def rollback(
    name: str = typer.Argument(..., help="Registered model name."),
    reason: str = typer.Option("rollback", "--reason", help="Why: recorded in the alias history."),
    tracking_uri: str | None = TRACKING_OPT,
    config: Path | None = OPERATOR_CONFIG_OPT,
) -> None:
    """Point the champion alias back at the previous champion.

    Needs the approver role; an actor without it is refused (exit 4). Recorded in the
    audit log.
    """
    from ray_mlops.promotion.operations import rollback as run_rollback

    op = _operator(config, tracking_uri)
    move = run_rollback(
        op.tracking_uri,
        name,
        reason,
        workspace=op.workspace,
        governance=op.governance,
        base_dir=op.base_dir,
    )
    err.print(
        f"[green]@{move.alias}[/] v{move.from_version} -> v{move.to_version} (rollback)",
        highlight=False,
    )


def _print_gate(gate: GateResult) -> None:
    table = Table(title=f"promotion gate: {gate.verdict}")
    for column in ("rule", "measured", "threshold", "result", "detail"):
        table.add_column(column)
    for r in gate.rules:
        table.add_row(
            r.rule,
            _fmt(r.measured),
            _fmt(r.threshold),
            "[green]PASS[/]" if r.passed else "[red]FAIL[/]",
            r.detail,
        )
    out.print(table)
