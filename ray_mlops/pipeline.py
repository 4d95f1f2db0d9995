"""Run the lifecycle's stages in order: data -> features -> train -> evaluate -> register.

Each stage is a nested MLflow run under the invocation's parent run. Registration comes
last, so a run that fails anywhere leaves no model version and no moved alias behind.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from rich.console import Console

from ray_mlops.audit import actions
from ray_mlops.cluster_check import check_cluster
from ray_mlops.config import LoadedConfig, PipelineConfig
from ray_mlops.data.contract import SchemaChange, compare_schemas
from ray_mlops.data.split import SplitPlan
from ray_mlops.data.stage import PreparedData, prepare_data
from ray_mlops.errors import ConfigError, ResumeError
from ray_mlops.evaluate.metrics import default_primary_metric
from ray_mlops.features.fit import fit_feature_state
from ray_mlops.features.state import FeatureState
from ray_mlops.governance.access import AccessControl
from ray_mlops.mlflow_names import (
    CARD_HTML,
    CONFIG_FILE,
    CONTRACT_FILE,
    EVALUATION_HTML,
    EVALUATION_JSON,
    FEATURE_STATE_FILE,
    GATE_JSON,
    GATE_MD,
    HOLDOUT_FILE,
    LEADERBOARD_HTML,
    MODEL_ARTIFACT_PATH,
    PROFILE_HTML_FILE,
    PROFILE_JSON_FILE,
    SCHEMA_CHANGES_FILE,
    SOURCE_SCHEMA_FILE,
    SPLIT_PLAN_FILE,
    TAG_CHAMPION_ERROR,
    TAG_CHECKPOINT,
    TAG_COMMAND,
    TAG_CONFIG_HASH,
    TAG_FINGERPRINT,
    TAG_GATE,
    TAG_GIT_COMMIT,
    TAG_INGEST,
    TAG_MODEL_VERSION,
    TAG_PRIMARY_PREFIX,
    TAG_PROMOTED,
    TAG_WORKER_NODES,
    TRAIN_SAMPLE_FILE,
)
from ray_mlops.models.from_config import make_spec
from ray_mlops.models.package import input_example, save_pyfunc_model
from ray_mlops.notify import Notifier, notifier_for
from ray_mlops.preflight import preflight
from ray_mlops.promotion.gate import GateResult
from ray_mlops.promotion.judge import Judged, judge, judge_against_champion
from ray_mlops.promotion.record import AliasDecision, Judgement, metric_tags, record_candidate
from ray_mlops.registry.champion import register_version
from ray_mlops.secrets import redact_config, redact_uri
from ray_mlops.settings_env import apply_tracking
from ray_mlops.storage import join
from ray_mlops.tracking import (
    PipelineTracker,
    find_resumable_run,
    flatten,
    git_commit,
    latest_stage_artifact,
    log_data_stage,
    log_lineage,
    read_artifact_text,
    tracking_failures_reported,
)
from ray_mlops.train.trainer import TrainingOutcome, TrainingSummary, train_model
from ray_mlops.workspace import Workspace

if TYPE_CHECKING:
    from ray_mlops.search.summary import SearchSummary

NOTIFY_GRACE_S = 5.0


@dataclass
class PipelineResult:
    """What one ``ray-mlops run`` produced; printed as the end-of-run summary."""

    pipeline: str
    tracking_uri: str
    experiment_id: str
    run_id: str
    dataset_fingerprint: str
    rows: dict[str, int]
    primary_metric: str
    test_metrics: dict[str, float]
    train_metrics: dict[str, float]
    model_name: str
    model_version: str | None
    alias: str
    promoted: bool
    decision: str
    champion_version: str | None
    training: TrainingSummary | None = None
    model_uri: str = ""
    resumed: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    search: SearchSummary | None = None
    gate: str = ""
    reports: dict[str, str] = field(default_factory=dict)


class _StageReporter:
    """A spinner while a stage runs, then one line with what it did and how long it took."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, doing: str) -> Iterator[list[str]]:
        note: list[str] = []
        start = time.perf_counter()
        try:
            with self.console.status(f"[bold]{name}[/]: {doing}..."):
                yield note
        except BaseException:
            elapsed = time.perf_counter() - start
            self.console.print(f"[red]✗ {name:<9}[/] failed after {elapsed:.1f} s")
            raise
        self.seconds[name] = time.perf_counter() - start
        detail = " ".join(note)
        self.console.print(f"[green]✓ {name:<9}[/] {detail} [dim]({self.seconds[name]:.1f} s)[/]")


@dataclass
class _Stage:
    run_id: str
    note: list[str]


