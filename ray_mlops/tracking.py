"""The one place that writes to MLflow's runs: the run layout and the run handle.

Layout: experiment = pipeline name; one parent run per invocation; one nested run per stage
(tag ``ray_mlops.stage``); the names of tags and artifacts are in
:mod:`ray_mlops.mlflow_names`. Every write to a run goes through a :class:`RunHandle` (an
explicit :class:`MlflowClient` and run id, because Ray workers and Serve replicas live in
other processes where an "active run" means nothing). The registry's own writes (versions,
aliases, version tags) are registry access and live in :mod:`ray_mlops.registry`.

A tracking server that restarts or refuses connections is waited for by MLflow's own HTTP
client, as the config's ``tracking`` section says (:func:`ray_mlops.settings_env.apply_tracking`).
When its retries are spent, :func:`tracking_failure` turns MLflow's error into one
:class:`~ray_mlops.errors.TrackingError` that names the server, how long it was tried and
what to check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
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

from ray_mlops.errors import TrackingError
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
from ray_mlops.secrets import address_of, redact_uri

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


# urllib3 waits at most this long between two tries (its Retry.DEFAULT_BACKOFF_MAX).
_MAX_BACKOFF_S = 120.0
_MLFLOW_REQUEST_URL = re.compile(r"API request to (\S+?)/(?:ajax-)?api/")


def retry_window_s(retries: int, backoff_s: float, jitter_s: float) -> float:
    """The longest MLflow's HTTP client sleeps between the tries of one call.

    urllib3 tries ``retries + 1`` times; after the k-th failure it waits
    ``backoff_s * 2 ** (k - 1)`` plus up to ``jitter_s`` (nothing after the first), at most
    120 s. A refused connection fails at once, so this is how long a call to a stopped
    server lasts; a server that accepts and never answers adds a request timeout per try.
    """
    return sum(
        min(_MAX_BACKOFF_S, backoff_s * 2 ** (k - 1) + jitter_s) for k in range(2, retries + 1)
    )


def tracking_failure(
    error: BaseException,
    tracking_uri: str | None = None,
    elapsed_s: float | None = None,
    where: str = "",
) -> TrackingError | None:
    """The error to show when ``error`` says the tracking server could not be reached.

    ``error`` is MLflow's (its HTTP client spent its retries), one raised from it, or a Ray
    Train failure whose worker raised a :class:`TrackingError` (returned as it is).

    Args:
        error: What a call to MLflow, or a stage that made such calls, raised.
        tracking_uri: The server; default: the address in MLflow's message.
        elapsed_s: How long the failed call took, where the caller measured it.
        where: Who called, e.g. ``" (training's rank 0, run R)"``.

    Returns:
        The error naming the server, how long it was tried and what to check; ``None``
        when ``error`` is about something else.
    """
    causes = list(_causes(error))
    for cause in causes:
        if isinstance(cause, TrackingError):
            return cause
    reason = _unreachable_reason(causes)
    if reason is None:
        return None
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    # What MLflow's client was told: the config's values where apply_tracking ran.
    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    backoff = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    timeout = MLFLOW_HTTP_REQUEST_TIMEOUT.get()
    longest = retry_window_s(retries, backoff, MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get())
    if "timeout" in reason:
        longest += (retries + 1) * timeout
    policy = f"backoff factor {backoff} s, {timeout} s per request"
    if elapsed_s is not None:
        took = f"{_seconds(elapsed_s)} ({retries} retries, {policy})"
    else:
        took = f"{retries} retries, at most about {_seconds(longest)} ({policy})"
    server = _server_of(tracking_uri, causes)
    return TrackingError(
        f"cannot reach the MLflow tracking server at {server}{where}: {reason}; gave up "
        f"after {took}. Check that the server is running and that every node reaches it "
        f"(curl {server}/health), and that tracking.tracking_uri or $MLFLOW_TRACKING_URI "
        "names it; tracking.retries and tracking.retry_backoff_s set how long a run waits."
    )


@contextlib.contextmanager
def tracking_failures_reported(hint: str = "") -> Iterator[None]:
    """Raise an unreachable tracking server as one :class:`TrackingError` (plus ``hint``)."""
    try:
        yield
    except Exception as error:
        failure = tracking_failure(error)
        if failure is None:
            raise
        if hint:
            failure = TrackingError(f"{failure} {hint}")
        if failure is error:
            raise
        raise failure from error


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, what it was raised from or wraps, and a Ray Train run's worker failures."""
    pending, seen = [error], set()
    while pending:
        item = pending.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        linked: list[object] = [item.__cause__, item.__context__, getattr(item, "cause", None)]
        linked += list(item.args)
        failures = getattr(item, "worker_failures", None)  # ray.train.WorkerGroupError
        if isinstance(failures, Mapping):
            linked += list(failures.values())
        pending += [link for link in linked if isinstance(link, BaseException)]


