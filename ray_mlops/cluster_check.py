"""Checks that a Ray cluster of several nodes can run a config, before any work starts.

On one node every path is shared and a SQLite tracking store works. On several nodes Ray
Train and Tune write checkpoints from whichever node a worker runs on, replicas capture traffic
on theirs, and rank 0 logs metrics from its own: node-local storage or an MLflow file store
would scatter a run over disks no other node reads (Ray itself fails only at the first
checkpoint, minutes in). So the storage must be an object store or a folder that every node
sees (checked by writing a marker and looking for it from every node), and tracking must go to
a server.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ray_mlops.errors import ConfigError
from ray_mlops.secrets import redact_uri
from ray_mlops.storage import is_object_store, scheme_of

__all__ = ["alive_nodes", "check_cluster"]

# Tracking URIs that name a store on one machine's disk.
_FILE_STORES = frozenset({"", "file", "sqlite"})
_STORAGE_EXAMPLE = (
    "set it to an object store or a folder every node mounts, e.g.\n"
    "  workspace:\n"
    "    storage: s3://my-bucket/ray-mlops   # or /mnt/shared/ray-mlops"
)


def alive_nodes() -> list[dict[str, object]]:
    """The alive nodes of the Ray instance this process is connected to."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def check_cluster(
    tracking_uri: str, storage: str | None, setting: str = "workspace.storage"
) -> None:
    """Refuse a config whose storage or tracking store only one node of the cluster reaches.

    Does nothing on a single node. Call it connected to Ray, before the run starts.

    Args:
        tracking_uri: Where the run tracks (a file or SQLite store is refused).
        storage: Where the command writes from any node (the workspace's storage, a
            capture location); None when it writes nothing there.
        setting: The config key that sets ``storage``, for the message.

    Raises:
        ConfigError: node-local storage or a file tracking store on a cluster, naming the
            setting and showing an example.
    """
    nodes = alive_nodes()
    if len(nodes) < 2:
        return
    if scheme_of(tracking_uri) in _FILE_STORES or tracking_uri.startswith("sqlite:"):
        raise ConfigError(
            f"tracking.tracking_uri (or $MLFLOW_TRACKING_URI) is {redact_uri(tracking_uri)}, "
            f"a store on one machine's disk, but this Ray cluster has {len(nodes)} nodes: "
            "workers on other nodes could not log to it. Run an MLflow tracking server and point at it, e.g.\n"
            "  tracking:\n"
            "    tracking_uri: http://mlflow.example.internal:5000"
        )
    if storage is not None and not is_object_store(storage):
        blind = _nodes_not_seeing(storage, nodes)
        if blind:
            raise ConfigError(
                f"{setting} is {storage}, a folder that {len(blind)} of the "
                f"{len(nodes)} nodes of this Ray cluster do not see ({', '.join(blind)}): "
                f"checkpoints and captured traffic must reach every node; {_STORAGE_EXAMPLE}"
            )


def _nodes_not_seeing(folder: str, nodes: list[dict[str, object]]) -> list[str]:
    """The addresses of the nodes that do not see a marker written to ``folder`` here."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = Path(folder) / f".ray-mlops-shared-{uuid.uuid4().hex}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by the driver; looked for from every node\n")
    try:
        looks = [
            ray.remote(num_cpus=0)(_exists)
            .options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(str(node["NodeID"]), soft=False)
            )
            .remote(str(marker))
            for node in nodes
        ]
        seen = ray.get(looks, timeout=120)
    finally:
        marker.unlink(missing_ok=True)
    return [str(node["NodeManagerAddress"]) for node, ok in zip(nodes, seen, strict=True) if not ok]


def _exists(path: str) -> bool:
    """Whether ``path`` exists on the node this runs on."""
    return Path(path).exists()
