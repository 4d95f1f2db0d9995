"""Where this package reaches into Ray Serve's private interior (pinned Ray 2.60).

Each one works around a Serve behaviour that has no public switch; ``tests/unit/
test_compat.py`` fails, naming the API, when an upgrade of Ray moves what they rely on.

- HAProxy's stats page and Prometheus frontend bind every interface (``bind *:PORT``) in
  Serve's config template, whatever ``http_options.host`` says: :func:`bind_status_pages_to_host`
  binds them where the HTTP frontend binds.
- ``serve.shutdown()`` waits on the controller's ``graceful_shutdown``, whose normal end is the
  controller killing itself; the controller's methods retry forever, so Ray reports "Task
  ServeController.graceful_shutdown failed ... will be retried" on every stop:
  :func:`shutdown_serve` makes that one call without retries.
- ``serve.run`` gives a deployment without a version a random one on every call;
  :func:`with_version` sets it, which ``Deployment.options`` accepts only with ``_internal=True``.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

#: ``ray.init(runtime_env={"worker_process_setup_hook": ...})``: runs in each Ray worker of the
#: job that starts Serve, the controller's HAProxy managers included, before Serve's code.
SETUP_HOOK = f"{__name__}.bind_status_pages_to_host"
# Serve's template lines, and the same on the HTTP frontend's address ("*" for 0.0.0.0).
STATUS_PAGE_BINDS = {
    "bind *:{{ config.stats_port }}": "bind {{ config.frontend_host }}:{{ config.stats_port }}",
    "bind :{{ config.metrics_port }}": "bind {{ config.frontend_host }}:{{ config.metrics_port }}",
}


def status_pages_on_host(template: str) -> str:
    """Serve's HAProxy config template with the stats and metrics frontends on the HTTP host.

    Raises:
        ValueError: the template no longer has the bind lines this rewrites.
    """
    for line, replacement in STATUS_PAGE_BINDS.items():
        if line not in template:
            raise ValueError(f"Ray Serve's HAProxy template has no line {line!r}")
        template = template.replace(line, replacement)
    return template


def bind_status_pages_to_host() -> None:
    """Worker setup hook: HAProxy's stats and metrics pages bind ``serve.host`` only."""
    import sys

    from ray.serve._private import haproxy_templates

    try:
        patched = status_pages_on_host(haproxy_templates.HAPROXY_CONFIG_TEMPLATE)
    except ValueError as exc:  # a newer Ray: its own binding stands, with a note why
        logger.warning("HAProxy status pages keep Ray's binding: %s", exc)
        return
    haproxy_templates.HAPROXY_CONFIG_TEMPLATE = patched
    # ``haproxy`` copies the template by name when imported; a worker may have imported it.
    haproxy = sys.modules.get("ray.serve._private.haproxy")
    if haproxy is not None:
        haproxy.HAPROXY_CONFIG_TEMPLATE = patched  # type: ignore[attr-defined]


def shutdown_serve(timeout_s: float = 30.0) -> None:
    """``serve.shutdown()``, without Ray's false "will be retried" report.

    The same steps as ``ServeControllerClient.shutdown`` (pinned Ray 2.60): close the cached
    handles, ask the controller to stop everything and wait until it is gone, forget it. Only
    the wait is made with ``max_task_retries=0``: it ends by the controller's death, which is
    success, not a failure to retry.
    """
    import ray
    from ray.serve import context
    from ray.serve.exceptions import RayServeException

    try:
        client = context._get_global_client()
    except RayServeException:  # Serve is not running here: nothing to stop
        return
    if client is None:
        return
    client.shutdown_cached_handles()
    stop = client._controller.graceful_shutdown.options(max_task_retries=0).remote()
    try:
        ray.get(stop, timeout=timeout_s)
    except ray.exceptions.RayActorError:
        pass  # the controller stopped its proxies and replicas, then itself
    except ray.exceptions.GetTimeoutError:
        logger.warning("Serve's controller did not stop within %.0f s", timeout_s)
    client._shutdown = True
    context._disconnect()


def with_version(deployment: Any, version: str, **options: Any) -> Any:
    """``deployment.options(**options)`` with Serve's own ``version`` set to ``version``.

    ``serve.run`` gives a deployment without a version a random one on every call, so every
    redeploy replaced the replicas (Serve's ``client.py``). A config-file deploy hashes its
    import path and args instead; a version passed here gives ``serve.run`` the same.
    ``version`` is internal to Serve since it manages versions itself, hence ``_internal``.
    """
    return deployment.options(**options, version=version, _internal=True)
