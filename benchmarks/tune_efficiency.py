"""Search efficiency: ray-mlops' Tune search against plain Optuna, on the same problem.

The problem: the bundled UCI Adult data (32,561 rows; 70/15/15 split, seed 0), encoded once
with the quick start's features, an MLP or linear model, validation log loss to minimise.
Two spaces over learning rate, batch size, weight decay, family and, for the MLP, hidden sizes
and dropout (``--space``):

- ``narrow``: ``configs/search.yaml``'s, ranges already known to work; on this data most of
  its configurations end within 1% of the best one, so the first few trials decide;
- ``wide``: the ranges a user sets without knowing the data (learning rate 1e-5 to 1, batch
  64 to 2048, weight decay 1e-6 to 0.3, up to three hidden layers, dropout up to 0.6), where
  many configurations are poor: the case search exists for.

Every method gets the same budget. In the same run, per seed:

(c) plain Optuna TPE (seeded, same start-up trials) in one process, trials one after another,
    each a hand-written torch loop over the same tensors (torch on all CPUs), ``--trials``
    trials of ``--epochs`` epochs: what a user would write instead;
(a) ray-mlops' search (``ray_mlops.search.tuner.run_search``) given (c)'s wall time as its
    time budget and no trial limit (``num_samples: null``), the way a user asks for "the best
    model in this much time": Optuna TPE (seeded) + ASHA, as many 1-CPU trials at once as
    the machine has CPUs, every trial logged to MLflow (SQLite) with a checkpoint per epoch;
(a30) the same search with ``--trials`` trials, against
(b) the same with random search and no early stopping, ``--trials`` trials.

Reported: wall time to reach the target validation loss (the 10th percentile of the best
losses of every full-length trial of (b) and (c), pooled over seeds: a configuration in the
best tenth; the clock starts when the search is called, with Ray already up), the best loss
each reaches in the same time, trial-epochs spent by (a30) against (b), and the per-trial
overhead of near-empty trials (one epoch on 256 rows) against Optuna in-process: the cost
of one more trial (from two runs of 20 and 80 trials) and the search's fixed start-up.

Also reported, to read the time to target by (``landscape`` in the JSON): the share of
random configurations that reach each target when trained to the end (one such trial is
often all plain Optuna needs), the seed noise (the best configuration of (c) trained again
with four torch seeds: a target inside that spread is reached by the luck of an
initialisation, not found by search), easier targets (quantiles 0.25 and 0.5), when (a)
reported its first epoch and when (c) ended its first full-length trial: (a) runs the same
seeded first configurations, so it cannot reach a target before its start-up plus the
epochs that configuration needs.

Goals on a 2-core machine: (a) reaches the target in at most half of (c)'s wall time;
ASHA (a30) spends at most half of (b)'s trial-epochs at equal final quality.

Usage:
    python benchmarks/tune_efficiency.py --quick --out /tmp/tune.json
    python benchmarks/tune_efficiency.py --out benchmarks/results/tune_efficiency-cpu2.json
    python benchmarks/tune_efficiency.py --space wide \
        --out benchmarks/results/tune_efficiency-wide-cpu2.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import emit, header, rounded  # noqa: E402

from ray_mlops.config import PipelineConfig, load_config  # noqa: E402
from ray_mlops.features.fit import fit_feature_state_frame  # noqa: E402
from ray_mlops.features.state import FeatureState  # noqa: E402
from ray_mlops.models.factory import build_model  # noqa: E402
from ray_mlops.models.from_config import make_spec  # noqa: E402
from ray_mlops.models.heads import loss_sum  # noqa: E402
from ray_mlops.search.automl import search_space  # noqa: E402
from ray_mlops.search.space import suggest  # noqa: E402
from ray_mlops.search.trial import SearchInputs, features_key, to_arrays, trial_config  # noqa: E402

CONFIG = ROOT / "configs" / "search.yaml"
# The ranges of a user who does not know the data yet (``--space wide``).
WIDE_SPACE: dict[str, Any] = {
    "train.learning_rate": {"loguniform": [1.0e-5, 1.0]},
    "train.batch_size": {"choice": [64, 128, 256, 512, 1024, 2048]},
    "train.weight_decay": {"loguniform": [1.0e-6, 0.3]},
    "model.type": {
        "choice": ["mlp", "linear"],
        "when": {
            "mlp": {
                "model.hidden_sizes": {
                    "choice": [[32], [64], [128, 64], [256, 128], [512, 256, 128]]
                },
                "model.dropout": {"uniform": [0.0, 0.6]},
            }
        },
    },
}
TARGET_QUANTILE = 0.1
# Easier targets, reported beside the goal's: where the search's start-up stops deciding.
MORE_TARGET_QUANTILES = (0.25, 0.5)
NOISE_SEEDS = 4
A, A30, B, C = (
    "(a) ray-mlops TPE + ASHA, (c)'s wall time as its budget",
    "(a30) ray-mlops TPE + ASHA, the same trial count as (b)",
    "(b) ray-mlops random, no early stopping",
    "(c) plain Optuna TPE, in-process, sequential",
)


def load_problem(args: argparse.Namespace) -> tuple[PipelineConfig, SearchInputs]:
    """The search config and the encoded splits every method trains on."""
    loaded = load_config(CONFIG)
    doc = loaded.pipeline.model_dump(mode="json")
    doc["train"] |= {"epochs": args.epochs, "schedule": {"name": "constant"}}
    doc["search"] |= {
        "num_samples": args.trials,
        "time_budget_s": None,
        "trial_cpus": 1,
        "startup_trials": args.startup_trials,
        "grace_period": 1,
        "reduction_factor": 3,
        "brackets": args.brackets,
    }
    if args.space == "wide":
        doc["search"]["space"] = WIDE_SPACE
    cfg = PipelineConfig.model_validate(doc)
    frame = pd.read_csv(loaded.base_dir / cfg.data.path)
    order = np.random.default_rng(0).permutation(len(frame))
    n_train, n_val = int(0.70 * len(frame)), int(0.15 * len(frame))
    train = frame.iloc[order[:n_train]].reset_index(drop=True)
    validation = frame.iloc[order[n_train : n_train + n_val]].reset_index(drop=True)
    state = fit_feature_state_frame(train, cfg.data, cfg.features, cfg.task)
    arrays = {
        name: to_arrays(rows, state, cfg.data.target)
        for name, rows in (("train", train), ("validation", validation))
    }
    inputs = SearchInputs(
        base_doc=cfg.model_dump(mode="json", exclude={"search"}),
        space=search_space(cfg),
        base_dir=str(loaded.base_dir),
        train=train,
        validation=validation,
        base_features=features_key(cfg.features),
        base_state_json=state.to_json(),
        base_arrays=arrays,
        trial_workers=1,
        trial_cpus=1.0,
        trial_gpus=0.0,
        trainer_storage=tempfile.mkdtemp(prefix="tune-bench-trainers-"),
    )
    return cfg, inputs


def _with_tracking(inputs: SearchInputs, uri: str, name: str) -> SearchInputs:
    """The inputs with a fresh MLflow experiment and search run, as the pipeline makes."""
    from dataclasses import replace

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(name)
    run = client.create_run(experiment, run_name="search")
    return replace(
        inputs, tracking_uri=uri, experiment_id=experiment, search_run_id=run.info.run_id
    )


def ours(
    cfg: PipelineConfig, inputs: SearchInputs, label: str, storage: Path, uri: str, **search: Any
) -> dict[str, Any]:
    """(a) or (b): a real ray-mlops search; every trial result timed as it arrives."""
    from ray import tune

    from ray_mlops.search.tuner import run_search

    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update=search)})
    arrivals: list[tuple[float, float]] = []

    class Clock(tune.Callback):
        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
        ) -> None:
            if "val_loss" in result:
                arrivals.append((time.perf_counter(), float(result["val_loss"])))

    tracked = _with_tracking(inputs, uri, label)
    start = time.perf_counter()
    outcome = run_search(cfg, tracked, storage, label, callbacks=[Clock()])
    wall = time.perf_counter() - start
    board = outcome.leaderboard
    return {
        "wall_s": wall,
        "trials": len(board),
        "trial_epochs": int(board["epochs"].sum()),
        "pruned": int((board["status"] == "pruned").sum()),
        "best_val_loss": float(board["val_loss"].min()),
        "trial_bests": [float(v) for v in board["val_loss"].dropna()],
        "curve": [(t - start, v) for t, v in arrivals],
    }


class PlainLoop:
    """A hand-written torch loop over the encoded tensors: what (c) trains each trial with."""

    def __init__(self, cfg: PipelineConfig, inputs: SearchInputs) -> None:
        self.cfg, self.inputs = cfg, inputs
        self.x_train, self.y_train = (torch.from_numpy(a) for a in inputs.base_arrays["train"])
        self.x_val, self.y_val = (torch.from_numpy(a) for a in inputs.base_arrays["validation"])
        labels = FeatureState.from_json(inputs.base_state_json).labels
        self.n_labels = len(labels) if labels else None

    def train(
        self,
        params: dict[str, Any],
        epochs: int,
        seed: int | None = None,
        on_epoch: Callable[[float], None] | None = None,
    ) -> float:
        """The best validation loss of one configuration; ``seed`` overrides ``train.seed``."""
        trial_cfg = trial_config(self.inputs, params)
        train = trial_cfg.train
        spec = make_spec(
            trial_cfg.model, self.cfg.task, self.x_train.shape[1], self.n_labels, Path(".")
        )
        torch.manual_seed(train.seed if seed is None else seed)
        model = build_model(spec)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay
        )
        best = float("inf")
        for _epoch in range(epochs):
            model.train()
            order = torch.randperm(len(self.y_train))
            for begin in range(0, len(order), train.batch_size):
                rows = order[begin : begin + train.batch_size]
                loss = loss_sum(model(self.x_train[rows]), self.y_train[rows], spec.head)
                optimizer.zero_grad(set_to_none=True)
                (loss / len(rows)).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                val_loss = float(loss_sum(model(self.x_val), self.y_val, spec.head))
            val_loss /= len(self.y_val)
            if on_epoch is not None:
                on_epoch(val_loss)
            best = min(best, val_loss)
        return best


def plain_optuna(
    cfg: PipelineConfig, inputs: SearchInputs, trials: int, epochs: int, seed: int
) -> dict[str, Any]:
    """(c): Optuna TPE in this process, a hand-written torch loop per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 1)
    loop = PlainLoop(cfg, inputs)
    curve: list[tuple[float, float]] = []
    start = time.perf_counter()

    def objective(trial: optuna.trial.Trial) -> float:
        suggest(trial, inputs.space)
        return loop.train(
            trial.params, epochs, on_epoch=lambda v: curve.append((time.perf_counter() - start, v))
        )

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.search.startup_trials)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=trials)
    return {
        "wall_s": time.perf_counter() - start,
        "trials": trials,
        "trial_epochs": len(curve),
        "pruned": 0,
        "best_val_loss": float(study.best_value),
        "best_params": dict(study.best_params),
        "trial_bests": [float(t.value) for t in study.trials if t.value is not None],
        "curve": curve,
    }