@dataclass
class _Run:
    """One invocation: its config, parent run and where it reports."""

    loaded: LoadedConfig
    tracker: PipelineTracker
    run_id: str
    tracking_uri: str
    reporter: _StageReporter
    workspace: Workspace
    command: str = "run"
    # Stage runs of the interrupted invocation this one resumes (empty for a fresh run).
    previous: dict[str, Run] = field(default_factory=dict)

    @property
    def cfg(self) -> PipelineConfig:
        return self.loaded.pipeline

    @property
    def resuming(self) -> bool:
        return bool(self.previous)

    @contextlib.contextmanager
    def stage(self, name: str, doing: str, reopen: str | None = None) -> Iterator[_Stage]:
        """A stage is a progress line on the console and a nested MLflow run."""
        with (
            self.reporter.stage(name, doing) as note,
            self.tracker.stage(name, reopen=reopen) as run_id,
        ):
            yield _Stage(run_id, note)


def run_pipeline(
    loaded: LoadedConfig,
    console: Console | None = None,
    *,
    command: str = "run",
    resume: bool = False,
    resume_run_id: str | None = None,
    workspace: Workspace | None = None,
) -> PipelineResult:
    """Run every stage of ``loaded`` on the current Ray instance and track it in MLflow.

    Args:
        loaded: A config from :func:`ray_mlops.config.load_config`.
        console: Where progress goes (a quiet console in tests).
        command: ``run`` (every stage) or ``train`` (stops after evaluation: the packaged
            model is logged to the run but not registered).
        resume: Continue the newest unfinished run of ``command`` for this pipeline (or
            ``resume_run_id``): the same MLflow runs, training from its last checkpoint.
        resume_run_id: The parent run to continue.
        workspace: Where local state goes; None: the config's ``workspace.root``, else the
            working directory.

    Returns:
        The run's ids, metrics, registered version and alias decision.

    Raises:
        ray_mlops.errors.RayMlopsError: bad data or config, or nothing to resume; nothing is
            registered.
        ray_mlops.errors.TrackingError: the tracking server did not answer within the
            retries ``tracking`` allows (in the driver or in training's rank 0).
        ray_mlops.errors.AccessDenied: the actor lacks the ``trainer`` role (audited).

    The actor is checked first, before any run is opened; the start and the end (ok or
    failed) are recorded in the audit trail, and the parent run's ``mlflow.user`` names the
    actor (the trainer that four-eyes compares a promotion's approver with).
    """
    cfg = loaded.pipeline
    workspace = workspace or Workspace.of(loaded)
    apply_tracking(cfg.tracking)
    with tracking_failures_reported():
        access = AccessControl.of(
            cfg.governance,
            workspace,
            loaded.base_dir,
            workspace.tracking_uri(cfg.tracking.tracking_uri),
        )
        actor = access.authorize(
            actions.RUN_START, cfg.name, model=cfg.model_name, details={"command": command}
        )
        run = _open_run(
            loaded,
            console or Console(stderr=True),
            command=command,
            resume=resume or resume_run_id is not None,
            resume_run_id=resume_run_id,
            workspace=workspace,
        )
        if not run.resuming:
            run.tracker.run(run.run_id).record_tags({"mlflow.user": actor})
    about = {"pipeline": cfg.name, "model": cfg.model_name, "command": command}
    access.record(actions.RUN_START, run.run_id, details={**about, "resumed": run.resuming})
    # Checkpoints, and the metrics rank 0 had not stored, are kept: nothing is lost.
    resumable = (
        f"Once it answers, `ray-mlops {command} CONFIG --resume` continues run {run.run_id}."
    )
    try:
        with tracking_failures_reported(resumable), run.tracker.closing_parent():
            result = _run_stages(run)
    except BaseException as exc:
        access.record(
            actions.RUN_END,
            run.run_id,
            "failed",
            str(exc)[:1000] or type(exc).__name__,
            {**about, "error": type(exc).__name__},
        )
        raise
    access.record(
        actions.RUN_END,
        run.run_id,
        reason=result.decision,
        details={
            **about,
            "fingerprint": result.dataset_fingerprint,
            "model_version": result.model_version,
            "promoted": result.promoted,
        },
    )
    result.stage_seconds = run.reporter.seconds
    return result


@dataclass
class DataResult:
    """What ``ray-mlops data`` produced."""

    run_id: str
    stage_run_id: str
    tracking_uri: str
    data: PreparedData
    artifact_uri: str


