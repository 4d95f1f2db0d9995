"""Deterministic train/validation/test assignment by a hash of the id (or the whole row).

A row's split depends only on its own content and the salt, never on its position or on the
other rows, so adding rows later does not move existing ones between splits. Ray-free.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ray_mlops.config import SplitConfig

SplitName = Literal["train", "validation", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")
_BUCKETS = 10_000


def assign_splits(frame: pd.DataFrame, split: SplitConfig, id_column: str | None) -> np.ndarray:
    """The split name of every row of ``frame``.

    Example:
        >>> frame = pd.DataFrame({"id": range(1000)})
        >>> names = assign_splits(frame, SplitConfig(validation=0.2, test=0.2), "id")
        >>> sorted(set(names))
        ['test', 'train', 'validation']
    """
    keys = frame[[id_column]] if id_column else frame
    # Hash a string form so that the id 7 read from CSV (int) and from JSON ("7") agree.
    salted = keys.astype("string").fillna("<null>") + f"|{split.seed}"
    hashes = pd.util.hash_pandas_object(salted, index=False).to_numpy()
    bucket = (hashes % _BUCKETS) / _BUCKETS
    return np.select(
        [bucket < split.test, bucket < split.test + split.validation],
        ["test", "validation"],
        default="train",
    )
