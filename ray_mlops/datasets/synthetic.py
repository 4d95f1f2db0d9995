"""Synthetic customer-churn tables of any size, for benchmarks and tests.

The table looks like the data a churn model meets in practice: mixed types, skewed numbers
(lognormal money, Poisson and geometric counts), a high-cardinality ``city`` column with a Zipf
tail, missing values at a different rate per column (Arrow nulls, never float NaN), a few
extreme amounts, and a ``"yes"``/``"no"`` target drawn from a logistic model of several features,
so that a model has something to learn.

Columns and the share of nulls in each (``SYNTHETIC_MISSING_RATES``):

==================  ============  =====================================================  ======
column              Arrow type    distribution                                           nulls
==================  ============  =====================================================  ======
customer_id         int64         ``start_id``, ``start_id + 1``, ...                    0%
signup_time         timestamp ms  uniform over 2023-01-01 .. 2024-12-31                  0%
age                 int64         normal(42, 13) clipped to 18..95                       3%
income              double        lognormal around 48k, rising with age; 0.05% x20-200   12%
balance             double        lognormal around 2.5k, 12% exactly 0; 0.05% x20-200    5%
tenure_months       int64         geometric, mean about 30, at most 240                  2%
num_products        int64         1 + Poisson(0.8), at most 8                            4%
credit_score        int64         normal(680, 70) rising with income, 300..850           8%
region              string        5 values, skewed                                       2%
segment             string        4 values, skewed                                       6%
channel             string        5 values, skewed                                       10%
device              string        5 values, skewed                                       15%
plan                string        4 values, skewed                                       3%
city                string        5,000 values, Zipf (s = 1.1)                           7%
churned             string        ``"yes"`` in about 20% of rows                          0%
==================  ============  =====================================================  ======

Values go missing completely at random; the target is drawn from the values before they are
hidden. Churn rises with short tenure, few products, the basic plan, a low credit score, the
phone channel, the student segment, an empty balance, a low income, youth, and a per-city
effect; ``device`` carries no signal. Timestamps have no time zone.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

SYNTHETIC_ID = "customer_id"
SYNTHETIC_TIMESTAMP = "signup_time"
SYNTHETIC_TARGET = "churned"
SYNTHETIC_NUMERIC: list[str] = [
    "age",
    "income",
    "balance",
    "tenure_months",
    "num_products",
    "credit_score",
]
SYNTHETIC_CATEGORICAL: list[str] = ["region", "segment", "channel", "device", "plan", "city"]
SYNTHETIC_MISSING_RATES: dict[str, float] = {
    "age": 0.03,
    "income": 0.12,
    "balance": 0.05,
    "tenure_months": 0.02,
    "num_products": 0.04,
    "credit_score": 0.08,
    "region": 0.02,
    "segment": 0.06,
    "channel": 0.10,
    "device": 0.15,
    "plan": 0.03,
    "city": 0.07,
}
"""Share of nulls per column; columns not listed (id, timestamp, target) have none."""

_EPOCH_MS = 1_672_531_200_000  # 2023-01-01T00:00:00 UTC
_SPAN_MS = 731 * 86_400_000  # two years, 2024 being a leap year
_EXTREME_RATE = 0.0005
_CITY_COUNT = 5_000
_CITY_ZIPF_EXPONENT = 1.1
_GUIDE_BUCKETS = 1 << 16
# Chosen so that about 20% of rows churn (measured over 10M rows: 20.0%).
_CHURN_INTERCEPT = -2.35

# name -> (values, probabilities, effect on the churn log-odds)
_CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]] = {
    "region": (
        ("north", "south", "east", "west", "central"),
        (0.28, 0.24, 0.20, 0.18, 0.10),
        (0.0, 0.1, -0.1, 0.0, 0.2),
    ),
    "segment": (
        ("consumer", "small_business", "corporate", "student"),
        (0.62, 0.20, 0.08, 0.10),
        (0.0, -0.2, -0.5, 0.5),
    ),
    "channel": (
        ("web", "mobile_app", "branch", "phone", "partner"),
        (0.35, 0.30, 0.15, 0.12, 0.08),
        (0.0, -0.2, -0.4, 0.7, 0.3),
    ),
    "device": (
        ("android", "ios", "desktop", "tablet", "other"),
        (0.40, 0.30, 0.20, 0.07, 0.03),
        (0.0, 0.0, 0.0, 0.0, 0.0),
    ),
    "plan": (
        ("basic", "standard", "premium", "enterprise"),
        (0.45, 0.35, 0.15, 0.05),
        (0.7, 0.0, -0.5, -0.9),
    ),
}

_CITY_ROOTS = (
    "Ash", "Bay", "Bright", "Cedar", "Clear", "Cold", "Crest", "Deer", "East", "Elm",
    "Fair", "Fern", "Fox", "Glen", "Gold", "Green", "Hart", "Hazel", "High", "Holly",
    "Iron", "Kings", "Lake", "Lin", "Long", "Maple", "Marsh", "Mill", "Moor", "New",
    "Oak", "Old", "Pine", "Red", "River", "Rock", "Rose", "Salt", "Sand", "Silver",
    "Spring", "Stone", "Sun", "Thorn", "Wal", "Water", "West", "White", "Wild", "Wood",
)  # fmt: skip
_CITY_SUFFIXES = (
    "bridge", "brook", "bury", "by", "dale", "field", "ford", "gate", "ham", "haven",
    "hill", "hurst", "land", "mouth", "port", "stead", "ton", "vale", "ville", "wick",
)  # fmt: skip
_CITY_PREFIXES = ("", "North ", "South ", "East ", "West ")


@functools.cache
def _city_vocabulary() -> tuple[pa.StringArray, np.ndarray, np.ndarray]:
    """The 5,000 city names, their cumulative Zipf probabilities and churn effects.

    Built once per process, so a table of any size costs one ``take`` for this column.
    """
    names = [
        f"{prefix}{root}{suffix}"
        for prefix in _CITY_PREFIXES
        for root in _CITY_ROOTS
        for suffix in _CITY_SUFFIXES
    ]
    # A fixed shuffle, so the most frequent cities are not all "Ash..." and "North ...".
    fixed = np.random.default_rng(20_230_101)
    order = fixed.permutation(len(names))
    vocabulary = pa.array([names[i] for i in order], type=pa.string())
    weights = 1.0 / np.arange(1, _CITY_COUNT + 1) ** _CITY_ZIPF_EXPONENT
    cumulative = np.cumsum(weights / weights.sum())
    effects = fixed.normal(0.0, 0.3, size=_CITY_COUNT)
    return vocabulary, cumulative, effects


def _draw_codes(rng: np.random.Generator, cumulative: np.ndarray, n_rows: int) -> np.ndarray:
    """Category codes with the given cumulative probabilities: ``searchsorted``, but faster.

    A guide table gives each uniform draw a first guess that is never too high; a few
    vectorised steps then move the few draws that lie past a boundary in their bucket. The
    result is exactly ``np.searchsorted(cumulative, u, side="right")``, several times faster
    (a binary search over 5,000 cities per row was the slowest step of ``generate_table``).
    """
    uniform = rng.random(n_rows)
    bounds = cumulative.astype(np.float64)
    bounds[-1] = np.inf  # rounding must not push a draw past the last category
    buckets = np.arange(_GUIDE_BUCKETS) / _GUIDE_BUCKETS
    guide = np.searchsorted(bounds, buckets, side="right").astype(np.int32)
    codes = guide[(uniform * _GUIDE_BUCKETS).astype(np.int64)]
    pending = np.flatnonzero(uniform >= bounds[codes])
    while pending.size:
        codes[pending] += 1
        pending = pending[uniform[pending] >= bounds[codes[pending]]]
    return codes


def _missing(rng: np.random.Generator, n_rows: int, rate: float) -> np.ndarray:
    """A mask with a share ``rate`` of True, missing completely at random."""
    return rng.random(n_rows, dtype=np.float32) < rate


def _strings(
    codes: np.ndarray, vocabulary: pa.Array, rng: np.random.Generator, rate: float
) -> pa.Array:
    """Decode category codes into a plain string column, with a share ``rate`` of nulls."""
    indices = pa.array(codes, mask=_missing(rng, len(codes), rate))
    return vocabulary.take(indices)


def _numbers(values: np.ndarray, rng: np.random.Generator, rate: float) -> pa.Array:
    """A numeric column with a share ``rate`` of nulls."""
    return pa.array(values, mask=_missing(rng, len(values), rate))


def _with_extremes(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiply a rare few values by 20-200: whales and data-entry slips."""
    extreme = rng.random(len(values)) < _EXTREME_RATE
    values[extreme] *= rng.uniform(20.0, 200.0, size=int(extreme.sum()))
    return values


