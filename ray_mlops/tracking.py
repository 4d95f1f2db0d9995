"""The one place that writes to MLflow's runs: the run layout and the run handle.

Layout: experiment = pipeline name; one parent run per invocation; one nested run per stage
(tag ``ray_mlops.stage``); the names of tags and artifacts are in
:mod:`ray_mlops.mlflow_names`. Every write to a run goes through a :class:`RunHandle` (an
explicit :class:`MlflowClient` and run id, because Ray workers and Serve replicas live in
other processes where an "active run" means nothing). The registry's own writes (versions,
aliases, version tags) are registry access and live in :mod:`ray_mlops.registry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    Metric,
    Param,
    Run,
    RunStatus,
    RunTag,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
)

from ray_mlops.mlflow_names import (
    QUARANTINE_DIR,
    TAG_COMMAND,
    TAG_FINGERPRINT,
    TAG_GIT_COMMIT,
    TAG_QUARANTINE_PATH,
    TAG_RESUMES,
    TAG_ROWS,
    TAG_SCHEMA_HASH,
    TAG_SOURCE,
    TAG_STAGE,
)

_MAX_BATCH = 900  # below MLflow's 1000-entity limit per log_batch call
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def artifact_root_for(tracking_uri: str) -> str | None:
    """Where new experiments keep artifacts: beside a SQLite database, else the server's choice."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts").as_uri()
    return None


def git_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory``, if it is inside a git work tree."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as ``a.b.c`` params."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else str(value)
    return flat


