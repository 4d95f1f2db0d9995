"""The monitor: windows of the champion's captured traffic judged, recorded and announced.

For each window of ``monitor.window`` in ``[since, until)``: the serving version's reference
(its train sample, data profile and frozen holdout, scored by the packaged model; built once
per version), the window's records (:func:`~ray_mlops.monitor.reader.read_window`) with the
labels that arrived (:func:`~ray_mlops.serve.labels.join_labels`), the judgement
(:func:`~ray_mlops.monitor.window.evaluate_window`), and its outputs: one MLflow run in the
monitoring experiment (metrics, ``window.json``, the HTML report), the Prometheus series,
and a webhook per window that broke a limit.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console

from ray_mlops.audit import actions
from ray_mlops.errors import AccessDenied, DataError, RayMlopsError, RegistryError
from ray_mlops.governance.access import AccessControl
from ray_mlops.mlflow_names import (
    HOLDOUT_FILE,
    MLFLOW_PARENT_RUN_ID,
    PROFILE_JSON_FILE,
    TAG_MODEL_VERSION,
    TAG_STAGE,
    TRAIN_SAMPLE_FILE,
)
from ray_mlops.models.outputs import PROBABILITY_PREFIX
from ray_mlops.monitor.exposition import MonitorMetrics
from ray_mlops.monitor.reader import read_window, read_windows
from ray_mlops.monitor.reference import build_reference
from ray_mlops.monitor.report import render_window_report
from ray_mlops.monitor.result import WindowResult
from ray_mlops.monitor.retrain import RetrainDecision, decide_retrain
from ray_mlops.monitor.retraining import (
    TAG_RETRAIN_LABELLED_ROWS,
    TAG_RETRAIN_MONITOR_RUN,
    TAG_RETRAIN_REASON,
    TAG_RETRAIN_WINDOWS,
    RetrainOutcome,
    retraining_data_location,
    run_retrain,
    write_training_set,
)
from ray_mlops.monitor.window import Limits, Reference, Window, evaluate_window
from ray_mlops.notify import Notifier
from ray_mlops.serve.labels import join_labels, read_labels
from ray_mlops.tracking import PipelineTracker, RunHandle, read_artifact_text

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from ray_mlops.config import PipelineConfig
    from ray_mlops.workspace import Workspace

MONITOR_STAGE = "monitor"
"""``ray_mlops.stage`` of a monitoring run."""
WINDOW_JSON = "window.json"
REPORT_HTML = "report.html"
WINDOWS_PER_READ = 24
"""Windows a range reads from the capture in one scan (each sampled to monitor.sample_rows)."""
RETRAIN_JSON = "retrain.json"
TAG_RETRAIN_DECISION = "ray_mlops.retrain.decision"
"""On a monitoring run: ``yes`` or ``no``, the retrain policy's decision after the window."""
TAG_RETRAIN_STARTED = "ray_mlops.retrain.started"
"""When the retrain started (ISO, UTC): the cool-down counts from it."""
TAG_RETRAIN_RESULT = "ray_mlops.retrain.result"
"""``promoted``, ``rejected`` (the gate kept the champion) or ``failed``."""
TAG_RETRAIN_RUN = "ray_mlops.retrain.run"
"""The pipeline run the retrain started."""
DRIFT_EVENT = "model_drift"
"""Webhook event of a window that broke a limit (drift, estimated or realised quality,
fairness); the payload names every breach."""


@dataclass(frozen=True)
class Judged:
    """A judged window with what it was judged on (what the report draws)."""

    result: WindowResult
    reference: Reference
    window: Window


