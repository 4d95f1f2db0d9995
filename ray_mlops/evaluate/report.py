"""The evaluation of a model on the holdout: one report, as JSON-ready data and as HTML."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ray_mlops.config import Task
from ray_mlops.evaluate import plots
from ray_mlops.evaluate.fairness import FairnessResult, fairness_metrics
from ray_mlops.evaluate.importance import PredictFn, permutation_importance
from ray_mlops.evaluate.metrics import (
    classification_metrics,
    default_primary_metric,
    higher_is_better,
    label_indices,
    per_class_metrics,
    regression_metrics,
)
from ray_mlops.evaluate.slices import SliceResult, slice_metrics
from ray_mlops.models.predictor import PREDICTION_COLUMN, PROBABILITY_PREFIX
from ray_mlops.reports import note, page, row, section, table


@dataclass
class EvaluationReport:
    """Everything measured about a model on the holdout.

    Attributes:
        task: ``classification`` or ``regression``.
        labels: The model's classes, in its order; ``None`` for regression.
        metrics: Task metric -> value on all holdout rows.
        per_class: Label -> precision, recall, f1, support (classification; else empty).
        confusion_matrix: ``[i][j]`` rows of true class ``labels[i]`` predicted as
            ``labels[j]``; rows of a label the model never saw are not in it (see
            ``unseen_label_rows``). ``None`` for regression.
        slices: Metrics per slice of the holdout.
        fairness: Sensitive column -> its disparities and group metrics.
        importance: Column -> (mean, std) permutation importance, or ``None`` if not computed.
        rows: Holdout rows.
        importance_metric: The metric the importance is the drop of.
        unseen_label_rows: Rows whose true label the model never saw (errors in the metrics).
        plots: Name -> ``<img>`` snippet of the plots drawn from the predictions themselves
            (curves, residuals); left out of :meth:`to_dict`.
    """

    task: Task
    labels: list[str] | None
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]] | None
    slices: list[SliceResult]
    fairness: dict[str, FairnessResult]
    importance: dict[str, tuple[float, float]] | None
    rows: int
    importance_metric: str | None = None
    unseen_label_rows: int = 0
    plots: dict[str, str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every number of the report as plain JSON values; NaN and infinities are ``None``.

        The result passes ``json.dumps(..., allow_nan=False)``; plots are not included.
        Slices are flat dicts (``name``, ``rows``, ``too_small`` and one key per metric), and
        fairness maps each sensitive column to its measures and ``groups``, the shapes the
        model card reads.
        """
        importance = None
        if self.importance is not None:
            importance = {
                column: {"mean": mean, "std": std}
                for column, (mean, std) in self.importance.items()
            }
        return _json_safe(
            {
                "task": self.task,
                "labels": self.labels,
                "rows": self.rows,
                "unseen_label_rows": self.unseen_label_rows,
                "metrics": self.metrics,
                "per_class": self.per_class,
                "confusion_matrix": self.confusion_matrix,
                "slices": [_slice_dict(s) for s in self.slices],
                "fairness": {c: _fairness_dict(f) for c, f in self.fairness.items()},
                "importance_metric": self.importance_metric,
                "importance": importance,
            }
        )

    def render_html(self, title: str) -> str:
        """A standalone HTML page (no scripts, no external resources) of the report.

        Summary metrics, plots, per-class metrics, slices, fairness per sensitive column and
        permutation importance. Every name and value from the data is HTML-escaped.
        """
        sections = [
            section("Summary", self._summary()),
            section("Plots", self._plots()),
        ]
        if self.per_class:
            sections.append(section("Per class", self._per_class()))
        if self.slices:
            sections.append(section("Slices", _slices_table(self.slices)))
        for result in self.fairness.values():
            sections.append(section(f"Fairness: {result.column}", _fairness(result)))
        if self.importance is not None:
            sections.append(section("Permutation importance", self._importance()))
        return page(title, sections)

    def _summary(self) -> str:
        facts: list[tuple[str, object]] = [("Task", self.task), ("Rows", self.rows)]
        if self.labels is not None:
            facts.append(("Classes", ", ".join(self.labels)))
        if self.unseen_label_rows:
            facts.append(("Rows of a label the model never saw", self.unseen_label_rows))
        metrics = [
            (name, value, "higher" if higher_is_better(name) else "lower")
            for name, value in self.metrics.items()
        ]
        return row(
            table(facts),
            table(metrics, ["metric", "value", "better"]),
        )

    def _plots(self) -> str:
        figures = list(self.plots.values())
        if self.confusion_matrix is not None and self.labels is not None:
            figures.insert(0, plots.confusion_matrix_plot(self.confusion_matrix, self.labels))
        if not figures:
            return note("No plots.")
        return row(*figures)

    def _per_class(self) -> str:
        names = ["precision", "recall", "f1", "support"]
        rows = [(label, *(m[n] for n in names)) for label, m in self.per_class.items()]
        return table(rows, ["class", *names])

    def _importance(self) -> str:
        assert self.importance is not None
        metric = self.importance_metric or "metric"
        ranked = sorted(self.importance.items(), key=lambda item: -item[1][0])
        rows = [(column, mean, std) for column, (mean, std) in ranked]
        explained = note(
            f"Drop of {metric} (in its better direction) when the column is shuffled: "
            "larger means the model relies on it more."
        )
        ranking = table(rows, ["column", "mean", "std"])
        return explained + row(ranking, plots.importance_plot(self.importance, metric))


