"""Operator actions on the registry: promote a version (through the gate), roll back.

``promote`` judges the version against the current champion on the version's own frozen
holdout (logged by its run), with the gate rules of the config it was trained with; only a
pass moves the alias, unless ``force``, which is recorded as such. ``rollback`` points the
alias back at the champion before the current one. Every move lands in the alias history.

Both check the actor's role first (``governance``: the policy file, the tracking server's
own permissions; :class:`~ray_mlops.governance.access.AccessControl`) and, for a promotion,
the four-eyes rule; every attempt lands in the audit trail, refused, failed or done.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from ray_mlops.audit import actions
from ray_mlops.config import GovernanceConfig, PipelineConfig
from ray_mlops.errors import RayMlopsError, RegistryError
from ray_mlops.evaluate.metrics import default_primary_metric
from ray_mlops.governance.access import AccessControl
from ray_mlops.mlflow_names import (
    CONFIG_FILE,
    HOLDOUT_FILE,
    TAG_DECISION,
    TAG_FORCED_BY,
    TAG_GATE,
    TAG_PROMOTED,
    TAG_ROLLED_BACK,
    promote_gate_file,
)
from ray_mlops.notify import PROMOTED, REJECTED, ROLLED_BACK, notifier_for
from ray_mlops.promotion.gate import GateResult
from ray_mlops.promotion.judge import judge, judge_against_champion
from ray_mlops.promotion.record import tag_decision
from ray_mlops.registry.aliases import (
    FORCE,
    PROMOTE,
    ROLLBACK,
    AliasMove,
    alias_target,
    move_alias,
    previous_champion,
)
from ray_mlops.registry.champion import load_version, tag_version
from ray_mlops.signing.trust import Trust, trust_for
from ray_mlops.tracking import RunHandle
from ray_mlops.workspace import Workspace

MLFLOW_USER_TAG = "mlflow.user"


@dataclass(frozen=True)
class PromotionOutcome:
    """What ``promote`` did."""

    moved: bool
    gate: GateResult | None
    move: AliasMove | None
    reason: str


def _version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"model {name!r} has no version {version!r}") from None


def run_of(version: ModelVersion) -> str:
    """The run a version was registered from."""
    if not version.run_id:
        raise RegistryError(f"{version.name} v{version.version} was registered without a run")
    return str(version.run_id)


def version_config(client: MlflowClient, version: ModelVersion) -> PipelineConfig:
    """The pipeline config the version was trained with (its run's ``config.yaml``)."""
    try:
        path = client.download_artifacts(run_of(version), CONFIG_FILE)
        return PipelineConfig.model_validate(yaml.safe_load(Path(path).read_text()))
    except (MlflowException, OSError, ValidationError) as exc:
        raise RegistryError(
            f"{version.name} v{version.version}: its run {version.run_id} has no readable "
            f"config.yaml ({type(exc).__name__}); it was not registered by ray-mlops"
        ) from None


def access_for(
    cfg: PipelineConfig,
    tracking_uri: str,
    workspace: Workspace | None = None,
    governance: GovernanceConfig | None = None,
    base_dir: Path | None = None,
) -> AccessControl:
    """The access control of an operator action on a version trained with ``cfg``.

    Args:
        cfg: The version's own config (its run's ``config.yaml``).
        tracking_uri: The registry's tracking server.
        workspace: Where the audit log is; None: the working directory's.
        governance: The operator's ``governance`` settings (``-c CONFIG``); None: those of
            the version's config.
        base_dir: The folder a relative policy path is taken from; None: the workspace's
            root.
    """
    workspace = workspace or Workspace.here()
    return AccessControl.of(
        governance or cfg.governance, workspace, base_dir or workspace.root, tracking_uri
    )


def operator_trust(
    cfg: PipelineConfig,
    workspace: Workspace | None,
    governance: GovernanceConfig | None,
    base_dir: Path | None,
) -> Trust:
    """How an operator action verifies the models it loads: the operator's own
    ``governance.signing`` (``-c CONFIG``), else the defaults; never the version's recorded
    config, which lives in the artifact store beside the model whoever swapped it could also
    have edited. Refusals go to the operator's audit log and the version's webhook."""
    workspace = workspace or Workspace.here()
    settings = governance or GovernanceConfig()
    return trust_for(
        settings.signing,
        base_dir=base_dir or workspace.root,
        audit_storage=workspace.storage,
        audit_location=settings.audit.location,
        notify=cfg.notify,
    )


def trainer_of(client: MlflowClient, version: ModelVersion) -> str | None:
    """Who trained a version: its run's ``mlflow.user`` tag (None: not recorded)."""
    return client.get_run(run_of(version)).data.tags.get(MLFLOW_USER_TAG)


def promote(
    tracking_uri: str,
    name: str,
    version: str,
    reason: str,
    force: bool = False,
    *,
    workspace: Workspace | None = None,
    governance: GovernanceConfig | None = None,
    base_dir: Path | None = None,
) -> PromotionOutcome:
    """Move the champion alias to ``version`` if it passes the gate (or if ``force``).

    The actor needs the ``approver`` role (``admin`` with ``force``) and, with four-eyes,
    must not be the one who trained the version; see :func:`access_for` for the other
    arguments. Every attempt is recorded in the audit trail.

    Raises:
        AccessDenied: the actor may not (recorded as refused).
        RegistryError: no such version, it is already the champion, or its run lacks
            what the gate needs.
    """
    client = MlflowClient(tracking_uri)
    found = _version(client, name, version)
    cfg = version_config(client, found)
    access = access_for(cfg, tracking_uri, workspace, governance, base_dir)
    action = actions.FORCE_PROMOTE if force else actions.PROMOTE
    target = f"{name}/v{version}"
    actor = access.authorize(action, target, model=name)
    access.check_four_eyes(action, target, trainer_of(client, found))
    alias = cfg.registry.champion_alias
    if alias_target(client, name, alias) == str(version):
        raise RegistryError(f"{name} v{version} is already @{alias}")
    trust = operator_trust(cfg, workspace, governance, base_dir)
    try:
        outcome = _promote(client, tracking_uri, cfg, found, reason, force, actor, access, trust)
    except RayMlopsError as exc:
        access.record(action, target, "failed", f"{reason}: {exc}")
        raise
    details = {
        "alias": alias,
        "from_version": outcome.move.from_version if outcome.move else None,
        "gate": outcome.gate.verdict if outcome.gate else "forced",
    }
    result = "ok" if outcome.moved else "refused"
    access.record(action, target, result, f"{reason} ({outcome.reason})", details)
    return outcome


def _promote(
    client: MlflowClient,
    tracking_uri: str,
    cfg: PipelineConfig,
    found: ModelVersion,
    reason: str,
    force: bool,
    actor: str,
    access: AccessControl,
    trust: Trust,
) -> PromotionOutcome:
    """The promotion itself, once the actor may: the gate (unless forced), the move."""
    name, version = found.name, str(found.version)
    alias = cfg.registry.champion_alias
    notifier = notifier_for(cfg.notify)
    base = {"model": name, "version": version, "alias": alias, "who": actor}
    try:
        if force:
            tag_version(
                client,
                name,
                version,
                {
                    TAG_GATE: "forced",
                    TAG_FORCED_BY: actor,
                    TAG_PROMOTED: "true",
                    TAG_DECISION: f"forced: {reason}",
                },
            )
            move = move_alias(
                client, name, alias, version, why=reason, kind=FORCE, who=actor, audit=access.audit
            )
            notifier.send(
                PROMOTED,
                {**base, "previous_version": move.from_version, "forced": True, "reason": reason},
            )
            return PromotionOutcome(True, None, move, f"forced: {reason}")
        gate = _run_gate(client, tracking_uri, cfg, found, trust)
        decision = tag_decision(client, name, version, gate)
        if not decision.promote:
            notifier.send(REJECTED, {**base, "reasons": gate.failures(), "reason": reason})
            return PromotionOutcome(False, gate, None, decision.reason)
        move = move_alias(
            client,
            name,
            alias,
            version,
            why=f"{reason} ({decision.reason})",
            kind=PROMOTE,
            who=actor,
            audit=access.audit,
        )
        notifier.send(PROMOTED, {**base, "previous_version": move.from_version, "reason": reason})
        return PromotionOutcome(True, gate, move, decision.reason)
    finally:
        notifier.close(timeout_s=5.0)


def _run_gate(
    client: MlflowClient, tracking_uri: str, cfg: PipelineConfig, found: ModelVersion, trust: Trust
) -> GateResult:
    """Judge the version and the champion on the version's frozen holdout, each verified
    against ``trust`` before it loads."""
    try:
        holdout = pd.read_parquet(client.download_artifacts(run_of(found), HOLDOUT_FILE))
    except (MlflowException, OSError) as exc:
        raise RegistryError(
            f"{found.name} v{found.version}: its run has no frozen holdout ({HOLDOUT_FILE}); "
            "promote it with --force and a reason, or rerun the pipeline"
        ) from exc
    name = found.name
    with tempfile.TemporaryDirectory() as workdir:
        model, local = load_version(
            tracking_uri, name, str(found.version), f"{workdir}/c", trust=trust
        )
        classes = None if cfg.task == "regression" else _n_classes(holdout, cfg)
        metric = cfg.evaluate.primary_metric or default_primary_metric(cfg.task, classes)
        candidate = judge(cfg, model, local, holdout, metric, "candidate", full=True)
        verdict = judge_against_champion(
            cfg, client, tracking_uri, name, candidate, holdout, metric, Path(workdir), trust=trust
        )
        gate = verdict.gate
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RunHandle(client, run_of(found)).record_text(gate.to_json(), promote_gate_file(stamp))
    return gate


def _n_classes(holdout: pd.DataFrame, cfg: PipelineConfig) -> int:
    return int(holdout[cfg.data.target].nunique())


def rollback(
    tracking_uri: str,
    name: str,
    reason: str,
    *,
    workspace: Workspace | None = None,
    governance: GovernanceConfig | None = None,
    base_dir: Path | None = None,
) -> AliasMove:
    """Point the champion alias back at the previous champion.

    The actor needs the ``approver`` role; the rollback (or its refusal) is recorded in
    the audit trail. See :func:`access_for` for the keyword arguments.

    Raises:
        AccessDenied: the actor may not (recorded as refused).
        RegistryError: no such model, no alias, or no earlier champion recorded.
    """
    client = MlflowClient(tracking_uri)
    try:
        latest = max(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    except ValueError:
        raise RegistryError(f"no registered model named {name!r}") from None
    cfg = version_config(client, latest)
    access = access_for(cfg, tracking_uri, workspace, governance, base_dir)
    alias = cfg.registry.champion_alias
    actor = access.authorize(actions.ROLLBACK, f"{name}@{alias}", model=name)
    try:
        target = previous_champion(client, name, alias)
    except LookupError as exc:
        access.record(actions.ROLLBACK, f"{name}@{alias}", "failed", f"{reason}: {exc}")
        raise RegistryError(str(exc)) from None
    current = alias_target(client, name, alias)
    move = move_alias(
        client, name, alias, target, why=reason, kind=ROLLBACK, who=actor, audit=access.audit
    )
    access.record(
        actions.ROLLBACK,
        f"{name}@{alias}",
        reason=reason,
        details={"from_version": current, "to_version": target},
    )
    if current is not None:
        tag_version(client, name, current, {TAG_ROLLED_BACK: "true"})
    notifier = notifier_for(cfg.notify)
    try:
        notifier.send(
            ROLLED_BACK,
            {
                "model": name,
                "version": target,
                "previous_version": current,
                "alias": alias,
                "who": move.who,
                "reason": reason,
            },
        )
    finally:
        notifier.close(timeout_s=5.0)
    return move
