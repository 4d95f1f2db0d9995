"""The local multi-node cluster of ``cluster/local/cluster.py``: one per test session.

Tests drive it from outside, as a user would: subprocesses (``ray job submit``, ``ip netns
exec``, ``cluster.py``) with the environment of :attr:`LocalCluster.env`, and HTTP. The
pytest process never connects Ray to it: the suite has its own local Ray session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

CHECKOUT = Path(__file__).resolve().parents[2]
CLUSTER_PY = CHECKOUT / "cluster" / "local" / "cluster.py"
# The state folder of a running cluster to test instead of starting one (faster iterations:
# RAY_MLOPS_TEST_CLUSTER=cluster/local/.state pytest tests/cluster). The fault tests leave it
# as they found it.
EXISTING_CLUSTER = "RAY_MLOPS_TEST_CLUSTER"


@dataclass(frozen=True)
class ClusterNode:
    """One Ray node of the cluster: where it sits on the cluster's network."""

    name: str
    ip: str
    interface: str
    netns: str | None  # None for the head, which runs in the host's network namespace


@dataclass(frozen=True)
class LocalCluster:
    """A running local cluster, as its state folder describes it."""

    state: Path
    head_ip: str
    gcs_address: str
    dashboard: str
    tracking_uri: str
    s3_endpoint: str
    bucket: str
    postgres_uri: str  # without the password: it is in pgpass
    postgres_port: int
    pgpass: Path
    nodes: dict[str, ClusterNode]
    env: dict[str, str]  # this process's environment plus the cluster's (cluster.env)

    @classmethod
    def from_state(cls, state: Path) -> LocalCluster:
        data = json.loads((state / "cluster.json").read_text())
        venv_bin = Path(sys.executable).parent
        env = {**os.environ, **data["env"], "PATH": f"{venv_bin}:{os.environ['PATH']}"}
        return cls(
            state=state,
            head_ip=data["head_ip"],
            gcs_address=data["ray"]["gcs_address"],
            dashboard=data["ray"]["dashboard"],
            tracking_uri=data["mlflow"]["tracking_uri"],
            s3_endpoint=data["s3"]["endpoint"],
            bucket=data["s3"]["bucket"],
            postgres_uri=data["postgres"]["uri"],
            postgres_port=int(data["ports"]["postgres"]),
            pgpass=Path(data["postgres"]["passfile"]),
            nodes={
                name: ClusterNode(name, node["ip"], node["interface"], node["netns"])
                for name, node in data["nodes"].items()
            },
            env=env,
        )

    def command(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``cluster.py ARGS --state STATE``; fails the test with its output unless it exits 0."""
        result = _cluster_py(*args, "--state", str(self.state), timeout=timeout)
        if result.returncode != 0:
            status = _cluster_py("status", "--state", str(self.state), timeout=60).stdout
            pytest.fail(
                f"cluster.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n"
                f"cluster.py status:\n{status}"
            )
        return result

    def kill_node(self, name: str) -> None:
        """SIGKILL every process of worker node ``name``: a node failure."""
        self.command("kill-node", name)

    def start_node(self, name: str) -> None:
        """Start worker node ``name`` again, at the same address; returns once Ray has it."""
        self.command("start-node", name)

    def stop_mlflow(self) -> None:
        self.command("stop-mlflow")

    def start_mlflow(self) -> None:
        self.command("start-mlflow")

    def cut_s3(self, seconds: float) -> None:
        """Make the object store refuse connections for ``seconds`` from now."""
        self.command("cut-s3", str(seconds))

    def ray_nodes(self) -> list[dict[str, object]]:
        """Ray's node table (alive and dead), from the dashboard's state API."""
        token = Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        response = requests.get(
            f"{self.dashboard}/api/v0/nodes",
            params={"limit": 1000, "detail": 1},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        response.raise_for_status()
        return list(response.json()["data"]["result"]["result"])

    def node_ids(self) -> dict[str, str]:
        """Node name -> Ray node id, for the nodes Ray reports alive."""
        by_ip = {node.ip: name for name, node in self.nodes.items()}
        return {
            by_ip[str(node["node_ip"])]: str(node["node_id"])
            for node in self.ray_nodes()
            if node["state"] == "ALIVE" and node["node_ip"] in by_ip
        }

    def in_node(
        self, name: str, argv: list[str], **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on the network of worker node ``name`` (``ip netns exec``)."""
        netns = self.nodes[name].netns
        assert netns is not None, f"{name} has no network namespace"
        kwargs.setdefault("env", self.env)
        return subprocess.run(  # type: ignore[call-overload]
            ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, **kwargs
        )

    def submit(self, script: str, *args: str, timeout: float = 300) -> str:
        """Run the Python ``script`` as a Ray job (``ray job submit``); its output."""
        with tempfile.TemporaryDirectory(prefix="cluster-job-") as folder:
            (Path(folder) / "job.py").write_text(script)
            result = subprocess.run(
                ["ray", "job", "submit", "--working-dir", folder, "--", "python", "job.py", *args],
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout,
            )
        if result.returncode != 0:
            pytest.fail(f"ray job submit failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout


def _cluster_py(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLUSTER_PY), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Head and two worker nodes, PostgreSQL, moto's S3 and MLflow, beside any user's cluster:
    a prefix, subnet, ports and state folder of its own; stopped at the end of the session."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the local cluster needs Linux and root (network and mount namespaces)")
    existing = os.environ.get(EXISTING_CLUSTER)
    if existing:  # a cluster made by `make cluster-up`: used, neither started nor stopped
        yield LocalCluster.from_state(Path(existing))
        return
    index = os.getpid() % 200
    # Not under pytest's tmp_path: PostgreSQL runs as `postgres`, which must reach the folder.
    state = Path(tempfile.mkdtemp(prefix="rmc-test-", dir="/tmp"))
    up = [
        "up",
        "--state", str(state),
        "--prefix", f"rmt{index}",
        "--subnet", f"10.78.{index}.0/24",
        "--object-store-mb", "256",
    ]  # fmt: skip
    for name in ("ray", "ray-client", "dashboard", "dashboard-agent", "mlflow", "postgres", "s3"):
        up += [f"--{name}-port", str(free_port())]
    try:
        result = _cluster_py(*up, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"cluster.py up failed:\n{result.stdout}\n{result.stderr}")
        yield LocalCluster.from_state(state)
    finally:
        # `down` removes the state folder: keep the processes' logs with pytest's temp files.
        if (state / "logs").is_dir():
            shutil.copytree(
                state / "logs", tmp_path_factory.mktemp("cluster-logs"), dirs_exist_ok=True
            )
        down = _cluster_py("down", "--state", str(state), timeout=300)
        shutil.rmtree(state, ignore_errors=True)
    if down.returncode != 0:
        pytest.fail(f"cluster.py down failed:\n{down.stdout}\n{down.stderr}")
