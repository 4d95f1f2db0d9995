"""MLflow registry access: the champion and its aliases, the catalog, lineage, version tags.

Registering a version, reading and moving the champion alias (with its history), finding
versions by metric, tag or alias, and a version's lineage. What to promote is decided in
``ray_mlops.promotion``; this package only reads and writes the registry. Imported lazily.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "FORCE",
    "PROMOTE",
    "ROLLBACK",
    "AliasMove",
    "Lineage",
    "ModelRecord",
    "RegistryReader",
    "VersionRecord",
    "alias_history",
    "alias_target",
    "champion_version",
    "current_actor",
    "load_version",
    "move_alias",
    "open_registry",
    "previous_champion",
    "primary_metric",
    "register_version",
    "search_versions",
    "tag_version",
    "version_aliases",
    "version_lineage",
    "version_metrics",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "FORCE": "aliases",
        "PROMOTE": "aliases",
        "ROLLBACK": "aliases",
        "AliasMove": "aliases",
        "Lineage": "lineage",
        "ModelRecord": "reader",
        "RegistryReader": "reader",
        "VersionRecord": "reader",
        "alias_history": "aliases",
        "alias_target": "aliases",
        "champion_version": "champion",
        "current_actor": "aliases",
        "load_version": "champion",
        "move_alias": "aliases",
        "open_registry": "reader",
        "previous_champion": "aliases",
        "primary_metric": "catalog",
        "register_version": "champion",
        "search_versions": "catalog",
        "tag_version": "champion",
        "version_aliases": "catalog",
        "version_lineage": "lineage",
        "version_metrics": "catalog",
    },
)
