"""The workspace: made once at an entry point, the only way code finds where state goes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ray_mlops.config import load_config
from ray_mlops.workspace import Workspace

PACKAGE = Path(__file__).resolve().parents[2] / "ray_mlops"
# Reading the process's working directory: allowed in the workspace's entry-point defaults
# and in detecting a Ray Job, whose working directory *is* the uploaded copy.
CWD_READ = re.compile(r"Path\.cwd\(\)|os\.getcwd\(\)|os\.chdir\(|Path\(DEFAULT_HOME\)")
CWD_READERS = {"workspace.py", "local_state.py"}


def _config(folder: Path, **workspace: str) -> Path:
    path = folder / "pipeline.yaml"
    doc: dict[str, object] = {
        "name": "w",
        "data": {"path": "d.csv", "target": "y", "numeric": ["x"]},
    }
    if workspace:
        doc["workspace"] = workspace
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_workspace_is_where_the_command_started_unless_the_config_names_one(
    tmp_path: Path,
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    started = tmp_path / "elsewhere"
    assert Workspace.of(load_config(_config(configs)), started).root == started
    named = load_config(_config(configs, root="../state"))
    assert Workspace.of(named, started).root == (tmp_path / "state").resolve()
    absolute = load_config(_config(configs, root=str(tmp_path / "abs")))
    assert Workspace.of(absolute, started).root == tmp_path / "abs"


def test_state_paths_and_the_embedded_store_live_under_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ws = Workspace(tmp_path)
    assert ws.storage == str(tmp_path / ".ray-mlops")
    assert ws.ray_results == str(tmp_path / ".ray-mlops" / "ray_results")
    assert ws.quarantine_location("r1") == str(tmp_path / ".ray-mlops" / "quarantine" / "r1")
    assert ws.capture_location("capture") == str(tmp_path / ".ray-mlops" / "capture")
    assert ws.capture_location("/abs/capture") == "/abs/capture"
    assert ws.capture_location("s3://b/cap") == "s3://b/cap"
    assert not ws.is_object_store
    assert ws.tracking_uri(None) == f"sqlite:///{tmp_path / '.ray-mlops' / 'mlflow.db'}"
    assert (tmp_path / ".ray-mlops" / ".rayignore").read_text().splitlines()[-1] == "*"
    assert ws.tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://db/mlflow")
    assert ws.tracking_uri(None) == "postgresql://db/mlflow"


def test_nothing_else_reads_the_working_directory() -> None:
    readers = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name not in CWD_READERS or path.parent != PACKAGE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CWD_READ.search(line)
    ]
    assert readers == [], f"the working directory is read outside workspace.py: {readers}"


def test_storage_is_a_folder_from_the_config_or_an_object_store_uri(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    started = tmp_path / "elsewhere"
    shared = Workspace.of(load_config(_config(configs, storage="../shared")), started)
    assert shared.storage == str((tmp_path / "shared").resolve())
    assert shared.ray_results == str((tmp_path / "shared" / "ray_results").resolve())
    bucket = Workspace.of(load_config(_config(configs, storage="s3://bucket/runs/")), started)
    assert bucket.is_object_store and bucket.root == started
    assert bucket.ray_results == "s3://bucket/runs/ray_results"
    assert bucket.quarantine_location("r1") == "s3://bucket/runs/quarantine/r1"
    assert bucket.capture_location("capture") == "s3://bucket/runs/capture"
    gcs = Workspace.of(load_config(_config(configs, storage="gs://b/p")), started)
    assert gcs.ray_results == "gs://b/p/ray_results"


@pytest.mark.parametrize(
    ("storage", "message"),
    [("ftp://host/x", "scheme ftp://"), ("s3:///no-bucket", "names no bucket")],
)
def test_a_storage_uri_ray_mlops_cannot_write_is_refused_naming_the_setting(
    tmp_path: Path, storage: str, message: str
) -> None:
    from ray_mlops.errors import ConfigError

    loaded = load_config(_config(tmp_path, storage=storage))
    with pytest.raises(ConfigError, match=f"workspace.storage: .*{message}"):
        Workspace.of(loaded, tmp_path)
