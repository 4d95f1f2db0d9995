"""The data contract: declared in the config and enforced, or inferred and saved as YAML.

An inferred contract records what the data looked like on first sight (types, nulls, ranges,
categories); comparing it with the previous run's tells what changed in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import yaml

from ray_mlops.config import ColumnContract, ColumnDtype, ColumnRole, DataConfig
from ray_mlops.data.profile import DatasetProfile

MAX_INFERRED_CATEGORIES = 50


def logical_dtype(arrow_type: pa.DataType) -> ColumnDtype:
    """The contract's name for an Arrow type."""
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "timestamp"
    return "string"


def column_roles(data: DataConfig) -> dict[str, ColumnRole]:
    """The role of every column the config names (sensitive wins over feature)."""
    roles: dict[str, ColumnRole] = {c: "feature" for c in data.feature_columns}
    roles |= {c: "sensitive" for c in data.sensitive}
    roles[data.target] = "target"
    if data.id_column:
        roles[data.id_column] = "id"
    if data.group_column:
        roles[data.group_column] = "group"
    if data.timestamp_column:
        roles[data.timestamp_column] = "timestamp"
    return roles


def infer_contract(
    schema: pa.Schema, data: DataConfig, profile: DatasetProfile
) -> dict[str, ColumnContract]:
    """A contract for the configured columns as the (valid) data shows them.

    Numeric columns get their observed range, string columns with at most
    ``MAX_INFERRED_CATEGORIES`` values their categories, every column whether it had nulls.
    """
    types = dict(zip(schema.names, schema.types, strict=True))
    contract: dict[str, ColumnContract] = {}
    for column, role in column_roles(data).items():
        dtype = "float" if column in data.numeric else logical_dtype(types[column])
        spec: dict[str, object] = {"role": role, "dtype": dtype}
        if column in profile.numeric:
            stats = profile.numeric[column]
            spec |= {"nullable": stats.missing > 0, "min": stats.min, "max": stats.max}
        elif column in profile.categorical:
            stats_c = profile.categorical[column]
            spec["nullable"] = stats_c.missing > 0
            if stats_c.distinct <= MAX_INFERRED_CATEGORIES and dtype == "string":
                spec["categories"] = sorted(value for value, _ in stats_c.top)
        elif role == "id":
            spec["nullable"] = False
        contract[column] = ColumnContract.model_validate(spec)
    return contract


def contract_to_yaml(contract: dict[str, ColumnContract]) -> str:
    """The contract as the YAML a user can paste under ``data.contract``."""
    document = {
        name: spec.model_dump(mode="json", exclude_none=True) for name, spec in contract.items()
    }
    return yaml.safe_dump({"contract": document}, sort_keys=False)


def contract_from_yaml(text: str) -> dict[str, ColumnContract]:
    """Read a document written by :func:`contract_to_yaml`."""
    document = yaml.safe_load(text) or {}
    return {
        name: ColumnContract.model_validate(spec) for name, spec in document["contract"].items()
    }


@dataclass(frozen=True)
class SchemaChange:
    """Columns added, removed or retyped since the previous contract (none before: ``first``)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    first: bool = False

    @property
    def any(self) -> bool:
        """Whether anything changed."""
        return bool(self.added or self.removed or self.retyped)

    def describe(self) -> str:
        """One line for the console."""
        if self.first:
            return "schema recorded (first run)"
        if not self.any:
            return "schema unchanged"
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        if self.retyped:
            parts.append(
                "retyped " + ", ".join(f"{c} {a}->{b}" for c, (a, b) in self.retyped.items())
            )
        return "schema changed: " + "; ".join(parts)


def compare_schemas(previous: dict[str, str] | None, current: dict[str, str]) -> SchemaChange:
    """Compare two ``{column: arrow type}`` maps of the source data (``previous`` None: the
    first run of the pipeline, nothing to compare with)."""
    if previous is None:
        return SchemaChange(first=True)
    return SchemaChange(
        added=sorted(set(current) - set(previous)),
        removed=sorted(set(previous) - set(current)),
        retyped={
            c: (previous[c], current[c])
            for c in sorted(set(previous) & set(current))
            if previous[c] != current[c]
        },
    )
