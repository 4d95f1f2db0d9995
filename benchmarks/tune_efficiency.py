"""Search efficiency: ray-mlops' search against Optuna with a pruner and the same parallelism.

The problem: the bundled UCI Adult data (32,561 rows; 70/15/15 split, seed 0), encoded once
with the quick start's features, an MLP or linear model, validation log loss to minimise,
over the "wide" space a user sets without knowing the data (learning rate 1e-5 to 1, batch
64 to 2048, weight decay 1e-6 to 0.3, MLP or linear, up to three hidden layers, dropout up
to 0.6): many configurations are poor, the case search exists for.

Per seed (``--seeds``, at least 10 for the goal), each side in a fresh process of its own,
the order rotated from one seed to the next, every side ``--trials`` trials of at most
``--epochs`` epochs:

(ours) ray-mlops' search (``ray_mlops.search.tuner.run_search``): Optuna TPE (seeded) + ASHA
    (grace 1, reduction factor 3), ``--workers`` 1-CPU trials at once, every trial logged to
    MLflow (SQLite) with a checkpoint per epoch; its clock counts the process start, its
    imports and ``ray.init`` (reported apart too);
(b) ``baselines/tune_optuna_pruned.py``: Optuna TPE (constant liar) with
    ``SuccessiveHalvingPruner`` (min resource 1, reduction factor 3) in ``--workers``
    processes sharing a ``JournalStorage``, one torch thread each, a hand-written torch loop;
    its clock counts the process start and the workers' spawn;
(c) ray-mlops' search with random sampling and no early stopping (the trial-epochs ASHA
    saves);
(a) ``baselines/tune_optuna.py``: plain sequential Optuna TPE in one process, torch on its
    default threads, no pruner (for the record, and for the 16-CPU goal).

The clock of every side starts when the driver spawns its process; each epoch's validation
loss is timed as the search (Tune's driver, or the Optuna worker) sees it. The target is a
validation loss a good configuration reaches: quantile ``TARGET_QUANTILE`` of the best losses
of every full-length trial of (a) and (c), pooled over all seeds (ASHA's and the pruner's
stopped trials left out, so how many trials a side stops does not move it). Reported per
seed and as the median of per-seed ratios beside the ratio of medians, with min-max; also at
easier targets (``EASIER_QUANTILES``), and where the time goes: each side's start-up (imports,
``ray.init``, the search's call, its first epoch) and pace (epochs a second once running,
epochs spent before reaching the target).

Also: the per-trial overhead of cheap trials (a trivial trainable, one report and a tiny
checkpoint, through ray-mlops' search machinery, against the same trivial objective in (b)'s
processes and in plain Optuna): wall seconds per trial between a search's first and last
result (its fixed start-up apart), ``--overhead-repeats`` interleaved repetitions; and a
same-work check: the baseline's loop trains ray-mlops' best configuration of (c) to the same
validation loss (within its spread over torch seeds, plus 1%), and every baseline trial's
parameters lie in the same space.

Goals (2 CPUs): time to target at most 1.0x (b)'s (median of per-seed ratios, >= 10 seeds);
ASHA at most 0.5x (c)'s trial-epochs at equal best val_loss; per-trial overhead under 0.1 s.
On a 16-CPU node (``--workers 16``): time to target at most 0.5x (a)'s.

Every side's answer is saved as it comes (``--raw``); ``--report-from RAW`` writes the document
again from them. ``--budget-s`` starts no seed that would end past it (``--min-seeds`` first).

Usage:
    python benchmarks/tune_efficiency.py --quick --out /tmp/tune.json
    python benchmarks/tune_efficiency.py --budget-s 1560 --raw /tmp/tune-raw.json \
        --out benchmarks/results/tune_efficiency-cpu2.json
    python benchmarks/tune_efficiency.py --workers 16 --out benchmarks/results/tune_efficiency-cpu16.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _proc import python, run_side  # noqa: E402
from _report import emit, goal, header, rounded, summary  # noqa: E402

if TYPE_CHECKING:
    from ray_mlops.config import PipelineConfig
    from ray_mlops.search.trial import SearchInputs

CONFIG = ROOT / "configs" / "search.yaml"
BASELINES = ROOT / "benchmarks" / "baselines"
# The ranges of a user who does not know the data yet (``baselines/tune_optuna.py``'s too).
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
# Easier targets, reported beside the goal's: below them the start-up decides, not the search.
EASIER_QUANTILES = (0.25, 0.5)
SAME_LOSS_TOLERANCE = 0.01  # relative, beyond the baseline's own spread over torch seeds
SAME_LOSS_SEEDS = 3
OURS, PRUNED, RANDOM, SEQUENTIAL = "ours", "pruned", "random", "sequential"
NAMES = {
    OURS: "ray-mlops TPE + ASHA (Ray Tune), ray.init counted",
    PRUNED: "Optuna TPE + SuccessiveHalvingPruner, worker processes on a JournalStorage",
    RANDOM: "ray-mlops random search, no early stopping",
    SEQUENTIAL: "plain Optuna TPE, one process, trials one after another, no pruner",
}
SIDE_TIMEOUT_S = 900.0


# --- the problem (ray-mlops encodes it once; the baselines read the arrays) ----------------


def load_problem(args: argparse.Namespace) -> tuple[PipelineConfig, SearchInputs]:
    """The search config and the encoded splits every method trains on.

    ``args`` has ``trials``, ``epochs``, ``startup_trials``, ``brackets`` and ``space``
    ("wide", or "narrow": ``configs/search.yaml``'s own); ``trial_startup.py`` and
    ``trial_parallelism.py`` use it too.
    """
    import pandas as pd

    from ray_mlops.config import PipelineConfig, load_config
    from ray_mlops.features.fit import fit_feature_state_frame
    from ray_mlops.search.automl import search_space
    from ray_mlops.search.trial import SearchInputs, features_key, to_arrays

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


class PlainLoop:
    """A hand-written torch loop over ray-mlops' encoded tensors (``trial_parallelism.py``)."""

    def __init__(self, cfg: PipelineConfig, inputs: SearchInputs) -> None:
        import torch

        from ray_mlops.features.state import FeatureState

        self.cfg, self.inputs = cfg, inputs
        self.x_train, self.y_train = (torch.from_numpy(a) for a in inputs.base_arrays["train"])
        self.x_val, self.y_val = (torch.from_numpy(a) for a in inputs.base_arrays["validation"])
        labels = FeatureState.from_json(inputs.base_state_json).labels
        self.n_labels = len(labels) if labels else None

    def train(self, params: dict[str, Any], epochs: int, seed: int | None = None) -> float:
        """The best validation loss of one configuration; ``seed`` overrides ``train.seed``."""
        import torch

        from ray_mlops.models.factory import build_model
        from ray_mlops.models.from_config import make_spec
        from ray_mlops.models.heads import loss_sum
        from ray_mlops.search.trial import trial_config

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
            best = min(best, val_loss / len(self.y_val))
        return best


def write_problem(cfg: PipelineConfig, inputs: SearchInputs, folder: Path) -> tuple[Path, Path]:
    """The problem as the sides read it: a pickle for ray-mlops, arrays for the baselines."""
    problem = folder / "problem.pkl"
    problem.write_bytes(pickle.dumps((cfg, inputs)))
    (x_train, y_train), (x_val, y_val) = (inputs.base_arrays[k] for k in ("train", "validation"))
    data = folder / "problem.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    return problem, data


# --- ray-mlops' side, in a process of its own ------------------------------------------------


def trivial_trial(params: dict[str, Any], inputs: Any) -> None:
    """A trial with nothing to train: one report and a tiny checkpoint (per-trial overhead)."""
    from ray import tune

    value = abs(math.log10(float(params["train.learning_rate"])) + 2.5)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "model.pt").write_bytes(b"0")
        tune.report(
            {"epoch": 0, "val_loss": value, "stopped_early": 0.0},
            checkpoint=tune.Checkpoint.from_directory(folder),
        )


