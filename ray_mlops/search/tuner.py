"""The search stage: Ray Tune trials of the project's training loop, Optuna TPE, ASHA.

``Tuner`` runs the trial function (:func:`ray_mlops.search.trial.run_trial`, the Ray 2.60
pattern; ``Tuner(trainer)`` is deprecated) with ``OptunaSearch`` (TPE, seeded, define-by-run
over the YAML space) and ASHA, HyperBand or no scheduler. Every epoch is a Tune iteration,
so the scheduler stops weak trials between epochs. Tune's experiment state (the Optuna study
inside the searcher's state included) is written under ``storage_path/name``; an
interrupted search continues from it with ``Tuner.restore`` without repeating finished trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from ray_mlops.config import SELECTION_METRICS, Dimension, PipelineConfig
from ray_mlops.search.pruning import was_pruned
from ray_mlops.search.space import suggest, trial_values
from ray_mlops.search.trial import SearchInputs, run_trial
from ray_mlops.settings_env import apply_tune
from ray_mlops.storage import join, location_of, ray_storage, scheme_of
from ray_mlops.train.trainer import is_finite_number

if TYPE_CHECKING:
    import ray.tune

# A trial whose last epoch is below the budget and that did not stop itself was pruned.
COMPLETED, PRUNED, STOPPED_EARLY, FAILED = "completed", "pruned", "stopped early", "failed"
# The metric under which ray.tune.integration.ray_train.TuneReportCallback passes checkpoints.
CHECKPOINT_PATH = "checkpoint_path"


@dataclass
class SearchOutcome:
    """What a search found."""

    leaderboard: pd.DataFrame
    best_params: dict[str, Any]
    best_metrics: dict[str, float]
    best_checkpoint: str
    best_trial_id: str
    trial_epochs: int
    experiment_path: str
    metric: str
    mode: str


def search_metric(cfg: PipelineConfig) -> tuple[str, str]:
    """The metric trials are ranked by and whether lower or higher is better."""
    metric = cfg.search.metric or cfg.train.selection_metric
    return metric, SELECTION_METRICS[cfg.task][metric]


def max_concurrent_trials(cfg: PipelineConfig) -> int:
    """Trials at once: the cluster's CPUs (and GPUs) over one trial's, unless configured."""
    import ray

    search = cfg.search
    if search.max_concurrent:
        return search.max_concurrent
    total = ray.cluster_resources()
    fits = [total.get("CPU", 1.0) / (search.trial_cpus * search.trial_workers)]
    if search.trial_gpus:
        fits.append(total.get("GPU", 0.0) / (search.trial_gpus * search.trial_workers))
    return max(1, math.floor(min(fits) + 1e-9))


def trial_resources(cfg: PipelineConfig) -> dict[str, float]:
    """What Tune reserves for one trial's process.

    A single-worker trial trains in it. A multi-worker trial only drives its
    ``TorchTrainer``, whose workers reserve their own CPUs and GPUs.
    """
    search = cfg.search
    if search.trial_workers > 1:
        # Tune needs some resource in a trial's bundle; the driver only waits on fit().
        return {"cpu": 0.01}
    return {"cpu": search.trial_cpus, "gpu": search.trial_gpus}


def _scheduler(cfg: PipelineConfig) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

    search = cfg.search
    if search.scheduler == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=cfg.train.epochs,
            grace_period=min(search.grace_period, cfg.train.epochs),
            reduction_factor=search.reduction_factor,
            brackets=search.brackets,
        )
    if search.scheduler == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration",
            max_t=cfg.train.epochs,
            reduction_factor=search.reduction_factor,
        )
    return FIFOScheduler()


def _searcher(cfg: PipelineConfig, space: dict[str, Dimension]) -> Any:
    """Optuna's sampler over the space; Tune caps it at ``max_concurrent_trials`` itself."""
    import optuna

    from ray_mlops.search.searcher import PruningAwareOptunaSearch

    if cfg.search.algorithm == "random":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=cfg.search.seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=cfg.search.seed, n_startup_trials=cfg.search.startup_trials
        )
    metric, mode = search_metric(cfg)
    return PruningAwareOptunaSearch(
        space=partial(suggest, space=space),
        metric=metric,
        mode=mode,
        sampler=sampler,
        max_epochs=cfg.train.epochs,
    )


