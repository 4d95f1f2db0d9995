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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from ray_mlops.errors import DataError, RegistryError
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
from ray_mlops.monitor.reader import read_window
from ray_mlops.monitor.reference import build_reference
from ray_mlops.monitor.report import render_window_report
from ray_mlops.monitor.result import WindowResult
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
DRIFT_EVENT = "model_drift"
"""Webhook event of a window that broke a limit (drift, estimated or realised quality,
fairness); the payload names every breach."""


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
    """

    cfg: PipelineConfig
    workspace: Workspace
    tracking_uri: str
    notifier: Notifier
    metrics: MonitorMetrics = field(default_factory=MonitorMetrics)
    references: dict[str, Reference] = field(default_factory=dict)
    history: list[WindowResult] = field(default_factory=list)

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
        """Judge ``[start, end)`` of the champion's traffic and record every output."""
        version = self._serving_version()
        reference = self.reference_of(version)
        data = self.cfg.data
        capture = self.workspace.capture_location(self.cfg.serve.capture.path)
        records = read_window(
            capture,
            self.cfg.model_name,
            start,
            end,
            numeric=data.numeric,
            categorical=[
                *data.categorical,
                *(c for c in data.sensitive if c not in data.categorical),
            ],
            labels=list(reference.labels) if reference.labels else None,
            sample_rows=self.cfg.monitor.sample_rows,
        )
        labels = read_labels(self.workspace.capture_location(self.cfg.monitor.labels_path))
        frame = join_labels(records.frame, labels)
        window = Window(self.cfg.model_name, start, end, frame, records.versions)
        result = evaluate_window(window, reference, self.limits(), sensitive=data.sensitive)
        result = replace(result, rows=records.rows)  # the window's count, not its sample's
        self._record(result, reference, window)
        self.history.append(result)
        return result

    def reference_of(self, version: ModelVersion) -> Reference:
        """The reference of ``version``, built on first use from its run's artifacts."""
        key = str(version.version)
        if key not in self.references:
            self.references[key] = self._build_reference(version)
        return self.references[key]

    # -- inside ---------------------------------------------------------------------------

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

    def _record(self, result: WindowResult, reference: Reference, window: Window) -> None:
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
            self.notifier.send(
                DRIFT_EVENT,
                {
                    "model": result.model,
                    "versions": list(result.versions),
                    "window_start": result.start.isoformat(),
                    "window_end": result.end.isoformat(),
                    "breaches": [b.to_dict() for b in result.breaches],
                    "run_id": handle.run_id,
                },
            )


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
    results = []
    for start, end in windows(since, until, monitor.cfg.monitor.window):
        result = monitor.run_window(start, end)
        results.append(result)
        if on_window is not None:
            on_window(result)
    return results


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
