"""Connecting to Ray: a local instance on 127.0.0.1 by default, or a cluster when asked."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any


def starts_local_ray(address: str | None = None) -> bool:
    """Whether :func:`ray_runtime` with this ``address`` starts a Ray of its own here."""
    import ray

    return not ray.is_initialized() and not (address or os.environ.get("RAY_ADDRESS"))


@contextlib.contextmanager
def ray_runtime(
    address: str | None = None,
    verbose: bool = False,
    runtime_env: dict[str, Any] | None = None,
) -> Iterator[None]:
    """Use the running Ray (tests, jobs), connect to ``address``, or start a local one.

    A Ray started here is shut down on exit; one that was already running is left alone.
    It binds its dashboard (the Jobs API, with ``verbose``) to 127.0.0.1, and Ray 2.60 turns
    its token authentication on unless ``RAY_AUTH_MODE`` says otherwise (the token in
    ``~/.ray/auth_token``, made on first use): its other ports, which Ray binds on every
    interface, refuse a client without the token.
    Worker logs reach the terminal only with ``verbose`` (errors still raise in the driver).
    ``runtime_env`` applies to the jobs of a local Ray started here only.
    """
    import ray
    import ray.data

    from ray_mlops.compat.ray_core import LOCAL_NODE_IP, local_node_options

    if ray.is_initialized():
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        ray.init(address=target, log_to_driver=verbose)
    else:
        ray.init(
            **local_node_options(),
            log_to_driver=verbose,
            include_dashboard=verbose,
            dashboard_host=LOCAL_NODE_IP,
            runtime_env=runtime_env,
        )
    ray.data.DataContext.get_current().enable_progress_bars = verbose
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.train").setLevel(logging.WARNING)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def stop_on_sigterm() -> None:
    """Treat SIGTERM (``docker stop``, systemd, ``kill``) like Ctrl-C in this process.

    Python dies on SIGTERM without running ``finally`` blocks, so a server stopped that way
    would skip its graceful stop; a KeyboardInterrupt runs them.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