def run_search(
    cfg: PipelineConfig,
    inputs: SearchInputs,
    storage_path: str,
    name: str,
    resume: bool = False,
    callbacks: list[ray.tune.Callback] | None = None,
) -> SearchOutcome:
    """Run (or continue) the search; return the leaderboard and the best trial.

    ``callbacks`` (Tune callbacks) see every trial result as it arrives, e.g. to time them.
    With a tracking URI in ``inputs``, every trial is also logged as a nested MLflow run.

    Raises:
        RuntimeError: no trial reported a result.
    """
    from ray import tune

    metric, mode = search_metric(cfg)
    search = cfg.search
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from ray_mlops.search.checkpoints import CheckpointPruner

    # Tune's result files (the leaderboard and --resume read them), without its TensorBoard
    # event files; its experiment state written every few seconds at most.
    apply_tune()
    callbacks = [
        *(callbacks or []),
        JsonLoggerCallback(),
        CSVLoggerCallback(),
        CheckpointPruner(),
    ]
    if inputs.tracking_uri and inputs.experiment_id and inputs.search_run_id:
        from ray_mlops.search.trial_runs import TrialRuns

        callbacks.append(
            TrialRuns(inputs.tracking_uri, inputs.experiment_id, inputs.search_run_id, inputs.space)
        )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, inputs=inputs), trial_resources(cfg)
    )
    path = join(storage_path, name)
    ray_path, filesystem = ray_storage(storage_path)
    if resume and tune.Tuner.can_restore(join(ray_path, name), storage_filesystem=filesystem):
        tuner = tune.Tuner.restore(
            join(ray_path, name),
            storage_filesystem=filesystem,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=metric,
                mode=mode,
                search_alg=_searcher(cfg, inputs.space),
                scheduler=_scheduler(cfg),
                num_samples=search.num_samples or -1,  # -1: until the time budget
                time_budget_s=search.time_budget_s,
                max_concurrent_trials=max_concurrent_trials(cfg),
                # A new actor per trial costs seconds (process start, torch import, the
                # inputs' copy); a reused one keeps its encodings cache warm too.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=ray_path,
                storage_filesystem=filesystem,
                # Every checkpoint stays until its trial has ended (CheckpointPruner).
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=None,
                    checkpoint_score_attribute=metric,
                    checkpoint_score_order=mode,
                ),
                verbose=0,
                callbacks=callbacks,
            ),
        )
    grid = tuner.fit()
    return _outcome(grid, cfg, inputs.space, metric, mode, str(path))


def _outcome(
    grid: ray.tune.ResultGrid,
    cfg: PipelineConfig,
    space: dict[str, Dimension],
    metric: str,
    mode: str,
    path: str,
) -> SearchOutcome:
    leaderboard = build_leaderboard(grid, cfg, space, metric, mode)
    scored = leaderboard[leaderboard[metric].notna()]
    if scored.empty:
        errors = [str(r.error)[:300] for r in _results(grid) if r.error is not None]
        raise RuntimeError(
            "the search finished without any trial reporting "
            f"{metric}" + (f"; first error: {errors[0]}" if errors else "")
        )
    best_row = scored.iloc[0]
    best = next(
        r for r in _results(grid) if r.metrics and r.metrics.get("trial_id") == best_row["trial_id"]
    )
    history = best.metrics_dataframe
    if history is None or metric not in history:
        raise RuntimeError(f"the best trial {best_row['trial_id']} has no {metric} history")
    sign = 1 if mode == "min" else -1
    best_epoch = history.loc[(sign * history[metric]).idxmin()]
    checkpoint = best.get_best_checkpoint(metric, mode) if best.best_checkpoints else None
    # Multi-worker trials keep their checkpoints in their Ray Train run; Tune gets the path.
    if checkpoint is not None:
        path_of_best: object = location_of(checkpoint.filesystem, checkpoint.path)
    else:  # Ray Train's path, without the object store's scheme (bucket/key)
        path_of_best = best_epoch.get(CHECKPOINT_PATH)
        scheme = scheme_of(path)
        if scheme and isinstance(path_of_best, str) and "://" not in path_of_best:
            path_of_best = f"{scheme}://{path_of_best.lstrip('/')}"
    if not isinstance(path_of_best, str) or not path_of_best:
        raise RuntimeError(f"the best trial {best_row['trial_id']} kept no checkpoint")
    return SearchOutcome(
        leaderboard=leaderboard,
        best_params=trial_values(space, best.config),
        best_metrics={k: float(v) for k, v in best_epoch.items() if is_finite_number(v)},
        best_checkpoint=path_of_best,
        best_trial_id=str(best_row["trial_id"]),
        trial_epochs=int(leaderboard["epochs"].sum()),
        experiment_path=path,
        metric=metric,
        mode=mode,
    )


def build_leaderboard(
    grid: ray.tune.ResultGrid,
    cfg: PipelineConfig,
    space: dict[str, Dimension],
    metric: str,
    mode: str,
) -> pd.DataFrame:
    """One row per trial, best first: its best metric, epochs, status, seconds and values."""
    rows = []
    for order, result in enumerate(_results(grid)):
        history = result.metrics_dataframe
        last = result.metrics or {}
        epochs = int(last.get("training_iteration", 0) or 0)
        best_value = float("nan")
        if history is not None and metric in history:
            values = history[metric].dropna()
            if len(values):
                best_value = float(values.min() if mode == "min" else values.max())
        if result.error is not None:
            status = FAILED
        elif was_pruned(last, cfg.train.epochs):
            status = PRUNED
        elif last.get("stopped_early"):
            status = STOPPED_EARLY
        else:
            status = COMPLETED
        rows.append(
            {
                "trial_id": last.get("trial_id") or f"trial-{order}",
                "started": float(last.get("timestamp", 0) or 0)
                - float(last.get("time_total_s", 0) or 0),
                metric: best_value,
                "epochs": epochs,
                "status": status,
                "seconds": round(float(last.get("time_total_s", 0.0) or 0.0), 2),
                **{f"param:{k}": v for k, v in trial_values(space, result.config).items()},
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["trial_id", metric, "epochs", "status", "seconds"])
    # Trial number by start time: the order Optuna proposed them.
    frame = frame.sort_values("started", kind="stable").reset_index(drop=True)
    frame.insert(0, "trial", range(1, len(frame) + 1))
    frame = frame.drop(columns=["started"])
    ranked = frame.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")
    return ranked.reset_index(drop=True)


def _results(grid: ray.tune.ResultGrid) -> list[ray.tune.Result]:
    return [grid[i] for i in range(len(grid))]
