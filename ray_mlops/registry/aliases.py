"""Moving an alias, and the history of every move: when, from, to, who, why.

MLflow keeps only where an alias points now. Each move is also written as a tag of the
registered model, ``ray_mlops.alias_move.<sequence>`` with a JSON value, so the history
lives in MLflow beside the model and needs nothing else to read it.

The move itself is one ``set_registered_model_alias`` call, a single write: a process that
dies before it leaves the old version serving, and one that dies after it has moved the
alias. The history entry is written right after the move; :func:`alias_history` also
reports a move whose entry a crash cut off, by comparing the last entry with the alias.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ray_mlops.audit import actions
from ray_mlops.audit.actor import current_actor
from ray_mlops.mlflow_names import TAG_MOVE_PREFIX

if TYPE_CHECKING:
    from ray_mlops.audit import AuditLog

__all__ = [
    "FORCE",
    "PROMOTE",
    "ROLLBACK",
    "AliasMove",
    "alias_history",
    "alias_target",
    "current_actor",
    "move_alias",
    "previous_champion",
]

PROMOTE, FORCE, ROLLBACK = "promote", "force", "rollback"


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias."""

    sequence: int
    time: str
    alias: str
    from_version: str | None
    to_version: str
    who: str
    why: str
    kind: str


def alias_target(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def move_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    *,
    why: str,
    kind: str = PROMOTE,
    who: str | None = None,
    audit: AuditLog | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version`` (one atomic write), then record the move.

    The move is recorded in the model's tags (:func:`alias_history`) and, given ``audit``,
    in the audit trail as ``alias.move`` (target ``<model>@<alias>``).
    """
    previous = alias_target(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    sequence = len(_move_tags(client, name)) + 1
    move = AliasMove(
        sequence=sequence,
        time=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        alias=alias,
        from_version=previous,
        to_version=str(version),
        who=who or current_actor(client.tracking_uri),
        why=why,
        kind=kind,
    )
    value = {k: v for k, v in asdict(move).items() if k != "sequence"}
    client.set_registered_model_tag(name, f"{TAG_MOVE_PREFIX}{sequence:06d}", json.dumps(value))
    if audit is not None:
        audit.append(
            action=actions.ALIAS_MOVE,
            target=f"{name}@{alias}",
            outcome="ok",
            reason=why,
            actor=move.who,
            details={"from_version": previous, "to_version": move.to_version, "kind": kind},
        )
    return move


def _move_tags(client: MlflowClient, name: str) -> dict[str, str]:
    tags = client.get_registered_model(name).tags or {}
    return {k: v for k, v in tags.items() if k.startswith(TAG_MOVE_PREFIX)}


def alias_history(client: MlflowClient, name: str, alias: str | None = None) -> list[AliasMove]:
    """Every recorded move of the model's aliases (or of one alias), oldest first."""
    moves = []
    for key, value in sorted(_move_tags(client, name).items()):
        doc = json.loads(value)
        if alias is None or doc["alias"] == alias:
            moves.append(AliasMove(sequence=int(key.removeprefix(TAG_MOVE_PREFIX)), **doc))
    return moves


def previous_champion(client: MlflowClient, name: str, alias: str) -> str:
    """The version ``alias`` pointed at before the promotion that put it where it is now.

    Rollbacks are skipped when looking back, so rolling back twice goes two champions
    back rather than undoing the first rollback.

    Raises:
        LookupError: the alias is not set, or no earlier version is recorded.
    """
    current = alias_target(client, name, alias)
    if current is None:
        raise LookupError(f"model {name!r} has no {alias!r} alias to roll back")
    for move in reversed(alias_history(client, name, alias)):
        if move.kind != ROLLBACK and move.to_version == current:
            if move.from_version is None:
                break
            return move.from_version
    raise LookupError(
        f"no earlier {alias!r} of model {name!r} is recorded before version {current}"
    )
