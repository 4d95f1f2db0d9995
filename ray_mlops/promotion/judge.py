"""Judge a candidate against the champion on the frozen holdout: evaluation, cost, the gate.

:func:`judge_against_champion` is used by the pipeline (``ray-mlops run`` and ``tune``) and
by ``ray-mlops promote``, so both apply the same rules to the same rows. Both models are packaged pyfunc models, scored
through their signatures exactly as serving will call them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_mlops.config import PipelineConfig
from ray_mlops.errors import SignatureError
from ray_mlops.evaluate.holdout import conform_to_signature
from ray_mlops.evaluate.report import EvaluationReport, evaluate_holdout
from ray_mlops.models.predictor import probability_labels
from ray_mlops.promotion.gate import GateResult, RuleResult, ScoredModel, run_gate
from ray_mlops.registry.champion import champion_version, load_version
from ray_mlops.signing.trust import Trust, default_trust

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel
    from mlflow.tracking import MlflowClient

ROW_ID = "_ray_mlops_row"
LATENCY_CALLS, LATENCY_WARMUP = 200, 20


@dataclass
class Judged:
    """What was measured of one model on the holdout."""

    report: EvaluationReport
    scored: ScoredModel


def predict_holdout(
    model: PyFuncModel, model_dir: Path, holdout: pd.DataFrame, batch_min_rows: int
) -> pd.DataFrame:
    """The model's predictions for every holdout row, in the holdout's order.

    From ``batch_min_rows`` rows on, the rows are scored with Ray Data batch inference (a
    pool of actors, each loading the model from ``model_dir`` once); below, in this process.
    """
    inputs = conform_to_signature(holdout, model.metadata.get_input_schema())
    if len(inputs) < batch_min_rows:
        return pd.DataFrame(model.predict(inputs)).reset_index(drop=True)
    return _predict_with_ray_data(str(model_dir), inputs)


class _BatchScorer:
    """A Ray Data actor holding one loaded copy of the model."""

    def __init__(self, model_uri: str) -> None:
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(model_uri)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch.pop(ROW_ID).to_numpy()
        out = pd.DataFrame(self.model.predict(batch)).reset_index(drop=True)
        out[ROW_ID] = rows
        return out


def _predict_with_ray_data(model_uri: str, inputs: pd.DataFrame) -> pd.DataFrame:
    import ray
    import ray.data

    cpus = int(ray.cluster_resources().get("CPU", 1))
    frame = inputs.reset_index(drop=True)
    frame[ROW_ID] = np.arange(len(frame))
    predicted = (
        ray.data.from_pandas(frame)
        .repartition(max(cpus * 2, 2))
        .map_batches(
            _BatchScorer,
            fn_constructor_kwargs={"model_uri": model_uri},
            batch_format="pandas",
            batch_size=4096,
            concurrency=(1, max(cpus, 1)),
        )
        .to_pandas()
    )
    # Ray Data returns blocks as they finish; the row ids put them back in order. Columns
    # come back Arrow-backed: as NumPy, they match what the model returns in process.
    ordered = predicted.sort_values(ROW_ID).drop(columns=[ROW_ID]).reset_index(drop=True)
    return pd.DataFrame({c: ordered[c].to_numpy() for c in ordered.columns}).infer_objects()


def single_row_latency_p95_ms(model: PyFuncModel, holdout: pd.DataFrame) -> float:
    """p95 of one-row predictions through the pyfunc model, in milliseconds."""
    inputs = conform_to_signature(holdout, model.metadata.get_input_schema())
    rows = [inputs.iloc[[i % len(inputs)]] for i in range(LATENCY_CALLS + LATENCY_WARMUP)]
    timings = []
    for i, row in enumerate(rows):
        started = time.perf_counter()
        model.predict(row)
        if i >= LATENCY_WARMUP:
            timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 95))


def folder_size_mb(path: Path) -> float:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def judge(
    cfg: PipelineConfig,
    model: PyFuncModel,
    model_dir: Path,
    holdout: pd.DataFrame,
    metric: str,
    label: str,
    *,
    full: bool,
) -> Judged:
    """Evaluate a packaged model on the holdout.

    ``full`` (the candidate) adds permutation importance, the single-row latency and the
    size; the champion needs only what the comparison uses.
    """
    predictions = predict_holdout(model, model_dir, holdout, cfg.evaluate.batch_inference_min_rows)
    labels = probability_labels(predictions) if cfg.task == "classification" else None
    evaluate = cfg.evaluate
    schema = model.metadata.get_input_schema()

    def predict(rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(model.predict(conform_to_signature(rows, schema)))

    report = evaluate_holdout(
        holdout,
        predictions,
        cfg.data.target,
        cfg.task,
        labels,
        categorical=[c for c in cfg.data.categorical if c in holdout],
        numeric=[c for c in cfg.data.numeric if c in holdout],
        sensitive=[c for c in cfg.data.sensitive if c in holdout],
        slices=evaluate.slices,
        numeric_buckets=evaluate.numeric_buckets,
        min_slice_rows=evaluate.min_slice_rows,
        predict=predict if full and evaluate.importance else None,
        importance_metric=metric,
        importance_columns=[c for c in schema.input_names() if c in holdout],
        importance_rows=evaluate.importance_rows,
    )
    if metric not in report.metrics:
        raise ValueError(
            f"evaluate.primary_metric: {metric!r} is not computed for this task; "
            f"choose one of {sorted(report.metrics)}"
        )
    scored = ScoredModel(
        label=label,
        predictions=predictions,
        metrics=dict(report.metrics),
        slices={
            s.name: float(s.metrics[metric])
            for s in report.slices
            if not s.too_small and metric in s.metrics
        },
        fairness={
            column: {
                "demographic_parity_difference": _float(
                    getattr(result, "demographic_parity_difference", None)
                ),
                "equalized_odds_difference": _float(
                    getattr(result, "equalized_odds_difference", None)
                ),
            }
            for column, result in report.fairness.items()
        },
        latency_p95_ms=single_row_latency_p95_ms(model, holdout) if full else None,
        size_mb=folder_size_mb(model_dir) if full else None,
    )
    return Judged(report, scored)


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def promotion_gate(
    cfg: PipelineConfig,
    metric: str,
    holdout: pd.DataFrame,
    candidate: Judged,
    champion: Judged | None,
    champion_error: str | None = None,
) -> GateResult:
    """The gate's verdict; a champion that exists but could not be scored fails it."""
    result = run_gate(
        cfg.gate,
        cfg.task,
        metric,
        holdout[cfg.data.target].reset_index(drop=True),
        candidate.scored,
        champion.scored if champion else None,
        seed=cfg.data.split.seed,
    )
    if champion_error is not None:
        result.rules.insert(
            0,
            RuleResult(
                "champion scored on this holdout",
                None,
                None,
                False,
                f"the champion could not be scored, so nothing shows the candidate is better: "
                f"{champion_error}",
                kind="champion_scored",
            ),
        )
    return result


