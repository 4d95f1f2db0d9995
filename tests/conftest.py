"""Shared fixtures: one local Ray per test session, small real data, MLflow on SQLite."""

from __future__ import annotations

import gzip
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from ray_mlops.datasets import adult_path

TEST_ROWS = 3000
os.environ["RAY_MLOPS_KEY_DIR"] = f"/tmp/ray-mlops-test-keys-{os.getpid()}"  # not ~/.config


def free_port() -> int:
    """A TCP port nobody listens on right now, and that Ray's own processes, which take
    theirs from the ephemeral range, will not take before a test binds it."""
    from ray_mlops.serve.ingress import free_port as free_serving_port

    return free_serving_port("127.0.0.1")


@pytest.fixture(scope="session")
def adult_sample() -> pd.DataFrame:
    """The first rows of the bundled Adult table, as read from its file."""
    with gzip.open(adult_path(), "rt") as handle:
        return pd.read_csv(handle, nrows=TEST_ROWS, keep_default_na=True)


def write_config(directory: Path, overrides: dict[str, Any] | None = None, **data: Any) -> Path:
    """A small but complete pipeline config over ``sample.csv`` in ``directory``."""
    config: dict[str, Any] = {
        "name": "adult-test",
        "task": "classification",
        "data": {
            "path": "sample.csv",
            "target": "income",
            "id_column": "person_id",
            "numeric": ["age", "education_num", "capital_gain", "hours_per_week"],
            "categorical": ["workclass", "education", "marital_status", "occupation", "sex"],
            "sensitive": ["sex"],
            "quarantine": {"conflicting_labels": False},
            **data,
        },
        "model": {"hidden_sizes": [16], "dropout": 0.0},
        "train": {"num_workers": 2, "epochs": 3, "batch_size": 128, "learning_rate": 0.01},
        "serve": {"cpus_per_replica": 0.25, "port": free_port()},
    }
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    path = directory / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole session, bound to 127.0.0.1.

    Four logical CPUs on this 2-core machine let a Serve replica, two training workers and
    Ray Data tasks coexist without one test waiting for another's resources.
    """
    import ray

    # Serve's HAProxy ingress (the default serve.proxy) is read from the environment of the
    # processes Ray starts, with ports and files of its own (not 8404, 9101, 8500 and
    # /tmp/haproxy-serve, which a `ray-mlops serve` on this machine may hold); metrics
    # reach the nodes' agents every second instead of ten.
    from ray_mlops.compat.ray_core import local_node_options
    from ray_mlops.config import ServeConfig
    from ray_mlops.serve.ingress import local_ingress
    from ray_mlops.settings_env import HA_PROXY_SETTINGS

    for key, value in HA_PROXY_SETTINGS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")
    # A stopping replica stays open 30 s by default so that an external load balancer can
    # deregister it first. Here the only one is Serve's own HAProxy, which drops it on the
    # controller's broadcast and retries refused connections (HA_PROXY_SETTINGS): 5 s is
    # plenty, and each scale-down and stop in the serving tests waits that long, not 30 s.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "5")
    with local_ingress(ServeConfig(port=free_port())):
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            **local_node_options(),
            log_to_driver=False,
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield
        ray.shutdown()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, adult_sample: pd.DataFrame) -> Path:
    """A folder with ``sample.csv`` and its own MLflow database, used as working directory."""
    directory = tmp_path_factory.mktemp("workspace")
    adult_sample.to_csv(directory / "sample.csv", index=False)
    # A git work tree, so runs are tagged with the commit of the code and data they used.
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=directory, check=True)
    subprocess.run([*git, "add", "sample.csv"], cwd=directory, check=True)
    subprocess.run([*git, "commit", "-qm", "sample"], cwd=directory, check=True)
    return directory


@pytest.fixture(scope="session")
def tracking_uri(workspace: Path) -> str:
    return f"sqlite:///{workspace / 'mlflow.db'}"


@pytest.fixture(scope="session")
def trained(ray_session: None, workspace: Path, tracking_uri: str) -> Any:
    """The pipeline run once on the sample: the champion every serving test uses."""
    from rich.console import Console

    from ray_mlops.config import load_config
    from ray_mlops.pipeline import run_pipeline
    from ray_mlops.workspace import Workspace

    config = write_config(workspace, {"tracking": {"tracking_uri": tracking_uri}})
    return run_pipeline(load_config(config), Console(quiet=True), workspace=Workspace(workspace))


def registered_checkpoints(results: Path, pattern: str = "*") -> int:
    """Checkpoints Ray Train has registered for the runs under ``results`` matching
    ``pattern``: counted from its checkpoint manager's snapshot, which it rewrites after
    each registration (a checkpoint folder on disk alone may not be registered yet)."""
    import json

    count = 0
    for snapshot in results.glob(f"{pattern}/checkpoint_manager_snapshot.json"):
        try:
            count += len(json.loads(snapshot.read_text())["checkpoint_results"])
        except (OSError, ValueError, KeyError):
            continue  # being rewritten right now
    return count


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the local multi-node cluster (tests/cluster/) run last, marked ``cluster``:
    they start the cluster once, and it shares this machine's 2 cores with the session's Ray."""
    cluster_dir = Path(__file__).parent / "cluster"
    on_cluster = [item for item in items if cluster_dir in Path(item.path).parents]
    for item in on_cluster:
        item.add_marker(pytest.mark.cluster)
    last = set(on_cluster)
    items[:] = [item for item in items if item not in last] + on_cluster
