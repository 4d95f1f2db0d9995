"""Data preparation with Ray Data and its stock preprocessors, as Ray's docs show them.

The task is specified in ``_data_common.py``. Rows are checked with ``map_batches``, the
dataset-wide rules with ``groupby`` aggregations, and the features with
``ray.data.preprocessors``: ``SimpleImputer``, ``StandardScaler``, ``OneHotEncoder`` and
``Concatenator`` in a ``Chain`` fitted on the train split. Two differences from the spec
follow from those preprocessors: ``SimpleImputer`` has no median (it fills with the mean,
and ``StandardScaler`` then fits on the filled column), and ``OneHotEncoder`` has no
``<other>`` slot (such rows are all zeros) and refuses nulls, so missing categories are
first filled with ``"<missing>"`` by a ``SimpleImputer``, which then has its slot only where
it is among the 50 most frequent values. So the numeric checks differ
from the other sides; the rows per split and per reason, and the kept category slots, do not.

Usage: python benchmarks/baselines/data_raydata.py DATA_DIR [--object-store-mb N] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import ray.data
from _data_common import (  # type: ignore[import-not-found]
    BUCKETS,
    CATEGORICAL,
    CONFLICTING_LABELS,
    DUPLICATE_ID,
    FEATURES,
    HASH_MODULUS,
    HASH_MULTIPLIER,
    ID,
    MAX_CATEGORIES,
    MISSING,
    MISSING_TARGET,
    NUMERIC,
    SPLITS,
    TARGET,
    TEST_CUT,
    VALIDATION_CUT,
)
from ray.data.aggregate import Max, Min
from ray.data.expressions import col
from ray.data.preprocessors import (
    Chain,
    Concatenator,
    OneHotEncoder,
    SimpleImputer,
    StandardScaler,
)


def check_rows(batch: pd.DataFrame) -> pd.DataFrame:
    """Per-row rules, a key of the feature values, the label as a number, the split."""
    reason = np.full(len(batch), "", dtype=object)
    for column in NUMERIC:
        parsed = pd.to_numeric(batch[column], errors="coerce").astype("float64")
        reason[(reason == "") & batch[column].notna().to_numpy() & np.isnan(parsed)] = (
            f"unparseable:{column}"
        )
        batch[column] = parsed
    reason[(reason == "") & batch[TARGET].isna().to_numpy()] = MISSING_TARGET
    bucket = (batch[ID].to_numpy(np.int64) * HASH_MULTIPLIER) % HASH_MODULUS % BUCKETS
    split = np.select([bucket < TEST_CUT, bucket < VALIDATION_CUT], ["test", "validation"], "train")
    return batch.assign(
        reason=reason,
        feature_key=pd.util.hash_pandas_object(batch[FEATURES], index=False).astype("int64"),
        label=(batch[TARGET] == "yes").fillna(False).astype("int8"),
        split=split,
    )


def mark(batch: pd.DataFrame, duplicate_ids: set, conflicting_keys: set) -> pd.DataFrame:
    reason = batch["reason"].to_numpy(dtype=object).copy()
    reason[(reason == "") & batch[ID].isin(duplicate_ids).to_numpy()] = DUPLICATE_ID
    conflicting = batch["feature_key"].isin(conflicting_keys).to_numpy()
    reason[(reason == "") & conflicting] = CONFLICTING_LABELS
    return batch.assign(reason=reason)


def run(data_dir: Path, out_dir: Path) -> tuple[dict, Chain, dict]:
    start = time.perf_counter()
    checked = ray.data.read_parquet(str(data_dir)).map_batches(check_rows, batch_format="pandas")
    checked = checked.materialize()
    ok = checked.filter(expr=col("reason") == "")
    counts = ok.groupby(ID).count().filter(expr=col("count()") > 1)
    duplicate_ids = {row[ID] for row in counts.iter_rows()}
    labels = ok.groupby("feature_key").aggregate(Min("label"), Max("label"))
    conflicts = labels.filter(expr=col("min(label)") != col("max(label)"))
    conflicting_keys = {row["feature_key"] for row in conflicts.iter_rows()}
    marked = checked.map_batches(
        mark,
        fn_kwargs={"duplicate_ids": duplicate_ids, "conflicting_keys": conflicting_keys},
        batch_format="pandas",
    ).materialize()
    marked.filter(expr=col("reason") != "").write_parquet(str(out_dir / "quarantine"))
    valid = marked.filter(expr=col("reason") == "")
    splits = {name: valid.filter(expr=col("split") == name) for name in SPLITS}
    preprocessor = Chain(
        SimpleImputer(columns=NUMERIC, strategy="mean"),
        SimpleImputer(columns=CATEGORICAL, strategy="constant", fill_value=MISSING),
        StandardScaler(columns=NUMERIC),
        OneHotEncoder(columns=CATEGORICAL, max_categories={c: MAX_CATEGORIES for c in CATEGORICAL}),
        Concatenator(
            columns=FEATURES, output_column_name="features", dtype=np.float32, flatten=True
        ),
    )
    preprocessor.fit(splits["train"])
    encoded = {
        name: preprocessor.transform(split).select_columns(["features"]).materialize()
        for name, split in splits.items()
    }
    seconds = time.perf_counter() - start
    reasons = marked.filter(expr=col("reason") != "").groupby("reason").count().to_pandas()
    answer = {
        "seconds": seconds,
        "rows_read": checked.count(),
        "bad": dict(zip(reasons["reason"], reasons["count()"].astype(int).tolist(), strict=True)),
    }
    return answer, preprocessor, encoded


def fitted(preprocessor: Chain) -> dict:
    imputer, _, scaler, onehot, _ = preprocessor.preprocessors
    categories = {}
    for column in CATEGORICAL:
        slots = onehot.stats_[f"unique_values({column})"]
        categories[column] = sorted(slots, key=slots.get)
    return {
        "fill": {c: imputer.stats_[f"mean({c})"] for c in NUMERIC},
        "center": {c: scaler.stats_[f"mean({c})"] for c in NUMERIC},
        "scale": {c: scaler.stats_[f"std({c})"] for c in NUMERIC},
        "categories": categories,
    }


def checks(encoded: ray.data.Dataset, state: dict) -> dict:
    """Rows, the sum of each numeric column and the rows in each kept one-hot slot."""
    sums, rows = None, 0
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        matrix = batch["features"]
        rows += len(matrix)
        part = matrix.sum(axis=0, dtype=np.float64)
        sums = part if sums is None else sums + part
    slots, offset = {}, len(NUMERIC)
    for column in CATEGORICAL:
        kept = state["categories"][column]
        slots[column] = dict(
            zip(kept, sums[offset : offset + len(kept)].round().tolist(), strict=True)
        )
        offset += len(kept)
    return {
        "rows": rows,
        "numeric_sums": dict(zip(NUMERIC, sums[: len(NUMERIC)].tolist(), strict=True)),
        "slots": slots,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--object-store-mb", type=int)
    parser.add_argument("--out-dir", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    store = args.object_store_mb * 2**20 if args.object_store_mb else None
    ray.init(num_cpus=os.cpu_count(), object_store_memory=store, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(dir=args.out_dir) as scratch:
        answer, preprocessor, encoded = run(args.data_dir, Path(scratch))
    state = fitted(preprocessor)
    answer |= {
        "init_s": init_s,
        "splits": {name: checks(dataset, state) for name, dataset in encoded.items()},
        "fit": state,
    }
    ray.shutdown()
    print(json.dumps(answer, default=float))


if __name__ == "__main__":
    main()