def run_data_stage(
    loaded: LoadedConfig, console: Console | None = None, workspace: Workspace | None = None
) -> DataResult:
    """Run only the data stage (read, validate, quarantine, split, profile), tracked in MLflow.

    Raises:
        ray_mlops.errors.RayMlopsError: bad data, or too many bad rows.
        ray_mlops.errors.TrackingError: the tracking server did not answer.
    """
    with tracking_failures_reported():
        run = _open_run(loaded, console or Console(stderr=True), "data", workspace=workspace)
        with run.tracker.closing_parent():
            data = _data_stage(run)
        stage_run = run.tracker.client.search_runs(
            [run.tracker.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run.run_id}'",
            max_results=1,
        )[0]
    return DataResult(
        run.run_id, stage_run.info.run_id, run.tracking_uri, data, stage_run.info.artifact_uri
    )


def _open_run(
    loaded: LoadedConfig,
    console: Console,
    command: str,
    resume: bool = False,
    resume_run_id: str | None = None,
    workspace: Workspace | None = None,
) -> _Run:
    import ray

    cfg = loaded.pipeline
    workspace = workspace or Workspace.of(loaded)
    preflight(loaded, workspace)
    apply_tracking(cfg.tracking)
    tracking_uri = workspace.tracking_uri(cfg.tracking.tracking_uri)
    if ray.is_initialized():  # else Ray Data starts a local, single-node one
        check_cluster(tracking_uri, workspace.storage)
    tracker = PipelineTracker(tracking_uri, cfg.experiment_name)
    reporter = _StageReporter(console)
    if resume:
        interrupted = _resumable(tracker, cfg, command, resume_run_id)
        run_id = tracker.resume_parent(interrupted)
        previous = tracker.stage_runs(run_id)
        console.print(
            f"[bold]resuming[/] run {run_id} ({interrupted.info.run_name}, "
            f"{interrupted.info.status.lower()}; stages so far: {', '.join(previous) or 'none'})"
        )
        return _Run(loaded, tracker, run_id, tracking_uri, reporter, workspace, command, previous)
    commit = git_commit(loaded.base_dir)
    tags = {
        TAG_CONFIG_HASH: cfg.config_hash(),
        TAG_COMMAND: command,
        **({TAG_GIT_COMMIT: commit} if commit else {}),
    }
    run_id = tracker.start_parent(f"{cfg.name}-{command}-{time.strftime('%Y%m%d-%H%M%S')}", tags)
    return _Run(loaded, tracker, run_id, tracking_uri, reporter, workspace, command)


def check_resumable(
    loaded: LoadedConfig,
    command: str,
    run_id: str | None = None,
    workspace: Workspace | None = None,
) -> str:
    """The id of the run ``--resume`` would continue; fails fast, before Ray starts.

    Raises:
        ray_mlops.errors.ResumeError: nothing to resume, or the config changed since.
        ray_mlops.errors.TrackingError: the tracking server did not answer.
    """
    cfg = loaded.pipeline
    apply_tracking(cfg.tracking)
    uri = (workspace or Workspace.of(loaded)).tracking_uri(cfg.tracking.tracking_uri)
    with tracking_failures_reported():
        tracker = PipelineTracker(uri, cfg.experiment_name)
        return _resumable(tracker, cfg, command, run_id).info.run_id


def _resumable(
    tracker: PipelineTracker, cfg: PipelineConfig, command: str, run_id: str | None
) -> Run:
    """The interrupted run to continue, checked against the config it ran with."""
    found = find_resumable_run(tracker.client, tracker.experiment_id, command, run_id)
    where = f"experiment {cfg.experiment_name!r} at {redact_uri(tracker.tracking_uri)}"
    if found is None:
        what = f"run {run_id}" if run_id else f"unfinished '{command}' run"
        raise ResumeError(f"--resume: no {what} of pipeline {cfg.name!r} in {where}")
    if found.info.status == "FINISHED":
        raise ResumeError(f"--resume: run {found.info.run_id} already finished; nothing to resume")
    ran_with = found.data.tags.get(TAG_CONFIG_HASH)
    if ran_with != cfg.config_hash():
        raise ResumeError(
            f"--resume: the config changed since run {found.info.run_id} started (config hash "
            f"{ran_with} -> {cfg.config_hash()}); resume with the same config, or start a new run"
        )
    return found