class RunHandle:
    """One MLflow run and the client that writes to it: every write to a run passes here.

    Args:
        client: The client of the run's tracking store.
        run_id: The run.
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @classmethod
    def create(
        cls,
        client: MlflowClient,
        experiment_id: str,
        run_name: str | None,
        tags: Mapping[str, str],
    ) -> RunHandle:
        """Open a new run in ``experiment_id``."""
        run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        return cls(client, str(run.info.run_id))

    def record_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches (values cut to MLflow's limit)."""
        items = [Param(k, str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
        for start in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _MAX_BATCH])

    def record_metrics(
        self, metrics: Mapping[str, float], step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        """Log one step of metrics in a single call, stamped now unless ``timestamp_ms``."""
        now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def record_metric_entries(self, metrics: Sequence[Metric], synchronous: bool = True) -> Any:
        """Log metrics that carry their own timestamps and steps, in one call.

        Returns MLflow's pending operation when not ``synchronous`` (``.wait()`` on it),
        else ``None``.
        """
        return self.client.log_batch(self.run_id, metrics=list(metrics), synchronous=synchronous)

    def record_tags(self, tags: Mapping[str, str]) -> None:
        """Set several tags in a single call."""
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def record_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as an artifact file."""
        self.client.log_text(self.run_id, text, artifact_file)

    def upload_file(self, local_path: Path | str, artifact_dir: str | None = None) -> None:
        """Store one local file as an artifact, in ``artifact_dir`` if given."""
        self.client.log_artifact(self.run_id, str(local_path), artifact_dir)

    def upload_folder(self, local_dir: Path | str, artifact_dir: str | None = None) -> None:
        """Store a local folder's files as artifacts, under ``artifact_dir`` if given."""
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_dir)

    def record_inputs(self, datasets: Sequence[DatasetInput]) -> None:
        """Log the datasets the run used."""
        self.client.log_inputs(self.run_id, datasets=list(datasets))

    def reopen(self) -> None:
        """Mark a finished or failed run RUNNING again (a resume continues it)."""
        self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    def end(self, status: str) -> None:
        """Close the run as ``status`` (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(self.run_id, status)

    def delete(self) -> None:
        """Soft-delete the run."""
        self.client.delete_run(self.run_id)


class PipelineTracker:
    """Creates the runs of one pipeline invocation and hands out their :class:`RunHandle`.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: Experiment name; created (with artifacts beside SQLite) if missing.
    """

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=artifact_root_for(tracking_uri)
            )
        else:
            self.experiment_id = found.experiment_id
        self.parent_run_id: str | None = None

    def run(self, run_id: str) -> RunHandle:
        """The handle that writes to ``run_id``."""
        return RunHandle(self.client, run_id)

    def start_parent(self, run_name: str, tags: Mapping[str, str]) -> str:
        """Open the invocation's parent run."""
        all_tags = {MLFLOW_RUN_NAME: run_name, TAG_STAGE: "pipeline", **tags}
        if TAG_GIT_COMMIT in tags:
            all_tags[MLFLOW_GIT_COMMIT] = tags[TAG_GIT_COMMIT]
        self.parent_run_id = RunHandle.create(
            self.client, self.experiment_id, run_name, all_tags
        ).run_id
        return self.parent_run_id

    def resume_parent(self, run: Run) -> str:
        """Reopen an unfinished parent run and count the resume in its tags."""
        handle = self.run(run.info.run_id)
        handle.reopen()
        resumes = int(run.data.tags.get(TAG_RESUMES, "0")) + 1
        handle.record_tags({TAG_RESUMES: str(resumes)})
        self.parent_run_id = handle.run_id
        return handle.run_id

    def stage_runs(self, parent_run_id: str) -> dict[str, Run]:
        """The newest nested run of each stage under ``parent_run_id``."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
            order_by=["attributes.start_time ASC"],
        )
        return {run.data.tags.get(TAG_STAGE, run.info.run_name): run for run in runs}

    @contextlib.contextmanager
    def stage(
        self, name: str, tags: Mapping[str, str] | None = None, reopen: str | None = None
    ) -> Iterator[str]:
        """A nested run for one stage, FINISHED on success and FAILED on any exception.

        ``reopen`` continues an existing stage run (a resumed training) instead of
        creating one, so its metrics keep their steps.
        """
        if self.parent_run_id is None:
            raise RuntimeError("start_parent must be called before stage")
        if reopen is not None:
            handle = self.run(reopen)
            handle.reopen()
        else:
            handle = RunHandle.create(
                self.client,
                self.experiment_id,
                name,
                {MLFLOW_PARENT_RUN_ID: self.parent_run_id, TAG_STAGE: name, **(tags or {})},
            )
        try:
            yield handle.run_id
        except BaseException:
            handle.end(RunStatus.to_string(RunStatus.FAILED))
            raise
        handle.end(RunStatus.to_string(RunStatus.FINISHED))

    def finish(self, succeeded: bool) -> None:
        """Close the parent run."""
        if self.parent_run_id is not None:
            status = RunStatus.FINISHED if succeeded else RunStatus.FAILED
            self.run(self.parent_run_id).end(RunStatus.to_string(status))


def dataset_input(
    name: str, fingerprint: str, uri: str, schema: Mapping[str, str], rows: int, context: str
) -> DatasetInput:
    """An MLflow dataset input: digest = content fingerprint, schema, row count, source URI."""
    source_type = uri.split("://", 1)[0] if "://" in uri else "local"
    schema_doc = {"mlflow_colspec": [{"name": n, "type": t} for n, t in schema.items()]}
    return DatasetInput(
        dataset=Dataset(
            name=name,
            digest=fingerprint,
            source_type=source_type,
            source=json.dumps({"uri": uri}),
            schema=json.dumps(schema_doc),
            profile=json.dumps({"num_rows": rows}),
        ),
        tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)],
    )


def schema_hash(schema: Mapping[str, str]) -> str:
    """A short hash of column names and types, in order."""
    text = ",".join(f"{name}:{kind}" for name, kind in schema.items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_resumable_run(
    client: MlflowClient, experiment_id: str, command: str, run_id: str | None = None
) -> Run | None:
    """The run ``--resume`` continues: ``run_id``, else the newest unfinished ``command`` run.

    Unfinished means RUNNING (the process was killed), FAILED or KILLED (Ctrl-C).
    """
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            return None
        return run if run.data.tags.get(TAG_STAGE) == "pipeline" else None
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_STAGE}` = 'pipeline' and tags.`{TAG_COMMAND}` = '{command}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs and runs[0].info.status != RunStatus.to_string(RunStatus.FINISHED):
        return runs[0]
    return None


def read_artifact_text(client: MlflowClient, run_id: str, artifact_file: str) -> str | None:
    """Text of one artifact of ``run_id``, or ``None`` when it is missing."""
    with contextlib.suppress(MlflowException, OSError):
        return Path(client.download_artifacts(run_id, artifact_file)).read_text()
    return None


def latest_stage_artifact(
    client: MlflowClient,
    experiment_id: str,
    stage: str,
    artifact_file: str,
    extra_filter: str = "",
) -> str | None:
    """Text of ``artifact_file`` from the newest finished run of ``stage``, if any."""
    query = f"tags.`{TAG_STAGE}` = '{stage}' and attributes.status = 'FINISHED'"
    if extra_filter:
        query += f" and {extra_filter}"
    runs = client.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        return None
    return read_artifact_text(client, runs[0].info.run_id, artifact_file)


class _Source(Protocol):
    @property
    def uri(self) -> str: ...


class LineageData(Protocol):
    """What lineage needs of the data a run used (``data.stage.PreparedData`` has it).

    A protocol rather than an import, so this module stays below ``data/``.
    """

    @property
    def fingerprint(self) -> str: ...

    @property
    def schema(self) -> Mapping[str, str]: ...

    @property
    def rows_read(self) -> int: ...

    @property
    def source(self) -> _Source: ...


def log_lineage(handle: RunHandle, data: LineageData, name: str, context: str) -> None:
    """Tag the run with the data it used and log it as an MLflow dataset input."""
    handle.record_tags(
        {
            TAG_FINGERPRINT: data.fingerprint,
            TAG_SCHEMA_HASH: schema_hash(data.schema),
            TAG_SOURCE: data.source.uri,
            TAG_ROWS: str(data.rows_read),
        }
    )
    dataset = dataset_input(
        name, data.fingerprint, data.source.uri, data.schema, data.rows_read, context
    )
    handle.record_inputs([dataset])


def log_data_stage(
    runs: Sequence[RunHandle],
    stage: RunHandle,
    data: LineageData,
    name: str,
    metrics: Mapping[str, float],
    texts: Mapping[str, str],
    quarantine_path: str | None,
) -> None:
    """Everything the data stage produced: counts, quarantine, profile, contract, lineage.

    ``runs`` (the parent and the stage run) get the lineage tags and the dataset input;
    ``texts`` (artifact file -> text, rendered by the caller) go to the stage run.
    """
    for run in runs:
        log_lineage(run, data, name, context="training")
    stage.record_metrics(metrics)
    for artifact_file, text in texts.items():
        stage.record_text(text, artifact_file)
    if quarantine_path:
        stage.record_tags({TAG_QUARANTINE_PATH: quarantine_path})
        stage.upload_folder(quarantine_path, QUARANTINE_DIR)
