"""What running trials side by side buys on this machine: epochs per second.

Companion to ``tune_efficiency.py``. A search runs as many 1-CPU trials at once as the
machine has CPUs; plain Optuna runs one trial at a time with torch on every CPU. How much
the first is worth is not obvious: torch spreads one small MLP's matrix products over
threads poorly, but processes side by side share caches and memory bandwidth.

Both train the same configurations (drawn at random from ``tune_efficiency.py``'s wide
space, seeded) with the same hand-written loop (``tune_efficiency.PlainLoop``) on the same
encoded Adult data:

- baseline: one process, torch on all CPUs, every configuration once, one after another
  (what plain Optuna's trials run on);
- candidate: as many processes as CPUs, torch on one thread each, started together, each
  training every configuration (the same work per process as the baseline's).

Reported per round and as the median over ``--rounds``: the epochs per second of each, and
their ratio (the candidate's total epochs over its slowest process's time, against the
baseline's). Process start, imports and a warm-up epoch are outside the clocks.

Usage:
    python benchmarks/trial_parallelism.py --out benchmarks/results/trial_parallelism-cpu2.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _report import emit, header, rounded  # noqa: E402

PROBLEM = argparse.Namespace(trials=1, epochs=1, startup_trials=1, brackets=1, space="wide")


def draw_configurations(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` configurations of the wide space, as Optuna's random sampler draws them."""
    import optuna
    from tune_efficiency import load_problem

    from ray_mlops.search.space import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _cfg, inputs = load_problem(PROBLEM)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(count):
        trial = study.ask()
        suggest(trial, inputs.space)
        drawn.append(dict(trial.params))
        study.tell(trial, 0.0)
    return drawn


def train_all(threads: int, configurations: list[dict[str, Any]], epochs: int) -> float:
    """Seconds to train every configuration for ``epochs`` on ``threads`` torch threads."""
    import torch
    from tune_efficiency import PlainLoop, load_problem

    torch.set_num_threads(threads)
    cfg, inputs = load_problem(PROBLEM)
    loop = PlainLoop(cfg, inputs)
    loop.train(configurations[0], 1)  # warm-up: first-use costs (torch._dynamo) off the clock
    started = time.perf_counter()
    for params in configurations:
        loop.train(params, epochs)
    return time.perf_counter() - started


def one_round(
    configurations: list[dict[str, Any]], epochs: int, cpus: int, pool: Any
) -> dict[str, float]:
    """The baseline, then the candidate, on the same configurations."""
    work = len(configurations) * epochs
    # The baseline in a pool process too, so both sides are fresh processes alike.
    alone = pool.apply(train_all, (cpus, configurations, epochs))
    side_by_side = pool.starmap(train_all, [(1, configurations, epochs)] * cpus)
    slowest = max(side_by_side)
    return {
        "one_process_all_cpus_s": alone,
        "side_by_side_s": side_by_side,
        "one_process_epochs_per_s": work / alone,
        "side_by_side_epochs_per_s": cpus * work / slowest,
        "ratio": (cpus * work / slowest) / (work / alone),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configurations", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="4 configurations, 1 round")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.configurations, args.epochs, args.rounds = 4, 1, 1
    cpus = os.cpu_count() or 1
    configurations = draw_configurations(args.configurations, args.seed)
    # A fresh pool per round: no process carries another round's warm caches.
    rounds = []
    for _ in range(args.rounds):
        with get_context("spawn").Pool(cpus) as pool:
            rounds.append(one_round(configurations, args.epochs, cpus, pool))
    ratio = statistics.median(r["ratio"] for r in rounds)
    document = {
        **header(
            "trial_parallelism",
            "torch",
            measures=["benchmarks/tune_efficiency.py", "ray_mlops/search/space.py"],
        ),
        "setup": {
            "data": "UCI Adult, 70% train split (22,792 rows), quick start features",
            "configurations": configurations,
            "epochs_each": args.epochs,
            "processes_side_by_side": cpus,
            "rounds": args.rounds,
        },
        "results": [
            {
                "case": f"epochs per second: {cpus} one-thread loops at once vs one loop on "
                f"{cpus} threads, median of rounds",
                "metric": "epochs per second",
                "higher_is_better": True,
                "baseline": {
                    "name": f"one process, torch on {cpus} threads (plain Optuna's trials)",
                    "value": statistics.median(r["one_process_epochs_per_s"] for r in rounds),
                },
                "candidate": {
                    "name": f"{cpus} processes, one torch thread each (a search's trials)",
                    "value": statistics.median(r["side_by_side_epochs_per_s"] for r in rounds),
                },
                "ratio": ratio,
            }
        ],
        "rounds": rounds,
    }
    emit(rounded(document), args.out)


if __name__ == "__main__":
    main()