def _run_stages(run: _Run) -> PipelineResult:
    cfg = run.cfg
    # As the tracking store's readers may see it: no password or token in a URI.
    config_doc = redact_config(cfg.model_dump(mode="json"))
    parent = run.tracker.run(run.run_id)
    parent.record_params(flatten(config_doc))
    parent.record_text(yaml.safe_dump(config_doc, sort_keys=False), CONFIG_FILE)
    data = _data_stage(run)
    state = _features_stage(run, data)
    searched = run.command == "tune" or cfg.search.enabled
    if searched:
        outcome, state, search_summary = _search_stage(run, data, state)
    else:
        outcome, search_summary = _train_stage(run, data, state), None
    notifier = notifier_for(cfg.notify)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            evaluation = _evaluate_stage(run, data, state, outcome, Path(workdir))
            model_uri = _log_model(run, evaluation)
            if run.command in ("run", "tune"):
                registered, decision = _register_stage(run, data, evaluation, model_uri, notifier)
                version: str | None = registered
            else:
                version = None
                decision = AliasDecision(
                    False, "not registered (ray-mlops train logs the model only)"
                )
    finally:
        # Deliveries run in the background; the run waits a little for them, never long.
        notifier.close(timeout_s=NOTIFY_GRACE_S)
    if decision.promote:
        champion: str | None = version
    else:
        champion = str(evaluation.champion.version) if evaluation.champion else None
    return PipelineResult(
        pipeline=cfg.name,
        tracking_uri=run.tracking_uri,
        experiment_id=run.tracker.experiment_id,
        run_id=run.run_id,
        dataset_fingerprint=data.fingerprint,
        rows=data.split_counts,
        primary_metric=evaluation.metric,
        test_metrics=evaluation.test_metrics,
        train_metrics=outcome.best_metrics,
        model_name=cfg.model_name,
        model_version=version,
        alias=cfg.registry.champion_alias,
        promoted=decision.promote,
        decision=decision.reason,
        champion_version=champion,
        training=None if searched else TrainingSummary.of(outcome),
        model_uri=model_uri,
        resumed=run.resuming,
        search=search_summary,
        gate=evaluation.judgement.gate.verdict,
        reports=_report_links(run, registered=version is not None),
    )


def _report_links(run: _Run, registered: bool) -> dict[str, str]:
    """Where the evaluation report, the gate and the model card are."""
    root = run.tracker.client.get_run(run.run_id).info.artifact_uri
    links = {"evaluation": f"{root}/{EVALUATION_HTML}", "gate": f"{root}/{GATE_MD}"}
    if registered:
        links["model card"] = f"{root}/{CARD_HTML}"
    return links


def _data_stage(run: _Run) -> PreparedData:
    cfg, tracker = run.cfg, run.tracker
    with run.stage("data", "reading, validating, splitting and profiling") as stage:
        data = prepare_data(
            cfg.data,
            cfg.task,
            run.loaded.base_dir,
            quarantine_location=run.workspace.quarantine_location(run.run_id),
            frozen_plan=lambda fingerprint: _frozen_split_plan(run, fingerprint),
        )
        stage_run = tracker.run(stage.run_id)
        metrics, texts = _data_stage_record(data, cfg.name)
        log_data_stage(
            [tracker.run(run.run_id), stage_run],
            stage_run,
            data,
            cfg.name,
            metrics,
            texts,
            data.quarantine.path,
        )
        change = _schema_change(run, data)
        if change.any:
            stage_run.record_text(json.dumps(asdict(change), indent=2), SCHEMA_CHANGES_FILE)
        stage.note.append(describe_data(data, change.describe()))
        _check_poisoning(run, data, stage.note)
    _check_same_data(run, data)
    return data


def _check_poisoning(run: _Run, data: PreparedData, note: list[str]) -> None:
    """Compare the data with the last accepted version of its source; stop over the limits.

    Raises:
        PoisonedDataError: The data passed a poisoning limit (the report is logged to the run
            under data/, written beside the source's snapshots and audited).
    """
    from ray_mlops.audit import audit_log_for
    from ray_mlops.data.poison import check_data_version

    limits = run.cfg.governance.poisoning
    if not limits.enabled:
        return
    check = check_data_version(
        data,
        run.cfg.data,
        run.cfg.task,
        limits,
        run.workspace.storage,
        run_id=run.run_id,
        audit=audit_log_for(
            run.workspace.storage, run.cfg.governance.audit.location, run.tracking_uri
        ),
    )
    note.append(f"poisoning check {check.describe()} ({check.seconds:.1f} s)")
    if check.refused:
        parent = run.tracker.run(run.run_id)
        for file, text in check.report_files(limits).items():
            parent.record_text(text, f"data/{file}")
        run.reporter.console.print(
            f"[red]poisoning check {check.describe()}[/]: report {check.report}"
        )
        raise check.error()


