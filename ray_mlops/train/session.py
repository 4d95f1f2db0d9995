"""Where the training loop runs: a Ray Train worker, or a Ray Tune trial on its own.

The loop (:mod:`ray_mlops.train.loop`) asks its session for its rank and device, its data,
the checkpoint to resume from, and where to report each epoch. A Ray Train worker answers
with ``ray.train``; a single-worker Tune trial answers with ``ray.tune`` and data already in
memory, which saves the seconds a Ray Train worker group takes to start (it dominates small
trials: see ``benchmarks/tune_efficiency.py``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import torch

from ray_mlops.train.encode import shard_name
from ray_mlops.train.ingest import ResidentShard, Shard, StreamingShard

RESIDENT = "resident"
WORKER_NODES = "worker_nodes"
"""Reported by rank 0 with every epoch: the Ray node id of each rank, comma-separated."""


class Restorable(Protocol):
    """A Ray Train or Ray Tune checkpoint."""

    def as_directory(self) -> AbstractContextManager[str]:
        """The checkpoint's files in a local folder."""
        ...


class LoopSession(Protocol):
    """What the training loop needs from where it runs."""

    rank: int
    device: torch.device

    def prepare_model(self, network: torch.nn.Module) -> torch.nn.Module:
        """The network on the device (wrapped for data parallelism where there is any)."""
        ...

    def get_checkpoint(self) -> Restorable | None:
        """The checkpoint to resume from, if any."""
        ...

    def open_shard(self, name: str, ingest: str, prefetch_batches: int) -> Shard:
        """This rank's part of the ``train`` or ``validation`` split."""
        ...

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        """Report one epoch, with the checkpoint written to ``checkpoint_dir`` if given."""
        ...


class RayTrainSession:
    """The loop as a Ray Train worker of a ``TorchTrainer``."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        self.rank = ray.train.get_context().get_world_rank()
        self.device = ray.train.torch.get_device()
        self.worker_nodes = _worker_nodes()

    def prepare_model(self, network: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(network)

    def get_checkpoint(self) -> Restorable | None:
        import ray.train

        return ray.train.get_checkpoint()

    def open_shard(self, name: str, ingest: str, prefetch_batches: int) -> Shard:
        import ray.train

        if ingest == RESIDENT:
            return ResidentShard.load(
                ray.train.get_dataset_shard(shard_name(name, self.rank)), self.device
            )
        iterator = ray.train.get_dataset_shard(name)
        return StreamingShard(iterator, device=self.device, prefetch_batches=prefetch_batches)

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        import ray.train

        reported: dict[str, Any] = dict(metrics)
        if self.rank == 0:  # where the workers ran, for the run's record
            reported[WORKER_NODES] = ",".join(self.worker_nodes)
        if checkpoint_dir is None:
            ray.train.report(reported)
        else:
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir))
            ray.train.report(reported, checkpoint=checkpoint)


def _worker_nodes() -> list[str]:
    """The Ray node id of every rank, in rank order (one all-gather, at start)."""
    import ray
    import torch.distributed as dist

    node = ray.get_runtime_context().get_node_id()
    if not dist.is_available() or not dist.is_initialized():
        return [node]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, node)
    return [str(n) for n in gathered]


class TuneTrialSession:
    """The loop inside one Ray Tune trial: a single worker on the trial's own resources."""

    def __init__(self, shards: dict[str, ResidentShard], device: torch.device) -> None:
        self.rank = 0
        self.device = device
        self.shards = shards

    def prepare_model(self, network: torch.nn.Module) -> torch.nn.Module:
        return network.to(self.device)

    def get_checkpoint(self) -> Restorable | None:
        import ray.tune

        return ray.tune.get_checkpoint()

    def open_shard(self, name: str, ingest: str, prefetch_batches: int) -> Shard:
        return self.shards[name]

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        import ray.tune

        extra: dict[str, Any] = {}
        if checkpoint_dir is not None:
            extra["checkpoint"] = ray.tune.Checkpoint.from_directory(str(checkpoint_dir))
        ray.tune.report(metrics, **extra)
