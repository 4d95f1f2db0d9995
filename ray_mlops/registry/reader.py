"""Read the model registry for the catalog commands, without importing MLflow when possible.

``ray-mlops models list`` and ``models show`` took 3.5 to 19 s, almost all of it importing
MLflow (about 1.5-2.5 s here) and its SQLAlchemy store with Alembic (another 1-1.5 s), for a
few rows. On the embedded SQLite store (the default) they read MLflow's registry tables
directly, read-only, with the standard library: the tables they need (``registered_models``,
``model_versions``, ``model_version_tags``, ``registered_model_aliases``) are checked first,
and any other store, a missing table or column, or MLflow workspaces in use, goes through
:class:`mlflow.tracking.MlflowClient` as before. Every write still goes through MLflow.

Example:
    >>> reader = open_registry("sqlite:///no/such/mlflow.db")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

# MLflow's marker of a deleted version that is still in the table.
_DELETED_STAGE = "Deleted_Internal"
_DEFAULT_WORKSPACE = "default"
# Columns the reader selects, per table; probed once before the first query.
_NEEDED = {
    "registered_models": ("name", "last_updated_time"),
    "model_versions": ("name", "version", "creation_time", "run_id", "description"),
    "model_version_tags": ("name", "version", "key", "value"),
    "registered_model_aliases": ("name", "alias", "version"),
}


@dataclass(frozen=True)
class ModelRecord:
    """A registered model: its name, last update (ms since the epoch) and aliases."""

    name: str
    last_updated_timestamp: int | None
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionRecord:
    """A model version as the catalog shows it (the fields of MLflow's ``ModelVersion`` it uses)."""

    name: str
    version: str
    creation_timestamp: int | None
    run_id: str | None
    description: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


class RegistryReader(Protocol):
    """What the catalog commands read from a model registry."""

    def models(self) -> list[ModelRecord]:
        """Every registered model, by name."""
        ...

    def versions(self, name: str | None = None) -> list[VersionRecord]:
        """Every version (of one model, or of all), by name, newest version first."""
        ...

    def version(self, name: str, version: str) -> VersionRecord | None:
        """One version, or None when the model or the version does not exist."""
        ...


def open_registry(tracking_uri: str) -> RegistryReader:
    """A reader of the registry at ``tracking_uri``: SQLite read directly, anything else by MLflow."""
    if tracking_uri.startswith("sqlite:///") and not _workspaces_enabled():
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        reader = SqliteRegistryReader.open(path)
        if reader is not None:
            return reader
    from mlflow.tracking import MlflowClient

    return MlflowRegistryReader(MlflowClient(tracking_uri))


def _workspaces_enabled() -> bool:
    enabled = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true")
    return enabled or bool(os.environ.get("MLFLOW_WORKSPACE"))


class SqliteRegistryReader:
    """Reads MLflow's registry tables in a SQLite store, read-only."""

    def __init__(self, connection: sqlite3.Connection, has_workspaces: bool) -> None:
        self._db = connection
        # MLflow 3.x tables carry a workspace column; single-tenant stores use "default".
        self._where_workspace = "workspace = ?" if has_workspaces else "? IS NOT NULL"

    @classmethod
    def open(cls, path: Path) -> SqliteRegistryReader | None:
        """The reader, or None when the file is missing or lacks a table or column it reads."""
        if not path.is_file():
            return None
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            columns = {table: _columns(db, table) for table in _NEEDED}
        except sqlite3.Error:
            return None
        if any(not set(need) <= columns[table] for table, need in _NEEDED.items()):
            db.close()
            return None
        return cls(db, all("workspace" in found for found in columns.values()))

    def models(self) -> list[ModelRecord]:
        """Every registered model, by name."""
        aliases = self._aliases()
        rows = self._db.execute(
            f"SELECT name, last_updated_time FROM registered_models WHERE {self._where_workspace} "  # nosec B608  # fixed fragments and ? marks; every value is a bound parameter
            "ORDER BY name",
            (_DEFAULT_WORKSPACE,),
        )
        return [ModelRecord(name, updated, aliases.get(name, {})) for name, updated in rows]

    def versions(self, name: str | None = None) -> list[VersionRecord]:
        """Every version (of one model, or of all), by name, newest version first."""
        return self._versions(
            "" if name is None else "AND name = ?", () if name is None else (name,)
        )

    def version(self, name: str, version: str) -> VersionRecord | None:
        """One version, or None when the model or the version does not exist."""
        try:
            number = int(version)
        except ValueError:
            return None
        found = self._versions("AND name = ? AND version = ?", (name, number))
        return found[0] if found else None

    def _versions(self, condition: str, args: tuple[object, ...]) -> list[VersionRecord]:
        rows = self._db.execute(
            "SELECT name, version, creation_time, run_id, description FROM model_versions "  # nosec B608  # fixed fragments and ? marks; every value is a bound parameter
            f"WHERE {self._where_workspace} AND current_stage != ? {condition} "
            "ORDER BY name, version DESC",
            (_DEFAULT_WORKSPACE, _DELETED_STAGE, *args),
        ).fetchall()
        tags = self._tags({row[0] for row in rows})
        aliases = self._aliases()
        return [
            VersionRecord(
                name=name,
                version=str(number),
                creation_timestamp=created,
                run_id=run_id or None,
                description=description,
                tags=tags.get((name, number), {}),
                aliases=sorted(a for a, v in aliases.get(name, {}).items() if v == str(number)),
            )
            for name, number, created, run_id, description in rows
        ]

    def _tags(self, names: Iterable[str]) -> dict[tuple[str, int], dict[str, str]]:
        wanted = sorted(names)
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT name, version, key, value FROM model_version_tags "  # nosec B608  # fixed fragments and ? marks; every value is a bound parameter
            f"WHERE {self._where_workspace} AND name IN ({marks})",
            (_DEFAULT_WORKSPACE, *wanted),
        )
        tags: dict[tuple[str, int], dict[str, str]] = {}
        for name, number, key, value in rows:
            tags.setdefault((name, int(number)), {})[key] = value
        return tags

    def _aliases(self) -> dict[str, dict[str, str]]:
        rows = self._db.execute(
            f"SELECT name, alias, version FROM registered_model_aliases WHERE {self._where_workspace}",  # nosec B608  # fixed fragments and ? marks; every value is a bound parameter
            (_DEFAULT_WORKSPACE,),
        )
        aliases: dict[str, dict[str, str]] = {}
        for name, alias, number in rows:
            aliases.setdefault(name, {})[alias] = str(number)
        return aliases


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


