"""The policy file: which roles each actor holds.

``governance.policy`` names a YAML file (relative to the config's folder)::

    roles:            # actor -> roles
      alice: [trainer]
      bob: [approver, deployer]
      root: [admin]
    default: [viewer] # roles of an actor not listed (optional; default: none)

A bad file fails when it is loaded, with the file and the key at fault.

Example:
    >>> policy = Policy.from_document({"roles": {"bob": ["approver"]}}, Path("p.yaml"))
    >>> sorted(policy.roles_of("bob")), sorted(policy.roles_of("eve"))
    (['approver'], [])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ray_mlops.errors import ConfigError
from ray_mlops.governance.roles import ROLES

__all__ = ["Policy", "load_policy", "policy_path"]

_KEYS = ("roles", "default")


@dataclass(frozen=True)
class Policy:
    """Roles per actor, and the roles of anyone not listed.

    Attributes:
        path: The file it was read from (named in every refusal it causes).
        roles: Actor -> roles.
        default: Roles of an actor the file does not list.
    """

    path: Path
    roles: Mapping[str, frozenset[str]]
    default: frozenset[str] = frozenset()

    def roles_of(self, actor: str) -> frozenset[str]:
        """The roles ``actor`` holds under this policy."""
        return self.roles.get(actor, self.default)

    @classmethod
    def from_document(cls, document: Any, path: Path) -> Policy:
        """The policy a parsed YAML document describes.

        Raises:
            ConfigError: a key, actor or role is wrong; the message names the file and key.
        """
        if document is None:
            document = {}
        if not isinstance(document, Mapping):
            raise ConfigError(
                f"{path}: a policy is a mapping with 'roles' and 'default', "
                f"got {type(document).__name__}"
            )
        unknown = sorted(str(k) for k in document if k not in _KEYS)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key {unknown[0]!r} (a policy has: {', '.join(_KEYS)})"
            )
        table = document.get("roles") or {}
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"{path}: 'roles' maps each actor to a list of roles, got {type(table).__name__}"
            )
        roles = {str(actor): _roles(held, path, f"roles.{actor}") for actor, held in table.items()}
        default = _roles(document.get("default") or [], path, "default")
        return cls(path, roles, default)


def _roles(value: Any, path: Path, key: str) -> frozenset[str]:
    """A list of role names (one name alone is taken as a list of one)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(f"{path}: {key}: expected a list of roles, got {type(value).__name__}")
    for index, role in enumerate(items):
        if role not in ROLES:
            raise ConfigError(
                f"{path}: {key}[{index}]: unknown role {role!r} (roles: {', '.join(ROLES)})"
            )
    return frozenset(items)


def policy_path(configured: str, base_dir: Path) -> Path:
    """``governance.policy`` as a path: relative ones are taken from the config's folder."""
    given = Path(configured).expanduser()
    return given if given.is_absolute() else (base_dir / given).resolve()


def load_policy(path: Path) -> Policy:
    """Read and check a policy file.

    Raises:
        ConfigError: the file is missing, not YAML, or names an unknown key or role.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"governance.policy: cannot read {path}: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return Policy.from_document(document, path)
