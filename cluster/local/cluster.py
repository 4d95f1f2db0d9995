"""A multi-node Ray cluster on this one machine, with the services of the production path.

    .venv/bin/python cluster/local/cluster.py up      # or: make cluster-up
    source cluster/local/.state/cluster.env           # RAY_ADDRESS, MLFLOW_TRACKING_URI, AWS_*
    .venv/bin/python cluster/local/cluster.py down    # or: make cluster-down

``up`` starts (as root, Linux): a bridge with the head's address; a Ray head and two Ray worker
nodes, each worker in a network namespace of its own and every Ray node in a mount namespace of
its own (private /tmp, /dev/shm and home, the checkout read-only); PostgreSQL (Debian's
package); moto's S3 server behind a gate that can cut it off (``s3_gate.py``); an MLflow
tracking server on PostgreSQL with artifacts proxied to the bucket. ``down`` stops exactly
those processes, by pid, and removes the namespaces, the bridge and the state folder.
See ``cluster/local/README.md`` for the layout and every subcommand.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import net
import procs
from net import Layout, NetError
from procs import Proc, ProcessError

CHECKOUT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The project's virtual environment: this script runs with its python (not resolved: that
# would lead to the interpreter the environment was made from).
VENV_BIN = Path(sys.executable).parent
DEFAULT_STATE = HERE / ".state"
DATASET = CHECKOUT / "ray_mlops" / "datasets" / "adult" / "adult.csv.gz"
DATASET_KEY = "datasets/adult/adult.csv.gz"
BUCKET = "ray-mlops"
WORKERS = ["node1", "node2"]
RAY_NODES = ["head", *WORKERS]
SERVICES = ["moto", "s3_gate", "postgres", "mlflow"]
# moto accepts any key; these are the values its documentation uses.
AWS_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# GCS health checks once a second, a node dead after five failed in a row: a SIGKILLed node is
# marked dead in about 5 s (Ray's defaults: 3 s and 5, so 15 s or more). A check may take 2 s,
# so a node busy on this 2-core machine is not declared dead for being slow.
RAY_SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 5,
}
# What a Ray node runs inside its fresh mount namespace before ``ray start``: private /tmp,
# /dev/shm and home, the checkout read-only, and its own copy of the cluster's Ray token (read
# before /tmp is covered, since the state folder may be under /tmp). The checkout may lie
# under /tmp too (a CI clone): it is held on /mnt (in this namespace only) while /tmp is
# covered, then moved back to its path. Arguments: the token file, the checkout, then the
# command to run.
NODE_BOOT = """set -eu
token=$(cat "$1")
mount --bind "$2" /mnt
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p "$2"
mount --move /mnt "$2"
mount -o remount,bind,ro "$2"
mkdir -p "$HOME"
(umask 077 && printf %s "$token" > "$RAY_AUTH_TOKEN_PATH")
shift 2
exec "$@"
"""
NODE_TOKEN = "/tmp/.ray-auth-token"
NODE_HOME = "/tmp/home"


class ClusterError(RuntimeError):
    """A one-line reason the command cannot go on."""


# ---------------------------------------------------------------------------------------------
# State: cluster.json (no secrets), cluster.env, and the secret files, all in one folder.


@dataclass
class Cluster:
    """What ``up`` made, as recorded in ``cluster.json``."""

    state: Path
    layout: Layout
    ports: dict[str, int]
    processes: dict[str, Proc]
    node_ids: dict[str, str]
    object_store_mb: int = 512  # per Ray node
    cgroup: str = ""  # the cluster's cgroup folder, one folder in it per started component
    phase: str = "starting"
    s3_cut_until: float = 0.0

    @property
    def head_ip(self) -> str:
        return self.layout.head_ip

    @property
    def dashboard(self) -> str:
        return f"http://{self.head_ip}:{self.ports['dashboard']}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.head_ip}:{self.ports['mlflow']}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.head_ip}:{self.ports['s3']}"

    @property
    def token_file(self) -> Path:
        return self.state / "ray-auth-token"

    @property
    def pgpass(self) -> Path:
        return self.state / "pgpass"

    @property
    def pg_data(self) -> Path:
        return self.state / "postgres"

    @property
    def postgres_uri(self) -> str:
        """The backend store URI, without the password (libpq reads it from :attr:`pgpass`)."""
        return f"postgresql+psycopg2://mlflow@{self.head_ip}:{self.ports['postgres']}/mlflow"

    def client_env(self) -> dict[str, str]:
        """What a shell on this machine needs to use the cluster (``cluster.env``)."""
        return {
            "RAY_ADDRESS": self.dashboard,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_file),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            **AWS_KEYS,
        }

    def save(self) -> None:
        data = {
            "phase": self.phase,
            "checkout": str(CHECKOUT),
            "network": self.layout.to_dict(),
            "head_ip": self.head_ip,
            "ports": self.ports,
            "ray": {
                "gcs_address": f"{self.head_ip}:{self.ports['ray']}",
                "dashboard": self.dashboard,
                "token_file": str(self.token_file),
                "object_store_mb": self.object_store_mb,
                "system_config": RAY_SYSTEM_CONFIG,
            },
            "nodes": {
                "head": {"ip": self.head_ip, "netns": None, "interface": self.layout.bridge},
                **{
                    node.name: {"ip": node.ip, "netns": node.netns, "interface": node.interface}
                    for node in self.layout.nodes
                },
            },
            "node_ids": self.node_ids,
            "cgroup": self.cgroup,
            "mlflow": {"tracking_uri": self.tracking_uri, "artifacts": f"s3://{BUCKET}/mlflow"},
            "postgres": {"uri": self.postgres_uri, "passfile": str(self.pgpass)},
            "s3": {
                "endpoint": self.s3_endpoint,
                "bucket": BUCKET,
                "dataset": f"s3://{BUCKET}/{DATASET_KEY}",
                "cut_until": self.s3_cut_until,
            },
            "env": self.client_env(),
            "processes": {name: proc.to_dict() for name, proc in self.processes.items()},
        }
        _write(self.state / "cluster.json", json.dumps(data, indent=2) + "\n", 0o644)
        exports = "".join(
            f"export {key}={shlex.quote(value)}\n" for key, value in self.client_env().items()
        )
        _write(self.state / "cluster.env", exports, 0o600)

    @classmethod
    def load(cls, state: Path) -> Cluster:
        try:
            data = json.loads((state / "cluster.json").read_text())
            return cls(
                state=state,
                layout=Layout.from_dict(data["network"]),
                ports={key: int(value) for key, value in data["ports"].items()},
                processes={name: Proc.from_dict(proc) for name, proc in data["processes"].items()},
                node_ids=dict(data.get("node_ids", {})),
                object_store_mb=int(data["ray"]["object_store_mb"]),
                cgroup=str(data["cgroup"]),
                phase=data["phase"],
                s3_cut_until=float(data["s3"]["cut_until"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ClusterError(f"{state / 'cluster.json'}: unreadable state ({error})") from None


def _write(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` at once, with permissions ``mode`` from the start."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


@contextlib.contextmanager
def locked(state: Path) -> Iterator[None]:
    """Hold the state folder while changing the cluster, so two commands never interleave."""
    descriptor = os.open(state, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterError(f"another cluster.py command is working on {state}") from None
        yield
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------------
# Components: how each is started, and how we know it answers.


def _node_env(cluster: Cluster, interface: str) -> dict[str, str]:
    return {
        "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": NODE_HOME,
        "LANG": "C.UTF-8",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": NODE_TOKEN,
        "RAY_USAGE_STATS_ENABLED": "0",
        "GLOO_SOCKET_IFNAME": interface,
        "AWS_ENDPOINT_URL": cluster.s3_endpoint,
        **AWS_KEYS,
    }


def _spawn(
    cluster: Cluster, name: str, argv: list[str], env: dict[str, str], **options: Any
) -> Proc:
    """Start one part in the cluster's cgroup, its output in ``logs/NAME.log``."""
    log = cluster.state / "logs" / f"{name}.log"
    return procs.spawn(name, argv, env, log, Path(cluster.cgroup), **options)


