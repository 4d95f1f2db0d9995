"""Plain Optuna TPE, one trial after another in one process: the sequential search baseline.

What a user writes without a search framework (Optuna's define-by-run API, a hand-written
torch loop), for ``benchmarks/tune_efficiency.py``: the same encoded data (an ``.npz`` with
``x_train``, ``y_train``, ``x_val``, ``y_val``, written by the driver), the same space (the
"wide" one: learning rate, batch size, weight decay, MLP or linear, hidden sizes and
dropout), the same model (Linear -> ReLU -> Dropout per hidden layer, one logit), AdamW, the
mean binary cross-entropy, the validation loss after every epoch, torch's default threads.

``tune_optuna_pruned.py`` reuses the objective below with a pruner and several processes.

Prints one JSON line (the last line of stdout): every epoch as ``[unix time, trial, epoch,
val_loss]``, each trial's parameters, state and best loss, and when the imports and the
optimisation began and ended, so the driver measures the time to a target from the log.

Usage:
    python benchmarks/baselines/tune_optuna.py --data problem.npz --trials 20 --epochs 9 --seed 0
    python benchmarks/baselines/tune_optuna.py --data problem.npz --trivial --trials 40
    python benchmarks/baselines/tune_optuna.py --data problem.npz --params '{"model.type": ...}' \
        --torch-seeds 0 1 2
"""

from __future__ import annotations

import time

STARTED = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional  # noqa: E402

IMPORTED = time.time()
HIDDEN_SIZES = ["[32]", "[64]", "[128, 64]", "[256, 128]", "[512, 256, 128]"]
# One epoch's report: (epoch, val_loss) -> None; raising optuna.TrialPruned ends the trial.
OnEpoch = Callable[[int, float], None]


def load_data(path: str) -> dict[str, torch.Tensor]:
    """The encoded splits: float32 features, 0/1 labels."""
    with np.load(path) as arrays:
        return {name: torch.from_numpy(arrays[name]) for name in arrays.files}


def suggest(trial: optuna.trial.Trial) -> dict[str, Any]:
    """The wide space, define-by-run (hidden sizes as JSON text: Optuna's choices are scalars)."""
    params = {
        "train.learning_rate": trial.suggest_float("train.learning_rate", 1e-5, 1.0, log=True),
        "train.batch_size": trial.suggest_categorical(
            "train.batch_size", [64, 128, 256, 512, 1024, 2048]
        ),
        "train.weight_decay": trial.suggest_float("train.weight_decay", 1e-6, 0.3, log=True),
        "model.type": trial.suggest_categorical("model.type", ["mlp", "linear"]),
    }
    if params["model.type"] == "mlp":
        params["model.hidden_sizes"] = trial.suggest_categorical("model.hidden_sizes", HIDDEN_SIZES)
        params["model.dropout"] = trial.suggest_float("model.dropout", 0.0, 0.6)
    return params


def build(params: dict[str, Any], n_inputs: int) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per hidden layer, then one logit; or a single linear layer."""
    layers: list[nn.Module] = []
    width = n_inputs
    if params["model.type"] == "mlp":
        for hidden in json.loads(params["model.hidden_sizes"]):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(params["model.dropout"])]
            width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def train(
    params: dict[str, Any],
    data: dict[str, torch.Tensor],
    epochs: int,
    on_epoch: OnEpoch,
    seed: int = 0,
) -> float:
    """Train one configuration; the best validation loss over its epochs."""
    torch.manual_seed(seed)
    model = build(params, data["x_train"].shape[1])
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=params["train.learning_rate"],
        weight_decay=params["train.weight_decay"],
    )
    x, y = data["x_train"], data["y_train"].float()
    x_val, y_val = data["x_val"], data["y_val"].float()
    batch = params["train.batch_size"]
    best = float("inf")
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y))
        for begin in range(0, len(order), batch):
            rows = order[begin : begin + batch]
            loss = functional.binary_cross_entropy_with_logits(model(x[rows])[:, 0], y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(functional.binary_cross_entropy_with_logits(model(x_val)[:, 0], y_val))
        best = min(best, val_loss)
        on_epoch(epoch, val_loss)
    return best


def trivial_value(params: dict[str, Any]) -> float:
    """A cheap stand-in for training: per-trial overhead with (almost) nothing to do."""
    return abs(float(np.log10(params["train.learning_rate"])) + 2.5)


def make_objective(
    data: dict[str, torch.Tensor] | None,
    epochs: int,
    log: list[list[float]],
    prune: bool = False,
) -> Callable[[optuna.trial.Trial], float]:
    """The objective: suggest, train, append ``[time, trial, epoch, val_loss]`` to ``log``.

    ``data`` None: the trivial objective (no training, one report). ``prune``: report each
    epoch to Optuna and stop the trial when its pruner says so.
    """

    def objective(trial: optuna.trial.Trial) -> float:
        params = suggest(trial)

        def on_epoch(epoch: int, val_loss: float) -> None:
            log.append([time.time(), trial.number, epoch, val_loss])
            if prune:
                trial.report(val_loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        if data is None:
            value = trivial_value(params)
            on_epoch(0, value)
            return value
        return train(params, data, epochs, on_epoch)

    return objective


def trials_of(study: optuna.Study, log: list[list[float]]) -> list[dict[str, Any]]:
    """Every trial: number, parameters, state, epochs run and best loss (from the log)."""
    epochs: dict[int, int] = {}
    bests: dict[int, float] = {}
    for _, number, _, value in log:
        epochs[int(number)] = epochs.get(int(number), 0) + 1
        bests[int(number)] = min(bests.get(int(number), float("inf")), value)
    return [
        {
            "number": t.number,
            "params": t.params,
            "state": t.state.name,
            "epochs": epochs.get(t.number, 0),
            "best": bests.get(t.number),
        }
        for t in study.trials
    ]


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help=".npz of x_train, y_train, x_val, y_val")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--startup-trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trivial", action="store_true", help="no training: per-trial overhead")
    return parser


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--params", help="train this one configuration (JSON) and print it")
    parser.add_argument("--torch-seeds", type=int, nargs="+", default=[0], help="with --params")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = None if args.trivial else load_data(args.data)
    log: list[list[float]] = []
    if args.params:
        assert data is not None
        params = json.loads(args.params)
        bests = [
            train(
                params, data, args.epochs, lambda e, v, s=s: log.append([time.time(), s, e, v]), s
            )
            for s in args.torch_seeds
        ]
        print(json.dumps({"params": params, "best_val_loss": bests, "log": log}))
        return
    sampler = optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=args.startup_trials)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    optimize_at = time.time()
    study.optimize(make_objective(data, args.epochs, log), n_trials=args.trials)
    answer = {
        "side": "optuna-sequential",
        "started_at": STARTED,
        "imported_at": IMPORTED,
        "optimize_at": optimize_at,
        "ended_at": time.time(),
        "torch_threads": torch.get_num_threads(),
        "best_val_loss": study.best_value,
        "log": log,
        "trials": trials_of(study, log),
    }
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