def evaluate_holdout(
    holdout: pd.DataFrame,
    predictions: pd.DataFrame,
    target: str,
    task: Task,
    labels: list[str] | None,
    *,
    categorical: list[str],
    numeric: list[str],
    sensitive: list[str],
    slices: dict[str, str],
    numeric_buckets: int = 4,
    min_slice_rows: int = 30,
    predict: PredictFn | None = None,
    importance_metric: str | None = None,
    importance_columns: list[str] | None = None,
    importance_rows: int = 2000,
) -> EvaluationReport:
    """Evaluate a model's predictions on the holdout: metrics, plots, slices, fairness.

    Args:
        holdout: The holdout rows, with the target column.
        predictions: The model's prediction frame for ``holdout``, row for row (by position):
            ``prediction`` and, for classifiers, one ``probability_<label>`` per class.
        target: Name of the target column.
        task: ``classification`` or ``regression``.
        labels: The model's classes in its order (classification); ``None`` for regression.
        categorical: Columns sliced by value.
        numeric: Columns sliced by quantile bucket.
        sensitive: Columns whose groups are compared for fairness.
        slices: Named slices, name -> pandas query expression.
        numeric_buckets: Quantile buckets per numeric column.
        min_slice_rows: Slices with fewer rows are listed without metrics.
        predict: Raw rows -> prediction frame; permutation importance is computed only
            when given.
        importance_metric: Metric of the importance; default: the task's primary metric.
        importance_columns: Columns to shuffle; default: every holdout column but the target.
        importance_rows: Holdout rows sampled for the importance.

    Returns:
        The report.

    Raises:
        ValueError: The holdout is empty, the prediction frame does not match it, a
            classifier has no labels, or a slice expression cannot be evaluated.
    """
    if holdout.empty:
        raise ValueError("the holdout has no rows")
    if len(predictions) != len(holdout):
        raise ValueError(f"{len(predictions)} prediction rows for {len(holdout)} holdout rows")
    frame = holdout.reset_index(drop=True)
    scored = predictions.reset_index(drop=True)
    per_class: dict[str, dict[str, float]] = {}
    matrix = None
    unseen = 0
    drawn: dict[str, str] = {}
    if task == "classification":
        if not labels:
            raise ValueError("a classification report needs the model's labels")
        columns = [f"{PROBABILITY_PREFIX}{label}" for label in labels]
        absent = [c for c in columns if c not in scored.columns]
        if absent:
            raise ValueError(f"the prediction frame lacks {absent}")
        probabilities = scored[columns].to_numpy(dtype=np.float64)
        y_true = frame[target].astype("string").to_numpy()
        metrics = classification_metrics(y_true, probabilities, labels)
        per_class = per_class_metrics(y_true, probabilities, labels)
        y_index = label_indices(y_true, labels)
        known = y_index >= 0
        unseen = int((~known).sum())
        matrix = skm.confusion_matrix(
            y_index[known], probabilities[known].argmax(axis=1), labels=range(len(labels))
        ).tolist()
        drawn = {
            "roc": plots.roc_plot(y_true, probabilities, labels),
            "precision_recall": plots.precision_recall_plot(y_true, probabilities, labels),
            "calibration": plots.calibration_plot(y_true, probabilities, labels),
        }
    else:
        labels = None
        y = frame[target].to_numpy(dtype=np.float64)
        predicted = scored[PREDICTION_COLUMN].to_numpy(dtype=np.float64)
        metrics = regression_metrics(y, predicted)
        drawn = {
            "residuals": plots.residuals_plot(y, predicted),
            "residual_histogram": plots.residual_histogram(y, predicted),
        }

    slice_results = slice_metrics(
        frame,
        target,
        scored,
        task,
        labels,
        categorical=categorical,
        numeric=numeric,
        defined=slices,
        numeric_buckets=numeric_buckets,
        min_rows=min_slice_rows,
    )
    fairness = fairness_metrics(frame, target, scored, task, labels, sensitive)
    importance = None
    metric = None
    if predict is not None:
        metric = importance_metric or default_primary_metric(task, len(labels) if labels else None)
        importance = permutation_importance(
            predict,
            frame,
            target,
            task,
            labels,
            metric,
            [c for c in frame.columns if c != target]
            if importance_columns is None
            else importance_columns,
            max_rows=importance_rows,
        )
    return EvaluationReport(
        task=task,
        labels=labels,
        metrics=metrics,
        per_class=per_class,
        confusion_matrix=matrix,
        slices=slice_results,
        fairness=fairness,
        importance=importance,
        rows=len(frame),
        importance_metric=metric,
        unseen_label_rows=unseen,
        plots=drawn,
    )


