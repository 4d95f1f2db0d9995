"""Deploy, probe and stop the model server; write the Serve config that ``serve deploy`` and a
KubeRay ``RayService`` accept.

Ingress: Ray Serve's HAProxy proxy (``serve.proxy: haproxy``, the default) needs
``RAY_SERVE_ENABLE_HA_PROXY=1`` in the environment of the Ray cluster's processes, so it is
set before this process starts a local Ray (:func:`ray_mlops.runtime.ray_runtime`) and must
be in the cluster's environment elsewhere (the exported Serve config says so).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ray_mlops.audit import actions
from ray_mlops.config import PipelineConfig
from ray_mlops.errors import RegistryError
from ray_mlops.governance.access import AccessControl
from ray_mlops.registry.champion import champion_version
from ray_mlops.secrets import redact_text, redact_uri
from ray_mlops.serve.deployment import deployment_options
from ray_mlops.settings_env import HA_PROXY_ENV, HA_PROXY_SETTINGS, apply_ha_proxy
from ray_mlops.workspace import Workspace

IMPORT_PATH = "ray_mlops.serve.app:build_app"


@dataclass(frozen=True)
class ServedModel:
    """Where a deployed model answers."""

    base_url: str
    model_name: str
    alias: str
    version: str

    @property
    def predict_url(self) -> str:
        """``POST`` endpoint for predictions."""
        return f"{self.base_url}/v1/models/{self.model_name}:predict"


@contextlib.contextmanager
def serving_runtime(
    cfg: PipelineConfig,
    address: str | None = None,
    verbose: bool = False,
    note: Callable[[str], object] = print,
) -> Iterator[None]:
    """The Ray a model server runs on (:func:`ray_mlops.runtime.ray_runtime`).

    A local Ray started here gets the server's own ingress ports and files
    (:func:`ray_mlops.serve.ingress.local_ingress`), checked before it starts, and HAProxy's
    stats and metrics pages on ``serve.host`` only. A stale HAProxy on this machine is
    reported through ``note`` with the command that stops it.

    Raises:
        PortInUseError: a port the server needs is taken on ``serve.host``.
    """
    from ray_mlops.compat.ray_serve import SETUP_HOOK
    from ray_mlops.runtime import ray_runtime, starts_local_ray
    from ray_mlops.serve.ingress import local_ingress, stale_haproxies

    apply_ha_proxy(cfg.serve.proxy)
    if not starts_local_ray(address):
        with ray_runtime(address, verbose):
            yield
        return
    with local_ingress(cfg.serve):
        for stale in stale_haproxies():
            note(f"note: {stale}")
        runtime_env = {"worker_process_setup_hook": SETUP_HOOK}
        with ray_runtime(address, verbose, runtime_env=runtime_env):
            yield


def deploy_model(
    cfg: PipelineConfig,
    tracking_uri: str,
    model_name: str | None = None,
    alias: str | None = None,
    base_dir: Path = Path("."),
    workspace: Workspace | None = None,
) -> ServedModel:
    """Deploy ``models:/<name>@<alias>`` (the config's champion by default) with Ray Serve.

    The actor needs the ``deployer`` role (``governance``); the deployment, or the
    reconfiguration of an application already serving, is recorded in the audit trail.

    Raises:
        AccessDenied: the actor may not (recorded as refused).
        RegistryError: the model or the alias does not exist yet.
        PortInUseError: HAProxy could not bind one of its ports.
    """
    from mlflow.tracking import MlflowClient
    from ray import serve

    from ray_mlops.cluster_check import check_cluster
    from ray_mlops.serve.app import bind_server
    from ray_mlops.serve.ingress import bind_failure

    name = model_name or cfg.model_name
    alias = alias or cfg.registry.champion_alias
    workspace = workspace or Workspace(base_dir.resolve())
    access = AccessControl.of(cfg.governance, workspace, base_dir, tracking_uri)
    target = f"{name}@{alias}"
    action = actions.SERVE_RECONFIGURE if _serving(name) else actions.SERVE_DEPLOY
    access.authorize(action, target, model=name)
    capture = cfg.serve.capture
    check_cluster(
        tracking_uri,
        workspace.capture_location(capture.path) if capture.enabled else None,
        setting="the capture folder (serve.capture.path under workspace.storage)",
    )
    version = champion_version(MlflowClient(tracking_uri), name, alias)
    if version is None:
        raise RegistryError(
            f"no model version has the alias {name}@{alias} in {redact_uri(tracking_uri)}; "
            "run `ray-mlops run CONFIG` first"
        )
    try:
        serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    except Exception as exc:  # Serve raises HAProxy's start-up failure inside a task error
        taken = bind_failure(exc)
        if taken is None:
            raise
        raise taken from None
    app = bind_server(cfg, tracking_uri, base_dir, name, alias, workspace)
    serve.run(app, name=name, route_prefix="/")
    access.record(action, target, details={"version": str(version.version), "port": cfg.serve.port})
    host = "127.0.0.1" if cfg.serve.host in ("0.0.0.0", "::") else cfg.serve.host  # nosec B104  # an address to call, not one to bind
    return ServedModel(f"http://{host}:{cfg.serve.port}", name, alias, str(version.version))


def _serving(name: str) -> bool:
    """Whether Serve already runs an application of this name (a redeploy reconfigures)."""
    import ray
    from ray import serve

    return ray.is_initialized() and name in serve.status().applications


def serve_config(
    cfg: PipelineConfig, config_path: str, tracking_uri: str, model: str | None = None
) -> dict[str, Any]:
    """A Serve config file (``serve deploy FILE``; the ``serveConfigV2`` of a ``RayService``).

    The application is built on the cluster by :func:`ray_mlops.serve.app.build_app` from the
    pipeline config, which must be readable there at ``config_path``. A tracking URI that
    carries a password or token is left out (a Serve config is stored and shown in the clear
    by Ray and Kubernetes): the replicas then take ``$MLFLOW_TRACKING_URI`` from the
    cluster's environment, set from a Secret.
    """
    options = deployment_options(cfg)
    deployment: dict[str, Any] = {"name": "ModelServer", **options}
    args: dict[str, Any] = {"config": config_path}
    env: dict[str, str] = {}
    if redact_uri(tracking_uri) == tracking_uri:
        args["tracking_uri"] = env["MLFLOW_TRACKING_URI"] = tracking_uri
    if cfg.serve.proxy == "haproxy":
        env.update(HA_PROXY_SETTINGS)
    if model:
        args["model"] = model
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": cfg.serve.port},  # nosec B104  # a cluster's proxies, reached through its Service
        "applications": [
            {
                "name": model.partition("@")[0] if model else cfg.model_name,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": args,
                "runtime_env": {"env_vars": env},
                "deployments": [deployment],
            }
        ],
    }


def write_serve_config(document: dict[str, Any], path: Path) -> None:
    """Write the Serve config YAML, with a note on the proxy's environment variable.

    The text is redacted (:func:`ray_mlops.secrets.redact_text`) before it is written: no
    credential of this process's environment, and no URI's password or token, goes out.
    """
    note = (
        f"# Generated by ray-mlops. HAProxy ingress needs {HA_PROXY_ENV}=1 (and the retry\n"
        "# settings below) in the Ray cluster's environment, e.g. the RayService's pod env.\n"
    )
    if any("tracking_uri" not in app["args"] for app in document["applications"]):
        note += (
            "# The tracking URI carries credentials and is left out: give the cluster's pods\n"
            "# MLFLOW_TRACKING_URI from a Kubernetes Secret (secretKeyRef).\n"
        )
    path.write_text(redact_text(note + yaml.safe_dump(document, sort_keys=False)))


def stop_serving() -> None:
    """Shut Serve down: its applications first, then its controller and proxies.

    Deleting an application waits until each replica has stopped gracefully, drain and
    ``__del__`` included, which writes the replica's buffered capture rows. ``serve.shutdown``
    alone gives the replicas 30 s, as long as the HAProxy drain, so a process that then shuts
    its Ray down lost them (measured: 40 of 40 captured requests). Serve itself stops through
    :func:`ray_mlops.compat.ray_serve.shutdown_serve`, which does not report its normal end
    as a failed task.
    """
    from ray import serve

    from ray_mlops.compat.ray_serve import shutdown_serve

    try:
        applications = list(serve.status().applications)
    except Exception:  # Serve is not running here: nothing to delete
        applications = []
    for application in applications:
        serve.delete(application)
    shutdown_serve()
