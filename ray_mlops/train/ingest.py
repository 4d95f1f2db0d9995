"""How batches reach a training worker.

Two paths, picked per run (``train.ingest``):

* resident: the worker reads its shard of the encoded split once and keeps it as two tensors
  on its device; each epoch is a seeded permutation of row indices, and a batch is one
  gather. No Ray Data work happens between steps, so a GPU is fed as fast as a plain torch
  loop over device tensors, and the order of rows is reproducible.
* stream: Ray Data's ``iter_torch_batches`` with prefetching and a local shuffle buffer, for
  shards larger than a worker's memory.

The resident path gets its shard from :func:`ray_mlops.train.encode.rank_shards`, which puts
the blocks of a split in a fixed order (each block is sorted by a hash of its rows' content
when it is encoded, and blocks are ordered by their first hash) and cuts the rows into equal
ranges, one per rank: the same rows in the same order on the same worker in every run.
Ray Train's default ``streaming_split`` hands blocks to whichever worker asks first, and
Ray Data finishes blocks in no fixed order; a full sort would cost a shuffle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from ray_mlops.train.encode import FEATURES, LABEL

if TYPE_CHECKING:
    from ray.data import DataIterator

Batch = tuple[torch.Tensor, torch.Tensor]
_LOAD_BATCH_ROWS = 65_536  # rows per read while a resident shard is loaded


class Shard(Protocol):
    """A worker's part of one split, as batches of (features, label) tensors on its device."""

    def batches(self, batch_size: int, shuffle_seed: int | None) -> Iterator[Batch]:
        """One pass; shuffled by ``shuffle_seed`` unless it is ``None``."""
        ...


class ResidentShard:
    """The whole shard as two device tensors; batches are gathers by a seeded permutation.

    Example:
        >>> shard = ResidentShard(torch.arange(10.0).reshape(5, 2), torch.arange(5))
        >>> [len(y) for _, y in shard.batches(2, shuffle_seed=None)]
        [2, 2, 1]
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features = features
        self.labels = labels
        self.rows = len(labels)

    @classmethod
    def load(cls, iterator: DataIterator, device: torch.device) -> ResidentShard:
        """Read every block of the shard once and move it to ``device``.

        On CUDA the host copy is pinned first, so the transfer runs at full bus speed.
        """
        features: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for block in iterator.iter_batches(batch_size=_LOAD_BATCH_ROWS, batch_format="numpy"):
            features.append(np.asarray(block[FEATURES], dtype=np.float32))
            labels.append(np.asarray(block[LABEL]))
        if not features:
            return cls(torch.zeros((0, 0)), torch.zeros(0))
        x = torch.from_numpy(np.concatenate(features))
        y = torch.from_numpy(np.concatenate(labels))
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return cls(x.to(device, non_blocking=True), y.to(device, non_blocking=True))

    def batches(self, batch_size: int, shuffle_seed: int | None) -> Iterator[Batch]:
        """Slices in order, or gathers by a permutation drawn from ``shuffle_seed``."""
        if shuffle_seed is None:
            for start in range(0, self.rows, batch_size):
                yield (
                    self.features[start : start + batch_size],
                    self.labels[start : start + batch_size],
                )
            return
        generator = torch.Generator().manual_seed(shuffle_seed)
        order = torch.randperm(self.rows, generator=generator).to(self.features.device)
        for start in range(0, self.rows, batch_size):
            index = order[start : start + batch_size]
            yield self.features.index_select(0, index), self.labels.index_select(0, index)


class StreamingShard:
    """Ray Data batches straight to the device, prepared ``prefetch_batches`` ahead."""

    def __init__(self, iterator: DataIterator, device: torch.device, prefetch_batches: int) -> None:
        self.iterator = iterator
        self.device = device
        self.prefetch_batches = prefetch_batches

    def batches(self, batch_size: int, shuffle_seed: int | None) -> Iterator[Batch]:
        """One streamed pass; a local shuffle buffer of four batches when shuffling."""
        for batch in self.iterator.iter_torch_batches(
            batch_size=batch_size,
            device=self.device,
            prefetch_batches=self.prefetch_batches,
            local_shuffle_buffer_size=4 * batch_size if shuffle_seed is not None else None,
            local_shuffle_seed=shuffle_seed,
        ):
            yield batch[FEATURES], batch[LABEL]