class MlflowRegistryReader:
    """Reads any registry through :class:`~mlflow.tracking.MlflowClient` (servers, databases)."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def models(self) -> list[ModelRecord]:
        """Every registered model, by name."""
        found = self.client.search_registered_models(max_results=1000)
        return sorted(
            (
                ModelRecord(
                    m.name,
                    m.last_updated_timestamp,
                    {k: str(v) for k, v in (m.aliases or {}).items()},
                )
                for m in found
            ),
            key=lambda m: m.name,
        )

    def versions(self, name: str | None = None) -> list[VersionRecord]:
        """Every version (of one model, or of all), by name, newest version first."""
        query = f"name = '{name}'" if name else None
        found: list[ModelVersion] = []
        page_token = None
        while True:
            page = self.client.search_model_versions(query, max_results=1000, page_token=page_token)
            found.extend(page)
            page_token = page.token
            if not page_token:
                break
        aliases = {m.name: m.aliases for m in self.models()}
        return sorted(
            (self._record(v, aliases.get(v.name, {})) for v in found),
            key=lambda v: (v.name, -int(v.version)),
        )

    def version(self, name: str, version: str) -> VersionRecord | None:
        """One version, or None when the model or the version does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version(name, version)
        except MlflowException:
            return None
        return self._record(found, {a: str(found.version) for a in found.aliases or []})

    @staticmethod
    def _record(version: ModelVersion, aliases: dict[str, str]) -> VersionRecord:
        number = str(version.version)
        return VersionRecord(
            name=version.name,
            version=number,
            creation_timestamp=version.creation_timestamp,
            run_id=version.run_id or None,
            description=version.description,
            tags=dict(version.tags or {}),
            aliases=sorted(a for a, v in aliases.items() if v == number),
        )