def search_side(args: argparse.Namespace) -> dict[str, Any]:
    """One ray-mlops search (``--trivial``: of trials with nothing to train), timed in here."""
    imported = time.time()
    import ray
    from ray import tune

    from ray_mlops.search import tuner

    ray_at = time.time()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    ray_ready = time.time()
    cfg, inputs = pickle.loads(Path(args.problem).read_bytes())
    search = {
        "seed": args.seed,
        "algorithm": args.algorithm,
        "scheduler": args.scheduler,
        "num_samples": args.trials,
        "max_concurrent": args.workers,
    }
    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update=search)})
    log: list[list[Any]] = []

    class Clock(tune.Callback):
        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
        ) -> None:
            if "val_loss" in result:
                log.append(
                    [time.time(), str(trial.trial_id), int(result["epoch"]), result["val_loss"]]
                )

    storage = str(Path(args.problem).parent / "ray_results")
    label = f"{args.algorithm}-{args.scheduler}-{args.seed}-{os.getpid()}"
    answer: dict[str, Any] = {
        "side": f"ray-mlops {args.algorithm} {args.scheduler}",
        "imported_at": imported,
        "ray_init_at": ray_at,
        "ray_ready_at": ray_ready,
    }
    if args.trivial:  # per-trial overhead: trials with nothing to train, one epoch each
        tuner.run_trial = trivial_trial  # type: ignore[assignment]
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})})
    tracking_at = time.time()
    tracked = _with_tracking(inputs, args.tracking, label)
    search_at = time.time()
    outcome = tuner.run_search(cfg, tracked, storage, label, callbacks=[Clock()])
    board = outcome.leaderboard
    answer |= {
        "tracking_at": tracking_at,
        "search_at": search_at,
        "ended_at": time.time(),
        "best_val_loss": float(board["val_loss"].min()),
        "log": log,
        "trials": [
            {
                "number": int(row["trial"]) - 1,
                "params": {
                    k.removeprefix("param:"): _plain(v)
                    for k, v in row.items()
                    if k.startswith("param:") and not _missing(v)
                },
                "state": str(row["status"]),
                "epochs": int(row["epochs"]),
                "best": None if _missing(row["val_loss"]) else float(row["val_loss"]),
            }
            for _, row in board.iterrows()
        ],
    }
    ray.shutdown()
    return answer


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON takes."""
    return value.item() if isinstance(value, np.generic) else value


# --- the statistics (Ray-free: tests/unit/test_tune_baselines.py) ----------------------------


def time_to(log: Sequence[Sequence[Any]], target: float, start: float) -> float | None:
    """Seconds from ``start`` until an epoch's val_loss (last column) first reached ``target``.

    ``log`` rows are ``[unix time, trial, epoch, val_loss]``, in any order.
    """
    reached = [row[0] for row in log if row[-1] <= target + 1e-12]
    return min(reached) - start if reached else None


def full_length_bests(trials: Sequence[dict[str, Any]], epochs: int) -> list[float]:
    """The best losses of the trials that ran every epoch (stopped ones left out)."""
    return [t["best"] for t in trials if t["epochs"] >= epochs and t["best"] is not None]


def pooled_target(bests: Sequence[float], quantile: float = TARGET_QUANTILE) -> float:
    """The target val_loss: the ``quantile`` of the pooled full-length trial bests."""
    return float(np.quantile(np.asarray(bests, dtype=float), quantile))


def per_seed(ours: Sequence[float | None], baseline: Sequence[float | None]) -> dict[str, Any]:
    """Paired per-seed times (None: target never reached) against a baseline's.

    A seed where one side never reached the target counts as infinitely slow for that side
    (ratio ``inf`` or ``0``, shown as None and 0.0); a seed neither reached is left out of
    the ratios. Medians keep unreached seeds as the slowest; a median that lands on one is
    None.
    """

    def median(values: Sequence[float | None]) -> float | None:
        known = [math.inf if v is None else v for v in values]
        middle = statistics.median(known) if known else math.inf
        return middle if math.isfinite(middle) else None

    ratios: list[float] = []
    for mine, theirs in zip(ours, baseline, strict=True):
        if mine is None and theirs is None:
            continue
        if mine is None:
            ratios.append(math.inf)
        elif theirs is None:
            ratios.append(0.0)
        else:
            ratios.append(mine / theirs)
    both = [r for r in ratios if 0 < r < math.inf]
    ours_median, base_median = median(ours), median(baseline)
    paired = statistics.median(ratios) if ratios else None

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        "ours": summary([v for v in ours if v is not None]) | {"median": ours_median},
        "baseline": summary([v for v in baseline if v is not None]) | {"median": base_median},
        "seeds": len(ours),
        "seeds_ours_reached": sum(v is not None for v in ours),
        "seeds_baseline_reached": sum(v is not None for v in baseline),
        "median_of_per_seed_ratios": finite(paired),
        "ratio_of_medians": (
            ours_median / base_median if ours_median is not None and base_median else None
        ),
        "per_seed_ratios": [finite(r) for r in ratios],
        "per_seed_ratio_min": finite(min(ratios)) if ratios else None,
        "per_seed_ratio_max": finite(max(ratios)) if ratios else None,
        "both_reached_ratio_range": [min(both), max(both)] if both else None,
        "seeds_ours_faster": sum(r < 1 for r in ratios),
    }


def in_space(params: dict[str, Any], space: dict[str, Any]) -> bool:
    """Whether ``params`` (config path -> value) is a point of ``space`` (``WIDE_SPACE``'s form).

    Names must be exactly those the chosen branches suggest; lists may come as JSON text.
    """
    expected: set[str] = set()

    def walk(dims: dict[str, Any]) -> bool:
        for path, dim in dims.items():
            expected.add(path)
            if path not in params:
                return False
            value = params[path]
            if "choice" in dim:
                if isinstance(value, str) and value.startswith("["):
                    value = json.loads(value)
                if value not in dim["choice"]:
                    return False
                branch = dim.get("when", {}).get(
                    value if isinstance(value, str) else json.dumps(value)
                )
                if branch and not walk(branch):
                    return False
            else:
                low, high = dim.get("uniform") or dim.get("loguniform")
                if not low <= float(value) <= high:
                    return False
        return True

    return walk(space) and set(params) == expected


def steady_per_trial(log: Sequence[Sequence[Any]]) -> float:
    """Wall seconds per trial once trials flow: between the first and the last result.

    Trivial trials report once each, so this leaves out the fixed start-up (processes,
    imports, ``ray.init``) and counts everything a further trial costs, with the search's
    workers running trials side by side.
    """
    times = sorted(row[0] for row in log)
    return (times[-1] - times[0]) / (len(times) - 1)


def same_loss_check(params: dict[str, Any], ours: float, theirs: Sequence[float]) -> dict[str, Any]:
    """Whether ray-mlops' loss for ``params`` lies in the baseline's spread over torch seeds."""
    low, high = min(theirs), max(theirs)
    return {
        "params": params,
        "ray_mlops_best_val_loss": ours,
        "baseline_loop_best_val_loss_per_torch_seed": list(theirs),
        "tolerance": SAME_LOSS_TOLERANCE,
        "within_spread": low * (1 - SAME_LOSS_TOLERANCE)
        <= ours
        <= high * (1 + SAME_LOSS_TOLERANCE),
    }


# --- the driver ------------------------------------------------------------------------------


class Driver:
    """Runs every side in its own process, in the order given, and keeps what it answered."""

    def __init__(self, args: argparse.Namespace, problem: Path, data: Path, tracking: str) -> None:
        self.args, self.problem, self.data, self.tracking = args, problem, data, tracking

    def argv(self, side: str, seed: int) -> list[str]:
        a = self.args
        common = ["--trials", str(a.trials), "--epochs", str(a.epochs), "--seed", str(seed)]
        common += ["--startup-trials", str(a.startup_trials)]
        if side in (OURS, RANDOM):
            algorithm, scheduler = ("tpe", "asha") if side == OURS else ("random", "none")
            return python(
                str(Path(__file__).resolve()), "--side", "search", "--problem", str(self.problem),
                "--tracking", self.tracking, "--workers", str(a.workers), "--algorithm",
                algorithm, "--scheduler", scheduler, *common,
            )  # fmt: skip
        if side == PRUNED:
            return python(
                str(BASELINES / "tune_optuna_pruned.py"), "--data", str(self.data),
                "--workers", str(a.workers), *common,
            )  # fmt: skip
        return python(str(BASELINES / "tune_optuna.py"), "--data", str(self.data), *common)

    def run(self, argv: list[str], label: str) -> dict[str, Any]:
        spawned = time.time()
        result = run_side(argv, timeout_s=SIDE_TIMEOUT_S)
        if not result.ok or not result.answer:
            raise RuntimeError(f"{label} failed ({result.returncode}): {result.stderr_tail}")
        answer = result.answer | {"spawned_at": spawned, "process_wall_s": result.wall_s}
        print(f"  {label}: {result.wall_s:.1f} s", file=sys.stderr, flush=True)
        return answer

    def seeds(self, save: Callable[[dict[str, Any]], None]) -> dict[str, list[dict[str, Any]]]:
        """Every side once per seed, the order rotated per seed.

        With ``--budget-s``, no further seed starts once the slowest seed so far would end
        past the budget (less ``--reserve-s`` for the rest), but never before
        ``--min-seeds``; ``args.seeds`` keeps the seeds run.
        """
        a = self.args
        sides = [OURS, PRUNED, RANDOM, SEQUENTIAL]
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        began, slowest = time.perf_counter(), 0.0
        for index, seed in enumerate(a.seeds):
            elapsed = time.perf_counter() - began
            if a.budget_s and index >= a.min_seeds and elapsed + slowest > a.budget_s - a.reserve_s:
                print(f"budget: stopping after {index} seeds", file=sys.stderr, flush=True)
                a.seeds = a.seeds[:index]
                break
            print(f"seed {seed} ({index + 1}/{len(a.seeds)})", file=sys.stderr, flush=True)
            shift = index % len(sides)
            seed_began = time.perf_counter()
            for side in sides[shift:] + sides[:shift]:
                runs[side].append(self.run(self.argv(side, seed), f"{side} seed {seed}"))
            slowest = max(slowest, time.perf_counter() - seed_began)
            save({"runs": runs, "seeds": a.seeds[: index + 1]})
        return runs

    def overhead(self) -> dict[str, list[dict[str, Any]]]:
        """Trivial trials through ours and both Optuna setups, interleaved repetitions."""
        a = self.args
        common = ["--trivial", "--trials", str(a.empty_trials), "--startup-trials"]
        common += [str(a.startup_trials), "--epochs", "1"]
        argvs = {
            OURS: python(
                str(Path(__file__).resolve()), "--side", "search", "--problem", str(self.problem),
                "--tracking", self.tracking, "--workers", str(a.workers), "--algorithm", "tpe",
                "--scheduler", "asha", *common,
            ),
            PRUNED: python(
                str(BASELINES / "tune_optuna_pruned.py"), "--data", str(self.data),
                "--workers", str(a.workers), *common,
            ),
            SEQUENTIAL: python(str(BASELINES / "tune_optuna.py"), "--data", str(self.data), *common),
        }  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in argvs}
        names = list(argvs)
        for repetition in range(a.overhead_repeats):
            print(f"overhead repetition {repetition + 1}", file=sys.stderr, flush=True)
            shift = repetition % len(names)
            for side in names[shift:] + names[:shift]:
                runs[side].append(self.run(argvs[side], f"trivial {side}"))
        return runs

    def same_loss(self, random_run: dict[str, Any]) -> dict[str, Any]:
        """ray-mlops' best full-length configuration of (c), trained by the baseline's loop.

        With ``SAME_LOSS_SEEDS`` torch seeds: ray-mlops' loss must lie within their spread
        (widened by ``SAME_LOSS_TOLERANCE``), since the two loops shuffle differently.
        """
        full = [t for t in random_run["trials"] if t["epochs"] >= self.args.epochs and t["best"]]
        trial = min(full, key=lambda t: t["best"])
        params = {
            k: json.dumps(v) if isinstance(v, list) else v for k, v in trial["params"].items()
        }
        seeds = [str(seed) for seed in range(SAME_LOSS_SEEDS)]
        answer = self.run(
            python(
                str(BASELINES / "tune_optuna.py"), "--data", str(self.data),
                "--epochs", str(self.args.epochs), "--params", json.dumps(params),
                "--torch-seeds", *seeds,
            ),
            "same-work check",
        )  # fmt: skip
        return same_loss_check(params, trial["best"], answer["best_val_loss"])


def side_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["search"], required=True)
    parser.add_argument("--problem", required=True)
    parser.add_argument("--tracking", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--algorithm", required=True)
    parser.add_argument("--scheduler", required=True)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-trials", type=int, default=6)
    parser.add_argument("--trivial", action="store_true", help="no training: per-trial overhead")
    args = parser.parse_args(argv)
    print(json.dumps(search_side(args)))


def main() -> None:
    if "--side" in sys.argv:
        side_main(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--startup-trials", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(12)))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--empty-trials", type=int, default=40, help="trials of a trivial search")
    parser.add_argument("--overhead-repeats", type=int, default=5)
    parser.add_argument("--budget-s", type=float, help="start no seed that would end past it")
    parser.add_argument("--reserve-s", type=float, default=240.0, help="kept for what follows")
    parser.add_argument("--min-seeds", type=int, default=10)
    parser.add_argument("--raw", type=Path, help="every side's answer, saved as it comes")
    parser.add_argument("--report-from", type=Path, help="only write the document from --raw's")
    parser.add_argument("--quick", action="store_true", help="2 seeds of 4 trials x 2 epochs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.report_from:
        raw = json.loads(args.report_from.read_text())
        saved = argparse.Namespace(**raw["args"])
        saved.seeds = raw["seeds"]
        document = report(saved, raw["runs"], raw["overhead"], raw["check"])
        document["setup"]["benchmark_wall_s"] = raw.get("benchmark_wall_s")
        emit(rounded(document), args.out)
        return
    if args.quick:
        args.trials, args.epochs, args.startup_trials = 4, 2, 2
        args.seeds, args.empty_trials, args.overhead_repeats = [0, 1], 10, 1
    args.space, args.brackets = "wide", 1
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    raw_path = args.raw or work / "raw.json"
    raw: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k not in ("raw", "report_from", "out")}
    }

    def save(part: dict[str, Any]) -> None:
        raw.update(part)
        raw_path.write_text(json.dumps(raw))

    cfg, inputs = load_problem(args)
    import ray

    ray.shutdown()  # Ray Data's size estimate started one: every side starts its own
    problem, data = write_problem(cfg, inputs, work)
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    _with_tracking(inputs, tracking, "create-the-store")  # the store's schema, off every clock
    driver = Driver(args, problem, data, tracking)
    runs = driver.seeds(save)
    overhead = driver.overhead()
    save({"overhead": overhead})
    check = driver.same_loss(runs[RANDOM][0])
    save({"check": check, "benchmark_wall_s": time.perf_counter() - started})
    print(f"raw answers: {raw_path}", file=sys.stderr, flush=True)
    document = report(args, runs, overhead, check)
    document["setup"]["benchmark_wall_s"] = raw["benchmark_wall_s"]
    emit(rounded(document), args.out)


# --- the document ----------------------------------------------------------------------------


def start_up(side: str, run: dict[str, Any]) -> dict[str, float]:
    """Where a side's first seconds went, from its spawn: imports, ray.init, the first epoch."""
    spawned = run["spawned_at"]
    first = min(row[0] for row in run["log"]) - spawned
    if side in (OURS, RANDOM):
        return {
            "imports_s": run["ray_init_at"] - spawned,
            "ray_init_s": run["ray_ready_at"] - run["ray_init_at"],
            "problem_and_tracking_s": run["search_at"] - run["ray_ready_at"],
            "search_called_s": run["search_at"] - spawned,
            "first_epoch_s": first,
        }
    optimize = min(run.get("workers_optimize_at") or [run["optimize_at"]])
    return {
        "imports_s": run["imported_at"] - spawned,
        "search_called_s": optimize - spawned,
        "first_epoch_s": first,
    }


def pace(log: Sequence[Sequence[Any]], target: float) -> dict[str, float | None]:
    """Once trials run: epochs a second, and epochs reported up to reaching the target.

    The first says how fast a side trains (its start-up apart); the second how well it
    searches (how many epochs its sampler and pruner spent before one reached the target).
    """
    times = sorted(row[0] for row in log)
    reached = [row[0] for row in log if row[-1] <= target + 1e-12]
    return {
        "epochs_per_s": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None,
        "epochs_to_target": sum(t <= min(reached) for t in times) if reached else None,
    }


def report(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, Any]]],
    overhead: dict[str, list[dict[str, Any]]],
    check: dict[str, Any],
) -> dict[str, Any]:
    pooled = [
        v for side in (RANDOM, SEQUENTIAL) for run in runs[side]
        for v in full_length_bests(run["trials"], args.epochs)
    ]  # fmt: skip
    target = pooled_target(pooled)
    seeds: dict[str, list[dict[str, Any]]] = {side: [] for side in runs}
    for side, side_runs in runs.items():
        for seed, run in zip(args.seeds, side_runs, strict=True):
            reached = time_to(run["log"], target, run["spawned_at"])
            profile = start_up(side, run)
            entry = {
                "seed": seed,
                "time_to_target_s": reached,
                "search_time_to_target_s": (
                    None if reached is None else reached - profile["search_called_s"]
                ),
                "start_up": profile,
                "pace": pace(run["log"], target),
                "wall_s": run["process_wall_s"],
                "trials": len(run["trials"]),
                "trial_epochs": sum(t["epochs"] for t in run["trials"]),
                "stopped_trials": sum(t["epochs"] < args.epochs for t in run["trials"]),
                "best_val_loss": run["best_val_loss"],
            }
            if side in (OURS, RANDOM):
                entry["time_to_target_without_ray_init_s"] = (
                    None if reached is None else reached - profile["ray_init_s"]
                )
            seeds[side].append(entry)

    def times(side: str, key: str = "time_to_target_s") -> list[float | None]:
        return [entry[key] for entry in seeds[side]]

    vs_pruned = per_seed(times(OURS), times(PRUNED))
    vs_pruned_no_init = per_seed(times(OURS, "time_to_target_without_ray_init_s"), times(PRUNED))
    vs_pruned_search = per_seed(
        times(OURS, "search_time_to_target_s"), times(PRUNED, "search_time_to_target_s")
    )
    vs_sequential = per_seed(times(OURS), times(SEQUENTIAL))
    easier = {}
    for quantile in EASIER_QUANTILES:
        value = pooled_target(pooled, quantile)
        reached = {
            side: [time_to(run["log"], value, run["spawned_at"]) for run in runs[side]]
            for side in (OURS, PRUNED)
        }
        easier[str(quantile)] = {
            "val_loss": value,
            "vs_pruned": per_seed(reached[OURS], reached[PRUNED]),
        }
    epochs = {side: sum(e["trial_epochs"] for e in seeds[side]) for side in (OURS, RANDOM)}
    best = {side: statistics.median(e["best_val_loss"] for e in seeds[side]) for side in seeds}
    asha_ratio = epochs[OURS] / epochs[RANDOM]
    per_trial = {
        side: summary([steady_per_trial(run["log"]) for run in side_runs])
        for side, side_runs in overhead.items()
    }
    first_trivial = {
        side: summary([min(r[0] for r in run["log"]) - run["spawned_at"] for run in side_runs])
        for side, side_runs in overhead.items()
    }
    same_space = {
        side: all(in_space(t["params"], WIDE_SPACE) for run in runs[side] for t in run["trials"])
        for side in (PRUNED, SEQUENTIAL)
    }
    trials_run = {side: [len(run["trials"]) for run in runs[side]] for side in runs}
    profile = {
        side: {
            key: summary([e["start_up"][key] for e in seeds[side]])["median"]
            for key in seeds[side][0]["start_up"]
        }
        for side in seeds
    }
    first_epoch = {side: profile[side]["first_epoch_s"] for side in profile}
    paces = {
        side: {
            key: summary([e["pace"][key] for e in seeds[side] if e["pace"][key] is not None])
            for key in ("epochs_per_s", "epochs_to_target")
        }
        for side in seeds
    }
    sixteen = args.workers >= 16
    goals = [
        goal(
            "time to target at most 1.0x Optuna + SuccessiveHalvingPruner with the same workers "
            f"(median of per-seed ratios, {len(args.seeds)} seeds, ray.init counted)",
            vs_pruned["median_of_per_seed_ratios"],
            "<=",
            1.0,
            detail=(
                f"{_s(vs_pruned['ours']['median'])} vs {_s(vs_pruned['baseline']['median'])} "
                f"median to val_loss {target:.4f}; ratio of medians "
                f"{_x(vs_pruned['ratio_of_medians'])}; per seed "
                f"{_range(vs_pruned['both_reached_ratio_range'])} where both reached it, "
                f"ours never on {len(args.seeds) - vs_pruned['seeds_ours_reached']} and Optuna "
                f"never on {len(args.seeds) - vs_pruned['seeds_baseline_reached']} of "
                f"{len(args.seeds)} seeds; "
                f"first epoch after {first_epoch[OURS]:.1f} s vs {first_epoch[PRUNED]:.1f} s; "
                "easier targets (quantiles "
                + ", ".join(
                    f"{q}: {_x(e['vs_pruned']['median_of_per_seed_ratios'])}"
                    for q, e in easier.items()
                )
                + ")"
            ),
        ),
        goal(
            "ASHA at most 0.5x random search's trial-epochs at equal best val_loss",
            asha_ratio,
            "<=",
            0.5,
            detail=(
                f"{epochs[OURS]} vs {epochs[RANDOM]} trial-epochs over {len(args.seeds)} seeds; "
                f"median best val_loss {best[OURS]:.4f} vs {best[RANDOM]:.4f}"
            ),
        ),
        goal(
            "per-trial overhead of cheap trials under 0.1 s",
            per_trial[OURS]["median"],
            "<=",
            0.1,
            unit="s",
            detail=(
                f"trivial trials through the search: {per_trial[OURS]['median']:.3f} s each "
                f"({args.workers} at once) vs {per_trial[PRUNED]['median']:.3f} s in Optuna's "
                f"journal workers and {per_trial[SEQUENTIAL]['median']:.4f} s in one process; "
                f"first result after {first_trivial[OURS]['median']:.1f} s vs "
                f"{first_trivial[PRUNED]['median']:.1f} s (medians of {args.overhead_repeats})"
            ),
        ),
        goal(
            "time to target at most 0.5x sequential Optuna with 16 concurrent trials "
            "(16-CPU node, --workers 16)",
            vs_sequential["median_of_per_seed_ratios"] if sixteen else None,
            "<=",
            0.5,
            detail=(
                f"{args.workers} workers: {_x(vs_sequential['median_of_per_seed_ratios'])} "
                "(median of per-seed ratios)"
                if sixteen
                else f"not measurable here ({args.workers} CPUs, no 16-CPU node lent); "
                f"with {args.workers} workers: {_x(vs_sequential['median_of_per_seed_ratios'])}"
            ),
        ),
    ]
    return {
        **header(
            "tune_efficiency",
            "torch",
            "ray",
            "optuna",
            "mlflow",
            "ray_mlops",
            measures=[
                "ray_mlops/search",
                "ray_mlops/train",
                "ray_mlops/models",
                "benchmarks/baselines/tune_optuna.py",
                "benchmarks/baselines/tune_optuna_pruned.py",
            ],
        ),
        "quick": args.quick,
        "setup": {
            "data": "UCI Adult, 32,561 rows, 70/15/15 split (seed 0), quick start features",
            "space": WIDE_SPACE,
            "trials": args.trials,
            "max_epochs": args.epochs,
            "tpe_startup_trials": args.startup_trials,
            "workers": args.workers,
            "seeds": args.seeds,
            "sides": NAMES,
            "order": "each side in a fresh process, the order rotated from one seed to the next",
            "asha": "grace 1, reduction factor 3, 1 bracket, on epochs",
            "pruner": "SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)",
            "clock": (
                "from the driver's spawn of the side's process to the epoch result (imports, "
                "ray.init, worker spawn counted); search_time_to_target_s: from the search's "
                "(optimize's) call"
            ),
            "target": {
                "val_loss": target,
                "definition": (
                    f"quantile {TARGET_QUANTILE} of the best val_loss of every full-length "
                    f"trial ({args.epochs} epochs) of ({RANDOM}) and ({SEQUENTIAL}), pooled "
                    "over all seeds"
                ),
                "pooled_trials": len(pooled),
                "seeds_reaching_it": {
                    side: sum(e["time_to_target_s"] is not None for e in seeds[side])
                    for side in seeds
                },
            },
            "overhead": (
                "trivial trials (one report, a tiny checkpoint; Optuna: the same objective "
                f"without training), searches of {args.empty_trials} trials, "
                f"{args.overhead_repeats} interleaved repetitions"
            ),
        },
        "goals": goals,
        "time_to_target": {
            "vs_pruned": vs_pruned,
            "vs_pruned_without_ray_init": vs_pruned_no_init,
            "vs_pruned_search_clock_only": vs_pruned_search,
            "vs_sequential": vs_sequential,
            "easier_targets": {
                "definition": "the same pooled full-length trial bests, other quantiles",
                **easier,
            },
        },
        "asha": {
            "trial_epochs": epochs,
            "ratio": asha_ratio,
            "median_best_val_loss": best,
            "trials": trials_run,
        },
        "start_up_medians_s": profile,
        "pace": {
            "definition": (
                "epochs_per_s: epochs reported per second between a search's first and last "
                "epoch (start-up apart); epochs_to_target: epochs reported until one reached "
                "the target (seeds that reached it)"
            ),
            **paces,
        },
        "per_trial_overhead": {
            "definition": (
                "wall seconds per trivial trial between the first and the last result of a "
                f"search of {args.empty_trials} (start-up left out), {args.workers} workers"
            ),
            "s_per_trial": {NAMES[side]: per_trial[side] for side in per_trial},
            "first_result_after_spawn_s": {NAMES[side]: first_trivial[side] for side in per_trial},
        },
        "same_work": {
            "baseline_params_in_the_same_space": same_space,
            "same_config_same_val_loss": check,
            "same_val_loss": check["within_spread"],
            "trials_per_side": trials_run,
            "every_side_ran_its_trials": all(
                args.trials <= n <= args.trials + args.workers - 1
                for side in runs
                for n in trials_run[side]
            ),
            "max_epochs": args.epochs,
        },
        "seeds": seeds,
    }


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _range(values: list[float] | None) -> str:
    return "n/a" if not values else f"{values[0]:.2f}-{values[1]:.2f}x"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    main()
