"""The promotion gate: the rules a candidate must pass before it takes the champion alias.

Candidate and champion are scored on the same frozen test rows. The rules come from the
config's ``gate`` section: absolute minimums and maximums; beating the champion on the
primary metric by more than a margin at the lower bound of a paired bootstrap confidence
interval (so a candidate that is better only by noise is not promoted); no slice worse than
the champion's by more than a tolerance; fairness limits; a latency budget and a size limit.
The result is a table of rules with measured values, pass or fail. Ray-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ray_mlops.config import GateConfig, Task
from ray_mlops.evaluate.metrics import (
    classification_metrics,
    higher_is_better,
    label_indices,
    regression_metrics,
)
from ray_mlops.models.predictor import PREDICTION_COLUMN, PROBABILITY_PREFIX, probability_labels

PASSED, FAILED, FORCED = "passed", "failed", "forced"

# What a rule checks, so code finds a rule by its kind, never by its wording.
RuleKind = Literal[
    "minimum", "maximum", "margin", "slice", "fairness", "latency", "size", "champion_scored"
]


@dataclass
class ScoredModel:
    """A model's predictions on the holdout and what was measured of it.

    Attributes:
        label: How tables name it ("candidate", "champion v3").
        predictions: The packaged model's output on the holdout rows, in their order.
        metrics: Its test metrics.
        slices: Slice name -> primary metric, for the slices large enough to judge.
        fairness: Sensitive column -> {"demographic_parity_difference": ..,
            "equalized_odds_difference": ..}.
        latency_p95_ms: p95 of a single-row prediction.
        size_mb: Size of the packaged model.
    """

    label: str
    predictions: pd.DataFrame
    metrics: dict[str, float]
    slices: dict[str, float] = field(default_factory=dict)
    fairness: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_p95_ms: float | None = None
    size_mb: float | None = None


@dataclass
class RuleResult:
    """One rule of the gate: what it asks, what was measured, and whether it passed.

    ``rule`` is the wording people read; ``kind`` is what code matches on.
    """

    rule: str
    measured: float | None
    threshold: float | None
    passed: bool
    detail: str
    kind: RuleKind


@dataclass
class GateResult:
    """Every rule's result; the gate passes when all of them do."""

    rules: list[RuleResult]
    primary_metric: str
    forced: bool = False

    @property
    def passed(self) -> bool:
        """All rules passed."""
        return all(r.passed for r in self.rules)

    @property
    def verdict(self) -> str:
        """passed, failed, or forced (failed or not run, promoted by an operator)."""
        if self.forced:
            return FORCED
        return PASSED if self.passed else FAILED

    def failures(self) -> list[str]:
        """One line per failed rule: its name and why."""
        return [f"{r.rule}: {r.detail}" for r in self.rules if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (non-finite numbers become None)."""
        return {
            "verdict": self.verdict,
            "passed": self.passed,
            "forced": self.forced,
            "primary_metric": self.primary_metric,
            "rules": [
                {**asdict(r), "measured": _finite(r.measured), "threshold": _finite(r.threshold)}
                for r in self.rules
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GateResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            rules=[RuleResult(**rule) for rule in doc["rules"]],
            primary_metric=doc["primary_metric"],
            forced=bool(doc.get("forced", False)),
        )

    def to_markdown(self) -> str:
        """The rules as a Markdown table."""
        lines = ["| rule | measured | threshold | result | detail |", "|---|---|---|---|---|"]
        for r in self.rules:
            lines.append(
                f"| {r.rule} | {_fmt(r.measured)} | {_fmt(r.threshold)} | "
                f"{'PASS' if r.passed else 'FAIL'} | {r.detail.replace('|', '/')} |"
            )
        return "\n".join(lines) + "\n"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4g}"


def run_gate(
    gate: GateConfig,
    task: Task,
    metric: str,
    target: pd.Series,
    candidate: ScoredModel,
    champion: ScoredModel | None,
    seed: int = 0,
) -> GateResult:
    """Judge the candidate against the rules and the champion on the same rows.

    Raises:
        ValueError: a minimum or maximum names a metric this task does not compute.
    """
    rules: list[RuleResult] = []
    rules += _absolute_rules(gate, candidate.metrics)
    rules.append(_margin_rule(gate, task, metric, target, candidate, champion, seed))
    if gate.slice_tolerance is not None:
        rules.append(_slice_rule(gate.slice_tolerance, metric, candidate, champion))
    for name, limit in (
        ("demographic_parity_difference", gate.max_demographic_parity_difference),
        ("equalized_odds_difference", gate.max_equalized_odds_difference),
    ):
        if limit is not None:
            rules.append(_fairness_rule(name, limit, candidate))
    if gate.latency_p95_ms is not None:
        measured = candidate.latency_p95_ms
        rules.append(
            RuleResult(
                "latency p95 (single row)",
                measured,
                gate.latency_p95_ms,
                measured is not None and measured <= gate.latency_p95_ms,
                f"{_fmt(measured)} ms against a budget of {gate.latency_p95_ms:g} ms",
                kind="latency",
            )
        )
    if gate.max_size_mb is not None:
        size = candidate.size_mb
        rules.append(
            RuleResult(
                "model size",
                size,
                gate.max_size_mb,
                size is not None and size <= gate.max_size_mb,
                f"{_fmt(size)} MB against a limit of {gate.max_size_mb:g} MB",
                kind="size",
            )
        )
    return GateResult(rules=rules, primary_metric=metric)


def _absolute_rules(gate: GateConfig, metrics: dict[str, float]) -> list[RuleResult]:
    rules = []
    for bound, table in (("minimum", gate.minimums), ("maximum", gate.maximums)):
        for name, limit in table.items():
            if name not in metrics:
                raise ValueError(
                    f"gate.{bound}s.{name}: not a test metric of this model; "
                    f"choose from {sorted(metrics)}"
                )
            value = metrics[name]
            ok = value >= limit if bound == "minimum" else value <= limit
            relation = ">=" if bound == "minimum" else "<="
            rules.append(
                RuleResult(
                    f"{bound} {name}",
                    value,
                    limit,
                    bool(ok),
                    f"{name} {value:.4f} must be {relation} {limit:g}",
                    kind="minimum" if bound == "minimum" else "maximum",
                )
            )
    return rules


def _margin_rule(
    gate: GateConfig,
    task: Task,
    metric: str,
    target: pd.Series,
    candidate: ScoredModel,
    champion: ScoredModel | None,
    seed: int,
) -> RuleResult:
    rule = f"beats champion on {metric}"
    if champion is None:
        return RuleResult(rule, None, gate.margin, True, "no champion yet", kind="margin")
    low, mean, high = bootstrap_improvement(
        task,
        metric,
        target,
        candidate.predictions,
        champion.predictions,
        samples=gate.bootstrap_samples,
        confidence=gate.confidence,
        seed=seed,
    )
    level = f"{gate.confidence:.0%}"
    detail = (
        f"improvement over {champion.label} {mean:+.4f}, {level} interval "
        f"[{low:+.4f}, {high:+.4f}]; its lower bound must exceed {gate.margin:g}"
    )
    return RuleResult(rule, low, gate.margin, bool(low > gate.margin), detail, kind="margin")


def _slice_rule(
    tolerance: float, metric: str, candidate: ScoredModel, champion: ScoredModel | None
) -> RuleResult:
    rule = f"no slice worse than champion's by more than {tolerance:g}"
    if champion is None:
        return RuleResult(rule, None, tolerance, True, "no champion yet", kind="slice")
    sign = 1.0 if higher_is_better(metric) else -1.0
    # Worsening of each slice both models were judged on, in the metric's bad direction.
    drops = {
        name: sign * (champion.slices[name] - value)
        for name, value in candidate.slices.items()
        if name in champion.slices and math.isfinite(value) and math.isfinite(champion.slices[name])
    }
    if not drops:
        return RuleResult(rule, None, tolerance, True, "no slice to compare", kind="slice")
    worst = max(drops, key=lambda name: drops[name])
    drop = drops[worst]
    failing = sorted(name for name, d in drops.items() if d > tolerance)
    detail = (
        f"worst slice {worst}: {metric} {candidate.slices[worst]:.4f} vs "
        f"{champion.slices[worst]:.4f} ({drop:+.4f} worse)"
    )
    if failing:
        detail += f"; over the tolerance: {', '.join(failing[:5])}"
    return RuleResult(rule, drop, tolerance, not failing, detail, kind="slice")


def _fairness_rule(name: str, limit: float, candidate: ScoredModel) -> RuleResult:
    values = {
        column: found[name]
        for column, found in candidate.fairness.items()
        if name in found and found[name] is not None and math.isfinite(found[name])
    }
    rule = f"max {name}"
    if not values:
        return RuleResult(rule, None, limit, True, "no sensitive column to judge", kind="fairness")
    column = max(values, key=lambda c: values[c])
    worst = values[column]
    return RuleResult(
        rule,
        worst,
        limit,
        worst <= limit,
        f"largest on {column}: {worst:.4f} (limit {limit:g})",
        kind="fairness",
    )


def bootstrap_improvement(
    task: Task,
    metric: str,
    target: pd.Series,
    candidate: pd.DataFrame,
    champion: pd.DataFrame,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired bootstrap of the candidate's improvement over the champion on ``metric``.

    Both models are scored on the same resampled rows, so what they share (hard rows,
    easy rows) cancels out. The improvement is positive when the candidate is better, in
    the metric's own direction. Returns (lower bound, mean, upper bound).
    """
    score = _metric_function(task, metric, target, candidate, champion)
    rng = np.random.default_rng(seed)
    n = len(target)
    sign = 1.0 if higher_is_better(metric) else -1.0
    differences = []
    for _ in range(samples):
        rows = rng.integers(0, n, n)
        first, second = score(rows)
        if math.isfinite(first) and math.isfinite(second):
            differences.append(sign * (first - second))
    if not differences:
        return float("nan"), float("nan"), float("nan")
    values = np.asarray(differences)
    tail = (1 - confidence) / 2 * 100
    return (
        float(np.percentile(values, tail)),
        float(values.mean()),
        float(np.percentile(values, 100 - tail)),
    )


Scorer = Callable[[np.ndarray], tuple[float, float]]


def binary_roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for 0/1 labels ``positive`` (both classes present), by ranks.

    The Mann-Whitney U statistic over ``n_pos * n_neg`` with tied scores given their mean
    rank: the same value as ``sklearn.metrics.roc_auc_score`` in 0.15 ms instead of 3.8 ms
    on 450 rows (its input checks), and the gate's bootstrap makes two calls per resample,
    a thousand resamples by default.

    Example:
        >>> binary_roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    ranks = rankdata(scores)
    hits = positive == 1
    n_pos = int(hits.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[hits].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _metric_function(
    task: Task, metric: str, target: pd.Series, candidate: pd.DataFrame, champion: pd.DataFrame
) -> Scorer:
    """(candidate, champion) values of ``metric`` on a set of row indices.

    The common metrics are computed straight from arrays (a bootstrap calls this a
    thousand times); any other goes through the full metric functions.
    """
    if task == "regression":
        y = target.to_numpy(dtype=np.float64)
        a = candidate[PREDICTION_COLUMN].to_numpy(dtype=np.float64)
        b = champion[PREDICTION_COLUMN].to_numpy(dtype=np.float64)
        fast: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
            "rmse": lambda t, p: float(np.sqrt(np.mean((t - p) ** 2))),
            "mae": lambda t, p: float(np.mean(np.abs(t - p))),
        }
        if metric in fast:
            f = fast[metric]
            return lambda rows: (f(y[rows], a[rows]), f(y[rows], b[rows]))
        return lambda rows: (
            regression_metrics(y[rows], a[rows]).get(metric, math.nan),
            regression_metrics(y[rows], b[rows]).get(metric, math.nan),
        )
    labels = probability_labels(candidate)
    truth = target.astype("string").to_numpy()
    y_index = label_indices(truth, labels)
    p_a = candidate[[PROBABILITY_PREFIX + label for label in labels]].to_numpy(dtype=np.float64)
    # The champion's probabilities in the candidate's class order (0 for a class it lacks).
    p_b = np.column_stack(
        [
            champion[PROBABILITY_PREFIX + label].to_numpy(dtype=np.float64)
            if PROBABILITY_PREFIX + label in champion
            else np.zeros(len(champion))
            for label in labels
        ]
    )
    if metric == "roc_auc" and len(labels) == 2:

        def auc(rows: np.ndarray) -> tuple[float, float]:
            y = y_index[rows]
            if len(np.unique(y)) < 2 or (y < 0).any():
                return math.nan, math.nan
            return binary_roc_auc(y, p_a[rows, 1]), binary_roc_auc(y, p_b[rows, 1])

        return auc
    if metric == "accuracy":
        hits_a = p_a.argmax(axis=1) == y_index
        hits_b = p_b.argmax(axis=1) == y_index
        return lambda rows: (float(hits_a[rows].mean()), float(hits_b[rows].mean()))
    return lambda rows: (
        classification_metrics(truth[rows], p_a[rows], labels).get(metric, math.nan),
        classification_metrics(truth[rows], p_b[rows], labels).get(metric, math.nan),
    )
