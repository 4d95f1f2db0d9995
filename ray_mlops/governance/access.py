"""The one check every guarded action goes through, and the audit records it leaves.

:class:`AccessControl` holds what decides who may act (the policy file, the tracking
server's own permissions) and the audit log. :meth:`AccessControl.authorize` returns the
actor or raises :class:`~ray_mlops.errors.AccessDenied` (exit code 4) after recording the
refusal under the action it refused, with ``outcome="refused"``.

Each source in force must grant the role: a policy file restricts even an MLflow manager,
and MLflow's permissions restrict even an actor the policy calls admin. With neither (no
policy file, no tracking server running MLflow's auth app, the laptop default) everything
is allowed, and still recorded.

Example:
    >>> import tempfile
    >>> from ray_mlops.audit import audit_log
    >>> access = AccessControl(audit_log(tempfile.mkdtemp()))
    >>> access.authorize("model.promote", "adult/v3") == access.actor
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_mlops.audit import AuditLog, AuditRecord, audit_log_for, current_actor
from ray_mlops.config import GovernanceConfig
from ray_mlops.errors import AccessDenied
from ray_mlops.governance.mlflow_auth import mlflow_roles, server_identity
from ray_mlops.governance.policy import Policy, load_policy, policy_path
from ray_mlops.governance.roles import describe, grants, needed_role
from ray_mlops.workspace import Workspace

__all__ = ["AccessControl"]


@dataclass(frozen=True)
class AccessControl:
    """Who is acting, what decides their roles, and the audit log of every decision.

    Attributes:
        audit: Where every action and every refusal is recorded.
        policy: The policy file's roles; None: no policy file.
        tracking_uri: The tracking server whose auth app (if it runs one) decides too.
        four_eyes: A promotion's actor must differ from the candidate's trainer.
    """

    audit: AuditLog
    policy: Policy | None = None
    tracking_uri: str | None = None
    four_eyes: bool = False

    @classmethod
    def of(
        cls,
        governance: GovernanceConfig,
        workspace: Workspace,
        base_dir: Path,
        tracking_uri: str | None,
    ) -> AccessControl:
        """The access control a config's ``governance`` section describes.

        Args:
            governance: The config's section.
            workspace: Its storage holds the audit log (unless ``audit.location`` says).
            base_dir: The config's folder: a relative ``policy`` is taken from it.
            tracking_uri: The tracking server of the actions.

        Raises:
            ConfigError: the policy file is missing or wrong (file and key named).
        """
        policy = None
        if governance.policy:
            policy = load_policy(policy_path(governance.policy, base_dir))
        audit = audit_log_for(workspace.storage, governance.audit.location, tracking_uri)
        return cls(audit, policy, tracking_uri, governance.four_eyes)

    @property
    def actor(self) -> str:
        """The tracking server's authenticated user, else :func:`current_actor`."""
        identity = server_identity(self.tracking_uri) if self.tracking_uri else None
        if identity is not None and identity.username:
            return identity.username
        return current_actor(self.tracking_uri)

    def authorize(
        self,
        action: str,
        target: str,
        *,
        model: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> str:
        """Check that the actor holds the role ``action`` needs; return the actor.

        Args:
            action: The audit action attempted (:mod:`ray_mlops.audit.actions`).
            target: What it acts on, as the audit record names it (``adult/v3``).
            model: The registered model it acts on (MLflow's permissions are per model).
            details: Extra fields for the refusal's audit record.

        Raises:
            AccessDenied: a source in force does not grant the role; recorded first.
        """
        needed = needed_role(action)
        actor = self.actor
        for roles, source in self._sources(actor, model):
            if not grants(roles, needed):
                held = ", ".join(sorted(roles)) or "none"
                self.refuse(
                    action,
                    target,
                    f"{actor} may not {describe(action)} {target}: needs role {needed}, "
                    f"holds {held} ({source})",
                    actor=actor,
                    details={**(details or {}), "needed_role": needed, "source": source},
                )
        return actor

    def check_four_eyes(self, action: str, target: str, trainer: str | None) -> None:
        """With ``four_eyes`` on, refuse a promotion by the actor who trained the candidate.

        Args:
            action: The promotion's audit action (promote or forced promote).
            target: The version (``adult/v3``).
            trainer: The candidate run's ``mlflow.user``; None: its run records none, so
                the rule cannot be checked, and the promotion is refused.

        Raises:
            AccessDenied: the rule forbids it; recorded first.
        """
        if not self.four_eyes:
            return
        actor = self.actor
        if trainer is None:
            why = "its run records no trainer (mlflow.user), so four-eyes cannot be checked"
        elif trainer == actor:
            why = f"{actor} trained it; four-eyes needs another approver"
        else:
            return
        self.refuse(
            action,
            target,
            f"{actor} may not {describe(action)} {target}: {why} (governance.four_eyes)",
            actor=actor,
            details={"rule": "four_eyes", "trainer": trainer},
        )

    def refusal(
        self, action: str, target: str, *, model: str | None = None, trainer: str | None = None
    ) -> str | None:
        """Why the actor may not take ``action`` (recorded), or None when they may.

        For a step that is skipped rather than failed when refused: the pipeline's own
        promotion of a candidate that passed the gate.
        """
        try:
            self.authorize(action, target, model=model)
            self.check_four_eyes(action, target, trainer)
        except AccessDenied as exc:
            return str(exc)
        return None

    def refuse(
        self,
        action: str,
        target: str,
        reason: str,
        *,
        actor: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a refusal of ``action`` and raise it.

        Raises:
            AccessDenied: always, with ``reason``.
        """
        self.audit.append(
            action=action,
            target=target,
            outcome="refused",
            reason=reason,
            actor=actor or self.actor,
            details=dict(details or {}),
        )
        raise AccessDenied(reason)

    def record(
        self,
        action: str,
        target: str,
        outcome: str = "ok",
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append an action the actor took (or that failed) to the audit log."""
        return self.audit.append(
            action=action,
            target=target,
            outcome=outcome,
            reason=reason,
            actor=self.actor,
            details=dict(details or {}),
        )

    def _sources(self, actor: str, model: str | None) -> Iterator[tuple[frozenset[str], str]]:
        """The roles each source in force gives the actor, and the source's name."""
        if self.policy is not None:
            yield self.policy.roles_of(actor), f"policy {self.policy.path}"
        identity = server_identity(self.tracking_uri) if self.tracking_uri else None
        if identity is not None:
            roles, note = mlflow_roles(identity, model)
            yield roles, f"MLflow permissions at {identity.tracking_uri}: {note}"
