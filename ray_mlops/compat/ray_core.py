"""Where this package reaches into Ray Core's private interior (pinned Ray 2.60).

- ``ray.init(_node_ip_address=...)``: a Ray started here binds 127.0.0.1, so a laptop's
  embedded Ray (and the test session's) is not reachable from the network and needs no
  firewall prompt; ``ray.init`` has no public keyword for it.
- ``ray._private.worker._global_node.get_logs_dir_path()``: where this node's worker logs are
  (the benchmarks read workers' start-up times from them); no public call gives it.

``tests/unit/test_compat.py`` fails, naming the API, when an upgrade of Ray changes one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The address a Ray started by this package binds.
LOCAL_NODE_IP = "127.0.0.1"


def local_node_options() -> dict[str, Any]:
    """The ``ray.init`` keywords that bind a Ray started here to :data:`LOCAL_NODE_IP`."""
    return {"_node_ip_address": LOCAL_NODE_IP}


def node_logs_dir() -> Path:
    """The log folder of the Ray node this process is connected to.

    Raises:
        RuntimeError: this process is not connected to Ray.
    """
    import ray

    node = ray._private.worker._global_node
    if node is None:
        raise RuntimeError("not connected to Ray: call ray.init() first")
    return Path(node.get_logs_dir_path())
