"""The environment variables ray-mlops sets, their values, and which ones a user's value beats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ray_mlops import settings_env

SET_BY_APPLIERS = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response 502 503",
    "RAY_SERVE_HAPROXY_RETRIES": "3",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [*SET_BY_APPLIERS, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"]:
        # Set, then removed: monkeypatch then restores each one (absent ones too) afterwards.
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    return monkeypatch


def _apply_all() -> None:
    settings_env.apply_cli()
    settings_env.apply_ha_proxy("haproxy")
    settings_env.apply_tune()
    settings_env.apply_train()


def test_the_appliers_set_the_same_variables_and_values_as_before(
    clean_env: pytest.MonkeyPatch,
) -> None:
    _apply_all()
    assert {key: os.environ.get(key) for key in SET_BY_APPLIERS} == SET_BY_APPLIERS


def test_a_users_value_wins_except_tunes_logger_switch(clean_env: pytest.MonkeyPatch) -> None:
    for key in SET_BY_APPLIERS:
        clean_env.setenv(key, "mine")
    _apply_all()
    overridden = {key for key in SET_BY_APPLIERS if os.environ[key] != "mine"}
    assert overridden == {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"}


def test_the_python_proxy_sets_no_haproxy_variable(clean_env: pytest.MonkeyPatch) -> None:
    settings_env.apply_ha_proxy("python")
    assert not {key for key in settings_env.HA_PROXY_SETTINGS if key in os.environ}


def test_a_local_token_file_turns_on_token_auth_unless_a_mode_was_chosen(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    settings_env.use_local_auth_token()
    assert "RAY_AUTH_MODE" not in os.environ
    (tmp_path / "token").write_text("secret")
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    settings_env.use_local_auth_token()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    clean_env.setenv("RAY_AUTH_MODE", "disabled")
    settings_env.use_local_auth_token()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"