def _service_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    return {
        "PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(cluster.state),
        "LANG": "C.UTF-8",
        **extra,
    }


def start_ray_node(cluster: Cluster, name: str) -> Proc:
    """Start one Ray node: the head on the bridge, a worker inside its network namespace."""
    venv_ray = str(VENV_BIN / "ray")
    common = [
        "--num-cpus", "2",
        "--object-store-memory", str(cluster.object_store_mb * 1024 * 1024),
        # Workers on random ports: Ray's default range (10002-19999) holds the ports of
        # this cluster's services on the head, and of other Ray instances on this machine.
        "--min-worker-port", "0",
        "--max-worker-port", "0",
        "--disable-usage-stats",
        "--block",
    ]  # fmt: skip
    if name == "head":
        interface, netns = cluster.layout.bridge, None
        ray_args = [
            "--head",
            "--node-ip-address", cluster.head_ip,
            "--port", str(cluster.ports["ray"]),
            "--ray-client-server-port", str(cluster.ports["ray_client"]),
            "--dashboard-host", cluster.head_ip,
            "--dashboard-port", str(cluster.ports["dashboard"]),
            "--dashboard-agent-listen-port", str(cluster.ports["dashboard_agent"]),
            "--system-config", json.dumps(RAY_SYSTEM_CONFIG, separators=(",", ":")),
        ]  # fmt: skip
    else:
        node = cluster.layout.node(name)
        interface, netns = node.interface, node.netns
        ray_args = [
            "--address", f"{cluster.head_ip}:{cluster.ports['ray']}",
            "--node-ip-address", node.ip,
        ]  # fmt: skip
    boot = [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", NODE_BOOT, "node-boot", str(cluster.token_file), str(CHECKOUT),
    ]  # fmt: skip
    argv = [*boot, venv_ray, "start", *ray_args, *common]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return _spawn(cluster, name, argv, _node_env(cluster, interface), netns=netns)


