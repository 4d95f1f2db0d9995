"""Submit ``ray-mlops run CONFIG`` as a Ray Job, stream its logs, return its outcome."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ray_mlops.errors import ConfigError, RayMlopsError
from ray_mlops.local_state import DEFAULT_HOME, local_store_path
from ray_mlops.settings_env import use_local_auth_token

# Never uploaded with the working directory: environments, local state, VCS data. (Ray 2.60
# also skips .git, .venv, venv and __pycache__ by default, and whatever .gitignore and
# .rayignore files list; .ray-mlops/ carries its own.)
WORKING_DIR_EXCLUDES = [".venv", DEFAULT_HOME, ".git", "**/__pycache__", ".mypy_cache", ".gpu"]
LOG_TAIL_LINES = 20
AGENT_RETRY_S = 2.0
_NO_AGENT = "No available agent to submit job"
# What the Jobs SDK raises for an HTTP error: "Request failed with status code 500: TEXT."
_HTTP_ERROR = re.compile(r"Request failed with status code (\d+): (.*?)\.?$", re.DOTALL)


@dataclass(frozen=True)
class JobOutcome:
    """How a submitted job ended.

    Attributes:
        job_id: The submission id.
        status: ``SUCCEEDED``, ``FAILED`` or ``STOPPED``.
        message: Ray's reason for the status (``JobDetails.message``), empty when none.
        log_tail: The last lines of the job's log when it did not succeed.
    """

    job_id: str
    status: str
    message: str
    log_tail: list[str]


def submit_pipeline(
    config_path: Path,
    address: str,
    tracking_uri: str,
    working_dir: Path,
    extra_args: list[str] | None = None,
    echo: Callable[[str], None] = print,
    agent_wait_s: float = 30.0,
) -> JobOutcome:
    """Submit the pipeline as a job and follow it to the end.

    Args:
        config_path: The config, inside ``working_dir``.
        address: The cluster's dashboard address, e.g. ``http://127.0.0.1:8265``.
        tracking_uri: Where the job logs to MLflow (passed as ``MLFLOW_TRACKING_URI``). An
            embedded SQLite file only works for a cluster on this machine; give a remote
            cluster an MLflow server.
        working_dir: Uploaded as the job's working directory.
        extra_args: More arguments for ``ray-mlops run``.
        echo: Receives the job's log lines as they arrive.
        agent_wait_s: How long to retry a submission that the cluster refuses because no job
            agent is ready yet (``No available agent to submit job``: a cluster just started).

    Returns:
        The job's id, final status and, when it did not succeed, Ray's reason and the end of
        its log.

    Raises:
        ConfigError: the config is outside ``working_dir``, or the tracking store is a
            relative path (the job would write it into its own copy of the folder).
        RayMlopsError: the Jobs API could not be reached or refused a request, in one line
            naming the address.
    """
    use_local_auth_token()  # before importing Ray, which reads the mode once
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus, JobSubmissionClient

    working_dir = working_dir.resolve()
    try:
        relative = config_path.resolve().relative_to(working_dir)
    except ValueError:
        raise ConfigError(
            f"{config_path} is outside the working directory {working_dir}, which is what "
            "the job receives; run submit from the project folder"
        ) from None
    store = local_store_path(tracking_uri)
    if store is not None and not store.is_absolute():
        raise ConfigError(
            f"tracking.tracking_uri: {tracking_uri!r} is a relative path, which the job would "
            "resolve inside its own uploaded copy of the working directory and throw away; "
            "give an absolute path (sqlite:////abs/path/mlflow.db) or an MLflow server URL"
        )
    try:
        client = JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise RayMlopsError(f"the Ray cluster at {address} refused us: {exc}") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayMlopsError(f"cannot reach a Ray cluster at {address}: {exc}") from None
    command = ["python", "-m", "ray_mlops", "run", relative.as_posix(), *(extra_args or [])]
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=shlex.join(command),
                runtime_env={
                    "working_dir": str(working_dir),
                    "excludes": WORKING_DIR_EXCLUDES,
                    "env_vars": {"MLFLOW_TRACKING_URI": tracking_uri},
                },
                metadata={"ray_mlops.config": relative.as_posix()},
            )
            break
        except (RuntimeError, ConnectionError, OSError) as exc:
            # A cluster that has just started answers before its job agent is registered.
            if _NO_AGENT not in str(exc) or time.monotonic() >= deadline:
                waited = f" (retried for {agent_wait_s:g} s)" if _NO_AGENT in str(exc) else ""
                raise _api_error(address, "submitting the job" + waited, exc) from None
            echo(f"the cluster has no job agent ready yet; retrying for up to {agent_wait_s:g} s")
            time.sleep(AGENT_RETRY_S)
    echo(f"submitted job {job_id} to {address}")

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            for line in chunk.splitlines():
                echo(line)

    with _jobs_api(address, f"following job {job_id}"):
        asyncio.run(follow())
        status = client.get_job_status(job_id)
        while not status.is_terminal():
            asyncio.run(asyncio.sleep(0.5))
            status = client.get_job_status(job_id)
        sys.stdout.flush()
        name = str(status.value if isinstance(status, JobStatus) else status)
        if name == "SUCCEEDED":
            return JobOutcome(job_id, name, "", [])
        message = client.get_job_info(job_id).message or ""
        log_tail = client.get_job_logs(job_id).splitlines()[-LOG_TAIL_LINES:]
    # Ray appends the whole log to an entrypoint's failure: keep the reason, show the tail.
    reason = _first_line(message).split(", last available logs")[0]
    return JobOutcome(job_id, name, reason, log_tail)


@contextmanager
def _jobs_api(address: str, doing: str) -> Iterator[None]:
    """Turn the Jobs SDK's errors into one line: what failed, at which address, why."""
    try:
        yield
    except (RuntimeError, ConnectionError, OSError) as exc:
        raise _api_error(address, doing, exc) from None


def _api_error(address: str, doing: str, exc: Exception) -> RayMlopsError:
    text = str(exc).strip()
    found = _HTTP_ERROR.match(text)
    reason = f"HTTP {found[1]}: {found[2].strip()}" if found else text
    return RayMlopsError(f"Ray Jobs API at {address}: {doing} failed: {_first_line(reason)}")


def _first_line(text: str) -> str:
    """The first line of a multi-line message (Ray appends the whole log to some)."""
    return text.strip().splitlines()[0] if text.strip() else ""
