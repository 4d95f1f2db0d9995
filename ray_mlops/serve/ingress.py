"""Ports and files of a model server's ingress on this machine, checked before Ray starts.

Serve's HAProxy ingress reads its ports and file paths from environment variables when its
processes import it (``ray/serve/_private/constants.py``): fixed ports 8404 (stats), 9101
(Prometheus) and 8500 (the fallback Python proxy) and files under ``/tmp/haproxy-serve``
would make two servers on one machine collide. :func:`local_ingress` gives each server started
here its own ports (from the config, else free ones) and its own folder, and fails before
Ray starts, in one line, when a port is taken.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ray_mlops.config import ServeConfig
from ray_mlops.errors import RayMlopsError
from ray_mlops.settings_env import apply_ingress

if TYPE_CHECKING:
    import psutil

# HAProxy takes Unix socket paths of at most 97 bytes, and Serve adds "/<56-hex node id>/
# metrics.sock" to the folder's path: a workspace path is too long, /tmp/ray-mlops-ha-XXXXXXXX
# (96 bytes in all) is not.
SOCKET_PATH_LIMIT = 97
# Above Ray's worker ports (10002-19999 by default), below the ephemeral range.
FREE_PORTS_FROM = 20000
FOLDER_PREFIX = "ray-mlops-ha-"
OWNER_FILE = "owner.pid"
FOLDER_NAME = len(FOLDER_PREFIX) + 8 + len("/") + 56 + len("/metrics.sock")


# HAProxy 2.8: "Binding [haproxy.cfg:7] for proxy stats: cannot bind socket (Address already
# in use) for [127.0.0.1:8404]".
_HAPROXY_BIND_ALERT = re.compile(
    r"for (?:proxy|frontend) (\S+): cannot bind socket \(([^)]*)\) for \[(.*?):(\d+)\]"
)


class PortInUseError(RayMlopsError):
    """A port the model server needs is taken on its host."""


@dataclass(frozen=True)
class IngressPorts:
    """The TCP ports one model server binds on ``serve.host``."""

    http: int
    stats: int
    metrics: int
    fallback: int

    def by_setting(self) -> dict[str, int]:
        """Each port under the config key (or role) a user would change."""
        return {
            "serve.port": self.http,
            "serve.proxy_stats_port": self.stats,
            "serve.proxy_metrics_port": self.metrics,
            "Serve's fallback proxy port": self.fallback,
        }


def free_port(host: str) -> int:
    """A TCP port nobody listens on right now on ``host``, below the kernel's ephemeral range.

    The Ray started next takes ports of its own meanwhile: from the ephemeral range (bound
    to port 0; measured: its raylet took a port picked that way before HAProxy could) and
    10002-19999 for its workers. A port between the two is left to HAProxy.
    """
    candidates = range(FREE_PORTS_FROM, _ephemeral_start())
    for port in random.sample(candidates, min(len(candidates), 100)):
        if _bindable(host, port):
            return port
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:  # a crowded machine
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # IANA's dynamic ports: macOS and Windows


def _bindable(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        # Allows a port whose last connections are still in TIME_WAIT, as HAProxy does;
        # a listener still refuses the bind.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def ingress_ports(serve: ServeConfig) -> IngressPorts:
    """The config's ports, with free ones where it leaves them open."""
    return IngressPorts(
        http=serve.port,
        stats=serve.proxy_stats_port or free_port(serve.host),
        metrics=serve.proxy_metrics_port or free_port(serve.host),
        fallback=free_port(serve.host),
    )


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail, naming the port and what holds it, when one of ``ports`` is taken on ``host``.

    Raises:
        PortInUseError: a port is in use (by a listener of any kind, HAProxy's shared
            ``SO_REUSEPORT`` listeners included).
    """
    for setting, port in ports.items():
        if not _bindable(host, port):
            raise PortInUseError(
                f"serve: port {port} ({setting}) on {host} is in use by "
                f"{port_holder(port) or 'a process this user cannot see'}"
            )


def bind_failure(error: BaseException) -> PortInUseError | None:
    """The one-line error for an HAProxy that could not bind a port (a port taken after
    :func:`check_ports_free`, or on a Ray this process did not start); None for other errors.
    """
    match = _HAPROXY_BIND_ALERT.search(str(error))
    if match is None:
        return None
    frontend, reason, host, port = match.groups()
    return PortInUseError(
        f"serve: port {port} (HAProxy's {frontend} frontend) on {host} is in use by "
        f"{port_holder(int(port)) or reason}"
    )


def port_holder(port: int) -> str | None:
    """Who listens on ``port``: its pid and command, with how to stop a stale HAProxy."""
    import psutil

    for connection in psutil.net_connections(kind="tcp"):
        if connection.status != psutil.CONN_LISTEN or connection.laddr.port != port:
            continue
        if connection.pid is None:
            return "a process this user cannot see"
        return describe_process(connection.pid)
    return None


def describe_process(pid: int) -> str:
    """``pid N (command)``, and the command that stops it when it is a stale HAProxy."""
    import psutil

    try:
        process = psutil.Process(pid)
        # One line, whatever the arguments hold (``python -c`` scripts span several).
        command = " ".join(" ".join(process.cmdline()).split()) or process.name()
    except psutil.Error:
        return f"pid {pid}"
    if len(command) > 120:
        command = command[:117] + "..."
    text = f"pid {pid} ({command})"
    if is_stale_haproxy(process):
        text += (
            f", a HAProxy left behind by a model server that stopped abruptly: "
            f"stop it with `kill {pid}`"
        )
    return text


def is_stale_haproxy(process: psutil.Process) -> bool:
    """An HAProxy whose Ray process (Serve's ``HAProxyManager``) is gone."""
    import psutil

    try:
        if process.name() != "haproxy":
            return False
        parent = process.parent()
        return parent is None or not parent.name().startswith("ray::")
    except psutil.Error:
        return False


def stale_haproxies() -> list[str]:
    """Every stale HAProxy on this machine, described by :func:`describe_process`."""
    import psutil

    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "haproxy" and is_stale_haproxy(process):
            found.append(describe_process(process.pid))
    return found


def ingress_environment(ports: IngressPorts, folder: Path) -> dict[str, str]:
    """What Serve's HAProxy ingress reads: the ports, and every file in ``folder``."""
    return {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ports.stats),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports.metrics),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(ports.fallback),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
    }


