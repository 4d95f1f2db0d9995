"""Roles and the role each guarded action needs.

Five roles: ``viewer`` reads, ``trainer`` runs pipelines, ``approver`` promotes and rolls
back, ``deployer`` serves, ``admin`` may do everything (forced promotions, serving keys
among them). The table is keyed by the audit action an attempt is recorded under, so a
refusal lands in the audit trail under the action it tried.

Example:
    >>> needed_role(actions.PROMOTE)
    'approver'
    >>> grants(frozenset({"admin"}), "deployer")
    True
"""

from __future__ import annotations

from collections.abc import Iterable

from ray_mlops.audit import actions

__all__ = [
    "ACTION_ROLES",
    "ADMIN",
    "APPROVER",
    "DEPLOYER",
    "ROLES",
    "TRAINER",
    "VIEWER",
    "VIEW_AUDIT",
    "VIEW_MODELS",
    "describe",
    "grants",
    "needed_role",
]

VIEWER, TRAINER, APPROVER, DEPLOYER, ADMIN = "viewer", "trainer", "approver", "deployer", "admin"
ROLES = (VIEWER, TRAINER, APPROVER, DEPLOYER, ADMIN)

# Reading is no change of state, so it has no audit action of its own; a refused read is
# recorded under these names.
VIEW_MODELS = "models.view"
VIEW_AUDIT = "audit.view"

ACTION_ROLES: dict[str, str] = {
    actions.RUN_START: TRAINER,
    actions.RETRAIN: TRAINER,
    actions.PROMOTE: APPROVER,
    actions.ROLLBACK: APPROVER,
    actions.FORCE_PROMOTE: ADMIN,
    actions.SERVE_DEPLOY: DEPLOYER,
    actions.SERVE_RECONFIGURE: DEPLOYER,
    actions.KEY_CREATE: ADMIN,
    actions.KEY_REVOKE: ADMIN,
    VIEW_MODELS: VIEWER,
    VIEW_AUDIT: VIEWER,
}
"""The role each guarded action needs."""

_VERBS = {
    actions.RUN_START: "run a pipeline of",
    actions.RETRAIN: "retrain",
    actions.PROMOTE: "promote",
    actions.ROLLBACK: "roll back",
    actions.FORCE_PROMOTE: "force the promotion of",
    actions.SERVE_DEPLOY: "deploy",
    actions.SERVE_RECONFIGURE: "reconfigure the serving of",
    actions.KEY_CREATE: "create the serving key",
    actions.KEY_REVOKE: "revoke the serving key",
    VIEW_MODELS: "view",
    VIEW_AUDIT: "read the audit log of",
}


def needed_role(action: str) -> str:
    """The role ``action`` needs.

    Raises:
        KeyError: ``action`` is not guarded (a programming error, never a user's).
    """
    return ACTION_ROLES[action]


def grants(roles: Iterable[str], needed: str) -> bool:
    """Whether holding ``roles`` allows what ``needed`` allows (admin allows everything;
    every role includes viewing)."""
    held = set(roles)
    return ADMIN in held or needed in held or (needed == VIEWER and bool(held))


def describe(action: str) -> str:
    """The action as a verb phrase for messages: ``promote``, ``deploy``, ..."""
    return _VERBS.get(action, action)
