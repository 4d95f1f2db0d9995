"""Optuna TPE with successive halving, in parallel processes sharing a JournalStorage.

The strong baseline of ``benchmarks/tune_efficiency.py``'s search: what an Optuna user writes
to use several CPUs and stop poor trials early, as Optuna's documentation shows. One study in
a journal file (``JournalStorage`` with ``JournalFileBackend``), ``--workers`` processes that
each load it and call ``study.optimize`` (one torch thread each, like one 1-CPU trial),
``MaxTrialsCallback`` ending the study at ``--trials`` trials, TPE with ``constant_liar``
(Optuna's advice for parallel workers: running trials count as tried), each worker's sampler
seeded apart (the same seed would make them propose the same configurations). Every epoch is
``trial.report``-ed and ``trial.should_prune()`` asked: ``SuccessiveHalvingPruner`` with
``min_resource`` 1 and ``reduction_factor`` 3 on epochs, the asynchronous successive halving
that ASHA is. The objective, the space, the data and the model are ``tune_optuna.py``'s.

The clock a driver reads includes this process's start, the workers' spawn and their imports,
as a search's includes ``ray.init``.

Usage:
    python benchmarks/baselines/tune_optuna_pruned.py --data problem.npz --trials 20 --epochs 9 \
        --seed 0 --workers 2
"""

from __future__ import annotations

import time

STARTED = time.time()

import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

import optuna  # noqa: E402
from optuna.storages import JournalStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402
from optuna.study import MaxTrialsCallback  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tune_optuna import arguments, load_data, make_objective, trials_of  # noqa: E402

IMPORTED = time.time()


def worker(settings: dict[str, Any], index: int) -> dict[str, Any]:
    """One process of the study: its own sampler (seeded apart), one torch thread."""
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ready = time.time()
    storage = JournalStorage(JournalFileBackend(settings["journal"]))
    sampler = optuna.samplers.TPESampler(
        seed=settings["seed"] * 1000 + index,
        n_startup_trials=settings["startup_trials"],
        constant_liar=True,
    )
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    study = optuna.load_study(
        study_name=settings["study"], storage=storage, sampler=sampler, pruner=pruner
    )
    data = None if settings["trivial"] else load_data(settings["data"])
    log: list[list[float]] = []
    started = time.time()
    study.optimize(
        make_objective(data, settings["epochs"], log, prune=True),
        callbacks=[MaxTrialsCallback(settings["trials"], states=None)],
    )
    return {"ready_at": ready, "optimize_at": started, "ended_at": time.time(), "log": log}


def run(settings: dict[str, Any], workers: int) -> dict[str, Any]:
    """Create the study, run ``workers`` processes on it, gather their epoch logs."""
    storage = JournalStorage(JournalFileBackend(settings["journal"]))
    optuna.create_study(study_name=settings["study"], storage=storage, direction="minimize")
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        parts = pool.starmap(worker, [(settings, index) for index in range(workers)])
    study = optuna.load_study(study_name=settings["study"], storage=storage)
    log = sorted(entry for part in parts for entry in part["log"])
    return {
        "best_val_loss": min(entry[3] for entry in log),  # pruned trials' epochs too
        "workers_ready_at": [part["ready_at"] for part in parts],
        "workers_optimize_at": [part["optimize_at"] for part in parts],
        "log": log,
        "trials": trials_of(study, log),
    }


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = {
        "data": args.data,
        "epochs": args.epochs,
        "seed": args.seed,
        "startup_trials": args.startup_trials,
        "trivial": args.trivial,
        "trials": args.trials,
        "journal": os.path.join(tempfile.mkdtemp(prefix="optuna-journal-"), "journal.log"),
        "study": "search",
    }
    answer = {
        "side": "optuna-pruned-parallel",
        "started_at": STARTED,
        "imported_at": IMPORTED,
        "workers": args.workers,
        **run(settings, args.workers),
        "ended_at": time.time(),
    }
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
