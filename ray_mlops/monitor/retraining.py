"""A retrain the monitor decided on: the training set, the pipeline run, the record of both.

The training set is the config's data plus the labelled captured rows of the windows the
decision read, written once to ``<workspace.storage>/monitor/retrain/<time>/`` in the original
data's own format (a CSV source stays CSV, so the data stage reads it with the same rules:
numbers parsed row by row, bad rows quarantined). The pipeline then runs on it exactly as
``ray-mlops run`` would, in the same experiment, so the candidate meets the same gate against
the champion and only a pass moves the alias; the server follows the alias by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ray_mlops.errors import DataError
from ray_mlops.storage import join

if TYPE_CHECKING:
    import ray.data
    from rich.console import Console

    from ray_mlops.config import DataConfig, PipelineConfig
    from ray_mlops.pipeline import PipelineResult
    from ray_mlops.workspace import Workspace

TAG_RETRAIN_REASON = "ray_mlops.retrain.reason"
"""On the pipeline run a retrain started: why (the decision's reason)."""
TAG_RETRAIN_WINDOWS = "ray_mlops.retrain.windows"
"""On that run: the monitored windows (``start/end``, ISO, comma-separated) whose labelled
rows joined the training set."""
TAG_RETRAIN_LABELLED_ROWS = "ray_mlops.retrain.labelled_rows"
TAG_RETRAIN_MONITOR_RUN = "ray_mlops.retrain.monitor_run"
"""On that run: the monitoring run (window) that decided it."""


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain produced.

    Attributes:
        data_path: Where the training set was written (the run's ``data.path``).
        original_rows: Rows the config's data held.
        labelled_rows: Labelled captured rows appended.
        run_id: The pipeline's parent run.
        model_version: The candidate's registered version (None when none was registered).
        promoted: Whether the candidate passed the gate and took the champion alias.
        decision: The gate's decision, one line.
    """

    data_path: str
    original_rows: int
    labelled_rows: int
    run_id: str
    model_version: str | None
    promoted: bool
    decision: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``retrain.json`` of the monitoring run)."""
        return {
            "data_path": self.data_path,
            "original_rows": self.original_rows,
            "labelled_rows": self.labelled_rows,
            "run_id": self.run_id,
            "model_version": self.model_version,
            "promoted": self.promoted,
            "decision": self.decision,
        }


def retraining_data_location(workspace: Workspace, started: datetime) -> str:
    """The folder (or URI prefix) a retrain started at ``started`` writes its data to."""
    return join(workspace.storage, "monitor", "retrain", started.strftime("%Y%m%dT%H%M%S%fZ"))


def labelled_rows_as(
    labelled: pd.DataFrame, schema: pa.Schema, data: DataConfig, first_id: int
) -> pa.Table:
    """Labelled captured records as rows of the original data's ``schema``.

    Args:
        labelled: Captured records with their joined ``label`` (None: unlabelled, left out).
        schema: The original dataset's schema; the rows are cast to it (a CSV source reads
            its numbers as text, so they become text here too).
        data: The data section: inputs, target and id column.
        first_id: First id given to the appended rows when the id column is an integer.

    Returns:
        The labelled rows; columns the capture lacks are null.

    Raises:
        DataError: an input column is missing from the capture, or a label does not fit the
            target's type.
    """
    inputs = [c for c in (*data.numeric, *data.categorical) if c in schema.names]
    missing = [c for c in inputs if c not in labelled]
    if missing:
        raise DataError(f"the captured records lack the input columns {missing}")
    rows = labelled[labelled["label"].notna()].reset_index(drop=True)
    columns: dict[str, pa.Array] = {}
    for field in schema:
        if field.name in inputs:
            values = pa.array(rows[field.name].astype(object).where(rows[field.name].notna()))
        elif field.name == data.target:
            values = pa.array(rows["label"].astype(str), pa.string())
        elif field.name == data.id_column:
            values = _ids(rows, field.type, first_id)
        else:
            values = pa.nulls(len(rows), field.type)
        columns[field.name] = _cast(values, field, data)
    return pa.table(columns, schema=schema)


def _ids(rows: pd.DataFrame, kind: pa.DataType, first_id: int) -> pa.Array:
    """New row keys for the appended rows: the next integers, or text naming the record."""
    if pa.types.is_integer(kind):
        return pa.array(range(first_id, first_id + len(rows)), kind)
    keys = rows["request_id"].astype(str) + ":" + rows["record_index"].astype(str)
    return pa.array(("capture:" + keys).tolist(), pa.string())


def _cast(values: pa.Array, field: pa.Field, data: DataConfig) -> pa.Array:
    if values.type == field.type:
        return values
    try:
        if pa.types.is_string(field.type) and pa.types.is_floating(values.type):
            # 39.0 -> "39": what the CSV held, so the data stage parses it the same way.
            whole = pc.equal(pc.floor(values), values)
            as_int = pc.cast(pc.if_else(whole, values, None), pa.int64()).cast(pa.string())
            return pc.coalesce(as_int, pc.cast(values, pa.string()))
        return pc.cast(values, field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        what = "label" if field.name == data.target else f"column {field.name!r}"
        raise DataError(
            f"a captured {what} does not fit the original data's type {field.type} ({exc})"
        ) from exc


def write_training_set(
    cfg: PipelineConfig,
    base_dir: Path,
    labelled: pd.DataFrame,
    destination: str,
) -> tuple[int, int]:
    """Write the config's data plus ``labelled``'s labelled rows to ``destination``.

    Args:
        cfg: The pipeline config (its data section names the source).
        base_dir: The config file's folder (relative data paths).
        labelled: Captured records with a ``label`` column.
        destination: An empty folder or URI prefix; written in the source's format.

    Returns:
        Rows of the original data, labelled rows appended.
    """
    import ray.data

    from ray_mlops.data.source import resolve_source
    from ray_mlops.data.stage import read_source

    source = resolve_source(cfg.data.path, base_dir)
    original = read_source(source, cfg.data, cfg.task)
    original_rows = original.count()
    schema = original.schema().base_schema
    first_id = _next_id(original, schema, cfg.data.id_column)
    added = labelled_rows_as(labelled, schema, cfg.data, first_id)
    combined = original.union(ray.data.from_arrow(added))
    _write(combined, source.format, destination)
    return original_rows, added.num_rows


def _next_id(dataset: ray.data.Dataset, schema: pa.Schema, id_column: str | None) -> int:
    if id_column is None or not pa.types.is_integer(schema.field(id_column).type):
        return 0
    highest: Any = dataset.max(id_column)
    return int(highest) + 1 if highest is not None else 0


def _write(dataset: ray.data.Dataset, kind: str, destination: str) -> None:
    from ray_mlops.storage import open_location

    filesystem, root = open_location(destination)
    if kind == "csv":
        dataset.write_csv(root, filesystem=filesystem)
    elif kind == "parquet":
        dataset.write_parquet(root, filesystem=filesystem)
    else:
        dataset.write_json(root, filesystem=filesystem, lines=True)


def run_retrain(
    cfg: PipelineConfig,
    config_source: Path,
    workspace: Workspace,
    data_path: str,
    console: Console | None = None,
) -> PipelineResult:
    """Run the whole pipeline on ``data_path`` (the training set), as ``ray-mlops run`` does.

    The candidate meets the config's gate against the champion; only a pass moves the alias.
    """
    from ray_mlops.config import LoadedConfig
    from ray_mlops.pipeline import run_pipeline

    data = cfg.data.model_copy(update={"path": data_path})
    loaded = LoadedConfig(pipeline=cfg.model_copy(update={"data": data}), source=config_source)
    return run_pipeline(loaded, console, workspace=workspace)