def _draw_numeric(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The numeric columns before any value goes missing, and the latent income score."""
    age = np.clip(np.rint(rng.normal(42.0, 13.0, size=n)), 18, 95).astype(np.int64)
    income_z = rng.normal(0.0, 1.0, size=n)
    income = np.exp(np.log(48_000.0) + 0.6 * income_z + 0.008 * (age - 42))
    empty_balance = rng.random(n) < 0.12
    balance = np.exp(np.log(2_500.0) + 1.2 * rng.normal(size=n) + 0.3 * income_z)
    credit_score = rng.normal(680.0, 70.0, size=n) + 25.0 * income_z
    numeric = {
        "age": age,
        "income": np.rint(_with_extremes(income, rng)),
        "balance": _with_extremes(np.where(empty_balance, 0.0, np.round(balance, 2)), rng),
        "tenure_months": np.minimum(rng.geometric(1.0 / 31.0, size=n) - 1, 240).astype(np.int64),
        "num_products": np.minimum(1 + rng.poisson(0.8, size=n), 8).astype(np.int64),
        "credit_score": np.clip(np.rint(credit_score), 300, 850).astype(np.int64),
    }
    return numeric, income_z


def _numeric_churn_logit(numeric: dict[str, np.ndarray], income_z: np.ndarray) -> np.ndarray:
    """The part of the churn log-odds that the numeric columns explain."""
    return (
        _CHURN_INTERCEPT
        - 0.8 * (np.log1p(numeric["tenure_months"]) - 3.0)
        - 0.6 * (numeric["num_products"] - 1.8)
        - 0.6 * (numeric["credit_score"] - 680.0) / 70.0
        - 0.3 * income_z
        + 0.6 * (numeric["balance"] == 0.0)
        - 0.02 * (numeric["age"] - 42)
    )


def generate_table(n_rows: int, seed: int = 0, start_id: int = 0) -> pa.Table:
    """A synthetic customer-churn table; see the module docstring for its columns.

    The same ``(n_rows, seed, start_id)`` always gives the same table. ``start_id`` is mixed
    into the random stream as well as numbering the ids, so chunks of one dataset differ.

    Args:
        n_rows: Number of rows (0 or more).
        seed: Seed of the random stream (0 or more).
        start_id: First ``customer_id``; the ids are ``start_id .. start_id + n_rows - 1``.

    Returns:
        A ``pyarrow.Table`` with the columns id, timestamp, numeric, categorical and target,
        in that order; categorical columns are plain strings (not dictionary-encoded).

    Raises:
        ValueError: If ``n_rows``, ``seed`` or ``start_id`` is negative.

    Example:
        >>> table = generate_table(1_000, seed=7)
        >>> table.num_rows, table.column("customer_id")[0].as_py()
        (1000, 0)
        >>> set(table.column("churned").to_pylist())
        {'no', 'yes'}
        >>> generate_table(1_000, seed=7).equals(table)
        True
    """
    for name, value in (("n_rows", n_rows), ("seed", seed), ("start_id", start_id)):
        if value < 0:
            raise ValueError(f"generate_table: {name} must be 0 or more, got {value}")
    rng = np.random.default_rng([seed, start_id])
    rates = SYNTHETIC_MISSING_RATES
    signup_ms = _EPOCH_MS + rng.integers(0, _SPAN_MS, size=n_rows, dtype=np.int64)
    numeric, income_z = _draw_numeric(rng, n_rows)
    logit = _numeric_churn_logit(numeric, income_z) + rng.normal(0.0, 0.5, size=n_rows)

    categorical: dict[str, pa.Array] = {}
    for name, (values, probabilities, effects) in _CATEGORIES.items():
        codes = _draw_codes(rng, np.cumsum(probabilities), n_rows)
        logit += np.asarray(effects)[codes]
        categorical[name] = _strings(codes, pa.array(values), rng, rates[name])
    cities, city_cumulative, city_effects = _city_vocabulary()
    city_codes = _draw_codes(rng, city_cumulative, n_rows)
    logit += city_effects[city_codes]
    categorical["city"] = _strings(city_codes, cities, rng, rates["city"])
    churned = rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))

    return pa.table(
        {
            SYNTHETIC_ID: pa.array(np.arange(start_id, start_id + n_rows, dtype=np.int64)),
            SYNTHETIC_TIMESTAMP: pa.array(signup_ms, type=pa.timestamp("ms")),
            **{name: _numbers(numeric[name], rng, rates[name]) for name in SYNTHETIC_NUMERIC},
            **categorical,
            SYNTHETIC_TARGET: pa.array(["no", "yes"]).take(pa.array(churned.astype(np.int8))),
        }
    )


def write_synthetic_dataset(
    directory: str | Path,
    n_rows: int,
    fmt: Literal["parquet", "csv"] = "parquet",
    rows_per_file: int = 500_000,
    seed: int = 0,
) -> list[Path]:
    """Write ``n_rows`` synthetic rows as ``part-00000.<fmt>``, ``part-00001.<fmt>``, ...

    Only one file's rows are in memory at a time, so the dataset may be larger than memory.
    File ``i`` holds ``generate_table(rows, seed + i, i * rows_per_file)``: ids are unique
    across files and the whole output depends only on the arguments. Each file is written
    under a temporary name and renamed, so a crash never leaves a truncated ``part-*`` file.
    In CSV, nulls are empty fields and timestamps are written as ``2023-01-01 00:00:00.000``.

    Args:
        directory: Folder to write into; created when missing. It must hold no ``part-*``
            file of the same format yet.
        n_rows: Total number of rows (0 or more); 0 writes no file.
        fmt: ``"parquet"`` or ``"csv"``.
        rows_per_file: Rows per file (1 or more); the last file holds the remainder.
        seed: Seed of the first file; file ``i`` uses ``seed + i``.

    Returns:
        The paths written, in order.

    Raises:
        ValueError: On a negative ``n_rows`` or ``seed``, ``rows_per_file`` below 1 or an
            unknown ``fmt``.
        FileExistsError: If ``directory`` already holds ``part-*`` files of this format.

    Example:
        >>> import tempfile
        >>> import pyarrow.dataset as ds
        >>> folder = tempfile.mkdtemp()
        >>> paths = write_synthetic_dataset(folder, 2_500, rows_per_file=1_000)
        >>> [path.name for path in paths]
        ['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']
        >>> ds.dataset(folder).count_rows()
        2500
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"write_synthetic_dataset: fmt must be 'parquet' or 'csv', got {fmt!r}")
    if rows_per_file < 1:
        raise ValueError(
            f"write_synthetic_dataset: rows_per_file must be 1 or more, got {rows_per_file}"
        )
    if n_rows < 0 or seed < 0:
        raise ValueError(
            f"write_synthetic_dataset: n_rows and seed must be 0 or more, got {n_rows}, {seed}"
        )
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob(f"part-*.{fmt}"))
    if existing:
        raise FileExistsError(
            f"write_synthetic_dataset: {folder} already holds {len(existing)} part-*.{fmt} "
            f"file(s), e.g. {existing[0].name}; choose an empty folder"
        )
    paths = []
    for index, first_row in enumerate(range(0, n_rows, rows_per_file)):
        table = generate_table(min(rows_per_file, n_rows - first_row), seed + index, first_row)
        path = folder / f"part-{index:05d}.{fmt}"
        partial = folder / f".{path.name}.tmp"
        if fmt == "parquet":
            pq.write_table(table, partial)
        else:
            pa_csv.write_csv(table, partial)
        os.replace(partial, path)
        paths.append(path)
    return paths