def _data_stage_record(data: PreparedData, name: str) -> tuple[dict[str, float], dict[str, str]]:
    """The data stage's counts, and its artifacts (file -> text): profile, contract, split plan."""
    from ray_mlops.data.contract import contract_to_yaml
    from ray_mlops.data.report import render_profile_html

    metrics: dict[str, float] = {
        "rows_read": data.rows_read,
        "rows_quarantined": data.quarantine.rows,
    }
    metrics |= {f"rows_{split}": n for split, n in data.split_counts.items()}
    metrics |= {
        f"quarantined.{r.replace(':', '.')}": n for r, n in data.quarantine.by_reason.items()
    }
    texts = {
        PROFILE_JSON_FILE: data.profile.to_json(),
        PROFILE_HTML_FILE: render_profile_html(data.profile, f"{name}: data profile"),
        CONTRACT_FILE: contract_to_yaml(data.contract),
        SPLIT_PLAN_FILE: data.plan.to_json(),
        SOURCE_SCHEMA_FILE: json.dumps(data.schema, indent=2),
    }
    return metrics, texts


def _check_same_data(run: _Run, data: PreparedData) -> None:
    """A resumed run must see the data its checkpoints were trained on."""
    earlier = run.previous.get("data")
    if earlier is None:
        return
    before = earlier.data.tags.get(TAG_FINGERPRINT)
    if before is not None and before != data.fingerprint:
        raise ResumeError(
            f"--resume: the data changed since run {run.run_id} was interrupted (fingerprint "
            f"{before} -> {data.fingerprint}); start a new run without --resume"
        )


def _frozen_split_plan(run: _Run, fingerprint: str) -> SplitPlan | None:
    """The plan an earlier run used for this exact data, so its test split stays the same."""
    text = latest_stage_artifact(
        run.tracker.client,
        run.tracker.experiment_id,
        "data",
        SPLIT_PLAN_FILE,
        f"tags.`{TAG_FINGERPRINT}` = '{fingerprint}'",
    )
    return SplitPlan.from_json(text) if text else None


def _schema_change(run: _Run, data: PreparedData) -> SchemaChange:
    previous = latest_stage_artifact(
        run.tracker.client, run.tracker.experiment_id, "data", SOURCE_SCHEMA_FILE
    )
    return compare_schemas(json.loads(previous) if previous else None, data.schema)


def describe_data(data: PreparedData, schema_note: str) -> str:
    """One line: rows, splits, quarantine, fingerprint, schema change."""
    splits = ", ".join(f"{name} {n:,}" for name, n in data.split_counts.items())
    quarantined = f"quarantined {data.quarantine.rows:,}"
    if data.quarantine.rows:
        quarantined += f" ({data.quarantine.describe()})"
    return f"{data.rows_read:,} rows ({splits}); {quarantined}; fingerprint {data.fingerprint}; {schema_note}"


def _features_stage(run: _Run, data: PreparedData) -> FeatureState:
    cfg = run.cfg
    earlier = run.previous.get("features")
    if earlier is not None and earlier.info.status == "FINISHED":
        # Resuming: the checkpoints were trained on this exact encoding; never refit it.
        text = read_artifact_text(run.tracker.client, earlier.info.run_id, FEATURE_STATE_FILE)
        if text is not None:
            state = FeatureState.from_json(text)
            run.reporter.console.print(
                f"[green]✓ {'features':<9}[/] reused from run {earlier.info.run_id} "
                f"({state.n_features} features)"
            )
            return state
    with run.stage("features", "fitting on the train split") as stage:
        state = fit_feature_state(data.splits["train"], cfg.data, cfg.features, cfg.task)
        stage_run = run.tracker.run(stage.run_id)
        stage_run.record_text(state.to_json(), FEATURE_STATE_FILE)
        stage_run.record_params({"n_features": state.n_features})
        stage.note.append(f"{len(state.input_columns)} columns -> {state.n_features} features")
    return state


