"""Signed models through the registry (issue 28): a version whose files were changed in the
artifact store is refused by ``ray-mlops promote`` (exit 5, audited, announced) and by a
serving replica's alias watcher, which keeps serving the version it had."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest
from mlflow.tracking import MlflowClient

from ray_mlops.audit import actions, audit_log_for
from ray_mlops.config import load_config
from ray_mlops.errors import SignatureError
from ray_mlops.pipeline import PipelineResult
from ray_mlops.registry.champion import load_version
from ray_mlops.serve.deployment import replica_settings
from ray_mlops.signing import SIGNATURE_FILE, Trust
from tests.integration import test_promotion

MODEL = "adult-test"
receiver = test_promotion.webhook  # the fixture: a real HTTP receiver of webhooks
WEIGHTS = "artifacts/predictor/model.pt"


def _copy_version(
    client: MlflowClient, tracking_uri: str, tmp: Path, name: str
) -> tuple[str, Path]:
    """A new version holding its own copy of the champion's files, in the champion's run;
    the version and the folder where the artifact store keeps its files."""
    champion = client.get_model_version_by_alias(MODEL, "champion")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(MODEL, champion.version),
        dst_path=str(tmp / name),
        tracking_uri=tracking_uri,
    )
    client.log_artifacts(champion.run_id, local, name)
    source = f"{client.get_run(champion.run_id).info.artifact_uri}/{name}"
    version = client.create_model_version(MODEL, source=source, run_id=champion.run_id)
    return str(version.version), Path(source.removeprefix("file://"))


@pytest.fixture(scope="module")
def tampered(
    trained: PipelineResult, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A registered version whose weights lost one bit where the artifact store keeps them."""
    client = MlflowClient(tracking_uri)
    version, stored = _copy_version(client, tracking_uri, tmp_path_factory.mktemp("t"), "tampered")
    weights = stored / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    return version


def _refusals(storage: Path, version: str) -> list[Any]:
    log = audit_log_for(str(storage))
    return [
        r
        for r in log.records()
        if r.action == actions.SIGNATURE_REFUSED and r.target == f"{MODEL}/v{version}"
    ]


def test_promote_refuses_a_tampered_version_audited_and_announced(
    tampered: str,
    workspace: Path,
    tracking_uri: str,
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = receiver
    done = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "promote", MODEL, tampered, "--reason", "try"],
        capture_output=True,
        text=True,
        cwd=workspace,
        timeout=300,
        env={
            **os.environ,
            "COLUMNS": "300",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "RAY_MLOPS_WEBHOOK_URL": url,
        },
    )
    assert done.returncode == 5, done.stdout + done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert f"{MODEL}/v{tampered}: refused: files do not match the signature" in said
    assert f"changed: {WEIGHTS}" in said
    [record] = _refusals(workspace / ".ray-mlops", tampered)
    assert record.outcome == "refused" and WEIGHTS in record.reason
    [hook] = [h for h in received if h["event"] == "model_tampered"]
    assert (hook["model"], hook["version"]) == (MODEL, tampered)
    client = MlflowClient(tracking_uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) != tampered


def test_a_replica_keeps_serving_when_the_alias_moves_to_a_tampered_version(
    tampered: str,
    workspace: Path,
    tracking_uri: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ray_mlops.serve import slots

    cfg = load_config(workspace / "adult-test.yaml").pipeline
    storage = tmp_path / "storage"
    settings = replica_settings(cfg, tracking_uri, workspace)
    settings["signing"]["audit_storage"] = str(storage)  # this test's own audit log
    trust = Trust.from_settings(json.loads(json.dumps(settings["signing"])))
    assert trust.enabled and len(trust.public_keys) == 1  # PEM text: no key folder needed
    client = MlflowClient(tracking_uri)
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    client.set_registered_model_alias(MODEL, "signed-test", champion)
    slots.use_trust(trust)
    caplog.set_level(logging.ERROR, logger=slots.__name__)
    try:
        held = {"signed-test": slots.load_slot(tracking_uri, MODEL, "signed-test")}
        watcher = slots.AliasWatcher(tracking_uri, MODEL, held, interval_s=0.2)  # type: ignore[arg-type]
        client.set_registered_model_alias(MODEL, "signed-test", tampered)
        deadline = time.monotonic() + 30
        while not _refusals(storage, tampered) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # five more polls: the refused version is not retried
        watcher.stop()
    finally:
        slots.use_trust(None)
        client.delete_registered_model_alias(MODEL, "signed-test")
    slot = held["signed-test"]
    assert slot is not None and slot.version == champion
    assert len(_refusals(storage, tampered)) == 1
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert f"refused {MODEL} v{tampered} for @signed-test, still serving v{champion}" in line
    assert f"changed: {WEIGHTS}" in line


def test_signing_disabled_loads_an_unsigned_version_enabled_refuses_it(
    trained: PipelineResult, tracking_uri: str, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri)
    version, stored = _copy_version(client, tracking_uri, tmp_path, "unsigned")
    (stored / SIGNATURE_FILE).unlink()
    model, _ = load_version(tracking_uri, MODEL, version, str(tmp_path / "a"), Trust(enabled=False))
    assert model.metadata.get_input_schema() is not None
    with pytest.raises(SignatureError, match=r"not signed.*governance\.signing\.enabled: false"):
        load_version(tracking_uri, MODEL, version, str(tmp_path / "b"), Trust(enabled=True))
