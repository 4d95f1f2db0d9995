"""What a load trusts: whether signatures are checked, the signers' public keys, and where
a refusal is recorded and announced.

A :class:`Trust` is plain data (PEM text, not paths), so it travels to serving replicas on
other nodes in the deployment's arguments: public keys are not secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_mlops.errors import ConfigError
from ray_mlops.signing.keys import key_dir, key_pair

if TYPE_CHECKING:
    from ray_mlops.config import NotifyConfig, SigningConfig


@dataclass(frozen=True)
class Trust:
    """How a model version is checked before it loads.

    Attributes:
        enabled: Check signatures (false: ``governance.signing.enabled: false``).
        public_keys: PEM text of each trusted signer's public key.
        key_dir: The key folder the keys came from, for messages.
        audit_storage: ``workspace.storage`` whose ``audit/`` records refusals (None: none).
        audit_location: ``governance.audit.location``, when configured.
        notify: The config's ``notify`` section (as JSON) for the MODEL_TAMPERED webhook.
    """

    enabled: bool = True
    public_keys: tuple[str, ...] = ()
    key_dir: str = ""
    audit_storage: str | None = None
    audit_location: str | None = None
    notify: dict[str, Any] | None = field(default=None)

    def to_settings(self) -> dict[str, Any]:
        """JSON-able form, for a replica's settings."""
        return {
            "enabled": self.enabled,
            "public_keys": list(self.public_keys),
            "key_dir": self.key_dir,
            "audit_storage": self.audit_storage,
            "audit_location": self.audit_location,
            "notify": self.notify,
        }

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Trust:
        """The inverse of :meth:`to_settings`."""
        return cls(
            enabled=bool(settings.get("enabled", True)),
            public_keys=tuple(settings.get("public_keys") or ()),
            key_dir=str(settings.get("key_dir") or ""),
            audit_storage=settings.get("audit_storage"),
            audit_location=settings.get("audit_location"),
            notify=settings.get("notify"),
        )


def trust_for(
    signing: SigningConfig,
    *,
    base_dir: Path | None = None,
    audit_storage: str | None = None,
    audit_location: str | None = None,
    notify: NotifyConfig | None = None,
) -> Trust:
    """The trust of a config's ``governance.signing`` section.

    The trusted keys are ``trusted_public_keys`` (PEM files; relative ones from
    ``base_dir``), else the key folder's public key when it exists (else none: every
    signed version is then refused, naming how to get a key).

    Raises:
        ConfigError: a file of ``trusted_public_keys`` cannot be read.
    """
    folder = key_dir(signing.key_dir)
    keys: list[str] = []
    for configured in signing.trusted_public_keys:
        path = Path(configured).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            keys.append(path.read_text())
        except OSError as exc:
            raise ConfigError(
                f"governance.signing.trusted_public_keys: cannot read {path}: {exc.strerror}"
            ) from None
    if not signing.trusted_public_keys and key_pair(folder).public_key.is_file():
        keys.append(key_pair(folder).public_key.read_text())
    return Trust(
        enabled=signing.enabled,
        public_keys=tuple(keys),
        key_dir=str(folder),
        audit_storage=audit_storage,
        audit_location=audit_location,
        notify=notify.model_dump(mode="json") if notify is not None else None,
    )


def default_trust() -> Trust:
    """The trust of the default settings: signing on, the default key folder's public key;
    refusals recorded in the working directory's workspace (as ``ray-mlops audit log``
    without ``-c`` reads it) and announced to ``$RAY_MLOPS_WEBHOOK_URL`` when set."""
    from ray_mlops.config import NotifyConfig, SigningConfig
    from ray_mlops.workspace import Workspace

    return trust_for(SigningConfig(), audit_storage=Workspace.here().storage, notify=NotifyConfig())
