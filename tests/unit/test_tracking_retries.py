"""How long a run waits for an unreachable tracking server: config -> MLflow's variables, the
bound a failure states, and the one message it ends with. Ray-free, no server needed."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import requests
import urllib3
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.tracking import MlflowClient
from urllib3.exceptions import MaxRetryError, NewConnectionError

from ray_mlops import settings_env
from ray_mlops.config import TrackingConfig, TrainConfig, parse_config
from ray_mlops.errors import ConfigError, TrackingError
from ray_mlops.serve.deployment import replica_settings
from ray_mlops.tracking import retry_window_s, tracking_failure
from ray_mlops.train.loop import LoopSettings

MLFLOW_VARIABLES = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in (*MLFLOW_VARIABLES, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
        monkeypatch.setenv(key, "placeholder")  # restored (or removed) after the test
        monkeypatch.delenv(key)
    return monkeypatch


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _minimal(tracking: dict[str, object]) -> dict[str, object]:
    return {
        "name": "retries",
        "data": {"path": "x.csv", "target": "y", "numeric": ["x"]},
        "tracking": tracking,
    }


def test_the_defaults_wait_through_a_restart_and_give_up_within_minutes() -> None:
    tracking = TrackingConfig()
    # Tries at about 0, 0, 2, 6, 14, 30 and 62 s: a server back within a minute is reached.
    assert retry_window_s(tracking.retries, tracking.retry_backoff_s, 0.0) == 62
    assert retry_window_s(tracking.retries, tracking.retry_backoff_s, 1.0) <= 70
    assert tracking.request_timeout_s <= 60


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retries", 11),  # MLflow refuses more than 10
        ("retries", -1),
        ("retry_backoff_s", 121),  # MLflow refuses a factor above 120
        ("retry_backoff_s", 1.5),  # MLflow reads whole seconds
        ("request_timeout_s", 0),
    ],
)
def test_values_mlflow_would_refuse_fail_in_the_config(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"tracking.{key}"):
        parse_config(_minimal({key: value}), origin="test")


def test_the_section_becomes_mlflows_variables_and_overrides_a_users_value(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    settings_env.apply_tracking(TrackingConfig(retries=3, retry_backoff_s=2, request_timeout_s=7))
    assert {key: os.environ[key] for key in MLFLOW_VARIABLES} == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "7",
    }
    # The run's summary says where to look: MLflow's "View run ... at" lines are off.
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    # MLflow parses them as it will on each request.
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3
    assert MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 2
    assert MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get() == 1.0
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7


@pytest.mark.parametrize(("retries", "backoff"), [(0, 1), (1, 5), (6, 1), (7, 2), (10, 120)])
def test_the_stated_bound_is_what_urllib3_sleeps(retries: int, backoff: int) -> None:
    """MLflow's session retries with urllib3's Retry: sum its own backoffs until it gives up."""
    retry = urllib3.util.Retry(
        total=retries, connect=retries, read=retries, backoff_factor=backoff, backoff_jitter=0
    )
    refused = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    slept = 0.0
    with pytest.raises(MaxRetryError):
        while True:
            retry = retry.increment(method="POST", url="/", error=refused)
            slept += retry.get_backoff_time()
    assert slept == retry_window_s(retries, backoff, 0.0)


def test_the_settings_travel_with_the_loop_config_and_the_replica_settings() -> None:
    tracking = TrackingConfig(retries=2, retry_backoff_s=3, request_timeout_s=9)
    settings = LoopSettings(
        train=TrainConfig(),
        spec_json="{}",
        feature_state_json="{}",
        task="classification",
        ingest="resident",
        train_rows_per_worker=10,
        target_scale=1.0,
        tracking_uri="http://mlflow:5000",
        run_id="r",
        tracking=tracking,
    )
    sent = json.loads(json.dumps(settings.to_dict()))  # plain values, as Ray ships them
    assert LoopSettings.from_dict(sent).tracking == tracking

    cfg = parse_config(_minimal(tracking.model_dump()), origin="test")
    replica = replica_settings(cfg, "http://mlflow:5000", Path("."))
    assert TrackingConfig.model_validate(replica["tracking"]) == tracking


def test_a_refused_server_becomes_one_message_without_credentials(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings_env.apply_tracking(TrackingConfig(retries=0, retry_backoff_s=0))
    port = _closed_port()
    client = MlflowClient(f"http://someone:hunter2@127.0.0.1:{port}")
    with pytest.raises(MlflowException) as raised:
        client.get_experiment_by_name("anything")
    failure = tracking_failure(raised.value)
    assert isinstance(failure, TrackingError)
    message = str(failure)
    assert message.startswith(
        f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}: connection refused"
    )
    assert "0 retries" in message and f"curl http://127.0.0.1:{port}/health" in message
    assert "hunter2" not in message and "\n" not in message


def test_an_error_about_something_else_is_left_alone() -> None:
    missing = MlflowException("Run 'no-such-run' not found", error_code=RESOURCE_DOES_NOT_EXIST)
    assert tracking_failure(missing) is None
    assert tracking_failure(ValueError("bad value")) is None
    # Another client that found nobody (a webhook, say) is not the tracking server.
    with pytest.raises(requests.ConnectionError) as raised:
        requests.post(f"http://127.0.0.1:{_closed_port()}/hook", timeout=5)
    assert tracking_failure(raised.value) is None
