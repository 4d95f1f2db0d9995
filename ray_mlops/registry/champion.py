"""Register model versions and move the champion alias."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ray_mlops.evaluate.metrics import is_improvement

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

TAG_PROMOTED = "ray_mlops.promoted"
TAG_DECISION = "ray_mlops.decision"


@dataclass(frozen=True)
class AliasDecision:
    """Whether the candidate takes the alias, and why."""

    promote: bool
    reason: str


def champion_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version the alias points at, or ``None`` if the model or alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_version(
    client: MlflowClient,
    name: str,
    source: str,
    run_id: str,
    tags: Mapping[str, str],
    description: str,
    timeout_s: float = 60.0,
) -> ModelVersion:
    """Create (if needed) the registered model and a new version from ``source``."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        name, source=source, run_id=run_id, tags=dict(tags), description=description
    )
    deadline = time.monotonic() + timeout_s
    while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(0.2)
        version = client.get_model_version(name, version.version)
    if version.status != "READY":  # a stuck registration must not be served or promoted
        raise MlflowException(f"model version {name}/{version.version} is {version.status}")
    return version


def decide_alias(
    metric: str,
    candidate_score: float,
    champion_score: float | None,
    champion: ModelVersion | None,
) -> AliasDecision:
    """Take the alias when there is no champion, or when the candidate scores better."""
    if champion is None:
        return AliasDecision(True, "no champion yet")
    if champion_score is None:
        return AliasDecision(
            False, f"champion v{champion.version} could not be scored on this holdout"
        )
    comparison = (
        f"{metric} {candidate_score:.4f} vs champion v{champion.version} {champion_score:.4f}"
    )
    if is_improvement(metric, candidate_score, champion_score):
        return AliasDecision(True, f"better on the test split: {comparison}")
    return AliasDecision(False, f"not better on the test split: {comparison}")


def apply_alias_decision(
    client: MlflowClient, name: str, alias: str, version: ModelVersion, decision: AliasDecision
) -> None:
    """Record the decision on the version and, on promotion, move the alias (one call)."""
    client.set_model_version_tag(name, version.version, TAG_PROMOTED, str(decision.promote).lower())
    client.set_model_version_tag(name, version.version, TAG_DECISION, decision.reason)
    if decision.promote:
        client.set_registered_model_alias(name, alias, version.version)


def load_version(tracking_uri: str, name: str, version: str, workdir: str) -> PyFuncModel:
    """Download a registered version into ``workdir`` and load it as a pyfunc model.

    Uses the given tracking URI explicitly rather than MLflow's process-global one.
    """
    import mlflow.artifacts
    import mlflow.pyfunc

    client = MlflowClient(tracking_uri)
    source = client.get_model_version_download_uri(name, version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=workdir, tracking_uri=tracking_uri
    )
    return mlflow.pyfunc.load_model(local)
