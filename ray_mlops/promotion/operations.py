"""Operator actions on the registry: promote a version (through the gate), roll back.

``promote`` judges the version against the current champion on the version's own frozen
holdout (logged by its run), with the gate rules of the config it was trained with; only a
pass moves the alias, unless ``force``, which is recorded as such. ``rollback`` points the
alias back at the champion before the current one. Every move lands in the alias history.
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

from ray_mlops.config import PipelineConfig
from ray_mlops.errors import RegistryError
from ray_mlops.evaluate.metrics import default_primary_metric
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
    current_actor,
    move_alias,
    previous_champion,
)
from ray_mlops.registry.champion import load_version, tag_version
from ray_mlops.tracking import RunHandle


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


def promote(
    tracking_uri: str, name: str, version: str, reason: str, force: bool = False
) -> PromotionOutcome:
    """Move the champion alias to ``version`` if it passes the gate (or if ``force``).

    Raises:
        RegistryError: no such version, it is already the champion, or its run lacks
            what the gate needs.
    """
    client = MlflowClient(tracking_uri)
    found = _version(client, name, version)
    cfg = version_config(client, found)
    alias = cfg.registry.champion_alias
    if alias_target(client, name, alias) == str(version):
        raise RegistryError(f"{name} v{version} is already @{alias}")
    notifier = notifier_for(cfg.notify)
    base = {"model": name, "version": str(version), "alias": alias, "who": current_actor()}
    try:
        if force:
            tag_version(
                client,
                name,
                version,
                {
                    TAG_GATE: "forced",
                    TAG_FORCED_BY: current_actor(),
                    TAG_PROMOTED: "true",
                    TAG_DECISION: f"forced: {reason}",
                },
            )
            move = move_alias(client, name, alias, str(version), why=reason, kind=FORCE)
            notifier.send(
                PROMOTED,
                {**base, "previous_version": move.from_version, "forced": True, "reason": reason},
            )
            return PromotionOutcome(True, None, move, f"forced: {reason}")
        gate = _run_gate(client, tracking_uri, cfg, found)
        decision = tag_decision(client, name, version, gate)
        if not decision.promote:
            notifier.send(REJECTED, {**base, "reasons": gate.failures(), "reason": reason})
            return PromotionOutcome(False, gate, None, decision.reason)
        move = move_alias(
            client, name, alias, str(version), why=f"{reason} ({decision.reason})", kind=PROMOTE
        )
        notifier.send(PROMOTED, {**base, "previous_version": move.from_version, "reason": reason})
        return PromotionOutcome(True, gate, move, decision.reason)
    finally:
        notifier.close(timeout_s=5.0)


def _run_gate(
    client: MlflowClient, tracking_uri: str, cfg: PipelineConfig, found: ModelVersion
) -> GateResult:
    """Judge the version and the champion on the version's frozen holdout."""
    try:
        holdout = pd.read_parquet(client.download_artifacts(run_of(found), HOLDOUT_FILE))
    except (MlflowException, OSError) as exc:
        raise RegistryError(
            f"{found.name} v{found.version}: its run has no frozen holdout ({HOLDOUT_FILE}); "
            "promote it with --force and a reason, or rerun the pipeline"
        ) from exc
    name = found.name
    with tempfile.TemporaryDirectory() as workdir:
        model, local = load_version(tracking_uri, name, str(found.version), f"{workdir}/c")
        classes = None if cfg.task == "regression" else _n_classes(holdout, cfg)
        metric = cfg.evaluate.primary_metric or default_primary_metric(cfg.task, classes)
        candidate = judge(cfg, model, local, holdout, metric, "candidate", full=True)
        verdict = judge_against_champion(
            cfg, client, tracking_uri, name, candidate, holdout, metric, Path(workdir)
        )
        gate = verdict.gate
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RunHandle(client, run_of(found)).record_text(gate.to_json(), promote_gate_file(stamp))
    return gate


def _n_classes(holdout: pd.DataFrame, cfg: PipelineConfig) -> int:
    return int(holdout[cfg.data.target].nunique())


def rollback(tracking_uri: str, name: str, reason: str) -> AliasMove:
    """Point the champion alias back at the previous champion.

    Raises:
        RegistryError: no such model, no alias, or no earlier champion recorded.
    """
    client = MlflowClient(tracking_uri)
    try:
        latest = max(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    except ValueError:
        raise RegistryError(f"no registered model named {name!r}") from None
    cfg = version_config(client, latest)
    alias = cfg.registry.champion_alias
    try:
        target = previous_champion(client, name, alias)
    except LookupError as exc:
        raise RegistryError(str(exc)) from None
    current = alias_target(client, name, alias)
    move = move_alias(client, name, alias, target, why=reason, kind=ROLLBACK)
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
