"""Data preparation in idiomatic pandas: one process, the whole table in memory.

The task is specified in ``_data_common.py``: validate with reasons, split by a hash of the
id, fit median imputation, standard scaling and one-hot on train, encode every split.

Usage: python benchmarks/baselines/data_pandas.py DATA_DIR [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
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
    OTHER,
    SPLITS,
    TARGET,
    TEST_CUT,
    VALIDATION_CUT,
)


def validate(df: pd.DataFrame) -> pd.Series:
    """The first rule each row breaks ("" where none)."""
    reason = pd.Series("", index=df.index, dtype=object)
    for column in NUMERIC:
        parsed = pd.to_numeric(df[column], errors="coerce")
        reason[(reason == "") & df[column].notna() & parsed.isna()] = f"unparseable:{column}"
        df[column] = parsed
    reason[(reason == "") & df[TARGET].isna()] = MISSING_TARGET
    ok = reason == ""
    # Among rows that passed the row rules: ids seen twice, and features with two labels.
    duplicated = df[ID].where(ok).duplicated(keep=False) & ok
    # Only rows whose features occur more than once can conflict: group those alone.
    repeated = ok & df.duplicated(subset=FEATURES, keep=False)
    labels = df[repeated].groupby(FEATURES, dropna=False)[TARGET].transform("nunique")
    conflicting = labels.reindex(df.index, fill_value=1) > 1
    reason[duplicated] = DUPLICATE_ID
    reason[conflicting & (reason == "")] = CONFLICTING_LABELS
    return reason


def split_of(ids: pd.Series) -> np.ndarray:
    bucket = (ids.to_numpy(np.int64) * HASH_MULTIPLIER) % HASH_MODULUS % BUCKETS
    return np.select([bucket < TEST_CUT, bucket < VALIDATION_CUT], ["test", "validation"], "train")


def fit(train: pd.DataFrame) -> dict:
    categories = {}
    for column in CATEGORICAL:
        counts = train[column].value_counts()
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        categories[column] = [value for value, _ in ranked[:MAX_CATEGORIES]]
    return {
        "fill": train[NUMERIC].median().to_dict(),
        "center": train[NUMERIC].mean().to_dict(),
        "scale": train[NUMERIC].std(ddof=0).replace(0, 1).to_dict(),
        "categories": categories,
    }


def transform(df: pd.DataFrame, state: dict) -> np.ndarray:
    numeric = df[NUMERIC].fillna(state["fill"])
    scaled = (numeric - pd.Series(state["center"])) / pd.Series(state["scale"])
    parts = [scaled.astype(np.float32)]
    for column in CATEGORICAL:
        kept = state["categories"][column]
        values = df[column].where(df[column].isin(kept), OTHER).where(df[column].notna(), MISSING)
        slots = pd.Categorical(values, categories=[*kept, OTHER, MISSING])
        parts.append(pd.get_dummies(slots, prefix=column, dtype=np.float32).set_index(df.index))
    return pd.concat(parts, axis=1).to_numpy(np.float32)


def run(data_dir: Path, out_dir: Path) -> dict:
    start = time.perf_counter()
    df = pd.read_parquet(data_dir)
    reason = validate(df)
    bad = df[reason != ""].assign(reason=reason[reason != ""])
    bad.to_parquet(out_dir / "quarantine.parquet")
    valid = df[reason == ""]
    split = split_of(valid[ID])
    state = fit(valid[split == "train"])
    encoded = {name: transform(valid[split == name], state) for name in SPLITS}
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows_read": len(df),
        "bad": bad["reason"].value_counts().to_dict(),
        "splits": {name: checks(matrix, state) for name, matrix in encoded.items()},
        "fit": state,
    }


def checks(matrix: np.ndarray, state: dict) -> dict:
    """Rows, the sum of each numeric column and the rows in each one-hot slot."""
    sums = matrix.sum(axis=0, dtype=np.float64)
    slots, offset = {}, len(NUMERIC)
    for column in CATEGORICAL:
        names = [*state["categories"][column], OTHER, MISSING]
        slots[column] = dict(
            zip(names, sums[offset : offset + len(names)].round().tolist(), strict=True)
        )
        offset += len(names)
    return {
        "rows": len(matrix),
        "numeric_sums": dict(zip(NUMERIC, sums[: len(NUMERIC)].tolist(), strict=True)),
        "slots": slots,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        answer = run(args.data_dir, args.out_dir or Path(scratch))
    print(json.dumps(answer, default=float))


if __name__ == "__main__":
    main()
