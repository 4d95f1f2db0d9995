"""aggregate_blocks gives what Dataset.aggregate gives, for Ray's stock and our own aggregations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ray
from ray.data.aggregate import Count, CountDistinct, Max, Mean, Min, Quantile, Std, ValueCounter

from ray_mlops.data.aggregate import aggregate_blocks
from ray_mlops.features._aggregations import Quantiles

pytestmark = pytest.mark.usefixtures("ray_session")


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=rows)
    x[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame(
        {"x": x, "k": rng.integers(0, 5, rows), "c": rng.choice(["a", "b", None], rows)}
    )


def _aggregations() -> list:
    return [
        Count(),
        Count("x", ignore_nulls=True),
        Mean("x"),
        Std("x", ddof=1),
        Min("k"),
        Max("k"),
        CountDistinct("k"),
        Quantile("k", q=0.3),
        Quantiles("k", [0.1, 0.9]),
        ValueCounter("c"),
    ]


def test_matches_dataset_aggregate_over_many_blocks() -> None:
    ds = ray.data.from_pandas(_frame(5_000)).repartition(7).materialize()
    ours = aggregate_blocks(ds, *_aggregations())
    theirs = ds.aggregate(*_aggregations())
    assert ours.keys() == theirs.keys()
    for name, expected in theirs.items():
        if name == "value_counter(c)":  # block order decides the order of the values
            got = dict(zip(ours[name]["values"], ours[name]["counts"], strict=True))
            assert got == dict(zip(expected["values"], expected["counts"], strict=True))
        elif isinstance(expected, float):
            assert ours[name] == pytest.approx(expected, rel=1e-12), name
        else:
            assert ours[name] == expected, name
    assert ours["count()"] == 5_000
    assert ours["count(x)"] == int(_frame(5_000)["x"].notna().sum())


def test_empty_dataset_gives_identities() -> None:
    ds = ray.data.from_pandas(_frame(10)).filter(lambda row: False)
    result = aggregate_blocks(ds, Count(), Mean("x"))
    assert result["count()"] == 0
    assert result["mean(x)"] is None
