"""The driver's side of training data: splits encoded once, then cut into one shard per rank.

A module that never imports torch: Ray Data runs :func:`to_model_batch`, and
:func:`in_fixed_order` runs small tasks, in Ray's worker processes; a fresh worker that
imported torch for them (as the trainer's module does) spent 2-3 s on it on a 2-core
machine before its first block. A run on the test sample took 6.5 s to encode its first
split that way, 0.4 s this way.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_mlops.features.state import FeatureState
from ray_mlops.features.transform import encode_labels, transform_features

if TYPE_CHECKING:
    import ray.data

FEATURES = "features"
LABEL = "label"
ROW_KEY = "row_key"


def to_model_batch(frame: pd.DataFrame, state: FeatureState, target: str) -> dict[str, object]:
    """Raw rows -> ``{"features": float32 (n, d), "label": (n,), "row_key": int64 (n,)}``.

    Features use the serving transform. ``row_key`` is a hash of the raw row, and the rows
    of each batch come out sorted by it: with blocks ordered by their first key (see
    :mod:`ray_mlops.train.ingest`), shards and their row order do not depend on the order in
    which Ray Data's tasks happen to finish.
    """
    key = pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64)
    order = np.argsort(key, kind="stable")
    return {
        FEATURES: transform_features(frame, state)[order],
        LABEL: encode_labels(frame[target], state)[order],
        ROW_KEY: key[order],
    }


def encode_split(split: ray.data.Dataset, state: FeatureState, target: str) -> ray.data.Dataset:
    """Encode a split once, materialized in the object store, so epochs re-read tensors only.

    Materializing also keeps Ray Data's transform tasks from competing with the training
    workers for CPUs during training.
    """
    return split.map_batches(
        partial(to_model_batch, state=state, target=target), batch_format="pandas"
    ).materialize()


def rank_shards(dataset: ray.data.Dataset, world_size: int, equal: bool) -> list[ray.data.Dataset]:
    """Worker ``i``'s rows are the ``i``-th of ``world_size`` row ranges of ``dataset``.

    Computed in the driver, once, before the workers start (doing it inside Ray Train's
    dataset manager blocks its event loop). ``equal=True`` (train) gives every worker the
    same number of rows, so every worker takes the same number of steps, as DDP needs; at
    most ``world_size - 1`` rows are left out. ``equal=False`` (validation) cuts at row
    indices and keeps every row.
    """
    ordered = in_fixed_order(dataset)
    if world_size == 1:
        return [ordered]
    if equal:
        return list(ordered.split(world_size, equal=True))
    rows = ordered.count()
    cuts = [rows * rank // world_size for rank in range(1, world_size)]
    return list(ordered.split_at_indices(cuts))


def shard_name(split: str, rank: int) -> str:
    """Name of rank ``rank``'s shard of ``split`` among the trainer's datasets."""
    return f"{split}_rank{rank}"


def in_fixed_order(dataset: ray.data.Dataset) -> ray.data.Dataset:
    """The same materialized rows with blocks ordered by their first ``row_key``.

    Blocks hold rows sorted by key (see ``ray_mlops.train.encode.to_model_batch``), and
    their content depends only on the data, so the result's row order is reproducible.
    """
    import ray
    import ray.data

    first_key = ray.remote(num_cpus=0)(_first_key_of)
    refs = dataset.to_arrow_refs()
    first_keys = ray.get([first_key.remote(ref) for ref in refs])
    ordered = [ref for _, ref in sorted(zip(first_keys, refs, strict=True), key=lambda kv: kv[0])]
    return ray.data.from_arrow_refs(ordered)


def _first_key_of(table: Any) -> int:
    column = table.column(ROW_KEY)
    return int(column[0].as_py()) if len(column) else 2**63 - 1  # empty blocks go last
