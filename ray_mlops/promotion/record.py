"""Record a judged candidate: a model version with its gate, card, alias decision, events.

Order matters for what a crash leaves behind: the version, its tags, the gate result and
the model card are written first; the alias moves last, in one call (see
:mod:`ray_mlops.registry.aliases`). A run that dies before that leaves the old champion
serving and the new version tagged as not promoted.

Given an :class:`~ray_mlops.governance.access.AccessControl`, a candidate that passed the
gate takes the alias only if the actor may promote (role ``approver``, four-eyes); if not,
it stays a registered candidate for an approver, and the refusal is audited.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from ray_mlops.audit import actions
from ray_mlops.config import PipelineConfig
from ray_mlops.evaluate.report import EvaluationReport
from ray_mlops.mlflow_names import (
    CARD_HTML,
    CARD_MD,
    TAG_CARD,
    TAG_DECISION,
    TAG_GATE,
    TAG_GATE_REASONS,
    TAG_METRIC_PREFIX,
    TAG_PROMOTED,
)
from ray_mlops.notify import PROMOTED, REJECTED, VERSION_CREATED, Notifier
from ray_mlops.promotion.card import ModelCard, derive_known_limits, render_html, render_markdown
from ray_mlops.promotion.gate import GateResult
from ray_mlops.registry.aliases import FORCE, PROMOTE, move_alias
from ray_mlops.registry.champion import tag_version
from ray_mlops.registry.lineage import version_lineage
from ray_mlops.tracking import RunHandle

if TYPE_CHECKING:
    from ray_mlops.governance.access import AccessControl

MLFLOW_USER_TAG = "mlflow.user"


@dataclass(frozen=True)
class AliasDecision:
    """Whether the candidate takes the alias, and why."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class Judgement:
    """Everything measured of a candidate, ready to record."""

    metric: str
    report: EvaluationReport
    gate: GateResult
    champion_version: str | None
    champion_metrics: dict[str, float] | None


def metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    """Test metrics as version tags, so the catalog can search them."""
    return {
        f"{TAG_METRIC_PREFIX}{k}": f"{v:.6g}"
        for k, v in metrics.items()
        if isinstance(v, int | float) and math.isfinite(v)
    }


def decision_of(gate: GateResult) -> AliasDecision:
    """Promote on a pass; otherwise the failed rules are the reason."""
    if gate.passed:
        margin = next((r for r in gate.rules if r.kind == "margin"), None)
        return AliasDecision(True, f"gate passed: {margin.detail if margin else 'all rules'}")
    return AliasDecision(False, "gate failed: " + "; ".join(gate.failures()))


def gate_tags(gate: GateResult) -> dict[str, str]:
    """The verdict and, when it failed, the reasons, as version tags."""
    tags = {TAG_GATE: gate.verdict}
    if not gate.passed:
        tags[TAG_GATE_REASONS] = "; ".join(gate.failures())[:4900]
    return tags


def tag_decision(
    client: MlflowClient, name: str, version: str, gate: GateResult, held: str | None = None
) -> AliasDecision:
    """Tag the version with the gate's verdict, its reasons and the alias decision.

    Args:
        held: Why a version that passed the gate may not take the alias all the same
            (the actor's role, four-eyes); None: nothing holds it.
    """
    decision = decision_of(gate)
    if held is not None and decision.promote:
        decision = AliasDecision(False, f"{decision.reason}; not promoted: {held}")
    tags = {
        **gate_tags(gate),
        TAG_PROMOTED: str(decision.promote).lower(),
        TAG_DECISION: decision.reason[:4900],
    }
    tag_version(client, name, version, tags)
    return decision


def build_card(
    cfg: PipelineConfig,
    client: MlflowClient,
    version: ModelVersion,
    judgement: Judgement,
    data_summary: dict[str, object],
    decision: str,
) -> ModelCard:
    """The model card of a freshly registered version."""
    report = judgement.report.to_dict()
    card = ModelCard(
        name=version.name,
        version=str(version.version),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        description=version.description or "",
        intended_use=cfg.registry.intended_use
        or f"{cfg.task} of {cfg.data.target!r} from {len(cfg.data.feature_columns)} columns",
        limitations=list(cfg.registry.limitations),
        data=data_summary,
        metrics={k: float(v) for k, v in judgement.report.metrics.items()},
        champion_metrics=judgement.champion_metrics,
        slices=list(report.get("slices", [])),
        fairness=dict(report.get("fairness", {})),
        gate=[dict(rule) for rule in judgement.gate.to_dict()["rules"]],
        gate_passed=judgement.gate.passed,
        decision=decision,
        lineage=version_lineage(client, version.name, str(version.version)).steps(),
        known_limits=[],
        primary_metric=judgement.metric,
    )
    card.known_limits = derive_known_limits(card)
    return card


def record_candidate(
    client: MlflowClient,
    cfg: PipelineConfig,
    version: ModelVersion,
    judgement: Judgement,
    data_summary: dict[str, object],
    notifier: Notifier,
    run_id: str,
    access: AccessControl | None = None,
) -> AliasDecision:
    """Tag the version with its gate, log its card, then move the alias if it passed.

    Args:
        access: Who acts and the audit log; the alias moves only if the actor may promote
            (and the move is audited). None: no check, no audit record.
    """
    name, number = version.name, str(version.version)
    held = None
    if access is not None and judgement.gate.passed:
        trainer = client.get_run(run_id).data.tags.get(MLFLOW_USER_TAG)
        held = access.refusal(actions.PROMOTE, f"{name}/v{number}", model=name, trainer=trainer)
    decision = tag_decision(client, name, number, judgement.gate, held)
    card = build_card(cfg, client, version, judgement, data_summary, decision.reason)
    run = RunHandle(client, run_id)
    run.record_text(render_markdown(card), CARD_MD)
    run.record_text(render_html(card), CARD_HTML)
    tag_version(client, name, number, {TAG_CARD: f"runs:/{run_id}/{CARD_HTML}"})
    base = _event(cfg, version, judgement)
    notifier.send(VERSION_CREATED, base)
    if decision.promote:
        move = move_alias(
            client,
            name,
            cfg.registry.champion_alias,
            number,
            why=decision.reason,
            kind=PROMOTE,
            who=access.actor if access is not None else None,
            audit=access.audit if access is not None else None,
        )
        if access is not None:
            access.record(
                actions.PROMOTE,
                f"{name}/v{number}",
                reason=decision.reason,
                details={
                    "alias": cfg.registry.champion_alias,
                    "from_version": move.from_version,
                    "gate": judgement.gate.verdict,
                    "by": "pipeline",
                    "run_id": run_id,
                },
            )
        notifier.send(PROMOTED, {**base, "previous_version": move.from_version, "who": move.who})
    else:
        notifier.send(REJECTED, {**base, "reasons": judgement.gate.failures()})
    return decision


def _event(cfg: PipelineConfig, version: ModelVersion, judgement: Judgement) -> dict[str, Any]:
    return {
        "model": version.name,
        "version": str(version.version),
        "alias": cfg.registry.champion_alias,
        "run_id": version.run_id,
        "metric": judgement.metric,
        "value": judgement.report.metrics.get(judgement.metric),
        "champion_version": judgement.champion_version,
        "gate": judgement.gate.verdict,
        "reason": decision_of(judgement.gate).reason,
    }


__all__ = ["FORCE", "AliasDecision", "Judgement", "decision_of", "record_candidate"]
