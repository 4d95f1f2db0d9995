"""Start, probe and stop the model server on the current Ray instance."""

from __future__ import annotations

from dataclasses import dataclass

from ray_mlops.config import PipelineConfig
from ray_mlops.errors import RegistryError
from ray_mlops.registry.champion import champion_version


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


def deploy_model(
    cfg: PipelineConfig,
    tracking_uri: str,
    model_name: str | None = None,
    alias: str | None = None,
) -> ServedModel:
    """Deploy ``models:/<name>@<alias>`` (the config's champion by default) with Ray Serve.

    Raises:
        RegistryError: the model or the alias does not exist yet.
    """
    from mlflow.tracking import MlflowClient
    from ray import serve

    from ray_mlops.serve.app import ModelServer

    name = model_name or cfg.model_name
    alias = alias or cfg.registry.champion_alias
    version = champion_version(MlflowClient(tracking_uri), name, alias)
    if version is None:
        raise RegistryError(
            f"no model version has the alias {name}@{alias} in {tracking_uri}; "
            "run `ray-mlops run CONFIG` first"
        )
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    settings = {
        "model_name": name,
        "alias": alias,
        "tracking_uri": tracking_uri,
        "max_batch_size": cfg.serve.max_batch_size,
        "batch_wait_timeout_s": cfg.serve.batch_wait_timeout_s,
        "max_records": cfg.serve.max_records,
    }
    app = ModelServer.options(  # type: ignore[attr-defined]
        num_replicas=cfg.serve.num_replicas,
        ray_actor_options={"num_cpus": cfg.serve.cpus_per_replica},
    ).bind(settings)
    serve.run(app, name=name, route_prefix="/")
    host = "127.0.0.1" if cfg.serve.host in ("0.0.0.0", "::") else cfg.serve.host
    return ServedModel(f"http://{host}:{cfg.serve.port}", name, alias, str(version.version))


def stop_serving() -> None:
    """Shut Serve down (its proxy and replicas)."""
    from ray import serve

    serve.shutdown()
