"""Adding and revoking serving keys in a keys file (``serve.auth.keys_file``).

The file is a YAML list of ``{name, sha256, role}`` entries (:func:`read_keys_file` reads
it); the plaintext key is never written. A replica reads the file when it starts, so a
revoked key stops working at the next deploy (``ray-mlops serve`` again, which reconfigures
the running application).

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "keys.yaml"
    >>> add_key_entry(path, {"name": "app", "sha256": "0" * 64, "role": "predict"})
    >>> revoke_key_entry(path, "app")
    1
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ray_mlops.errors import ConfigError
from ray_mlops.serve.guard import read_keys_file

__all__ = ["add_key_entry", "keys_file_path", "revoke_key_entry"]


def keys_file_path(configured: str, base_dir: Path) -> Path:
    """A keys file path; a relative one is taken from ``base_dir`` (the config's folder)."""
    path = Path(configured).expanduser()
    return path if path.is_absolute() else base_dir / path


def _entries(path: Path) -> list[dict[str, Any]]:
    try:
        keys = read_keys_file(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return [key.model_dump(exclude_none=True) for key in keys]


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(yaml.safe_dump(entries, sort_keys=False))
    staged.replace(path)  # a reader sees the old file or the new one, never half of it


def add_key_entry(path: Path, entry: Mapping[str, Any]) -> None:
    """Append a key's entry to the file (created if missing).

    Raises:
        ConfigError: the file is unreadable, or already lists a key of that name.
    """
    entries = _entries(path) if path.exists() else []
    if any(e["name"] == entry["name"] for e in entries):
        raise ConfigError(
            f"{path}: a key named {entry['name']!r} is already listed; revoke it first "
            f"(ray-mlops serve-key {entry['name']} --revoke --keys-file {path})"
        )
    _write(path, [*entries, dict(entry)])


def revoke_key_entry(path: Path, name: str) -> int:
    """Remove the key named ``name`` from the file; the number of entries removed.

    Raises:
        ConfigError: the file is missing or unreadable, or lists no key of that name.
    """
    entries = _entries(path)
    kept = [e for e in entries if e["name"] != name]
    if len(kept) == len(entries):
        raise ConfigError(f"{path}: no key named {name!r} to revoke")
    _write(path, kept)
    return len(entries) - len(kept)
