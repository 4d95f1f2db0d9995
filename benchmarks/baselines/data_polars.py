"""Data preparation in polars: lazy queries, run in memory or on the streaming engine.

The task is specified in ``_data_common.py``: validate with reasons, split by a hash of the
id, fit median imputation, standard scaling and one-hot on train, encode every split.

``--engine in-memory`` collects the validated rows once and the encoded splits as
DataFrames (everything in memory). ``--engine streaming`` never collects rows: the
validated rows are sunk to Parquet, then scanned for the statistics and for each encoded
split, which is sunk to Parquet too, so memory stays bounded whatever the data size.

Usage: python benchmarks/baselines/data_polars.py DATA_DIR --engine streaming [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl
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

REASON = "reason"


def validated(source: pl.LazyFrame) -> pl.LazyFrame:
    """Every row with its reason ("" where it passed), numeric columns as Float64."""
    parsed = source.with_columns(
        [pl.col(c).cast(pl.Float64, strict=False).alias(f"{c}_parsed") for c in NUMERIC]
    )
    reason = pl.when(False).then(pl.lit(""))
    for column in NUMERIC:
        failed = pl.col(column).is_not_null() & pl.col(f"{column}_parsed").is_null()
        reason = reason.when(failed).then(pl.lit(f"unparseable:{column}"))
    reason = (
        reason.when(pl.col(TARGET).is_null()).then(pl.lit(MISSING_TARGET)).otherwise(pl.lit(""))
    )
    checked = parsed.with_columns(
        *[pl.col(f"{c}_parsed").alias(c) for c in NUMERIC], reason.alias(REASON)
    ).drop([f"{c}_parsed" for c in NUMERIC])
    ok = checked.filter(pl.col(REASON) == "")
    duplicate_ids = (
        ok.group_by(ID).agg(pl.len()).filter(pl.col("len") > 1).select(ID, dup=pl.lit(True))
    )
    conflicts = (
        ok.group_by(FEATURES)
        .agg(pl.col(TARGET).n_unique().alias("labels"))
        .filter(pl.col("labels") > 1)
        .select(*FEATURES, conflict=pl.lit(True))
    )
    marked = checked.join(duplicate_ids, on=ID, how="left").join(
        conflicts, on=FEATURES, how="left", nulls_equal=True
    )
    reason = (
        pl.when(pl.col(REASON) != "")
        .then(pl.col(REASON))
        .when(pl.col("dup").fill_null(False))
        .then(pl.lit(DUPLICATE_ID))
        .when(pl.col("conflict").fill_null(False))
        .then(pl.lit(CONFLICTING_LABELS))
        .otherwise(pl.lit(""))
    )
    bucket = (pl.col(ID) * HASH_MULTIPLIER) % HASH_MODULUS % BUCKETS
    split = (
        pl.when(bucket < TEST_CUT)
        .then(pl.lit("test"))
        .when(bucket < VALIDATION_CUT)
        .then(pl.lit("validation"))
        .otherwise(pl.lit("train"))
    )
    return marked.with_columns(reason.alias(REASON), split.alias("split")).drop("dup", "conflict")


def fit(train: pl.LazyFrame, engine: str) -> dict:
    stats = train.select(
        *[pl.col(c).median().alias(f"fill:{c}") for c in NUMERIC],
        *[pl.col(c).mean().alias(f"center:{c}") for c in NUMERIC],
        *[pl.col(c).std(ddof=0).alias(f"scale:{c}") for c in NUMERIC],
    ).collect(engine=engine)
    row = stats.row(0, named=True)
    counts = pl.collect_all(
        [
            train.group_by(c)
            .len()
            .drop_nulls()
            .sort(["len", c], descending=[True, False])
            .head(MAX_CATEGORIES)
            for c in CATEGORICAL
        ],
        engine=engine,
    )
    return {
        "fill": {c: row[f"fill:{c}"] for c in NUMERIC},
        "center": {c: row[f"center:{c}"] for c in NUMERIC},
        "scale": {c: row[f"scale:{c}"] or 1.0 for c in NUMERIC},
        "categories": {c: frame[c].to_list() for c, frame in zip(CATEGORICAL, counts, strict=True)},
    }


def encoding(state: dict) -> list[pl.Expr]:
    """The 91 float32 model inputs as expressions."""
    exprs = [
        ((pl.col(c).fill_null(state["fill"][c]) - state["center"][c]) / state["scale"][c])
        .cast(pl.Float32)
        .alias(c)
        for c in NUMERIC
    ]
    for column in CATEGORICAL:
        kept = state["categories"][column]
        value = pl.col(column)
        exprs += [
            (value == v).fill_null(False).cast(pl.Float32).alias(f"{column}={v}") for v in kept
        ]
        other = value.is_not_null() & ~value.is_in(kept)
        exprs.append(other.cast(pl.Float32).alias(f"{column}={OTHER}"))
        exprs.append(value.is_null().cast(pl.Float32).alias(f"{column}={MISSING}"))
    return exprs


def run(data_dir: Path, out_dir: Path, engine: str) -> tuple[dict, dict]:
    source = pl.scan_parquet(data_dir / "*.parquet")
    start = time.perf_counter()
    if engine == "streaming":
        pl.Config.set_engine_affinity("streaming")
        validated(source).sink_parquet(out_dir / "validated.parquet", engine=engine)
        rows = pl.scan_parquet(out_dir / "validated.parquet")
    else:
        rows = validated(source).collect(engine=engine).lazy()
    bad = rows.filter(pl.col(REASON) != "")
    valid = rows.filter(pl.col(REASON) == "")
    state = fit(valid.filter(pl.col("split") == "train"), engine)
    encoded: dict[str, pl.DataFrame | Path] = {}
    for name in SPLITS:
        query = valid.filter(pl.col("split") == name).select(encoding(state))
        if engine == "streaming":
            query.sink_parquet(out_dir / f"{name}.parquet", engine=engine)
            encoded[name] = out_dir / f"{name}.parquet"
        else:
            encoded[name] = query.collect(engine=engine)
    bad.sink_parquet(out_dir / "quarantine.parquet", engine=engine)
    seconds = time.perf_counter() - start
    splits = {name: checks(frame, state, engine) for name, frame in encoded.items()}
    reasons = bad.group_by(REASON).len().collect(engine=engine)
    return {
        "seconds": seconds,
        "rows_read": source.select(pl.len()).collect().item(),
        "bad": dict(zip(reasons[REASON].to_list(), reasons["len"].to_list(), strict=True)),
        "splits": splits,
        "fit": state,
    }, encoded


def checks(frame: pl.DataFrame | Path, state: dict, engine: str) -> dict:
    """Rows, the sum of each numeric column and the rows in each one-hot slot."""
    lazy = pl.scan_parquet(frame) if isinstance(frame, Path) else frame.lazy()
    sums = lazy.select(pl.len(), pl.all().cast(pl.Float64).sum()).collect(engine=engine)
    total = sums.row(0, named=True)
    slots = {
        c: {v: total[f"{c}={v}"] for v in [*state["categories"][c], OTHER, MISSING]}
        for c in CATEGORICAL
    }
    return {
        "rows": total["len"],
        "numeric_sums": {c: total[c] for c in NUMERIC},
        "slots": slots,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--engine", choices=["in-memory", "streaming"], default="in-memory")
    parser.add_argument("--out-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out_dir) as scratch:
        answer, _ = run(args.data_dir, Path(scratch), args.engine)
    answer["engine"] = args.engine
    print(json.dumps(answer, default=float))


if __name__ == "__main__":
    main()
