"""The local cluster's network: one Linux bridge on the host, one network namespace per worker node.

The host side of the bridge carries the head's address; each worker node is a network namespace
joined to the bridge by a veth pair, with an address of the same subnet and a default route
through the head (so that code which finds its own address by "connecting" to a public one gets
the node's address, not loopback). Nothing is routed beyond the subnet: the nodes reach each
other and the head, as machines on one private LAN.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import asdict, dataclass

# Linux caps interface names at 15 characters; the longest name made here is PREFIX-node9h.
MAX_PREFIX = 8


class NetError(RuntimeError):
    """A network step failed or would clash with something already on this machine."""


@dataclass(frozen=True)
class NodeNet:
    """One worker node's place on the network."""

    name: str
    netns: str
    ip: str
    interface: str  # inside the namespace: GLOO_SOCKET_IFNAME of the node
    host_veth: str  # the veth end on the bridge


@dataclass(frozen=True)
class Layout:
    """The whole network of one cluster: what ``create`` makes and ``remove`` takes away."""

    prefix: str
    subnet: str
    bridge: str
    head_ip: str
    nodes: tuple[NodeNet, ...]

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def node(self, name: str) -> NodeNet:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Layout:
        nodes = tuple(NodeNet(**node) for node in data["nodes"])  # type: ignore[attr-defined]
        return cls(
            prefix=str(data["prefix"]),
            subnet=str(data["subnet"]),
            bridge=str(data["bridge"]),
            head_ip=str(data["head_ip"]),
            nodes=nodes,
        )


def plan(prefix: str, subnet: str, node_names: list[str]) -> Layout:
    """Names and addresses for a cluster: the head takes the subnet's first host address.

    Raises:
        NetError: the prefix or the subnet cannot be used.
    """
    if not (prefix.isascii() and prefix.isalnum() and prefix.islower()) or len(prefix) > MAX_PREFIX:
        raise NetError(
            f"--prefix {prefix!r}: use 1 to {MAX_PREFIX} lowercase letters or digits "
            f"(interface names are limited to 15 characters), e.g. --prefix rmc"
        )
    try:
        network = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as error:
        raise NetError(f"--subnet {subnet!r}: {error}; e.g. --subnet 10.77.0.0/24") from None
    hosts = list(network.hosts())[: len(node_names) + 1]
    if len(hosts) < len(node_names) + 1:
        raise NetError(f"--subnet {subnet}: too small for a head and {len(node_names)} nodes")
    nodes = tuple(
        NodeNet(
            name=name,
            netns=f"{prefix}-{name}",
            ip=str(address),
            interface=f"{prefix}-{name}",
            host_veth=f"{prefix}-{name}h",
        )
        for name, address in zip(node_names, hosts[1:], strict=True)
    )
    return Layout(prefix, str(network), f"{prefix}-br", str(hosts[0]), nodes)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; on failure raise :class:`NetError` with ip's own message."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def _links() -> set[str]:
    return {link["ifname"] for link in json.loads(ip("-j", "link", "show").stdout or "[]")}


def _namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def clashes(layout: Layout) -> list[str]:
    """What already on this machine would clash with ``layout`` (empty when nothing does)."""
    problems = []
    links = _links()
    names = [layout.bridge, *(node.host_veth for node in layout.nodes)]
    problems += [f"network interface {name} exists" for name in names if name in links]
    namespaces = _namespaces()
    problems += [
        f"network namespace {node.netns} exists"
        for node in layout.nodes
        if node.netns in namespaces
    ]
    ours = ipaddress.ip_network(layout.subnet)
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        destination = route.get("dst", "")
        if destination in ("", "default") or route.get("type") in ("broadcast", "local"):
            continue
        try:
            theirs = ipaddress.ip_network(destination, strict=False)
        except ValueError:
            continue
        if ours.overlaps(theirs):
            problems.append(
                f"subnet {layout.subnet} overlaps route {destination} on {route.get('dev')}"
            )
    return problems


def create(layout: Layout) -> None:
    """Make the bridge, the namespaces and their veth pairs, with addresses and routes."""
    ip("link", "add", layout.bridge, "type", "bridge")
    ip("addr", "add", f"{layout.head_ip}/{layout.prefixlen}", "dev", layout.bridge)
    ip("link", "set", layout.bridge, "up")
    for node in layout.nodes:
        ip("netns", "add", node.netns)
        ip(
            "link",
            "add",
            node.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            node.interface,
            "netns",
            node.netns,
        )
        ip("link", "set", node.host_veth, "master", layout.bridge, "up")
        ip("-n", node.netns, "addr", "add", f"{node.ip}/{layout.prefixlen}", "dev", node.interface)
        ip("-n", node.netns, "link", "set", node.interface, "up")
        ip("-n", node.netns, "link", "set", "lo", "up")
        ip("-n", node.netns, "route", "add", "default", "via", layout.head_ip)


def namespace_pids(netns: str) -> set[int]:
    """Every process inside the network namespace ``netns`` (none when it does not exist)."""
    result = ip("netns", "pids", netns, check=False)
    return {int(pid) for pid in result.stdout.split() if pid.isdigit()}


def remove(layout: Layout) -> None:
    """Take away what :func:`create` made, whatever of it exists. Idempotent."""
    namespaces = _namespaces()
    for node in layout.nodes:
        if node.netns in namespaces:
            ip("netns", "del", node.netns)
    links = _links()
    for name in [*(node.host_veth for node in layout.nodes), layout.bridge]:
        if name in links:
            ip("link", "del", name, check=False)
