"""What signing records: a refused model version (audit log and webhook), a key made.

A refusal always stands: a log or webhook that cannot be reached costs a warning
line, never the :class:`~ray_mlops.errors.SignatureError` that stops the load.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ray_mlops.errors import SignatureError
from ray_mlops.signing.model import verify_model
from ray_mlops.signing.trust import Trust

_log = logging.getLogger(__name__)


def verify_or_refuse(folder: Path, trust: Trust, target: str) -> str | None:
    """:func:`~ray_mlops.signing.model.verify_model`; a refusal is audited and announced.

    Returns:
        The signer's fingerprint; None when signing is disabled.

    Raises:
        SignatureError: the version is refused (see ``verify_model``).
    """
    try:
        return verify_model(folder, trust, target)
    except SignatureError as error:
        report_refusal(trust, target, str(error))
        raise


def report_refusal(trust: Trust, target: str, reason: str) -> None:
    """Append ``model.signature_refused`` (outcome refused) and send MODEL_TAMPERED."""
    if trust.audit_storage is not None:
        try:
            from ray_mlops.audit import actions, audit_log_for

            audit_log_for(trust.audit_storage, trust.audit_location).append(
                action=actions.SIGNATURE_REFUSED,
                target=target,
                outcome="refused",
                reason=reason,
                details={"key_dir": trust.key_dir},
            )
        except Exception as exc:  # the refusal stands without its record
            _log.warning("could not audit the refusal of %s: %s", target, exc)
    if trust.notify is not None:
        from ray_mlops.config import NotifyConfig
        from ray_mlops.notify import MODEL_TAMPERED, notifier_for

        model, _, version = target.rpartition("/v")
        notifier = notifier_for(NotifyConfig.model_validate(trust.notify))
        try:
            notifier.send(MODEL_TAMPERED, {"model": model, "version": version, "reason": reason})
        finally:
            notifier.close(timeout_s=5.0)


def record_key_created(
    fingerprint: str,
    folder: Path,
    storage: str,
    configured: str | None,
    tracking_uri: str | None = None,
    why: str = "ray-mlops keys init",
) -> None:
    """Append ``key.create`` for the signing key ``fingerprint`` made in ``folder``.

    Raises:
        AuditError: the audit log cannot be written.
    """
    from ray_mlops.audit import actions, audit_log_for

    audit_log_for(storage, configured, tracking_uri).append(
        action=actions.KEY_CREATE,
        target=f"signing-key:{fingerprint[:16]}",
        reason=why,
        details={"key_dir": str(folder), "fingerprint": fingerprint},
    )