@dataclass
class Monitor:
    """What a monitoring process holds between windows.

    Attributes:
        cfg: The pipeline config (model name, data columns, the ``monitor`` section).
        workspace: Where capture and labels are.
        tracking_uri: The MLflow tracking URI.
        notifier: Webhook sender (a null one when no URL is configured).
        metrics: The Prometheus series; served by the caller in service mode.
        references: Reference per model version, built once.
        history: Results so far, oldest first (the report's "over time" plots).
        config_source: The config file (its folder resolves relative data paths of a
            retrain); None: the workspace's root.
        console: Where a retrain's pipeline reports its progress (None: a quiet one).
    """

    cfg: PipelineConfig
    workspace: Workspace
    tracking_uri: str
    notifier: Notifier
    metrics: MonitorMetrics = field(default_factory=MonitorMetrics)
    references: dict[str, Reference] = field(default_factory=dict)
    history: list[WindowResult] = field(default_factory=list)
    config_source: Path | None = None
    console: Console | None = None

    def __post_init__(self) -> None:
        self.tracker = PipelineTracker(self.tracking_uri, self.cfg.monitoring_experiment_name)

    @property
    def client(self) -> MlflowClient:
        """The MLflow client of the monitoring experiment's tracker."""
        return self.tracker.client

    def limits(self) -> Limits:
        """The ``monitor`` section as the judgement's thresholds."""
        m = self.cfg.monitor
        return Limits(
            alpha=m.alpha,
            min_distance={str(k): v for k, v in m.min_distance.items()},
            min_rows=m.min_rows,
            minimums=dict(m.minimums),
            maximums=dict(m.maximums),
            max_demographic_parity_difference=m.max_demographic_parity_difference,
            max_equalized_odds_difference=m.max_equalized_odds_difference,
        )

    def run_window(self, start: datetime, end: datetime) -> WindowResult:
        """Judge ``[start, end)`` of the served traffic and record every output."""
        (result,) = self.run_windows([(start, end)])
        return result

    def run_windows(
        self,
        bounds: Sequence[tuple[datetime, datetime]],
        on_window: Callable[[WindowResult], Any] | None = None,
    ) -> list[WindowResult]:
        """Judge consecutive windows, read from the capture in one scan, oldest first, and
        record each (MLflow run, report, Prometheus series, webhook on a breach; a retrain
        when the policy says so). Windows before a promotion are judged against the version
        that served them (:meth:`judge`).
        """
        results = []
        for judged in self.judge(bounds):
            run_id = self._record(judged.result, judged.reference, judged.window)
            self.history.append(judged.result)
            results.append(judged.result)
            if on_window is not None:
                on_window(judged.result)
            if self.cfg.monitor.retrain.enabled:
                self.consider_retrain(run_id)
        return results

    def judge(self, bounds: Sequence[tuple[datetime, datetime]]) -> list[Judged]:
        """Read and judge consecutive windows, recording nothing (:meth:`run_windows` records).

        Each window is held to the reference of the version that answered it (the newest
        version among its records; the champion for an empty window).
        """
        data = self.cfg.data
        champion = self._serving_version()
        reference = self.reference_of(champion)
        found = read_windows(
            self.workspace.capture_location(self.cfg.serve.capture.path),
            self.cfg.model_name,
            bounds,
            numeric=data.numeric,
            categorical=[
                *data.categorical,
                *(c for c in data.sensitive if c not in data.categorical),
            ],
            labels=list(reference.labels) if reference.labels else None,
            sample_rows=self.cfg.monitor.sample_rows,
        )
        labels = read_labels(self.workspace.capture_location(self.cfg.monitor.labels_path))
        judged = []
        for (start, end), records in zip(bounds, found, strict=True):
            served = self._version_of(records.versions) or champion
            reference = self.reference_of(served)
            frame = join_labels(records.frame, labels)
            window = Window(self.cfg.model_name, start, end, frame, records.versions)
            result = evaluate_window(window, reference, self.limits(), sensitive=data.sensitive)
            result = replace(result, rows=records.rows)  # the window's count, not its sample's
            judged.append(Judged(result, reference, window))
        return judged

    def _version_of(self, versions: Sequence[str]) -> ModelVersion | None:
        """The newest of a window's versions, when the registry still has it."""
        from mlflow.exceptions import MlflowException

        if not versions:
            return None
        try:
            return self.client.get_model_version(self.cfg.model_name, versions[-1])
        except MlflowException:  # deleted since: the champion's reference stands in
            return None

    def consider_retrain(self, run_id: str) -> RetrainOutcome | None:
        """Apply ``monitor.retrain`` to the windows so far; retrain when it says so.

        The decision (yes or no, with its reason and windows) is recorded on the monitoring
        run ``run_id`` (tags and ``retrain.json``); a retrain's outcome too, and the pipeline
        run it started is tagged with the reason, the windows and ``run_id`` (lineage).
        The retrain needs the ``trainer`` role; it, or its refusal or failure, is recorded in
        the audit trail (``monitor.retrain``).

        Returns:
            The retrain's outcome, None when there was none (or it failed: recorded).
        """
        now = utc_now()
        decision = decide_retrain(
            self.history, self.cfg.monitor.retrain, now=now, last_retrain=self._last_retrain()
        )
        handle = RunHandle(self.client, run_id)
        handle.record_tags(
            {
                TAG_RETRAIN_DECISION: "yes" if decision.retrain else "no",
                TAG_RETRAIN_REASON: decision.reason[:5000],
                **({TAG_RETRAIN_STARTED: now.isoformat()} if decision.retrain else {}),
            }
        )
        record: dict[str, Any] = {"decision": decision.to_dict()}
        handle.record_text(json.dumps(record, indent=2), RETRAIN_JSON)
        if not decision.retrain:
            return None
        target = self.cfg.model_name
        about = {"monitor_run": run_id, "windows": list(decision.windows)}
        base_dir = self.config_source.parent if self.config_source else self.workspace.root
        access = AccessControl.of(self.cfg.governance, self.workspace, base_dir, self.tracking_uri)
        try:
            access.authorize(actions.RETRAIN, target, model=target, details=about)
            outcome = self._retrain(decision, now, run_id)
        except RayMlopsError as exc:
            if not isinstance(exc, AccessDenied):  # a refusal is recorded as refused already
                access.record(actions.RETRAIN, target, "failed", str(exc)[:1000], about)
            record["failed"] = str(exc)
            handle.record_tags({TAG_RETRAIN_RESULT: "failed"})
            handle.record_text(json.dumps(record, indent=2), RETRAIN_JSON)
            if self.console is not None:
                self.console.print(f"[red]retrain failed[/]: {exc}")
            return None
        record["outcome"] = outcome.to_dict()
        access.record(
            actions.RETRAIN,
            target,
            reason=decision.reason[:1000],
            details={
                **about,
                "run_id": outcome.run_id,
                "model_version": outcome.model_version,
                "promoted": outcome.promoted,
            },
        )
        handle.record_tags(
            {
                TAG_RETRAIN_RESULT: "promoted" if outcome.promoted else "rejected",
                TAG_RETRAIN_RUN: outcome.run_id,
                **({TAG_MODEL_VERSION: outcome.model_version} if outcome.model_version else {}),
            }
        )
        handle.record_text(json.dumps(record, indent=2), RETRAIN_JSON)
        return outcome

    def reference_of(self, version: ModelVersion) -> Reference:
        """The reference of ``version``, built on first use from its run's artifacts."""
        key = str(version.version)
        if key not in self.references:
            self.references[key] = self._build_reference(version)
        return self.references[key]

    # -- inside ---------------------------------------------------------------------------

    def _last_retrain(self) -> datetime | None:
        """When the last retrain of this model started, from the monitoring runs."""
        runs = self.client.search_runs(
            [self.tracker.experiment_id],
            filter_string=f"tags.`{TAG_RETRAIN_DECISION}` = 'yes'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        started = runs[0].data.tags.get(TAG_RETRAIN_STARTED) if runs else None
        return datetime.fromisoformat(started) if started else None

    def _retrain(self, decision: RetrainDecision, now: datetime, run_id: str) -> RetrainOutcome:
        """Training set of the decision's windows, the pipeline on it, the lineage tags."""
        starts, ends = zip(*(w.split("/") for w in decision.windows), strict=True)
        data = self.cfg.data
        records = read_window(
            self.workspace.capture_location(self.cfg.serve.capture.path),
            self.cfg.model_name,
            datetime.fromisoformat(min(starts)),
            datetime.fromisoformat(max(ends)),
            numeric=data.numeric,
            categorical=[
                *data.categorical,
                *(c for c in data.sensitive if c not in data.categorical),
            ],
            labels=self.reference_of(self._serving_version()).labels,
            sample_rows=None,
        )
        labels = read_labels(self.workspace.capture_location(self.cfg.monitor.labels_path))
        labelled = join_labels(records.frame, labels)
        # Relative data paths resolve against the config's folder, as in `ray-mlops run`.
        base_dir = self.config_source.parent if self.config_source else self.workspace.root
        destination = retraining_data_location(self.workspace, now)
        original_rows, added = write_training_set(self.cfg, base_dir, labelled, destination)
        result = run_retrain(
            self.cfg,
            self.config_source or base_dir / "config.yaml",
            self.workspace,
            destination,
            self.console or Console(quiet=True),
        )
        RunHandle(self.client, result.run_id).record_tags(
            {
                TAG_RETRAIN_REASON: decision.reason[:5000],
                TAG_RETRAIN_WINDOWS: ",".join(decision.windows)[:5000],
                TAG_RETRAIN_LABELLED_ROWS: str(added),
                TAG_RETRAIN_MONITOR_RUN: run_id,
            }
        )
        return RetrainOutcome(
            data_path=destination,
            original_rows=original_rows,
            labelled_rows=added,
            run_id=result.run_id,
            model_version=result.model_version,
            promoted=result.promoted,
            decision=result.decision,
        )

    def _serving_version(self) -> ModelVersion:
        from ray_mlops.registry.champion import champion_version

        alias = self.cfg.registry.champion_alias
        found = champion_version(self.client, self.cfg.model_name, alias)
        if found is None:
            raise RegistryError(
                f"model {self.cfg.model_name!r} has no {alias!r} alias: nothing is served to "
                "monitor yet (run the pipeline first)"
            )
        return found

    def _build_reference(self, version: ModelVersion) -> Reference:
        from ray_mlops.data.profile import DatasetProfile
        from ray_mlops.registry.champion import load_version

        run_id = str(version.run_id)
        try:
            holdout = pd.read_parquet(self.client.download_artifacts(run_id, HOLDOUT_FILE))
            sample = pd.read_parquet(self.client.download_artifacts(run_id, TRAIN_SAMPLE_FILE))
        except Exception as exc:
            raise DataError(
                f"{version.name} v{version.version}: its run lacks {HOLDOUT_FILE} or "
                f"{TRAIN_SAMPLE_FILE}, the monitor's reference; rerun the pipeline ({exc})"
            ) from exc
        with tempfile.TemporaryDirectory() as workdir:
            model, _ = load_version(
                self.tracking_uri, version.name, str(version.version), f"{workdir}/m"
            )
            inputs = [*self.cfg.data.numeric, *self.cfg.data.categorical]
            predictions = pd.DataFrame(model.predict(holdout[[c for c in inputs if c in holdout]]))
        labels = [
            c.removeprefix(PROBABILITY_PREFIX)
            for c in predictions.columns
            if c.startswith(PROBABILITY_PREFIX)
        ]
        profile_text = self._data_profile(run_id)
        profile = DatasetProfile.from_json(profile_text) if profile_text else None
        return build_reference(
            self.cfg.data, sample, holdout, predictions, labels=labels or None, profile=profile
        )

    def _data_profile(self, run_id: str) -> str | None:
        """``profile.json`` of the data stage under the version's run, if any."""
        runs = self.client.search_runs(
            [self.client.get_run(run_id).info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}' and tags.`{TAG_STAGE}` = 'data'",
            max_results=1,
        )
        return (
            read_artifact_text(self.client, runs[0].info.run_id, PROFILE_JSON_FILE)
            if runs
            else None
        )

    def _record(self, result: WindowResult, reference: Reference, window: Window) -> str:
        end = int(result.end.timestamp() * 1000)
        name = f"{result.model} {result.start:%Y-%m-%d %H:%M}-{result.end:%H:%M}"
        handle = RunHandle.create(
            self.client,
            self.tracker.experiment_id,
            name,
            {
                TAG_STAGE: MONITOR_STAGE,
                TAG_MODEL_VERSION: ",".join(result.versions),
                "ray_mlops.window_start": result.start.isoformat(),
                "ray_mlops.window_end": result.end.isoformat(),
                "ray_mlops.alarmed": str(result.alarmed).lower(),
            },
        )
        handle.record_metrics(window_metrics(result), timestamp_ms=end)
        handle.record_text(json.dumps(result.to_dict(), indent=2), WINDOW_JSON)
        handle.record_text(
            render_window_report(result, reference, window, self.history, limits=self.limits()),
            REPORT_HTML,
        )
        handle.end("FINISHED")
        self.metrics.record(result)
        if result.alarmed:
            self.notifier.send(DRIFT_EVENT, drift_event(result, handle.run_id))
        return handle.run_id


def drift_event(result: WindowResult, run_id: str) -> dict[str, Any]:
    """The webhook payload of a window that broke a limit (event :data:`DRIFT_EVENT`)."""
    return {
        "model": result.model,
        "versions": list(result.versions),
        "window_start": result.start.isoformat(),
        "window_end": result.end.isoformat(),
        "breaches": [b.to_dict() for b in result.breaches],
        "run_id": run_id,
    }


def window_metrics(result: WindowResult) -> dict[str, float]:
    """The MLflow metrics of a window: counts, drift per column, estimated and realised
    metrics, fairness; values the window could not measure are left out."""
    found: dict[str, float | None] = {
        "rows": result.rows,
        "labelled_rows": result.labelled_rows,
        "breaches": len(result.breaches),
    }
    tested = [c for c in result.columns if c.p_value is not None]
    if tested:
        found["drift_share"] = sum(c.drifted for c in tested) / len(tested)
    for c in (*result.columns, *result.predictions):
        found[f"drift.{c.column}.{c.distance_name}"] = c.distance
        found[f"drift.{c.column}.adjusted_p"] = c.adjusted_p
        found[f"drift.{c.column}.psi"] = c.psi
    for prefix, performance in (("estimated", result.estimated), ("realised", result.realised)):
        if performance is not None:
            found |= {f"{prefix}.{k}": v for k, v in performance.metrics.items()}
    for column, measures in result.fairness.items():
        found |= {f"fairness.{column}.{k}": v for k, v in measures.items()}
    return {k: float(v) for k, v in found.items() if v is not None}


def windows(
    since: datetime, until: datetime, length: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """``[since, until)`` cut into windows of ``length`` (the last one may be shorter)."""
    if length <= timedelta(0):
        raise DataError(f"a window must last more than 0 s, not {length}")
    start = since
    while start < until:
        yield start, min(start + length, until)
        start += length


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(timezone.utc)


def monitor_range(
    monitor: Monitor,
    since: datetime,
    until: datetime,
    *,
    on_window: Callable[[WindowResult], Any] | None = None,
) -> list[WindowResult]:
    """Every window of ``monitor.window`` in ``[since, until)``, oldest first."""
    bounds = list(windows(since, until, monitor.cfg.monitor.window))
    results: list[WindowResult] = []
    # A day of 5-minute windows is 288: read them a day's worth at a time, so the driver
    # holds at most WINDOWS_PER_READ samples.
    for first in range(0, len(bounds), WINDOWS_PER_READ):
        chunk = bounds[first : first + WINDOWS_PER_READ]
        results += monitor.run_windows(chunk, on_window=on_window)
    return results


def watch(
    monitor: Monitor,
    tick: timedelta,
    stop: threading.Event,
    *,
    on_window: Callable[[WindowResult], Any] | None = None,
    on_serving: Callable[[str], Any] | None = None,
) -> None:
    """The monitor as a service: every ``tick``, judge the last ``monitor.window`` of traffic
    (ending now), until ``stop`` is set. The Prometheus series are served on
    ``monitor.metrics_port`` meanwhile (``on_serving`` gets their URL).

    A window that fails to be judged (the tracking server down, a champion not yet there) is
    reported on ``monitor.console`` and tried again at the next tick, so the service outlives
    a passing outage.
    """
    from ray_mlops.monitor.exposition import serve_metrics

    port = monitor.cfg.monitor.metrics_port
    server = serve_metrics(monitor.metrics, port) if port is not None else None
    if server is not None and on_serving is not None:
        on_serving(f"http://{server.host}:{server.port}/metrics")
    length = monitor.cfg.monitor.window
    try:
        while not stop.is_set():
            end = utc_now()
            try:
                (result,) = monitor.run_windows([(end - length, end)])
            except RayMlopsError as exc:
                if monitor.console is not None:
                    monitor.console.print(f"[red]monitor[/]: {exc}; trying again in {tick}")
            else:
                if on_window is not None:
                    on_window(result)
            stop.wait(tick.total_seconds())
    finally:
        if server is not None:
            server.stop()


def summary_rows(results: Sequence[WindowResult]) -> list[dict[str, Any]]:
    """One plain row per window for the CLI's table."""
    rows = []
    for r in results:
        estimated = r.estimated.metrics.get("accuracy") if r.estimated else None
        realised = r.realised.metrics.get("accuracy") if r.realised else None
        rows.append(
            {
                "window": f"{r.start:%Y-%m-%d %H:%M} to {r.end:%H:%M}",
                "rows": r.rows,
                "labelled": r.labelled_rows,
                "drifted": ", ".join(r.drifted_columns) or ("-" if r.tested else "not tested"),
                "estimated accuracy": estimated,
                "realised accuracy": realised,
                "breaches": len(r.breaches),
            }
        )
    return rows


def as_utc(when: datetime) -> datetime:
    """``when`` in UTC (naive times are taken as UTC)."""
    return (
        when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    )
