"""Submit ``ray-mlops run CONFIG`` as a Ray Job, stream its logs, return its outcome."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from ray_mlops.errors import ConfigError, RayMlopsError

# Never uploaded with the working directory: environments, local state, VCS data.
WORKING_DIR_EXCLUDES = [".venv", ".ray-mlops", ".git", "**/__pycache__", ".mypy_cache", ".gpu"]


def use_local_auth_token() -> None:
    """Send this machine's Ray token when there is one and no auth mode was chosen.

    Ray 2.60 clusters started with ``ray start`` where a token exists require it on the Jobs
    API, but the Jobs client only sends it when ``RAY_AUTH_MODE=token``.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def submit_pipeline(
    config_path: Path,
    address: str,
    tracking_uri: str,
    working_dir: Path,
    extra_args: list[str] | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[str, str]:
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

    Returns:
        The job id and its final status (``SUCCEEDED``, ``FAILED`` or ``STOPPED``).
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
    try:
        client = JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise RayMlopsError(f"the Ray cluster at {address} refused us: {exc}") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayMlopsError(f"cannot reach a Ray cluster at {address}: {exc}") from None
    command = ["python", "-m", "ray_mlops", "run", relative.as_posix(), *(extra_args or [])]
    job_id = client.submit_job(
        entrypoint=shlex.join(command),
        runtime_env={
            "working_dir": str(working_dir),
            "excludes": WORKING_DIR_EXCLUDES,
            "env_vars": {"MLFLOW_TRACKING_URI": tracking_uri},
        },
        metadata={"ray_mlops.config": relative.as_posix()},
    )
    echo(f"submitted job {job_id} to {address}")

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            for line in chunk.splitlines():
                echo(line)

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        asyncio.run(asyncio.sleep(0.5))
        status = client.get_job_status(job_id)
    sys.stdout.flush()
    return job_id, str(status.value if isinstance(status, JobStatus) else status)