def postgres_bin() -> Path:
    """The newest PostgreSQL server binaries of Debian's package."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise ClusterError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make setup` "
            "or `apt-get install --no-install-recommends postgresql`"
        )
    return found[-1].parent


def init_postgres(cluster: Cluster, password: str) -> None:
    """A fresh database cluster owned by ``postgres``, reachable from the subnet with scram."""
    data = cluster.pg_data
    data.mkdir(mode=0o700)
    shutil.chown(data, "postgres", "postgres")
    socket_path = data / f".s.PGSQL.{cluster.ports['postgres']}"
    if len(str(socket_path)) > 100:
        raise ClusterError(f"--state {cluster.state}: path too long for PostgreSQL's socket")
    _run_as_postgres(
        [
            str(postgres_bin() / "initdb"),
            "-D", str(data),
            "-U", "postgres",
            "-E", "UTF8",
            "--locale", "C.UTF-8",
            "--auth-local", "peer",
            "--auth-host", "scram-sha-256",
        ]
    )  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\n# ray-mlops local cluster\nlisten_addresses = '{cluster.head_ip}'\n"
            f"port = {cluster.ports['postgres']}\nunix_socket_directories = '{data}'\n"
        )
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host mlflow mlflow {cluster.layout.subnet} scram-sha-256\n")
    passfile = f"{cluster.head_ip}:{cluster.ports['postgres']}:mlflow:mlflow:{password}\n"
    _write(cluster.pgpass, passfile, 0o600)


def _run_as_postgres(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        user="postgres",
        group="postgres",
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    if result.returncode != 0:
        raise ClusterError(f"{Path(argv[0]).name} failed: {result.stderr.strip()[-500:]}")


def start_postgres(cluster: Cluster) -> Proc:
    # setpriv, not Popen(user=...): the child joins its cgroup as root, then becomes postgres.
    argv = [
        "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
        str(postgres_bin() / "postgres"), "-D", str(cluster.pg_data),
    ]  # fmt: skip
    # SIGINT is PostgreSQL's fast shutdown: SIGTERM would wait for MLflow's connections.
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return _spawn(cluster, "postgres", argv, env, stop_signal="SIGINT")


def postgres_ready(cluster: Cluster) -> bool:
    """Whether PostgreSQL accepts connections (not only TCP: it is past its start-up)."""
    probe = [
        str(postgres_bin() / "pg_isready"), "-q",
        "-h", cluster.head_ip, "-p", str(cluster.ports["postgres"]),
    ]  # fmt: skip
    return subprocess.run(probe, capture_output=True).returncode == 0


def create_mlflow_database(cluster: Cluster, password: str) -> None:
    """Role and database ``mlflow``; the password goes through stdin, never a command line."""
    sql = f"CREATE ROLE mlflow LOGIN PASSWORD '{password}';\nCREATE DATABASE mlflow OWNER mlflow;\n"
    psql = [
        str(postgres_bin() / "psql"),
        "-h", str(cluster.pg_data),
        "-p", str(cluster.ports["postgres"]),
        "-U", "postgres",
        "-v", "ON_ERROR_STOP=1",
        "-q",
        "-f", "-",
    ]  # fmt: skip
    _run_as_postgres(psql, stdin=sql)


def start_moto(cluster: Cluster) -> Proc:
    argv = [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(cluster.ports["moto"])]
    return _spawn(cluster, "moto", argv, _service_env(cluster))


def start_gate(cluster: Cluster) -> Proc:
    argv = [
        sys.executable, str(HERE / "s3_gate.py"),
        "--listen", f"{cluster.head_ip}:{cluster.ports['s3']}",
        "--target", f"127.0.0.1:{cluster.ports['moto']}",
        "--control", f"127.0.0.1:{cluster.ports['s3_control']}",
    ]  # fmt: skip
    return _spawn(cluster, "s3_gate", argv, _service_env(cluster))


def mlflow_argv(cluster: Cluster) -> list[str]:
    host = cluster.head_ip
    return [
        str(VENV_BIN / "mlflow"), "server",
        "--backend-store-uri", cluster.postgres_uri,
        "--serve-artifacts",
        "--artifacts-destination", f"s3://{BUCKET}/mlflow",
        "--host", host,
        "--port", str(cluster.ports["mlflow"]),
        "--workers", "2",
        # Nodes call it by the head's address; name it so any subnet works, not only the
        # private ranges MLflow allows by default.
        "--allowed-hosts", f"{host},{host}:{cluster.ports['mlflow']},localhost:*,127.0.0.1:*",
    ]  # fmt: skip


def start_mlflow(cluster: Cluster, argv: list[str] | None = None) -> Proc:
    env = _service_env(
        cluster,
        PGPASSFILE=str(cluster.pgpass),
        AWS_ENDPOINT_URL=cluster.s3_endpoint,
        MLFLOW_S3_ENDPOINT_URL=cluster.s3_endpoint,
        **AWS_KEYS,
    )
    return _spawn(cluster, "mlflow", argv or mlflow_argv(cluster), env, signal_all=True)


def prepare_bucket(cluster: Cluster) -> None:
    """Bucket ``ray-mlops`` with the bundled dataset, through the gate as every node sees it."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=cluster.s3_endpoint,
        aws_access_key_id=AWS_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_KEYS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_KEYS["AWS_DEFAULT_REGION"],
    )
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(DATASET), BUCKET, DATASET_KEY)


