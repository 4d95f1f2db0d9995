"""The Ray Serve application: one autoscaling deployment that serves ``models:/<name>@<alias>``.

Every replica is its own HTTP ingress (behind Serve's HAProxy or its Python proxy), so a
request costs one hop. A replica is a :class:`~ray_mlops.serve.dataplane.DataPlane` (the
served versions, keys, limits, capture, metrics) behind the HTTP API of
:func:`ray_mlops.serve.api.create_api` (REST v1, the Open Inference Protocol v2, /metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from ray import serve

from ray_mlops.compat.ray_serve import with_version
from ray_mlops.config import PipelineConfig, ServeConfig
from ray_mlops.serve.api import create_api
from ray_mlops.serve.dataplane import DataPlane
from ray_mlops.serve.deployment import (
    code_version,
    deployment_options,
    replica_settings,
    user_config,
)
from ray_mlops.serve.slots import use_trust
from ray_mlops.signing.trust import Trust
from ray_mlops.workspace import Workspace


@serve.deployment
@serve.ingress()
class ModelServer:
    """A replica holding the served model versions.

    Its settings come in two parts, the way Serve tells a restart from an in-place update:

    - ``__init__`` gets what needs a new replica: ``model_name``, ``champion_alias``,
      ``tracking_uri``, ``base_dir`` and ``device``. The champion is loaded once, here.
    - :meth:`reconfigure` gets the config's ``serve`` section as Serve's ``user_config``, on
      start and again whenever only it changed. Keys, rate limits, the deadline, batching,
      capture, the rollout and alias polling then change in place: no new replica, no model
      reload, no drain, no dropped request.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        if "signing" in settings:  # before the champion loads: every load is verified
            use_trust(Trust.from_settings(settings["signing"]))
        self.plane = DataPlane(settings, serve.get_replica_context().replica_tag)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """This replica's HTTP API (Serve calls it once, after ``__init__``)."""
        return create_api(self.plane)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply the ``serve`` section (``user_config["serve"]``) to this running replica."""
        self.plane.reconfigure(ServeConfig.model_validate(user_config["serve"]))

    def check_health(self) -> None:
        """Serve's health check: a replica without its champion is replaced."""
        if not self.plane.ready:
            raise RuntimeError("no champion loaded")

    def __del__(self) -> None:
        plane = getattr(self, "plane", None)
        if plane is not None:
            plane.close()


def bind_server(
    cfg: PipelineConfig,
    tracking_uri: str,
    base_dir: Path,
    model_name: str | None = None,
    alias: str | None = None,
    workspace: Workspace | None = None,
) -> Any:
    """The Serve application of the model server, bound to its settings.

    The ``serve`` section travels as Serve's ``user_config``: redeploying after a change to
    it (keys, limits, deadline, batching, capture, rollout) reconfigures the running replicas
    in place. Changing the model, the tracking URI or the replicas' CPUs and GPUs starts new
    replicas.
    """
    settings = replica_settings(cfg, tracking_uri, base_dir, model_name, alias, workspace)
    options = deployment_options(cfg) | {"user_config": user_config(cfg)}
    # A new version when the code or the replica's settings change, and only then: a
    # redeploy with neither changed keeps the running replicas.
    server = with_version(ModelServer, code_version(settings), **options)
    return server.bind(settings)


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for ``serve run`` / ``serve deploy`` / KubeRay ``RayService``.

    ``import_path: ray_mlops.serve.app:build_app`` with ``args: {config: PATH}`` (and
    optionally ``tracking_uri``, ``model``: NAME@ALIAS).
    """
    from ray_mlops.config import load_config

    loaded = load_config(Path(args["config"]))
    workspace = Workspace.of(loaded)
    name, _, alias = str(args.get("model") or "").partition("@")
    return bind_server(
        loaded.pipeline,
        workspace.tracking_uri(args.get("tracking_uri") or loaded.pipeline.tracking.tracking_uri),
        loaded.base_dir,
        model_name=name or None,
        alias=alias or None,
        workspace=workspace,
    )