def _train_stage(run: _Run, data: PreparedData, state: FeatureState) -> TrainingOutcome:
    cfg = run.cfg
    spec = make_spec(
        cfg.model,
        cfg.task,
        state.n_features,
        len(state.labels) if state.labels else None,
        run.loaded.base_dir,
    )
    earlier = run.previous.get("train")
    devices = f"{cfg.train.num_workers} {'GPU' if cfg.train.use_gpu else 'CPU'} workers"
    doing = f"{cfg.model.type} network, up to {cfg.train.epochs} epochs on {devices}"
    if earlier is not None:
        doing = f"resuming from the last checkpoint: {doing}"
    with run.stage("train", doing, reopen=earlier.info.run_id if earlier else None) as stage:
        stage_run = run.tracker.run(stage.run_id)
        if earlier is None:
            stage_run.record_params(flatten(cfg.train.model_dump(mode="json")))
            stage_run.record_params(
                {"model." + k: v for k, v in flatten(cfg.model.model_dump(mode="json")).items()},
            )
            log_lineage(stage_run, data, cfg.name, context="training")
        outcome = train_model(
            cfg,
            data.splits["train"],
            data.splits["validation"],
            state,
            spec,
            storage_path=run.workspace.ray_results,
            run_name=f"{cfg.name}-{stage.run_id}",
            tracking_uri=run.tracking_uri,
            run_id=stage.run_id,
        )
        stage_run.record_tags(
            {
                TAG_CHECKPOINT: outcome.checkpoint_path,
                TAG_INGEST: outcome.ingest,
                TAG_WORKER_NODES: ",".join(outcome.worker_nodes),
            }
        )
        stage_run.record_metrics(
            {f"best_{k}": v for k, v in outcome.best_metrics.items() if k.startswith("val_")},
        )
        stage.note.append(describe_training(outcome, cfg.train.selection_metric))
    return outcome


def _search_stage(
    run: _Run, data: PreparedData, state: FeatureState
) -> tuple[TrainingOutcome, FeatureState, SearchSummary]:
    """Search the space with Ray Tune; the best trial's model goes on like a trained one."""
    from ray_mlops.search.stage import best_model, record_search, search_inputs
    from ray_mlops.search.summary import SearchSummary
    from ray_mlops.search.tuner import run_search, search_metric

    cfg = run.cfg
    earlier = run.previous.get("search")
    metric, _ = search_metric(cfg)
    budget = f", {cfg.search.time_budget_s:g} s budget" if cfg.search.time_budget_s else ""
    limit = f"up to {cfg.search.num_samples}" if cfg.search.num_samples else "as many"
    doing = (
        f"{cfg.search.mode} search: {limit} trials{budget}, "
        f"{cfg.search.algorithm.upper()} + {cfg.search.scheduler} on {metric}"
    )
    with run.stage("search", doing, reopen=earlier.info.run_id if earlier else None) as stage:
        stage_run = run.tracker.run(stage.run_id)
        if earlier is None:
            stage_run.record_params(
                {"search." + k: v for k, v in flatten(cfg.search.model_dump(mode="json")).items()},
            )
            log_lineage(stage_run, data, cfg.name, context="training")
        storage, name = run.workspace.ray_results, f"{cfg.name}-search-{stage.run_id}"
        inputs = search_inputs(
            cfg,
            run.loaded.base_dir,
            data,
            state,
            run.tracking_uri,
            run.tracker.experiment_id,
            stage.run_id,
            trainer_storage=join(storage, f"{name}-trainers"),
        )
        outcome = run_search(cfg, inputs, storage, name, resume=earlier is not None)
        title = f"{cfg.name}: search leaderboard"
        record_search(run.tracker.client, run.tracker.experiment_id, stage.run_id, outcome, title)
        stage_run.record_tags({TAG_CHECKPOINT: outcome.best_checkpoint})
        board = outcome.leaderboard
        stage.note.append(
            f"{len(board)} trials ({(board['status'] == 'pruned').sum()} pruned, "
            f"{outcome.trial_epochs} trial-epochs); best {metric} "
            f"{outcome.best_metrics[metric]:.4f}"
        )
    training, best_state = best_model(outcome)
    artifact_uri = run.tracker.client.get_run(stage.run_id).info.artifact_uri
    summary = SearchSummary.of(outcome, metric, f"{artifact_uri}/{LEADERBOARD_HTML}")
    return training, best_state, summary


def describe_training(outcome: TrainingOutcome, metric: str) -> str:
    """One line: best epoch and metric, epochs run, early stop, restarts, ingest path."""
    best_epoch = int(outcome.best_metrics.get("epoch", -1)) + 1
    parts = [
        f"best epoch {best_epoch}: {metric} {outcome.best_metrics.get(metric, float('nan')):.4f}",
        f"{outcome.epochs_run} epochs" + (" (stopped early)" if outcome.stopped_early else ""),
        f"{outcome.ingest} ingest",
    ]
    if outcome.restarts:
        parts.append(f"recovered {outcome.restarts}x from checkpoints")
    return "; ".join(parts)


@dataclass
class _Evaluation:
    metric: str
    test_metrics: dict[str, float]
    champion: ModelVersion | None
    champion_score: float | None
    model_dir: Path
    judgement: Judgement


