"""MLflow registry access: the champion and its aliases, the catalog, lineage, version tags."""
