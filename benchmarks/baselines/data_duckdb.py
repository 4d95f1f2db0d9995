"""Data preparation in DuckDB SQL, in an in-memory database (spills past its memory limit).

The task is specified in ``_data_common.py``: validate with reasons, split by a hash of the
id, fit median imputation, standard scaling and one-hot on train, encode every split. The
validated rows are a table; each encoded split is fetched as an Arrow table, the model's
input (as pandas and polars hold theirs in memory).

Usage: python benchmarks/baselines/data_duckdb.py DATA_DIR [--memory-limit 4GB] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
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


def q(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def s(value: str) -> str:
    """A quoted string literal."""
    return "'" + value.replace("'", "''") + "'"


def validate(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    unparseable = " ".join(
        f"WHEN {q(c)} IS NOT NULL AND TRY_CAST({q(c)} AS DOUBLE) IS NULL THEN 'unparseable:{c}'"
        for c in NUMERIC
    )
    casts = ", ".join(f"TRY_CAST({q(c)} AS DOUBLE) AS {q(c)}" for c in NUMERIC)
    features = ", ".join(q(c) for c in FEATURES)
    same_features = " AND ".join(f"c.{q(c)} IS NOT DISTINCT FROM r.{q(c)}" for c in FEATURES)
    con.execute(f"""
        CREATE TABLE checked AS
        SELECT * REPLACE ({casts}),
               CASE {unparseable} WHEN {q(TARGET)} IS NULL THEN '{MISSING_TARGET}' ELSE '' END
               AS reason
        FROM read_parquet('{data_dir}/*.parquet')
    """)
    con.execute(f"""
        CREATE TABLE marked AS
        WITH ok AS (SELECT * FROM checked WHERE reason = ''),
        duplicate_ids AS (SELECT {q(ID)} FROM ok GROUP BY {q(ID)} HAVING count(*) > 1),
        conflicts AS (
            SELECT {features}, true AS conflict FROM ok
            GROUP BY ALL HAVING count(DISTINCT {q(TARGET)}) > 1
        )
        SELECT r.* REPLACE (
                 CASE WHEN r.reason <> '' THEN r.reason
                      WHEN d.{q(ID)} IS NOT NULL THEN '{DUPLICATE_ID}'
                      WHEN c.conflict THEN '{CONFLICTING_LABELS}'
                      ELSE '' END AS reason),
               CASE WHEN (r.{q(ID)} * {HASH_MULTIPLIER}) % {HASH_MODULUS} % {BUCKETS} < {TEST_CUT}
                    THEN 'test'
                    WHEN (r.{q(ID)} * {HASH_MULTIPLIER}) % {HASH_MODULUS} % {BUCKETS}
                         < {VALIDATION_CUT} THEN 'validation'
                    ELSE 'train' END AS split
        FROM checked r LEFT JOIN duplicate_ids d ON r.{q(ID)} = d.{q(ID)}
        LEFT JOIN conflicts c ON {same_features}
    """)


def fit(con: duckdb.DuckDBPyConnection) -> dict:
    aggregates = ", ".join(f"median({q(c)}), avg({q(c)}), stddev_pop({q(c)})" for c in NUMERIC)
    row = con.execute(
        f"SELECT {aggregates} FROM marked WHERE reason = '' AND split = 'train'"
    ).fetchone()
    categories = {}
    for column in CATEGORICAL:
        categories[column] = [
            value
            for (value,) in con.execute(f"""
                SELECT {q(column)} FROM marked
                WHERE reason = '' AND split = 'train' AND {q(column)} IS NOT NULL
                GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {MAX_CATEGORIES}
            """).fetchall()
        ]
    return {
        "fill": {c: row[3 * i] for i, c in enumerate(NUMERIC)},
        "center": {c: row[3 * i + 1] for i, c in enumerate(NUMERIC)},
        "scale": {c: row[3 * i + 2] or 1.0 for i, c in enumerate(NUMERIC)},
        "categories": categories,
    }


def encoding(state: dict) -> str:
    """The 91 float32 model inputs as SQL expressions."""
    exprs = [
        f"CAST((coalesce({q(c)}, {state['fill'][c]!r}) - {state['center'][c]!r}) "
        f"/ {state['scale'][c]!r} AS FLOAT) AS {q(c)}"
        for c in NUMERIC
    ]
    for column in CATEGORICAL:
        kept = state["categories"][column]
        col = q(column)
        exprs += [
            f"CAST(coalesce({col} = {s(v)}, false) AS FLOAT) AS {q(f'{column}={v}')}" for v in kept
        ]
        listed = ", ".join(s(v) for v in kept)
        exprs.append(
            f"CAST({col} IS NOT NULL AND {col} NOT IN ({listed}) AS FLOAT) "
            f"AS {q(f'{column}={OTHER}')}"
        )
        exprs.append(f"CAST({col} IS NULL AS FLOAT) AS {q(f'{column}={MISSING}')}")
    return ", ".join(exprs)


def run(data_dir: Path, out_dir: Path, memory_limit: str | None) -> dict:
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{out_dir / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    start = time.perf_counter()
    validate(con, data_dir)
    con.execute(
        f"COPY (SELECT * FROM marked WHERE reason <> '') TO '{out_dir / 'quarantine.parquet'}'"
    )
    state = fit(con)
    select = encoding(state)
    encoded = {
        name: con.sql(
            f"SELECT {select} FROM marked WHERE reason = '' AND split = '{name}'"
        ).to_arrow_table()
        for name in SPLITS
    }
    seconds = time.perf_counter() - start
    reasons = con.execute(
        "SELECT reason, count(*) FROM marked WHERE reason <> '' GROUP BY 1"
    ).fetchall()
    answer = {
        "seconds": seconds,
        "rows_read": con.execute("SELECT count(*) FROM checked").fetchone()[0],
        "bad": dict(reasons),
        "splits": {name: checks(con, table, state) for name, table in encoded.items()},
        "fit": state,
    }
    con.close()
    return answer


def checks(con: duckdb.DuckDBPyConnection, encoded: pa.Table, state: dict) -> dict:
    """Rows, the sum of each numeric column and the rows in each one-hot slot."""
    columns = encoded.column_names
    sums = con.execute(
        "SELECT count(*), "
        + ", ".join(f"sum(CAST({q(c)} AS DOUBLE))" for c in columns)
        + " FROM encoded"
    ).fetchone()
    total = dict(zip(columns, sums[1:], strict=True))
    slots = {
        c: {v: total[f"{c}={v}"] for v in [*state["categories"][c], OTHER, MISSING]}
        for c in CATEGORICAL
    }
    return {"rows": sums[0], "numeric_sums": {c: total[c] for c in NUMERIC}, "slots": slots}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--memory-limit", help="DuckDB's memory_limit, e.g. 4GB")
    parser.add_argument("--out-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out_dir) as scratch:
        answer = run(args.data_dir, Path(scratch), args.memory_limit)
    print(json.dumps(answer, default=float))


if __name__ == "__main__":
    main()
