"""Every environment variable this package sets: the one place that writes ``os.environ``.

Some settings of Ray, Ray Tune, Ray Train, Serve's HAProxy ingress and MLflow exist only as
environment variables. Their names and values are here, and each applier below writes one
group of them just before the process that reads them starts, or the object that reads them
is built:

- :func:`apply_cli`: ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``, as ``ray-mlops`` starts.
- :func:`apply_ha_proxy` (:data:`HA_PROXY_SETTINGS`) and :func:`apply_ingress` (the server's
  own HAProxy ports and files): before a model server's local Ray starts.
- :func:`apply_tune` (:data:`TUNE_FORCED`, :data:`TUNE_DEFAULTS`): before a ``Tuner`` is built.
- :func:`apply_train` (:data:`TRAIN_DEFAULTS`): before a ``TorchTrainer`` is built.
- :func:`use_local_auth_token` (``RAY_AUTH_MODE``): before the Jobs client imports Ray.
- :func:`apply_tracking` (:func:`tracking_env`): MLflow's HTTP retries, from the config's
  ``tracking`` section, in every process that talks to a tracking server (the driver,
  training's rank 0, a model server's replicas), before its first MLflow call.

They are not all written once as the CLI starts: the Python API and a Ray Job's driver do
not pass through the CLI, a search trial builds its ``TorchTrainer`` in a Tune worker that a
cluster starts without the CLI's environment, and Tune's variables written before a local
Ray starts would reach every Ray worker, which they do not today. A value the user set wins,
except where noted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module at start: no pydantic there
    from ray_mlops.config import TrackingConfig

#: Serve's switch for its HAProxy ingress (``serve.proxy: haproxy``), read by the processes
#: of the Ray cluster, so it must be set before a local Ray starts.
HA_PROXY_ENV = "RAY_SERVE_ENABLE_HA_PROXY"
# Predictions are idempotent, so HAProxy may replay a request that a dying replica dropped
# (no answer, a broken one, or HAProxy's own 502/503) on another replica: a replica killed
# under load then costs its callers nothing. Ray's default retries connection failures only.
HA_PROXY_SETTINGS = {
    HA_PROXY_ENV: "1",
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response 502 503",
    "RAY_SERVE_HAPROXY_RETRIES": "3",
}

# Tune's result files (the leaderboard and --resume read them), without its TensorBoard event
# files: MLflow holds the history, and every write costs the driver, which each trial waits on
# between epochs. Forced: the search reads the JSON and CSV loggers it adds itself.
TUNE_FORCED = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
TUNE_DEFAULTS = {
    # Tune writes its experiment state when trials finish; every few seconds at most.
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    # Per-epoch checkpoints of short trials make Tune warn about snapshot frequency: expected.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}

# Ray Train's controller takes workers' reports (and notices that training ended) once per
# health check, every 2 s by default: a 3-epoch run on a small sample waited 6 s after its
# last epoch. Polling a few workers every half second costs nothing measurable. Ray Train
# passes this variable from the process that builds the TorchTrainer to its controller.
CONTROLLER_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
CONTROLLER_POLL_S = "0.5"
TRAIN_DEFAULTS = {CONTROLLER_POLL_ENV: CONTROLLER_POLL_S}

# Rich shows progress; MLflow's own download bars would interleave with it.
CLI_DEFAULTS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

AUTH_MODE_ENV = "RAY_AUTH_MODE"

# MLflow's HTTP client (urllib3's Retry under requests) reads its retry policy from these on
# every request. Set from the config's tracking section, overriding a value already there:
# every process of one run must wait the same way, and a run that gives up says how long.
# The jitter is MLflow's default, written so that the bound a failure states holds.
MLFLOW_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
MLFLOW_BACKOFF_ENV = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
MLFLOW_JITTER_ENV = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"
MLFLOW_TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
BACKOFF_JITTER_S = 1.0


def _set_defaults(values: dict[str, str]) -> None:
    for key, value in values.items():
        os.environ.setdefault(key, value)


def apply_cli() -> None:
    """The settings of the ``ray-mlops`` command's own process."""
    _set_defaults(CLI_DEFAULTS)


def apply_ha_proxy(proxy: str) -> None:
    """Ask for the HAProxy ingress in the Ray processes started next, when ``proxy`` is it."""
    if proxy == "haproxy":
        _set_defaults(HA_PROXY_SETTINGS)


def apply_ingress(values: dict[str, str]) -> None:
    """One server's HAProxy ports and files, inherited by the Ray processes started next.

    These override: each server started on this machine must get its own.
    """
    os.environ.update(values)


def apply_tune() -> None:
    """The settings Tune reads in the process that builds and runs a ``Tuner``."""
    os.environ.update(TUNE_FORCED)
    _set_defaults(TUNE_DEFAULTS)


def apply_train() -> None:
    """Make the next ``TorchTrainer`` poll its workers every :data:`CONTROLLER_POLL_S` s."""
    _set_defaults(TRAIN_DEFAULTS)


def tracking_env(tracking: TrackingConfig) -> dict[str, str]:
    """MLflow's HTTP retry variables for the config's ``tracking`` section."""
    return {
        MLFLOW_RETRIES_ENV: str(tracking.retries),
        MLFLOW_BACKOFF_ENV: str(tracking.retry_backoff_s),
        MLFLOW_JITTER_ENV: str(BACKOFF_JITTER_S),
        MLFLOW_TIMEOUT_ENV: str(tracking.request_timeout_s),
    }


def apply_tracking(tracking: TrackingConfig) -> None:
    """Make this process's MLflow calls retry an unreachable server as ``tracking`` says.

    Call it before the process's first call to a tracking server; MLflow reads the values
    on every request, so a later call changes the calls after it.
    """
    os.environ.update(tracking_env(tracking))
    # MLflow prints "View run ... at: URL" for every run it ends on a server; the run's
    # summary already says where to look, once.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def use_local_auth_token() -> None:
    """Send this machine's Ray token when there is one and no auth mode was chosen.

    Ray 2.60 clusters started with ``ray start`` where a token exists require it on the Jobs
    API, but the Jobs client only sends it when ``RAY_AUTH_MODE=token``.
    """
    if AUTH_MODE_ENV in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ[AUTH_MODE_ENV] = "token"