@dataclass
class Verdict:
    """A candidate judged against the current champion on one holdout.

    Attributes:
        champion: The version the champion alias pointed at, if any.
        champion_judged: What was measured of it; ``None`` without a champion or on error.
        champion_error: Why an existing champion could not be scored (the gate then fails).
        gate: The gate's verdict.
    """

    champion: ModelVersion | None
    champion_judged: Judged | None
    champion_error: str | None
    gate: GateResult


def judge_against_champion(
    cfg: PipelineConfig,
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    candidate: Judged,
    holdout: pd.DataFrame,
    metric: str,
    workdir: Path,
    trust: Trust | None = None,
) -> Verdict:
    """Score the champion of ``name`` on the candidate's holdout rows, then run the gate.

    A champion that exists but cannot be loaded or scored is reported, not raised: the
    gate then fails with the reason, so a broken champion never blocks the run silently.
    The champion is verified before it loads (``trust``; None: the local defaults, as for
    the candidate in ``ray-mlops promote``, never the version's recorded config, which sits
    in the artifact store a swapper could write): a tampered one fails the gate, and the
    refusal is audited and announced.

    Raises:
        ValueError: the gate's config names a metric this task does not compute.
    """
    from mlflow.exceptions import MlflowException

    champion = champion_version(client, name, cfg.registry.champion_alias)
    judged, error = None, None
    if champion is not None:
        try:
            model, local = load_version(
                tracking_uri,
                name,
                str(champion.version),
                str(workdir / "champion"),
                trust or default_trust(),
            )
            judged = judge(
                cfg, model, local, holdout, metric, f"champion v{champion.version}", full=False
            )
        except (MlflowException, KeyError, ValueError, OSError, SignatureError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    gate = promotion_gate(cfg, metric, holdout, candidate, judged, error)
    return Verdict(champion, judged, error, gate)