# ---------------------------------------------------------------------------------------------
# Probes.


def tcp_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(url: str, token: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def ray_nodes(cluster: Cluster) -> list[dict[str, object]]:
    """Ray's node table (alive and dead) from the dashboard's state API; empty if no answer."""
    request = urllib.request.Request(f"{cluster.dashboard}/api/v0/nodes?limit=1000&detail=1")
    request.add_header("Authorization", f"Bearer {cluster.token_file.read_text().strip()}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            payload = json.load(response)
        return list(payload["data"]["result"]["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def alive_nodes(cluster: Cluster) -> dict[str, str]:
    """node id -> ip of every node Ray reports alive."""
    return {
        str(node["node_id"]): str(node["node_ip"])
        for node in ray_nodes(cluster)
        if node.get("state") == "ALIVE"
    }


def gate_command(cluster: Cluster, line: str) -> str:
    with socket.create_connection(("127.0.0.1", cluster.ports["s3_control"]), timeout=5) as conn:
        conn.sendall(f"{line}\n".encode())
        return conn.makefile().readline().strip()


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout_s: float,
    watch: list[Proc],
) -> None:
    """Poll ``check`` until it holds; fail early, with the log's end, if a watched process dies."""
    deadline = time.monotonic() + timeout_s
    while not check():
        for proc in watch:
            if not procs.is_alive(proc):
                raise ClusterError(f"{proc.name} exited while waiting for {what}{_log_tail(proc)}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{what}: no answer after {timeout_s:.0f} s{_log_tails(watch)}")
        time.sleep(0.3)


def _log_tail(proc: Proc, lines: int = 15) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f" (log {proc.log}):\n  " + "\n  ".join(text)


def _log_tails(watch: list[Proc]) -> str:
    return "".join(_log_tail(proc, 5) for proc in watch)


# ---------------------------------------------------------------------------------------------
# Subcommands.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        # Connections of an earlier run in TIME_WAIT do not hold a port against a listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _check_machine(state: Path) -> None:
    if sys.platform != "linux" or os.geteuid() != 0:
        raise ClusterError("the local cluster needs Linux and root (network and mount namespaces)")
    for tool in ("ip", "unshare", "setpriv"):
        if shutil.which(tool) is None:
            raise ClusterError(f"`{tool}` not found: install iproute2 / util-linux")
    postgres_bin()
    procs.cgroup_root()
    missing = [name for name in ("ray", "mlflow", "moto_server") if not (VENV_BIN / name).exists()]
    if missing:
        raise ClusterError(
            f"{', '.join(missing)} not in {VENV_BIN}: run cluster.py with the project's "
            "environment (.venv/bin/python, after `make setup`)"
        )
    # PostgreSQL runs as `postgres`, which must reach its data folder inside the state folder.
    reach = subprocess.run(
        ["test", "-x", str(state)],
        capture_output=True,
        user="postgres",
        group="postgres",
        extra_groups=[],
    )
    if reach.returncode != 0:
        raise ClusterError(
            f"--state {state}: user postgres cannot reach it (a parent folder is not searchable); "
            "choose a folder outside private ones, e.g. --state /tmp/ray-mlops-cluster"
        )


def cmd_up(args: argparse.Namespace) -> int:
    state: Path = args.state
    if (state / "cluster.json").exists():
        return _already_up(Cluster.load(state))
    layout = net.plan(args.prefix, args.subnet, WORKERS)
    ports = {
        "ray": args.ray_port,
        "ray_client": args.ray_client_port,
        "dashboard": args.dashboard_port,
        "dashboard_agent": args.dashboard_agent_port,
        "mlflow": args.mlflow_port,
        "postgres": args.postgres_port,
        "s3": args.s3_port,
        "moto": _free_port(),
        "s3_control": _free_port(),
    }
    for name, port in ports.items():
        if not 1024 <= port <= 65535:
            raise ClusterError(f"--{name.replace('_', '-')}-port {port}: use 1024 to 65535")
    if args.object_store_mb < 100:
        raise ClusterError(
            f"--object-store-mb {args.object_store_mb}: at least 100 (Ray's minimum is 75)"
        )
    taken = [
        f"{name} {port}"
        for name, port in ports.items()
        if name not in ("moto", "s3_control") and _port_taken(port)
    ]
    if taken:
        raise ClusterError(
            f"ports in use on this machine: {', '.join(taken)} (choose others with --*-port)"
        )
    clashes = net.clashes(layout)
    if clashes:
        raise ClusterError(f"{'; '.join(clashes)} (another cluster? choose --prefix / --subnet)")
    created = not state.exists()
    state.mkdir(parents=True, exist_ok=True)
    if any(state.iterdir()):
        raise ClusterError(f"--state {state}: not empty and holds no cluster.json")
    os.chmod(state, 0o711)
    try:
        _check_machine(state)
    except ClusterError:
        if created:
            state.rmdir()
        raise
    cluster = Cluster(state, layout, ports, {}, {}, object_store_mb=args.object_store_mb)
    started = time.monotonic()
    with locked(state):
        cluster.save()  # first, so that `down` finds whatever gets started from here on
        try:
            _bring_up(cluster)
        except BaseException as error:
            known = ClusterError | NetError | ProcessError
            reason = str(error) if isinstance(error, known) else repr(error)
            print(f"cluster up failed: {reason}", file=sys.stderr)
            print("stopping what was started ...", file=sys.stderr)
            survivors = _take_down(cluster)
            if survivors:
                print(f"still running, state kept: {'; '.join(survivors)}", file=sys.stderr)
            return 1
    _summary(cluster, time.monotonic() - started)
    return 0


def _bring_up(cluster: Cluster) -> None:
    """Start every part, each as soon as what it needs answers, then wait for all of them."""
    cluster.cgroup = str(procs.new_cluster_cgroup(cluster.layout.prefix))
    cluster.save()
    net.create(cluster.layout)
    _write(cluster.token_file, secrets.token_hex(32), 0o600)
    password = secrets.token_hex(24)
    head_ip, ports = cluster.head_ip, cluster.ports

    def started(proc: Proc) -> Proc:
        cluster.processes[proc.name] = proc
        cluster.save()
        return proc

    head = started(start_ray_node(cluster, "head"))
    moto = started(start_moto(cluster))
    gate = started(start_gate(cluster))
    init_postgres(cluster, password)
    postgres = started(start_postgres(cluster))

    wait_for("PostgreSQL", lambda: postgres_ready(cluster), 60, [postgres])
    create_mlflow_database(cluster, password)
    # MLflow's start (schema migrations, workers) is the longest: start it first. It needs
    # the bucket only when the first artifact arrives.
    mlflow = started(start_mlflow(cluster))
    wait_for("the Ray head", lambda: tcp_answers(head_ip, ports["ray"]), 120, [head])
    workers = [started(start_ray_node(cluster, name)) for name in WORKERS]
    wait_for("moto", lambda: tcp_answers("127.0.0.1", ports["moto"]), 60, [moto])
    wait_for("the S3 gate", lambda: tcp_answers(head_ip, ports["s3"]), 30, [gate])
    prepare_bucket(cluster)

    wait_for("MLflow", lambda: http_ok(f"{cluster.tracking_uri}/health"), 180, [mlflow, postgres])
    wait_for("3 alive Ray nodes", lambda: len(alive_nodes(cluster)) == 3, 180, [head, *workers])
    by_ip = {ip: node_id for node_id, ip in alive_nodes(cluster).items()}
    cluster.node_ids = {
        "head": by_ip[head_ip],
        **{node.name: by_ip[node.ip] for node in cluster.layout.nodes},
    }
    cluster.phase = "up"
    cluster.save()


def _down_states(cluster: Cluster) -> list[str]:
    return [name for name, proc in cluster.processes.items() if not procs.is_alive(proc)]


def _already_up(cluster: Cluster) -> int:
    if cluster.phase != "up":
        raise ClusterError(
            f"{cluster.state}: a cluster is still starting or its `up` did not finish; "
            f"run `cluster.py down --state {cluster.state}` first"
        )
    stopped = _down_states(cluster)
    if stopped:
        raise ClusterError(
            f"cluster at {cluster.state} is partly running (stopped: {', '.join(stopped)}); "
            "start it with start-node / start-mlflow, or run down then up"
        )
    print(f"cluster already up (state {cluster.state}); `source {cluster.state / 'cluster.env'}`")
    return 0


def _take_down(cluster: Cluster) -> list[str]:
    """Stop every process, remove the network and the state folder; what survived, if any."""
    survivors = procs.stop(cluster.processes.values(), net.namespace_pids)
    if survivors:
        return survivors
    for proc in cluster.processes.values():
        procs.remove_cgroup(Path(proc.cgroup))
    if cluster.cgroup:
        procs.remove_cgroup(Path(cluster.cgroup))
    net.remove(cluster.layout)
    shutil.rmtree(cluster.state)
    return []


def cmd_down(args: argparse.Namespace) -> int:
    state: Path = args.state
    if not (state / "cluster.json").exists():
        print(f"no cluster at {state}: nothing to stop")
        return 0
    started = time.monotonic()
    cluster = Cluster.load(state)
    with locked(state):
        survivors = _take_down(cluster)
    if survivors:
        raise ClusterError(f"processes survived SIGKILL, state kept: {'; '.join(survivors)}")
    print(f"cluster down in {time.monotonic() - started:.1f} s")
    return 0


def _status_rows(cluster: Cluster) -> list[dict[str, object]]:
    rows = []
    for name, proc in cluster.processes.items():
        rows.append(
            {
                "name": name,
                "pid": proc.pid,
                "alive": procs.is_alive(proc),
                "processes": len(procs.members(proc, net.namespace_pids)),
                "where": proc.netns or "host",
            }
        )
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    state: Path = args.state
    if not (state / "cluster.json").exists():
        print(f"no cluster at {state}")
        return 1
    cluster = Cluster.load(state)
    rows = _status_rows(cluster)
    nodes = ray_nodes(cluster)
    try:
        gate = gate_command(cluster, "status")
    except OSError:
        gate = "not answering"
    report = {
        "phase": cluster.phase,
        "processes": rows,
        "ray_nodes": [
            {key: node.get(key) for key in ("node_id", "node_ip", "state", "is_head_node")}
            for node in nodes
        ],
        "mlflow": "answering" if http_ok(f"{cluster.tracking_uri}/health") else "not answering",
        "s3_gate": gate,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for row in rows:
            print(
                f"{row['name']:<9} pid {row['pid']:<8} {'alive' if row['alive'] else 'STOPPED':<8} "
                f"{row['processes']} processes, {row['where']}"
            )
        alive = sum(1 for node in nodes if node.get("state") == "ALIVE")
        print(f"ray: {alive} alive nodes; mlflow: {report['mlflow']}; s3 gate: {gate}")
    healthy = cluster.phase == "up" and all(row["alive"] for row in rows)
    return 0 if healthy else 1


def _worker(cluster: Cluster, name: str) -> Proc:
    if name not in WORKERS:
        raise ClusterError(f"no worker node {name!r}: the worker nodes are {', '.join(WORKERS)}")
    return cluster.processes[name]


@contextlib.contextmanager
def _changing(state: Path) -> Iterator[Cluster]:
    """The cluster, loaded under the lock, and saved back once the change is done."""
    if not (state / "cluster.json").exists():
        raise ClusterError(f"no cluster at {state}: run `cluster.py up` first")
    with locked(state):
        cluster = Cluster.load(state)
        if cluster.phase != "up":
            raise ClusterError(f"{state}: the cluster's `up` has not finished")
        yield cluster
        cluster.save()


def cmd_kill_node(args: argparse.Namespace) -> int:
    with _changing(args.state) as cluster:
        proc = _worker(cluster, args.name)
        count = len(procs.members(proc, net.namespace_pids))
        survivors = procs.stop([proc], net.namespace_pids, force=True)
        if survivors:
            raise ClusterError(f"processes survived SIGKILL: {'; '.join(survivors)}")
        procs.remove_cgroup(Path(proc.cgroup))
    print(f"{args.name}: SIGKILL sent to its {count} processes; none left")
    return 0


def cmd_start_node(args: argparse.Namespace) -> int:
    with _changing(args.state) as cluster:
        proc = _worker(cluster, args.name)
        if procs.is_alive(proc):
            print(f"{args.name} is already running (pid {proc.pid})")
            return 0
        procs.stop([proc], net.namespace_pids, force=True)  # leftovers of a half-dead node
        procs.remove_cgroup(Path(proc.cgroup))
        ip = cluster.layout.node(args.name).ip
        before = {node_id for node_id, node_ip in alive_nodes(cluster).items() if node_ip == ip}
        proc = start_ray_node(cluster, args.name)
        cluster.processes[args.name] = proc

        def joined() -> bool:
            return any(
                node_ip == ip and node_id not in before
                for node_id, node_ip in alive_nodes(cluster).items()
            )

        wait_for(f"{args.name} to join Ray", joined, 120, [proc])
        new = [
            n for n, node_ip in alive_nodes(cluster).items() if node_ip == ip and n not in before
        ]
        cluster.node_ids[args.name] = new[0]
    print(f"{args.name} is back at {ip} (node {new[0][:12]})")
    return 0


def cmd_stop_mlflow(args: argparse.Namespace) -> int:
    with _changing(args.state) as cluster:
        procs.stop([cluster.processes["mlflow"]], net.namespace_pids, force=True)
        procs.remove_cgroup(Path(cluster.processes["mlflow"].cgroup))
    print("mlflow: killed (SIGKILL)")
    return 0


def cmd_start_mlflow(args: argparse.Namespace) -> int:
    with _changing(args.state) as cluster:
        old = cluster.processes["mlflow"]
        if procs.is_alive(old):
            print(f"mlflow is already running (pid {old.pid})")
            return 0
        procs.stop([old], net.namespace_pids, force=True)
        procs.remove_cgroup(Path(old.cgroup))
        proc = start_mlflow(cluster, old.argv)
        cluster.processes["mlflow"] = proc
        wait_for("MLflow", lambda: http_ok(f"{cluster.tracking_uri}/health"), 120, [proc])
    print(f"mlflow: answering again at {cluster.tracking_uri}")
    return 0


def cmd_cut_s3(args: argparse.Namespace) -> int:
    seconds: float = args.seconds
    if not 0 < seconds <= 3600:
        raise ClusterError(f"cut-s3 {seconds:g}: seconds must be in (0, 3600]")
    with _changing(args.state) as cluster:
        answer = gate_command(cluster, f"cut {seconds}")
        if answer != "cut":
            raise ClusterError(f"the S3 gate answered {answer!r}")
        cluster.s3_cut_until = time.time() + seconds
    print(f"object store at {cluster.s3_endpoint}: refusing connections for {seconds:g} s")
    return 0


def _summary(cluster: Cluster, seconds: float) -> None:
    lines = [
        ("Ray dashboard / jobs", cluster.dashboard),
        ("Ray GCS", f"{cluster.head_ip}:{cluster.ports['ray']}"),
        (
            "Ray nodes",
            ", ".join(f"{n} {cluster.layout.node(n).ip}" for n in WORKERS)
            + f", head {cluster.head_ip}",
        ),
        ("MLflow", cluster.tracking_uri),
        ("PostgreSQL", f"{cluster.postgres_uri} (password in {cluster.pgpass})"),
        ("S3 (moto)", f"{cluster.s3_endpoint}, s3://{BUCKET}/{DATASET_KEY}"),
        ("Environment", f"source {cluster.state / 'cluster.env'}"),
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"cluster up in {seconds:.1f} s")
        for key, value in lines:
            print(f"  {key:<22}{value}")
        return
    table = Table(title=f"local cluster up in {seconds:.1f} s", show_header=False)
    for key, value in lines:
        table.add_row(key, value)
    Console().print(table)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cluster.py",
        description="A local multi-node Ray cluster with MLflow, PostgreSQL and S3.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state", type=Path, default=DEFAULT_STATE, help=f"state folder (default {DEFAULT_STATE})"
    )
    up = commands.add_parser("up", parents=[common], help="start the cluster")
    up.add_argument("--prefix", default="rmc", help="names of the bridge, namespaces and veths")
    up.add_argument(
        "--subnet", default="10.77.0.0/24", help="the cluster's network; head = first address"
    )
    for name, default in (
        ("ray", 6379),
        ("ray-client", 10201),  # not 10001: a `ray start --head` of the e2e tests takes it
        ("dashboard", 8265),
        ("dashboard-agent", 52366),  # not 52365: a local ray.init() holds it on 127.0.0.1
        ("mlflow", 15000),
        ("postgres", 15432),
        ("s3", 19000),
    ):
        up.add_argument(f"--{name}-port", type=int, default=default, metavar="PORT")
    up.add_argument("--object-store-mb", type=int, default=512, help="per Ray node")
    up.set_defaults(run=cmd_up)
    commands.add_parser("down", parents=[common], help="stop everything up started").set_defaults(
        run=cmd_down
    )
    status = commands.add_parser("status", parents=[common], help="what runs; exit 1 unless all")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)
    for name, run, text in (
        ("kill-node", cmd_kill_node, "SIGKILL every process of a worker node"),
        ("start-node", cmd_start_node, "start a worker node again, same address"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("name", help=" or ".join(WORKERS))
        sub.set_defaults(run=run)
    commands.add_parser(
        "stop-mlflow", parents=[common], help="SIGKILL the tracking server"
    ).set_defaults(run=cmd_stop_mlflow)
    commands.add_parser("start-mlflow", parents=[common], help="start it again").set_defaults(
        run=cmd_start_mlflow
    )
    cut = commands.add_parser(
        "cut-s3", parents=[common], help="object store unreachable for a while"
    )
    cut.add_argument("seconds", type=float)
    cut.set_defaults(run=cmd_cut_s3)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.state = args.state.absolute()
    try:
        return int(args.run(args))
    except (ClusterError, NetError, ProcessError) as error:
        print(f"cluster.py {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
