"""Redaction (ray_mlops/secrets.py) and the places that must use it: no password or token of a
URI, and no credential of the environment, in what ray-mlops records, exports or prints."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ray_mlops.config import NotifyConfig, PipelineConfig
from ray_mlops.notify import NullNotifier, WebhookNotifier, notifier_for
from ray_mlops.secrets import (
    REDACTED,
    address_of,
    redact_config,
    redact_text,
    redact_uri,
    secret_values,
)
from ray_mlops.serve.launch import serve_config, write_serve_config

PASSWORD = "pw-5f1c9e"
DB_URI = f"postgresql://mlflow:{PASSWORD}@db.internal:5432/mlflow"
HOOK = f"https://hooks.example/notify?channel=ml&token={PASSWORD}"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (DB_URI, "postgresql://mlflow:***@db.internal:5432/mlflow"),
        (HOOK, "https://hooks.example/notify?channel=ml&token=***"),
        ("s3://b/p?X-Amz-Signature=abc&X-Amz-Credential=k", "s3://b/p?X-Amz-Signature=***&X-Amz-Credential=***"),
        ("https://h/x?api_key=abc#top", "https://h/x?api_key=***#top"),
        # Nothing secret: unchanged, byte for byte (sqlite://// keeps its four slashes).
        ("sqlite:////tmp/w/mlflow.db", "sqlite:////tmp/w/mlflow.db"),
        ("http://mlflow.default.svc:5000", "http://mlflow.default.svc:5000"),
        ("postgresql://mlflow@db/mlflow", "postgresql://mlflow@db/mlflow"),
        ("https://h/x?page=2", "https://h/x?page=2"),
        ("not a uri: user:pw@host", "not a uri: user:pw@host"),
    ],
)  # fmt: skip
def test_redact_uri_hides_passwords_and_secret_query_values(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected


def test_address_of_keeps_only_where_a_server_is() -> None:
    assert address_of(f"https://u:{PASSWORD}@h:8443/a/b?token=x#f") == "https://h:8443/a/b"


def test_redact_text_finds_uris_and_environment_credentials_in_free_text() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "aws-secret-123456", "MLFLOW_TRACKING_TOKEN": "short"}
    text = f"failed: {DB_URI}, key aws-secret-123456; token short; see '{HOOK}'"
    redacted = redact_text(text, environ=env)
    assert PASSWORD not in redacted and "aws-secret-123456" not in redacted
    assert "postgresql://mlflow:***@db.internal" in redacted
    # Too short to search for safely: "short" would blank ordinary words.
    assert secret_values(env) == ["aws-secret-123456"]


def test_redact_config_walks_the_whole_document() -> None:
    cfg = PipelineConfig.model_validate(
        {
            "name": "demo",
            "data": {"path": "https://data.example/x.csv?sig=abc", "target": "y", "numeric": ["a"]},
            "tracking": {"tracking_uri": DB_URI},
            "notify": {"webhook_url": HOOK},
        }
    )
    document = redact_config(cfg.model_dump(mode="json"))
    text = yaml.safe_dump(document)
    assert PASSWORD not in text and "sig=abc" not in text
    assert document["tracking"]["tracking_uri"] == redact_uri(DB_URI)
    assert document["train"] == cfg.model_dump(mode="json")["train"]  # the rest untouched


def test_a_redacted_webhook_url_from_a_run_notifies_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """promote/rollback read the config a run logged, whose webhook token is redacted."""
    logged = NotifyConfig(webhook_url=redact_uri(HOOK))
    monkeypatch.delenv("RAY_MLOPS_WEBHOOK_URL", raising=False)
    assert isinstance(notifier_for(logged), NullNotifier)
    monkeypatch.setenv("RAY_MLOPS_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    notifier = notifier_for(logged)
    assert isinstance(notifier, WebhookNotifier) and notifier.url == "http://127.0.0.1:9/hook"
    notifier.close(timeout_s=0)


def test_the_serve_export_leaves_out_a_tracking_uri_with_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-7d2e41")
    cfg = PipelineConfig.model_validate(
        {"name": "demo", "data": {"path": "x.csv", "target": "y", "numeric": ["a"]}}
    )
    document = serve_config(cfg, "serve.yaml", DB_URI)
    out = tmp_path / "serve.yaml"
    write_serve_config(document, out)
    text = out.read_text()
    assert PASSWORD not in text and "aws-secret" not in text
    app = yaml.safe_load(text)["applications"][0]
    assert "tracking_uri" not in app["args"]
    assert "MLFLOW_TRACKING_URI" not in app["runtime_env"]["env_vars"]
    assert "MLFLOW_TRACKING_URI from a Kubernetes Secret" in text
    # A URI without credentials is exported as it is, for the replicas to use.
    plain = serve_config(cfg, "serve.yaml", "http://mlflow:5000")["applications"][0]
    assert plain["args"]["tracking_uri"] == "http://mlflow:5000"
    assert plain["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert REDACTED not in yaml.safe_dump(plain)
