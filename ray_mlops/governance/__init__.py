"""Who may do what: roles per action, from a policy file and from MLflow's own permissions.

:class:`AccessControl` is the one check every guarded action passes (``promote``,
``rollback``, ``--force``, ``serve``, serving keys, pipeline runs); a refusal raises
:class:`~ray_mlops.errors.AccessDenied` (exit code 4) and is recorded in the audit trail.
The role table is :data:`ACTION_ROLES`; the policy file format is in
:mod:`ray_mlops.governance.policy`. Imported lazily.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "ACTION_ROLES",
    "ROLES",
    "AccessControl",
    "MlflowIdentity",
    "Policy",
    "grants",
    "load_policy",
    "mlflow_roles",
    "needed_role",
    "server_identity",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "ACTION_ROLES": "roles",
        "ROLES": "roles",
        "AccessControl": "access",
        "MlflowIdentity": "mlflow_auth",
        "Policy": "policy",
        "grants": "roles",
        "load_policy": "policy",
        "mlflow_roles": "mlflow_auth",
        "needed_role": "roles",
        "server_identity": "mlflow_auth",
    },
)
