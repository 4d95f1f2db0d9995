"""The one place that knows MLflow's run layout, tags and logging calls.

Layout: experiment = pipeline name; one parent run per invocation; one nested run per stage
(tag ``ray_mlops.stage``). Everything goes through an explicit :class:`MlflowClient` and run
ids, because Ray workers and Serve replicas live in other processes where an "active run"
means nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

from ray_mlops.local_state import DEFAULT_HOME as DEFAULT_HOME  # re-exported: the run layout
from ray_mlops.local_state import resolve_tracking_uri as resolve_tracking_uri

# A registered model version's tags (gate, card, metrics), in a module free of MLflow.
from ray_mlops.version_tags import TAG_CARD as TAG_CARD
from ray_mlops.version_tags import TAG_CONFIG_HASH as TAG_CONFIG_HASH
from ray_mlops.version_tags import TAG_FINGERPRINT as TAG_FINGERPRINT
from ray_mlops.version_tags import TAG_GATE as TAG_GATE
from ray_mlops.version_tags import TAG_GATE_REASONS as TAG_GATE_REASONS
from ray_mlops.version_tags import TAG_METRIC_PREFIX as TAG_METRIC_PREFIX
from ray_mlops.version_tags import TAG_PRIMARY_PREFIX as TAG_PRIMARY_PREFIX

TAG_STAGE = "ray_mlops.stage"
TAG_GIT_COMMIT = "ray_mlops.git_commit"
TAG_COMMAND = "ray_mlops.command"
TAG_RESUMES = "ray_mlops.resumes"
TAG_CHECKPOINT = "ray_mlops.checkpoint"
FEATURE_STATE_FILE = "feature_state.json"
TAG_SCHEMA_HASH = "ray_mlops.schema_hash"
TAG_SOURCE = "ray_mlops.data_source"
# A search trial's nested run: its Tune trial id, its status, and the best trial's mark.
TAG_TRIAL_ID = "ray_mlops.trial_id"
TAG_BEST_TRIAL = "ray_mlops.best_trial"
TAG_TRIAL_STATUS = "ray_mlops.trial_status"
PROFILE_JSON_FILE = "profile.json"
PROFILE_HTML_FILE = "profile.html"
CONTRACT_FILE = "data_contract.yaml"
SPLIT_PLAN_FILE = "split_plan.json"
SOURCE_SCHEMA_FILE = "source_schema.json"
SCHEMA_CHANGES_FILE = "schema_changes.json"
if TYPE_CHECKING:
    from ray_mlops.data.stage import PreparedData

_MAX_BATCH = 900  # below MLflow's 1000-entity limit per log_batch call


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


class PipelineTracker:
    """Creates the runs of one pipeline invocation and logs into them.

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

    def start_parent(self, run_name: str, tags: Mapping[str, str]) -> str:
        """Open the invocation's parent run."""
        all_tags = {MLFLOW_RUN_NAME: run_name, TAG_STAGE: "pipeline", **tags}
        if TAG_GIT_COMMIT in tags:
            all_tags[MLFLOW_GIT_COMMIT] = tags[TAG_GIT_COMMIT]
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def resume_parent(self, run: Run) -> str:
        """Reopen an unfinished parent run and count the resume in its tags."""
        run_id = run.info.run_id
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        resumes = int(run.data.tags.get(TAG_RESUMES, "0")) + 1
        self.client.set_tag(run_id, TAG_RESUMES, str(resumes))
        self.parent_run_id = run_id
        return run_id

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
            self.client.update_run(reopen, status=RunStatus.to_string(RunStatus.RUNNING))
            run_id = reopen
        else:
            run_id = self.client.create_run(
                self.experiment_id,
                run_name=name,
                tags={MLFLOW_PARENT_RUN_ID: self.parent_run_id, TAG_STAGE: name, **(tags or {})},
            ).info.run_id
        try:
            yield run_id
        except BaseException:
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def finish(self, succeeded: bool) -> None:
        """Close the parent run."""
        if self.parent_run_id is not None:
            status = RunStatus.FINISHED if succeeded else RunStatus.FAILED
            self.client.set_terminated(self.parent_run_id, RunStatus.to_string(status))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params in batches."""
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(run_id, params=items[start : start + _MAX_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log one step of metrics in a single call."""
        log_metrics(self.client, run_id, metrics, step)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set several tags in a single call."""
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as an artifact file."""
        self.client.log_text(run_id, text, artifact_file)


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """One ``log_batch`` call for a step's metrics (used by training workers too)."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    client.log_batch(run_id, metrics=batch, synchronous=True)


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


def log_lineage(
    tracker: PipelineTracker, run_id: str, data: PreparedData, name: str, context: str
) -> None:
    """Tag ``run_id`` with the data it used and log it as an MLflow dataset input."""
    tracker.set_tags(
        run_id,
        {
            TAG_FINGERPRINT: data.fingerprint,
            TAG_SCHEMA_HASH: schema_hash(data.schema),
            TAG_SOURCE: data.source.uri,
            "ray_mlops.rows": str(data.rows_read),
        },
    )
    dataset = dataset_input(
        name, data.fingerprint, data.source.uri, data.schema, data.rows_read, context
    )
    tracker.client.log_inputs(run_id, datasets=[dataset])


def log_data_stage(
    tracker: PipelineTracker, run_ids: list[str], stage_run_id: str, data: PreparedData, name: str
) -> None:
    """Everything the data stage produced: counts, quarantine, profile, contract, lineage.

    ``run_ids`` (the parent and the stage run) get the lineage tags and the dataset input.
    """
    from ray_mlops.data.contract import contract_to_yaml
    from ray_mlops.data.report import render_profile_html

    for run_id in run_ids:
        log_lineage(tracker, run_id, data, name, context="training")
    metrics = {"rows_read": data.rows_read, "rows_quarantined": data.quarantine.rows}
    metrics |= {f"rows_{split}": n for split, n in data.split_counts.items()}
    metrics |= {
        f"quarantined.{r.replace(':', '.')}": n for r, n in data.quarantine.by_reason.items()
    }
    tracker.log_metrics(stage_run_id, metrics)
    tracker.log_text(stage_run_id, data.profile.to_json(), PROFILE_JSON_FILE)
    tracker.log_text(
        stage_run_id, render_profile_html(data.profile, f"{name}: data profile"), PROFILE_HTML_FILE
    )
    tracker.log_text(stage_run_id, contract_to_yaml(data.contract), CONTRACT_FILE)
    tracker.log_text(stage_run_id, data.plan.to_json(), SPLIT_PLAN_FILE)
    tracker.log_text(stage_run_id, json.dumps(data.schema, indent=2), SOURCE_SCHEMA_FILE)
    if data.quarantine.path:
        tracker.set_tags(stage_run_id, {"ray_mlops.quarantine_path": data.quarantine.path})
        tracker.client.log_artifacts(stage_run_id, data.quarantine.path, "quarantine")
