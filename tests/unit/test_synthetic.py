from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ray_mlops.datasets.synthetic import (
    SYNTHETIC_CATEGORICAL,
    SYNTHETIC_ID,
    SYNTHETIC_MISSING_RATES,
    SYNTHETIC_NUMERIC,
    SYNTHETIC_TARGET,
    SYNTHETIC_TIMESTAMP,
    _draw_codes,
    generate_table,
    write_synthetic_dataset,
)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_table(50_000, seed=11)


def test_schema_and_types(table: pa.Table) -> None:
    expected = [SYNTHETIC_ID, SYNTHETIC_TIMESTAMP, *SYNTHETIC_NUMERIC, *SYNTHETIC_CATEGORICAL]
    assert table.column_names == [*expected, SYNTHETIC_TARGET]
    assert table.schema.field(SYNTHETIC_ID).type == pa.int64()
    assert table.schema.field(SYNTHETIC_TIMESTAMP).type == pa.timestamp("ms")
    for name in SYNTHETIC_NUMERIC:
        assert pa.types.is_integer(table.schema.field(name).type) or pa.types.is_floating(
            table.schema.field(name).type
        ), name
    for name in [*SYNTHETIC_CATEGORICAL, SYNTHETIC_TARGET]:
        assert table.schema.field(name).type == pa.string(), name
    assert set(pc.unique(table.column(SYNTHETIC_TARGET)).to_pylist()) == {"no", "yes"}


def test_values_are_realistic(table: pa.Table) -> None:
    span = pc.min_max(table.column(SYNTHETIC_TIMESTAMP)).as_py()
    assert (span["max"] - span["min"]).days > 700
    income = table.column("income").drop_null().to_numpy()
    assert np.mean(income) > np.median(income)  # right-skewed
    assert income.max() > 20 * np.median(income)  # a few extreme values
    cities = pc.value_counts(table.column("city").drop_null())
    counts = np.sort(cities.field("counts").to_numpy())[::-1]
    assert len(counts) > 2_000
    assert counts[0] > 10 * counts[99]  # Zipf: the top city dwarfs the hundredth
    assert pc.min(table.column("age")).as_py() >= 18
    assert pc.min(table.column("credit_score")).as_py() >= 300
    assert pc.max(table.column("credit_score")).as_py() <= 850


def test_same_arguments_give_the_same_table() -> None:
    first = generate_table(5_000, seed=3, start_id=100)
    assert first.equals(generate_table(5_000, seed=3, start_id=100))
    assert not first.equals(generate_table(5_000, seed=4, start_id=100))
    assert first.column(SYNTHETIC_ID).to_pylist() == list(range(100, 5_100))


def test_missing_rates_match_the_documented_ones(table: pa.Table) -> None:
    for name in table.column_names:
        rate = table.column(name).null_count / table.num_rows
        expected = SYNTHETIC_MISSING_RATES.get(name, 0.0)
        assert abs(rate - expected) < 0.01, (name, rate, expected)
    assert len(set(SYNTHETIC_MISSING_RATES.values())) > 5


def test_target_share_and_learnability() -> None:
    data = generate_table(40_000, seed=5)
    target = data.column(SYNTHETIC_TARGET).to_numpy(zero_copy_only=False) == "yes"
    assert 0.17 < target.mean() < 0.23
    features = []
    for name in SYNTHETIC_NUMERIC:
        values = data.column(name).to_numpy(zero_copy_only=False).astype(float)
        missing = np.isnan(values)
        values = np.log1p(np.where(missing, np.nanmedian(values), values))
        features += [(values - values.mean()) / values.std(), missing]
    for name in SYNTHETIC_CATEGORICAL[:-1]:  # city's 5,000 levels need more than 20k rows
        values = data.column(name).fill_null("<missing>").to_numpy(zero_copy_only=False)
        features += [values == level for level in np.unique(values)]
    x = np.column_stack(features).astype(float)
    model = LogisticRegression(max_iter=1_000).fit(x[:20_000], target[:20_000])
    auc = roc_auc_score(target[20_000:], model.predict_proba(x[20_000:])[:, 1])
    assert auc > 0.7


def test_fast_category_draw_equals_searchsorted() -> None:
    cumulative = np.cumsum([1e-7, 0.3, 0.2, 0.5 - 1e-7])
    codes = _draw_codes(np.random.default_rng(1), cumulative, 200_000)
    uniform = np.random.default_rng(1).random(200_000)
    expected = np.minimum(np.searchsorted(cumulative, uniform, side="right"), 3)
    assert (codes == expected).all()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_files_are_readable_with_unique_ids(
    tmp_path: Path, fmt: Literal["parquet", "csv"]
) -> None:
    paths = write_synthetic_dataset(tmp_path, 2_500, fmt=fmt, rows_per_file=1_000, seed=2)
    assert [path.name for path in paths] == [f"part-0000{i}.{fmt}" for i in range(3)]
    read = pq.read_table if fmt == "parquet" else pa_csv.read_csv
    tables = [read(path) for path in paths]
    assert [t.num_rows for t in tables] == [1_000, 1_000, 500]
    ids = np.concatenate([t.column(SYNTHETIC_ID).to_numpy() for t in tables])
    assert len(np.unique(ids)) == 2_500
    assert (
        tables[1]
        .column(SYNTHETIC_TARGET)
        .equals(generate_table(1_000, seed=3, start_id=1_000).column(SYNTHETIC_TARGET))
    )
    assert not list(tmp_path.glob(".*.tmp"))


def test_parquet_round_trip_keeps_types_and_nulls(tmp_path: Path) -> None:
    (path,) = write_synthetic_dataset(tmp_path, 3_000, seed=9)
    assert pq.read_table(path).equals(generate_table(3_000, seed=9))


def test_write_is_deterministic_and_refuses_to_mix_with_old_files(tmp_path: Path) -> None:
    first = write_synthetic_dataset(tmp_path / "a", 1_500, rows_per_file=700)
    second = write_synthetic_dataset(tmp_path / "b", 1_500, rows_per_file=700)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    with pytest.raises(FileExistsError, match="part-"):
        write_synthetic_dataset(tmp_path / "a", 10)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="n_rows"):
        generate_table(-1)
    with pytest.raises(ValueError, match="rows_per_file"):
        write_synthetic_dataset("unused", 10, rows_per_file=0)
    with pytest.raises(ValueError, match="fmt"):
        write_synthetic_dataset("unused", 10, fmt="json")  # type: ignore[arg-type]


def test_writes_1_2_million_rows_in_three_files(tmp_path: Path) -> None:
    paths = write_synthetic_dataset(tmp_path, 1_200_000, rows_per_file=500_000)
    assert len(paths) == 3
    assert [pq.ParquetFile(p).metadata.num_rows for p in paths] == [500_000, 500_000, 200_000]
    assert ds.dataset(tmp_path).count_rows() == 1_200_000
    ids = ds.dataset(tmp_path).to_table(columns=[SYNTHETIC_ID]).column(SYNTHETIC_ID)
    assert pc.count_distinct(ids).as_py() == 1_200_000