def _unreachable_reason(causes: Sequence[BaseException]) -> str | None:
    """Why the server did not answer, when MLflow's client says it spent its retries.

    Only a failure that MLflow reports (``API request to URL failed ...``) counts: another
    client's connection error (a webhook, an object store) is not the tracking server's.
    """
    import requests
    from urllib3.exceptions import MaxRetryError

    if not any(
        isinstance(cause, MlflowException) and _MLFLOW_REQUEST_URL.search(str(cause))
        for cause in causes
    ):
        return None
    for cause in causes:
        if isinstance(cause, MaxRetryError):
            return _describe(cause.reason)
    for cause in causes:
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            return _describe(cause)
    for cause in causes:  # MLflow's async logging keeps only the text of what failed
        if "Max retries exceeded" in str(cause):
            return _describe_text(str(cause))
    return None


def _describe(reason: BaseException | None) -> str:
    from urllib3.exceptions import (
        ConnectTimeoutError,
        NameResolutionError,
        NewConnectionError,
        ProtocolError,
        ReadTimeoutError,
        ResponseError,
    )

    if isinstance(reason, NameResolutionError):
        return "its host name does not resolve"
    if isinstance(reason, NewConnectionError):  # a subclass of ConnectTimeoutError
        return _describe_text(str(reason))
    if isinstance(reason, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        return "no answer within the request timeout"
    if isinstance(reason, ResponseError):
        return f"it kept answering with errors ({reason})"
    if isinstance(reason, ProtocolError | ConnectionError):
        return "the connection dropped"
    return _describe_text(str(reason))


def _describe_text(text: str) -> str:
    if "refused" in text.lower():
        return "connection refused"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "no answer within the request timeout"
    if match := re.search(r"too many \d+ error responses", text):
        return f"it kept answering with errors ({match.group(0)})"
    return "no answer"


def _server_of(tracking_uri: str | None, causes: Sequence[BaseException]) -> str:
    """The server's address, without credentials, from the URI or MLflow's own message."""
    if tracking_uri is None:
        found = (_MLFLOW_REQUEST_URL.search(str(cause)) for cause in causes)
        tracking_uri = next((match.group(1) for match in found if match), None)
    if tracking_uri is None:
        return "its address"
    return address_of(tracking_uri).rstrip("/")


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
        """Log params in batches (values cut to MLflow's limit, URIs without secrets)."""
        items = [Param(k, redact_uri(str(v))[:_MAX_PARAM_CHARS]) for k, v in params.items()]
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
        """Set several tags in a single call (URIs without secrets)."""
        tagged = [RunTag(k, redact_uri(str(v))) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=tagged)

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
        except BaseException as error:
            # A server that stopped answering would not take the status either; the run
            # stays RUNNING, which --resume takes for unfinished.
            if tracking_failure(error) is None:
                handle.end(RunStatus.to_string(RunStatus.FAILED))
            raise
        handle.end(RunStatus.to_string(RunStatus.FINISHED))

    def finish(self, succeeded: bool) -> None:
        """Close the parent run."""
        if self.parent_run_id is not None:
            status = RunStatus.FINISHED if succeeded else RunStatus.FAILED
            self.run(self.parent_run_id).end(RunStatus.to_string(status))

    @contextlib.contextmanager
    def closing_parent(self) -> Iterator[None]:
        """Close the parent run as the block ends: FINISHED, or FAILED on an error.

        Left RUNNING when the error is that the tracking server stopped answering.
        """
        try:
            yield
        except BaseException as error:
            if tracking_failure(error) is None:
                self.finish(succeeded=False)
            raise
        self.finish(succeeded=True)


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
            source=json.dumps({"uri": redact_uri(uri)}),
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