def _evaluate_stage(
    run: _Run, data: PreparedData, state: FeatureState, outcome: TrainingOutcome, workdir: Path
) -> _Evaluation:
    """Package the candidate, judge it and the champion on the same test rows, run the gate.

    The champion is verified before it loads (``governance.signing``); the candidate was
    packaged here, and is signed when it is logged.
    """
    import mlflow.pyfunc

    from ray_mlops.signing import trust_for

    cfg = run.cfg
    metric = cfg.evaluate.primary_metric or default_primary_metric(
        cfg.task, len(state.labels) if state.labels else None
    )
    with run.stage("evaluate", "judging candidate and champion on the test split") as stage:
        holdout = data.splits["test"].to_pandas().reset_index(drop=True)
        model_dir = workdir / MODEL_ARTIFACT_PATH
        example = input_example(holdout, state)
        save_pyfunc_model(model_dir, outcome.network, outcome.spec, state, example)
        # Judge what will be registered: the packaged model, not the in-memory network.
        candidate_model = mlflow.pyfunc.load_model(str(model_dir))
        try:
            candidate = judge(
                cfg, candidate_model, model_dir, holdout, metric, "candidate", full=True
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        test_metrics = {k: float(v) for k, v in candidate.report.metrics.items()}
        stage_run, parent = run.tracker.run(stage.run_id), run.tracker.run(run.run_id)
        stage_run.record_metrics(test_metrics)
        log_lineage(stage_run, data, cfg.name, context="evaluation")
        parent.record_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        try:
            verdict = judge_against_champion(
                cfg,
                run.tracker.client,
                run.tracking_uri,
                cfg.model_name,
                candidate,
                holdout,
                metric,
                workdir,
                trust=trust_for(
                    cfg.governance.signing,
                    base_dir=run.loaded.base_dir,
                    audit_storage=run.workspace.storage,
                    audit_location=cfg.governance.audit.location,
                    notify=cfg.notify,
                ),
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if verdict.champion_error is not None:
            parent.record_tags({TAG_CHAMPION_ERROR: verdict.champion_error})
        champion, champion_judged, gate = verdict.champion, verdict.champion_judged, verdict.gate
        champion_score = champion_judged.scored.metrics.get(metric) if champion_judged else None
        if champion_score is not None:
            stage_run.record_metrics({f"champion_{metric}": champion_score})
        _log_evaluation(
            run, stage.run_id, candidate, gate, holdout, workdir, monitor_train_sample(data, cfg)
        )
        stage.note.append(
            ", ".join(f"{k} {test_metrics[k]:.4f}" for k in _headline(test_metrics, metric))
            + f"; gate {gate.verdict}"
        )
    judgement = Judgement(
        metric=metric,
        report=candidate.report,
        gate=gate,
        champion_version=str(champion.version) if champion else None,
        champion_metrics=dict(champion_judged.scored.metrics) if champion_judged else None,
    )
    return _Evaluation(metric, test_metrics, champion, champion_score, model_dir, judgement)


def _headline(metrics: dict[str, float], metric: str) -> list[str]:
    """The primary metric first, then a few others: the line a stage prints."""
    others = [
        k for k in ("accuracy", "f1", "f1_macro", "log_loss", "rmse", "mae", "r2") if k in metrics
    ]
    return [metric, *[k for k in others if k != metric][:3]]


def _log_evaluation(
    run: _Run,
    stage_run_id: str,
    candidate: Judged,
    gate: GateResult,
    holdout: pd.DataFrame,
    workdir: Path,
    train_sample: pd.DataFrame | None = None,
) -> None:
    """The report (JSON, HTML), the gate (JSON, Markdown), the frozen holdout and the monitor's
    train sample, in MLflow.

    They go to the parent run, the run the model version points at, so ``ray-mlops
    promote`` finds the same rows and ``models show`` the same numbers later.
    """
    title = f"{run.cfg.name}: evaluation on the test split"
    for handle in (run.tracker.run(run.run_id), run.tracker.run(stage_run_id)):
        handle.record_text(json.dumps(candidate.report.to_dict(), indent=2), EVALUATION_JSON)
        handle.record_text(candidate.report.render_html(title), EVALUATION_HTML)
        handle.record_text(gate.to_json(), GATE_JSON)
        handle.record_text(gate.to_markdown(), GATE_MD)
    frozen = workdir / "holdout" / Path(HOLDOUT_FILE).name
    frozen.parent.mkdir(parents=True, exist_ok=True)
    holdout.to_parquet(frozen, index=False)
    run.tracker.run(run.run_id).upload_file(frozen, str(Path(HOLDOUT_FILE).parent))
    if train_sample is not None:
        sample = workdir / "monitor" / Path(TRAIN_SAMPLE_FILE).name
        sample.parent.mkdir(parents=True, exist_ok=True)
        train_sample.to_parquet(sample, index=False)
        run.tracker.run(run.run_id).upload_file(sample, str(Path(TRAIN_SAMPLE_FILE).parent))


def monitor_train_sample(data: PreparedData, cfg: PipelineConfig) -> pd.DataFrame:
    """Up to ``monitor.reference_rows`` rows of the train split's inputs, drawn uniformly.

    Kept with the model version as the reference its served traffic is compared with
    (``ray-mlops monitor``); the holdout is not used for that because the gate judges on it.
    """
    split = data.splits["train"]
    columns = [c for c in (*cfg.data.numeric, *cfg.data.categorical) if c in split.columns()]
    rows = max(data.split_counts.get("train", 0), 1)
    share = min(1.0, cfg.monitor.reference_rows / rows)
    picked = split.select_columns(columns)
    if share < 1.0:
        picked = picked.random_sample(share, seed=cfg.data.split.seed)
    return picked.to_pandas().head(cfg.monitor.reference_rows).reset_index(drop=True)


def _log_model(run: _Run, evaluation: _Evaluation) -> str:
    """Sign the packaged model (``governance.signing``), log it to the parent run; return
    its artifact URI. The signature is a file of the folder, so it travels with the model."""
    signing = run.cfg.governance.signing
    if signing.enabled:
        from ray_mlops.signing import (
            check_outside_workspace,
            ensure_key_pair,
            key_dir,
            record_key_created,
            sign_model,
        )

        folder = key_dir(signing.key_dir)
        check_outside_workspace(folder, run.workspace.root)
        keys, created = ensure_key_pair(folder)
        if created:
            run.reporter.console.print(
                f"made the model signing key pair in {folder} (private key mode 0600; "
                "keep it there, out of the workspace: `ray-mlops keys show`)"
            )
            record_key_created(
                keys.fingerprint,
                folder,
                run.workspace.storage,
                run.cfg.governance.audit.location,
                run.tracking_uri,
                why="first registration with signing on found no key pair",
            )
        sign_model(evaluation.model_dir, keys)
    run.tracker.run(run.run_id).upload_folder(evaluation.model_dir, MODEL_ARTIFACT_PATH)
    return f"{run.tracker.client.get_run(run.run_id).info.artifact_uri}/{MODEL_ARTIFACT_PATH}"


def _register_stage(
    run: _Run, data: PreparedData, evaluation: _Evaluation, source: str, notifier: Notifier
) -> tuple[str, AliasDecision]:
    cfg = run.cfg
    metric, score = evaluation.metric, evaluation.test_metrics[evaluation.metric]
    with run.stage("register", "registering, the gate's decision, the model card") as stage:
        client = run.tracker.client
        version = register_version(
            client,
            cfg.model_name,
            source=source,
            run_id=run.run_id,
            tags={
                TAG_FINGERPRINT: data.fingerprint,
                TAG_CONFIG_HASH: cfg.config_hash(),
                f"{TAG_PRIMARY_PREFIX}{metric}": f"{score:.6f}",
                **metric_tags(evaluation.test_metrics),
            },
            description=f"{cfg.name}: test {metric} {score:.4f}",
        )
        access = AccessControl.of(
            cfg.governance, run.workspace, run.loaded.base_dir, run.tracking_uri
        )
        access.record(
            actions.REGISTER,
            f"{cfg.model_name}/v{version.version}",
            reason=f"test {metric} {score:.4f}",
            details={"run_id": run.run_id, "fingerprint": data.fingerprint},
        )
        data_summary: dict[str, object] = {
            "source": redact_uri(data.source.uri),  # the model card is a report: no token
            "dataset fingerprint": data.fingerprint,
            "rows read": data.rows_read,
            "rows quarantined": data.quarantine.rows,
            **{f"rows {split}": n for split, n in data.split_counts.items()},
            "schema": ", ".join(f"{k}: {v}" for k, v in data.schema.items()),
        }
        decision = record_candidate(
            client,
            cfg,
            version,
            evaluation.judgement,
            data_summary,
            notifier,
            run.run_id,
            access=access,
        )
        run.tracker.run(stage.run_id).record_tags(
            {
                TAG_MODEL_VERSION: version.version,
                TAG_PROMOTED: str(decision.promote).lower(),
                TAG_GATE: evaluation.judgement.gate.verdict,
            },
        )
        moved = "moved to it" if decision.promote else "stays"
        stage.note.append(
            f"{cfg.model_name} v{version.version}; {cfg.registry.champion_alias} {moved}: "
            f"{decision.reason}"
        )
    return str(version.version), decision
