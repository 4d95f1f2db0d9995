"""Data preparation at scale: ray-mlops' data stages against pandas/numpy in one process.

Both sides do the same work on the same synthetic Parquet files (see
``ray_mlops.datasets.synthetic``): read; validate every row (parse, missing target,
duplicate ids, identical features with conflicting labels); fingerprint the content; split
by a hash of the id; profile every column (counts, missing, distinct, moments, quantiles,
histograms, top categories, association with the target); fit the feature pipeline on the
train split; and encode every split into model inputs.

Each case runs in its own process; its peak memory is the largest proportional set size
(PSS) of its whole process tree (Ray's workers, raylet and shared-memory object store
included), sampled every 0.25 s. The streaming case runs the ray-mlops side with an object
store at most half the size of the data, so the data cannot sit in memory at once.

Usage:
    python benchmarks/data_prep.py --quick --out /tmp/data_prep.json
    python benchmarks/data_prep.py --out benchmarks/results/data_prep-cpu2.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_HOME = Path(tempfile.gettempdir()) / "ray-mlops-bench"
ARROW_BYTES_PER_ROW = 137  # measured: generate_table(10M) is 1.28 GiB in Arrow


def _config() -> Any:
    from ray_mlops.config import parse_config
    from ray_mlops.datasets import synthetic as syn

    return parse_config(
        {
            "name": "bench",
            "data": {
                "path": "unused",
                "target": syn.SYNTHETIC_TARGET,
                "id_column": syn.SYNTHETIC_ID,
                "numeric": syn.SYNTHETIC_NUMERIC,
                "categorical": syn.SYNTHETIC_CATEGORICAL,
                "quarantine": {"max_bad_fraction": 1.0},
            },
        }
    )


# --- the two sides -----------------------------------------------------------------------


def run_ray_mlops(data_dir: Path, object_store_mb: int | None) -> dict[str, Any]:
    """ray-mlops: prepare_data + fit on train + encode every split, on a local 2-CPU Ray."""
    import ray
    import ray.data

    from ray_mlops.compat.ray_core import local_node_options
    from ray_mlops.data.stage import prepare_data
    from ray_mlops.features.fit import fit_feature_state
    from ray_mlops.train.encode import encode_split

    cfg = _config()
    data = cfg.data.model_copy(update={"path": str(data_dir)})
    store = object_store_mb * 1024 * 1024 if object_store_mb else None
    ray.init(
        num_cpus=os.cpu_count(),
        object_store_memory=store,
        include_dashboard=False,
        **local_node_options(),
        log_to_driver=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as quarantine:
        prepared = prepare_data(data, "classification", data_dir, Path(quarantine))
    state = fit_feature_state(prepared.splits["train"], data, cfg.features, "classification")
    encoded = 0
    for split in prepared.splits.values():
        # Encode and drop: the object store spills what it cannot hold.
        encoded += encode_split(split, state, data.target).count()
    seconds = time.perf_counter() - start
    ray.shutdown()
    return {
        "seconds": seconds,
        "rows": prepared.rows_read,
        "encoded": encoded,
        "quarantined": prepared.quarantine.rows,
        "fingerprint": prepared.fingerprint,
    }


def run_pandas(data_dir: Path) -> dict[str, Any]:
    """The same steps with pandas/numpy in one process (what a user would write)."""
    import numpy as np
    import pandas as pd

    from ray_mlops.data.split import assign_splits
    from ray_mlops.data.validate import (
        CONFLICTING_LABELS,
        DUPLICATE_ID,
        FEATURE_HASH_COLUMN,
        REASON_COLUMN,
        ROW_HASH_COLUMN,
        RowRules,
        check_batch,
    )
    from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
    from ray_mlops.features.transform import transform_features

    cfg = _config()
    data = cfg.data
    start = time.perf_counter()
    frame = pd.read_parquet(data_dir)
    checked = check_batch(frame, RowRules.from_config(data, "classification"))
    ok = checked[REASON_COLUMN] == ""
    duplicated = checked[data.id_column].duplicated(keep=False) & ok
    checked.loc[duplicated, REASON_COLUMN] = DUPLICATE_ID
    ok = checked[REASON_COLUMN] == ""
    labels = checked[ok].groupby(FEATURE_HASH_COLUMN)[data.target].nunique()
    conflicted = checked[FEATURE_HASH_COLUMN].isin(labels.index[labels > 1]) & ok
    checked.loc[conflicted, REASON_COLUMN] = CONFLICTING_LABELS
    quarantined = int((checked[REASON_COLUMN] != "").sum())
    hashes = checked[ROW_HASH_COLUMN].to_numpy().view(np.uint64)
    fingerprint = (int(np.sum(hashes & np.uint64(0xFFFFFFFF), dtype=np.uint64)), len(hashes))
    valid = checked[checked[REASON_COLUMN] == ""].drop(
        columns=[REASON_COLUMN, FEATURE_HASH_COLUMN, ROW_HASH_COLUMN]
    )
    valid["_split"] = assign_splits(valid.drop(columns=[]), data.split, data.id_column)
    _profile_pandas(valid, data.numeric, data.categorical, data.target)
    train = valid[valid["_split"] == "train"]
    numeric_stats = {
        c: NumericState(
            fill=float(train[c].median()),
            center=float(train[c].mean()),
            scale=float(train[c].std(ddof=0)) or 1.0,
        )
        for c in data.numeric
    }
    categorical_stats = {
        c: CategoricalState(
            categories=[
                str(v)
                for v in train[c].value_counts().index[: cfg.features.categorical.max_categories]
            ]
        )
        for c in data.categorical
    }
    state = FeatureState(
        numeric=numeric_stats,
        categorical=categorical_stats,
        labels=sorted(train[data.target].astype(str).unique()),
    )
    encoded = 0
    for name in ("train", "validation", "test"):
        encoded += len(transform_features(valid[valid["_split"] == name], state))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": len(frame),
        "encoded": encoded,
        "quarantined": quarantined,
        "fingerprint_parts": list(fingerprint),
    }


def _profile_pandas(frame: Any, numeric: list[str], categorical: list[str], target: str) -> None:
    import numpy as np
    import pandas as pd

    y = frame[target]
    for column in numeric:
        values = frame[column].astype("float64")
        values.count(), values.isna().sum(), values.nunique(), values.mean(), values.std()
        values.quantile([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
        present = values.dropna().to_numpy()
        if len(present):
            np.histogram(present, bins=20)
        frame.groupby(target)[column].agg(["count", "mean"])
    for column in categorical:
        frame[column].value_counts().head(20), frame[column].isna().sum()
        pd.crosstab(frame[column], y)
    y.value_counts()


# --- measuring ---------------------------------------------------------------------------


def _tree_pss(pid: int) -> int:
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    except psutil.NoSuchProcess:
        return 0
    return total


def measure(side: str, data_dir: Path, object_store_mb: int | None = None) -> dict[str, Any]:
    """Run one side in a fresh process; return its result with wall time and peak PSS."""
    command = [sys.executable, __file__, "--worker", side, "--data", str(data_dir)]
    if object_store_mb:
        command += ["--object-store-mb", str(object_store_mb)]
    handle, out_name = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    command += ["--worker-out", out_name]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_pss(child.pid))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{stderr[-4000:]}")
    result = json.loads(Path(out_name).read_text())
    os.unlink(out_name)
    result["peak_memory_mib"] = peak / 2**20
    return result


def ensure_data(rows: int) -> Path:
    """Synthetic Parquet files for ``rows`` rows, generated once and reused."""
    from ray_mlops.datasets.synthetic import write_synthetic_dataset

    directory = DATA_HOME / f"synthetic-{rows}"
    marker = directory / "_COMPLETE"
    if not marker.exists():
        if directory.exists():
            for stale in directory.iterdir():
                stale.unlink()
        write_synthetic_dataset(directory, rows, fmt="parquet", rows_per_file=500_000)
        marker.write_text(str(rows))
    return directory


def _case(rows: int, pandas: dict[str, Any], ours: dict[str, Any]) -> list[dict[str, Any]]:
    rate_base = rows / pandas["seconds"]
    rate_ours = rows / ours["seconds"]
    assert pandas["quarantined"] == ours["quarantined"], (pandas, ours)
    assert pandas["encoded"] == ours["encoded"], (pandas, ours)
    return [
        {
            "case": f"rows={rows:,}",
            "metric": "rows/s",
            "higher_is_better": True,
            "baseline": {"name": "pandas-numpy", "value": round(rate_base)},
            "candidate": {"name": "ray-mlops", "value": round(rate_ours)},
            "ratio": round(rate_ours / rate_base, 3),
            "goal": 1.0 if rows >= 10_000_000 else None,
        },
        {
            "case": f"rows={rows:,}",
            "metric": "peak memory MiB",
            "higher_is_better": False,
            "baseline": {"name": "pandas-numpy", "value": round(pandas["peak_memory_mib"])},
            "candidate": {"name": "ray-mlops", "value": round(ours["peak_memory_mib"])},
            "ratio": round(ours["peak_memory_mib"] / pandas["peak_memory_mib"], 3),
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument("--worker", choices=["pandas", "ray-mlops"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--object-store-mb", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = (
            run_pandas(args.data)
            if args.worker == "pandas"
            else run_ray_mlops(args.data, args.object_store_mb)
        )
        args.worker_out.write_text(json.dumps(result))
        return

    sizes = [100_000, 400_000] if args.quick else [1_000_000, 10_000_000]
    stream_rows, stream_store_mb = (1_200_000, 80) if args.quick else (10_000_000, 600)
    results: list[dict[str, Any]] = []
    for rows in sizes:
        directory = ensure_data(rows)
        pandas = measure("pandas", directory)
        ours = measure("ray-mlops", directory)
        print(
            f"{rows:>11,} rows: pandas {pandas['seconds']:.1f} s, {pandas['peak_memory_mib']:.0f} MiB; "
            f"ray-mlops {ours['seconds']:.1f} s, {ours['peak_memory_mib']:.0f} MiB",
            flush=True,
        )
        results += _case(rows, pandas, ours)
    directory = ensure_data(stream_rows)
    streamed = measure("ray-mlops", directory, object_store_mb=stream_store_mb)
    data_mib = stream_rows * ARROW_BYTES_PER_ROW / 2**20
    print(
        f"streaming {stream_rows:,} rows ({data_mib:.0f} MiB in Arrow) through a "
        f"{stream_store_mb} MiB object store: {streamed['seconds']:.1f} s, "
        f"peak {streamed['peak_memory_mib']:.0f} MiB",
        flush=True,
    )
    results.append(
        {
            "case": f"streaming rows={stream_rows:,}, data {data_mib:.0f} MiB, object store {stream_store_mb} MiB",
            "metric": "peak memory MiB",
            "higher_is_better": False,
            "baseline": {"name": "data size in Arrow", "value": round(data_mib)},
            "candidate": {"name": "ray-mlops", "value": round(streamed["peak_memory_mib"])},
            "ratio": round(streamed["peak_memory_mib"] / data_mib, 3),
            "seconds": round(streamed["seconds"], 1),
            "rows_per_s": round(stream_rows / streamed["seconds"]),
        }
    )
    document = {
        "benchmark": "data_prep",
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cpu, {_memory_gib():.0f} GiB, {platform.machine()}",
        "device": "cpu",
        "versions": _versions(),
        "quick": args.quick,
        "results": [{k: v for k, v in r.items() if v is not None} for r in results],
    }
    text = json.dumps(document, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


def _memory_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def _versions() -> dict[str, str]:
    import pandas
    import pyarrow
    import ray

    import ray_mlops

    return {
        "ray": ray.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "ray_mlops": ray_mlops.__version__,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    main()
