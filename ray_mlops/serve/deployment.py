"""The model server's Serve deployment settings: replicas, their resources, the version.
Ray-free; used by :func:`ray_mlops.serve.app.bind_server` and the exported Serve config
(:func:`ray_mlops.serve.launch.serve_config`)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from ray_mlops.config import PipelineConfig
from ray_mlops.signing.trust import trust_for
from ray_mlops.workspace import Workspace


def deployment_options(cfg: PipelineConfig) -> dict[str, Any]:
    """Replicas (fixed or autoscaled), their CPUs and GPUs, health checks."""
    serve_cfg = cfg.serve
    options: dict[str, Any] = {
        "ray_actor_options": {
            "num_cpus": serve_cfg.cpus_per_replica,
            "num_gpus": serve_cfg.gpus_per_replica,
        },
        # Enough requests in flight per replica for full batches.
        "max_ongoing_requests": max(2 * serve_cfg.max_batch_size, 16),
        "health_check_period_s": 5,
        "graceful_shutdown_timeout_s": 10,
        # A log line per request costs the replica's CPU; /metrics and capture count them.
        "logging_config": {"enable_access_log": serve_cfg.access_log},
    }
    if serve_cfg.max_replicas_per_node is not None:  # a node failure takes at most this many
        options["max_replicas_per_node"] = serve_cfg.max_replicas_per_node
    scaling = serve_cfg.autoscaling
    if scaling is None:
        options["num_replicas"] = serve_cfg.num_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "initial_replicas": max(scaling.min_replicas, 1),
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
            "look_back_period_s": scaling.look_back_period_s,
        }
    return options


def replica_settings(
    cfg: PipelineConfig,
    tracking_uri: str,
    base_dir: Path,
    model_name: str | None = None,
    alias: str | None = None,
    workspace: Workspace | None = None,
) -> dict[str, Any]:
    """What a replica is constructed with (a change starts new replicas).

    ``base_dir`` is the config file's folder (a relative keys file is read from there);
    ``workspace`` says where a relative capture path is written: under its storage (default:
    the workspace of ``base_dir``).
    """
    workspace = workspace or Workspace(base_dir.resolve())
    return {
        "model_name": model_name or cfg.model_name,
        "champion_alias": alias or cfg.registry.champion_alias,
        "tracking_uri": tracking_uri,
        "base_dir": str(base_dir.resolve()),
        "workspace": str(workspace.root),
        "storage": workspace.storage,
        "device": "cuda" if cfg.serve.gpus_per_replica > 0 else "cpu",
        # Where the feedback endpoint stores labels: the monitor reads them from there.
        "labels_path": cfg.monitor.labels_path,
        # How the replica waits for a tracking server that does not answer (alias polls,
        # version loads); replicas may run on other nodes than the process that read it.
        "tracking": cfg.tracking.model_dump(mode="json"),
        # Whose signatures a load accepts: the public keys' PEM text (not secret), since a
        # replica on another node has no key folder of its own.
        "signing": trust_for(
            cfg.governance.signing,
            base_dir=base_dir.resolve(),
            audit_storage=workspace.storage,
            audit_location=cfg.governance.audit.location,
            notify=cfg.notify,
        ).to_settings(),
    }


def user_config(cfg: PipelineConfig) -> dict[str, Any]:
    """What :meth:`ray_mlops.serve.app.ModelServer.reconfigure` receives."""
    return {"serve": cfg.serve.model_dump(mode="json")}


def code_version(settings: dict[str, Any]) -> str:
    """A hash of this package's source and the replica's constructor settings."""
    digest = hashlib.sha256(_source_digest().encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


@functools.cache
def _source_digest() -> str:
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()
