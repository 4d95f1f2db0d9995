"""Pool the seeds of several ``tune_efficiency.py`` runs: the time to target with its spread.

Each seed's time to target swings between a couple of seconds (plain Optuna's first
random configurations reach the target) and a minute, so the median of 5 or 10 seeds moves
by more than the goal's margin from one set of seeds to the next. This pools the per-seed
times of runs made with the same code and space (each seed timed against its own run's
target) and gives the ratio of medians with a paired bootstrap interval (scipy), and how
many seeds met the goal on their own.

Not a benchmark itself (``make bench`` skips files whose name starts with ``_``).

Usage:
    python benchmarks/_pool_tune_seeds.py benchmarks/results/tune_efficiency-wide-seeds*-cpu2.json \
        --out benchmarks/results/tune_efficiency-wide-pooled-cpu2.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from _report import emit, header, rounded
from scipy import stats
from tune_efficiency import TARGET_QUANTILE
from tune_efficiency import A as OURS
from tune_efficiency import C as PLAIN

GOAL = 0.5


def seed_times(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Per seed, (a)'s and (c)'s time to target (inf: never reached), and where each came from."""
    ours, plain, sources = [], [], []
    for path in paths:
        document = json.loads(path.read_text())
        seeds = document["setup"]["seeds"]
        target = document["landscape"]["targets"][str(TARGET_QUANTILE)]["val_loss"]
        pairs = zip(
            document["cases"][OURS]["seeds"], document["cases"][PLAIN]["seeds"], strict=True
        )
        for seed, (a, c) in zip(seeds, pairs, strict=True):
            ours.append(a["time_to_target_s"] if a["time_to_target_s"] is not None else math.inf)
            plain.append(c["time_to_target_s"] if c["time_to_target_s"] is not None else math.inf)
            sources.append({"file": path.name, "seed": seed, "target": target})
    return np.array(ours), np.array(plain), sources


def ratio_of_medians(ours: np.ndarray, plain: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median time of (a) over median time of (c), along ``axis`` (scipy's vectorised form)."""
    return np.asarray(np.median(ours, axis=axis) / np.median(plain, axis=axis))


def pool(paths: list[Path], resamples: int = 10_000) -> dict[str, Any]:
    """The pooled document: medians, their ratio, its bootstrap interval, per-seed counts."""
    ours, plain, sources = seed_times(paths)
    ratio = float(ratio_of_medians(ours, plain))
    # Percentile intervals: a seed that never reached the target is infinite, which the
    # BCa correction cannot take.
    interval = stats.bootstrap(
        (ours, plain),
        ratio_of_medians,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    share = float(np.mean(interval.bootstrap_distribution <= GOAL))
    per_seed = ours / plain
    return {
        **header("tune_efficiency_pooled", "numpy", "scipy"),
        "inputs": [path.name for path in paths],
        "seeds": len(ours),
        "results": [
            {
                "case": "wall time to the target (best tenth of full-length trials), median of "
                "all pooled seeds",
                "metric": "seconds",
                "higher_is_better": False,
                "baseline": {"name": PLAIN, "value": float(np.median(plain))},
                "candidate": {"name": OURS, "value": float(np.median(ours))},
                "ratio": ratio,
                "goal": GOAL,
                "ratio_95_interval": [
                    float(interval.confidence_interval.low),
                    float(interval.confidence_interval.high),
                ],
                "bootstrap_share_at_or_below_goal": share,
            }
        ],
        "per_seed": {
            "median_ratio": float(np.median(per_seed)),
            "seeds_faster": int(np.sum(per_seed < 1)),
            "seeds_at_or_below_goal": int(np.sum(per_seed <= GOAL)),
            "seeds": [
                {**source, "ours_s": _seconds(o), "plain_s": _seconds(p)}
                for source, o, p in zip(sources, ours, plain, strict=True)
            ],
        },
    }


def _seconds(value: float) -> float | None:
    """A time for the JSON document: None for a seed that never reached the target."""
    return float(value) if math.isfinite(value) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="tune_efficiency JSON files")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(rounded(pool(args.results)), args.out)


if __name__ == "__main__":
    main()
