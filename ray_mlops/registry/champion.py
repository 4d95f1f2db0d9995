"""Register model versions and tag them; find and load the champion."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

    from ray_mlops.signing.trust import Trust


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


def tag_version(client: MlflowClient, name: str, version: str, tags: Mapping[str, str]) -> None:
    """Set tags on a model version, one write each, in order (names: :mod:`ray_mlops.mlflow_names`)."""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def load_version(
    tracking_uri: str, name: str, version: str, workdir: str, trust: Trust | None = None
) -> tuple[PyFuncModel, Path]:
    """Download a registered version into ``workdir``, verify it; the loaded pyfunc model and
    its folder.

    Uses the given tracking URI explicitly rather than MLflow's process-global one. Nothing
    in the folder is loaded before its signature and signer are checked.

    Args:
        trust: Whether to check the signature, the trusted signers, where a refusal is
            recorded. None: the defaults (checked, the default key folder's public key).

    Raises:
        SignatureError: the version's files, signature or signer do not check out (audited
            and announced when ``trust`` says where).
    """
    import mlflow.artifacts
    import mlflow.pyfunc

    from ray_mlops.signing.trust import default_trust

    trust = trust or default_trust()
    client = MlflowClient(tracking_uri)
    source = client.get_model_version_download_uri(name, version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=workdir, tracking_uri=tracking_uri
    )
    if trust.enabled:  # model-signing takes 0.4 s to import: only when it is used
        from ray_mlops.signing.events import verify_or_refuse

        verify_or_refuse(Path(local), trust, f"{name}/v{version}")
    return mlflow.pyfunc.load_model(local), Path(local)