def seed_noise(
    cfg: PipelineConfig, inputs: SearchInputs, params: dict[str, Any], epochs: int, seeds: int
) -> dict[str, Any]:
    """The same configuration trained with ``seeds`` different torch seeds.

    How far its best validation loss moves with nothing but the initialisation and the
    batch order changed: a target inside this spread is reached by luck, not by search.
    """
    torch.set_num_threads(os.cpu_count() or 1)
    loop = PlainLoop(cfg, inputs)
    bests = [loop.train(params, epochs, seed=seed) for seed in range(seeds)]
    return {
        "params": params,
        "torch_seeds": seeds,
        "best_val_loss": bests,
        "min": min(bests),
        "max": max(bests),
        "std": float(np.std(bests, ddof=1)),
    }


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until a reported validation loss first reached ``target``."""
    return next((t for t, v in curve if v <= target + 1e-12), None)


def near_empty(
    cfg: PipelineConfig, inputs: SearchInputs, storage: Path, uri: str, trials: int
) -> dict[str, Any]:
    """Per-trial overhead: one epoch on 256 rows, ours (random, no stopping) vs Optuna.

    Ours runs twice, ``trials`` and ``4 * trials`` trials: the difference gives the cost of
    one more trial, apart from the search's fixed start-up (trial processes that import
    Ray Tune, torch and torch._dynamo, which plain Optuna's process has already done).
    """
    from dataclasses import replace

    small = replace(
        inputs,
        base_arrays={k: (x[:256], y[:256]) for k, (x, y) in inputs.base_arrays.items()},
    )
    one_epoch = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})})
    walls = {}
    for count in (trials, 4 * trials):
        walls[count] = ours(
            one_epoch,
            small,
            f"near-empty-{count}",
            storage,
            uri,
            algorithm="random",
            scheduler="none",
            num_samples=count,
        )["wall_s"]
    plain = plain_optuna(one_epoch, small, trials, epochs=1, seed=0)
    marginal = (walls[4 * trials] - walls[trials]) / (3 * trials)
    per_plain = plain["wall_s"] / trials
    return {
        "trials": [trials, 4 * trials],
        "ray_mlops_wall_s": [walls[trials], walls[4 * trials]],
        "ray_mlops_s_per_trial": walls[trials] / trials,
        "ray_mlops_s_per_extra_trial": marginal,
        "ray_mlops_start_up_s": walls[trials] - trials * marginal,
        "optuna_in_process_s_per_trial": per_plain,
        "overhead_s_per_trial": marginal - per_plain,
        "concurrent_trials": int(os.cpu_count() or 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--startup-trials", type=int, default=6)
    parser.add_argument("--empty-trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--space", choices=["narrow", "wide"], default="narrow")
    parser.add_argument("--brackets", type=int, default=1, help="ASHA brackets of (a) and (a30)")
    parser.add_argument("--quick", action="store_true", help="8 trials of 4 epochs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.startup_trials, args.empty_trials = 8, 4, 3, 6
        args.seeds = [0]

    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    cfg, inputs = load_problem(args)
    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    storage = work / "ray_results"
    runs: dict[str, list[dict[str, Any]]] = {C: [], A: [], A30: [], B: []}
    for seed in args.seeds:
        seeded = cfg.model_copy(update={"search": cfg.search.model_copy(update={"seed": seed})})
        runs[C].append(plain_optuna(seeded, inputs, args.trials, args.epochs, seed=seed))
        runs[A].append(
            ours(
                seeded,
                inputs,
                f"tpe-asha-timed-{seed}",
                storage,
                uri,
                algorithm="tpe",
                scheduler="asha",
                num_samples=None,
                time_budget_s=runs[C][-1]["wall_s"],
            )
        )
        runs[A30].append(
            ours(
                seeded, inputs, f"tpe-asha-{seed}", storage, uri, algorithm="tpe", scheduler="asha"
            )
        )
        runs[B].append(
            ours(
                seeded, inputs, f"random-{seed}", storage, uri, algorithm="random", scheduler="none"
            )
        )
    overhead = near_empty(cfg, inputs, storage, uri, args.empty_trials)
    ray.shutdown()
    best_of_c = min(runs[C], key=lambda case: case["best_val_loss"])["best_params"]
    noise = seed_noise(cfg, inputs, best_of_c, args.epochs, NOISE_SEEDS)
    write(args, runs, overhead, ray_start, noise)


def write(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, Any]]],
    overhead: dict[str, Any],
    ray_start: float,
    noise: dict[str, Any],
) -> None:
    # The target is what a good configuration reaches when trained to the full budget: the
    # best tenth of the best losses of every full-length trial ((b) and (c), all seeds). On
    # this data most configurations come close, so "the worst method's best" would be met
    # by almost any first trial; ASHA's stopped trials are left out, so that how many of
    # them a method runs does not move the target.
    pooled = [v for name in (B, C) for case in runs[name] for v in case["trial_bests"]]
    landscape = _landscape(runs, pooled, noise)
    target = landscape["targets"][str(TARGET_QUANTILE)]["val_loss"]
    for name, seeds in runs.items():
        for case in seeds:
            case.pop("trial_bests")
            curve = case.pop("curve")
            if name == C:
                # When (c)'s first full-length trial ended: (a) runs that configuration
                # too, on one CPU, after its start-up; it cannot finish it sooner.
                case["first_trial_s"] = curve[args.epochs - 1][0]
            case["time_to_target_s"] = time_to(curve, target)
            case["first_result_s"] = curve[0][0] if curve else None
            case["time_to_easier_targets_s"] = {
                str(q): time_to(curve, landscape["targets"][str(q)]["val_loss"])
                for q in MORE_TARGET_QUANTILES
            }
    summary = {name: _summarise(cases) for name, cases in runs.items()}
    results = compare(summary, target, overhead) + _easier_targets(runs, landscape)
    cases = {name: {"summary": summary[name], "seeds": runs[name]} for name in runs}
    document = {
        **header("tune_efficiency", "torch", "ray", "optuna", "ray_mlops"),
        "quick": args.quick,
        "setup": {
            "data": "UCI Adult, 32,561 rows, 70/15/15 split, quick start features",
            "space": "configs/search.yaml" if args.space == "narrow" else WIDE_SPACE,
            "trials": args.trials,
            "max_epochs": args.epochs,
            "tpe_startup_trials": args.startup_trials,
            "seeds": args.seeds,
            "asha": f"grace 1, reduction factor 3, {args.brackets} bracket(s), on epochs",
            "ray_init_s": ray_start,
            "target": (
                f"quantile {TARGET_QUANTILE} of the best val_loss of every trial of (b) and (c)"
            ),
            "budget_of_a": "(c)'s wall time for the same seed, no trial limit",
        },
        "results": results,
        "landscape": landscape,
        "cases": cases,
    }
    emit(rounded(document), args.out)


def compare(
    summary: dict[str, dict[str, Any]], target: float, overhead: dict[str, Any]
) -> list[dict[str, Any]]:
    """The result rows (the shape of ../shared/DESIGN.md): candidate against baseline."""
    a, a30, b, c = summary[A], summary[A30], summary[B], summary[C]

    def row(case: str, metric: str, base: str, cand: str, key: str, **extra: Any) -> dict[str, Any]:
        base_value, cand_value = summary[base][key], summary[cand][key]
        return {
            "case": case,
            "metric": metric,
            "higher_is_better": False,
            "baseline": {"name": base, "value": base_value},
            "candidate": {"name": cand, "value": cand_value},
            "ratio": _ratio(cand_value, base_value),
            **extra,
        }

    return [
        row(
            f"wall time to a val_loss of {target:.4f} (best tenth of full-length trials), "
            "median of seeds",
            "seconds",
            C,
            A,
            "median_time_to_target_s",
            goal=0.5,
        ),
        row(
            f"trial-epochs for {a30['median_trials']} trials, all seeds",
            "trial-epochs",
            B,
            A30,
            "trial_epochs",
            goal=0.5,
            best_val_loss={
                "baseline": b["median_best_val_loss"],
                "candidate": a30["median_best_val_loss"],
            },
        ),
        row(
            "best val_loss in the same wall time, median of seeds",
            "val_loss",
            C,
            A,
            "median_best_val_loss",
            trials={"baseline": c["median_trials"], "candidate": a["median_trials"]},
        ),
        row(
            f"wall time of {a30['median_trials']} trials, median of seeds",
            "seconds",
            C,
            A30,
            "median_wall_s",
        ),
        {
            "case": "near-empty trials (1 epoch of 256 rows): the cost of one more trial",
            "metric": "seconds per trial",
            "higher_is_better": False,
            "baseline": {
                "name": "plain Optuna in one process",
                "value": overhead["optuna_in_process_s_per_trial"],
            },
            "candidate": {
                "name": "ray-mlops (2 trials at once)",
                "value": overhead["ray_mlops_s_per_extra_trial"],
            },
            "ratio": overhead["ray_mlops_s_per_extra_trial"]
            / overhead["optuna_in_process_s_per_trial"],
            "overhead_s_per_trial": overhead["overhead_s_per_trial"],
            "start_up_s": overhead["ray_mlops_start_up_s"],
            "s_per_trial_of_the_first_run": overhead["ray_mlops_s_per_trial"],
        },
        {
            "case": "best val_loss, median of seeds",
            "metric": "val_loss",
            **{
                k: v["median_best_val_loss"]
                for k, v in (("a", a), ("a30", a30), ("b", b), ("c", c))
            },
        },
    ]


def _landscape(
    runs: dict[str, list[dict[str, Any]]],
    pooled: list[float],
    noise: dict[str, Any],
) -> dict[str, Any]:
    """How hard the targets are: what one random full-length trial reaches, the seed noise."""
    random_bests = [v for case in runs[B] for v in case["trial_bests"]]
    targets = {}
    for q in (TARGET_QUANTILE, *MORE_TARGET_QUANTILES):
        value = float(np.quantile(pooled, q))
        targets[str(q)] = {
            "val_loss": value,
            # The chance that one random configuration, trained to the end, reaches it.
            "share_of_random_full_trials_reaching_it": float(
                np.mean([v <= value + 1e-12 for v in random_bests])
            ),
        }
    target = targets[str(TARGET_QUANTILE)]["val_loss"]
    return {
        "targets": targets,
        "seed_noise_of_the_best_configuration_of_c": noise,
        "goal_target_inside_seed_noise": noise["min"] <= target <= noise["max"],
    }


def _easier_targets(
    runs: dict[str, list[dict[str, Any]]], landscape: dict[str, Any]
) -> list[dict[str, Any]]:
    """Result rows for the easier targets: median time to each, (a) against (c)."""
    rows = []
    for q in MORE_TARGET_QUANTILES:
        medians = {
            name: _median_time([case["time_to_easier_targets_s"][str(q)] for case in runs[name]])
            for name in (A, C)
        }
        value = landscape["targets"][str(q)]["val_loss"]
        rows.append(
            {
                "case": f"wall time to a val_loss of {value:.4f} (quantile {q} of full-length "
                "trials), median of seeds",
                "metric": "seconds",
                "higher_is_better": False,
                "baseline": {"name": C, "value": medians[C]},
                "candidate": {"name": A, "value": medians[A]},
                "ratio": _ratio(medians[A], medians[C]),
            }
        )
    return rows


def _summarise(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds (a seed that never reached the target counts as the slowest)."""
    times = [c["time_to_target_s"] for c in cases]
    return {
        "median_time_to_target_s": _median_time(times),
        "seeds_reaching_target": sum(t is not None for t in times),
        "median_wall_s": float(np.median([c["wall_s"] for c in cases])),
        "median_trials": int(np.median([c["trials"] for c in cases])),
        "trial_epochs": int(sum(c["trial_epochs"] for c in cases)),
        "median_best_val_loss": float(np.median([c["best_val_loss"] for c in cases])),
        "median_first_result_s": _median_of_known([c["first_result_s"] for c in cases]),
    }


def _median_time(times: list[float | None]) -> float | None:
    """The median time to a target; a seed that never reached it (None) counts as slowest."""
    middle = float(np.median([math.inf if t is None else t for t in times]))
    return middle if math.isfinite(middle) else None


def _median_of_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    """``mine / theirs``; None when either side never reached the target."""
    return None if mine is None or theirs is None else mine / theirs


if __name__ == "__main__":
    main()