def _slices_table(results: list[SliceResult]) -> str:
    # One column per metric that any slice has, in the order they first appear.
    names: list[str] = []
    for result in results:
        names += [n for n in result.metrics if n not in names]
    columns = names or ["metrics"]
    rows = []
    for result in results:
        if result.too_small:
            cells: list[object] = ["too few rows", *([None] * (len(columns) - 1))]
        else:
            cells = [result.metrics.get(n) for n in columns]
        rows.append((result.name, result.rows, *cells))
    return table(rows, ["slice", "rows", *columns])


def _fairness(result: FairnessResult) -> str:
    summary: list[tuple[str, object]] = []
    if result.demographic_parity_difference is not None:
        summary.append(("demographic parity difference", result.demographic_parity_difference))
    if result.equalized_odds_difference is not None:
        summary.append(("equalized odds difference", result.equalized_odds_difference))
    if result.mae_difference is not None:
        summary.append(("largest MAE difference", result.mae_difference))
    names: list[str] = []
    for values in result.groups.values():
        names += [n for n in values if n not in names]
    groups = [(group, *(values.get(n) for n in names)) for group, values in result.groups.items()]
    return row(table(summary), table(groups, ["group", *names]))


def _slice_dict(result: SliceResult) -> dict[str, Any]:
    # The name already says the column ("sex=Female"); metrics sit beside rows, flat.
    return {"name": result.name, "rows": result.rows, "too_small": result.too_small} | dict(
        result.metrics
    )


def _fairness_dict(result: FairnessResult) -> dict[str, Any]:
    # The measures of the other task are None, not missing values: they are left out.
    return {k: v for k, v in asdict(result).items() if k != "column" and v is not None}


def _json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, tuples as lists, NaN and inf as None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