@contextlib.contextmanager
def local_ingress(serve: ServeConfig) -> Iterator[IngressPorts]:
    """Ports and a folder of its own for the server of a Ray that this process starts.

    Checks every port first, then puts them and the folder in this process's environment,
    which the Ray processes started next inherit; the folder is removed on exit.

    Raises:
        PortInUseError: a port is taken on ``serve.host``.
    """
    ports = ingress_ports(serve)
    if serve.proxy != "haproxy":  # Serve's Python proxy binds the HTTP port only
        check_ports_free(serve.host, {"serve.port": ports.http})
        yield ports
        return
    check_ports_free(serve.host, ports.by_setting())
    base = tempfile.gettempdir()
    if len(base) + len("/") + FOLDER_NAME > SOCKET_PATH_LIMIT:
        base = "/tmp"  # nosec B108  # parent of a private mkdtemp folder, for short socket paths
    remove_orphan_folders(Path(base))
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=base))
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    apply_ingress(ingress_environment(ports, folder))
    try:
        yield ports
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphan_folders(base: Path) -> None:
    """Remove the HAProxy folders of servers that died without removing theirs (SIGKILL)."""
    import psutil

    for folder in base.glob(f"{FOLDER_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or its owner is writing the file right now
        if not psutil.pid_exists(owner):
            shutil.rmtree(folder, ignore_errors=True)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
