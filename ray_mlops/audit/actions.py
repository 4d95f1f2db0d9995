"""The actions the audit trail records: one constant per state-changing action.

A refused attempt is recorded under the action it tried, with ``outcome="refused"``; there is
no separate "access denied" action.
"""

from __future__ import annotations

RUN_START = "run.start"
RUN_END = "run.end"
REGISTER = "model.register"
PROMOTE = "model.promote"
FORCE_PROMOTE = "model.force_promote"
ROLLBACK = "model.rollback"
ALIAS_MOVE = "alias.move"
SERVE_DEPLOY = "serve.deploy"
SERVE_RECONFIGURE = "serve.reconfigure"
KEY_CREATE = "key.create"
KEY_REVOKE = "key.revoke"
RETRAIN = "monitor.retrain"
SIGNATURE_REFUSED = "model.signature_refused"
DATA_REFUSED = "data.poisoning_refused"

ALL = (
    RUN_START,
    RUN_END,
    REGISTER,
    PROMOTE,
    FORCE_PROMOTE,
    ROLLBACK,
    ALIAS_MOVE,
    SERVE_DEPLOY,
    SERVE_RECONFIGURE,
    KEY_CREATE,
    KEY_REVOKE,
    RETRAIN,
    SIGNATURE_REFUSED,
    DATA_REFUSED,
)

OUTCOMES = ("ok", "refused", "failed")
