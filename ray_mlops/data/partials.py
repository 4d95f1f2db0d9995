"""Counts over few groups without a shuffle: per-block partial counts summed in the driver.

Ray Data's ``groupby`` shuffles, which costs seconds of fixed overhead per call on a small
machine. When the number of groups is small (classes, reasons, splits, categories x
classes), counting inside each block and adding the per-block tables is exact, streams,
and sends the driver one small table per block instead of rows.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import ray.data

COUNT = "_ray_mlops_count"


def _block_counts(batch: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    keys = batch[columns].astype("string").fillna("<null>")
    counted = keys.value_counts(dropna=False).rename(COUNT).reset_index()
    return counted.astype({c: "string" for c in columns})


def count_by(dataset: ray.data.Dataset, columns: list[str]) -> pd.DataFrame:
    """Rows per combination of ``columns`` (as strings; nulls as ``"<null>"``).

    Returns:
        One row per combination present: the key columns and ``count``.
    """
    partial_counts = dataset.map_batches(
        partial(_block_counts, columns=columns), batch_format="pandas"
    ).to_pandas()
    if partial_counts.empty:
        return pd.DataFrame(columns=[*columns, "count"])
    total = partial_counts.groupby(columns, sort=True)[COUNT].sum().rename("count")
    return total.reset_index()
