"""When a redeploy reconfigures the running replicas and when it replaces them (Ray-free)."""

from __future__ import annotations

from ray_mlops.serve.deployment import code_version

SETTINGS = {
    "model_name": "adult",
    "champion_alias": "champion",
    "tracking_uri": "sqlite:///mlflow.db",
    "base_dir": "/work",
    "device": "cpu",
}


def test_the_version_follows_the_replica_settings_and_nothing_else() -> None:
    assert code_version(SETTINGS) == code_version(dict(SETTINGS))
    for key, value in [("model_name", "other"), ("tracking_uri", "http://x"), ("device", "cuda")]:
        assert code_version(SETTINGS | {key: value}) != code_version(SETTINGS), key
