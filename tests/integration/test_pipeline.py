"""`run_pipeline` end to end on real Ray and MLflow (SQLite): runs, registry, alias.

A run that does not beat the champion is registered without the alias: see
``test_promotion.py``, whose champion was trained on other columns.
"""

import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from ray_mlops.config import load_config
from ray_mlops.errors import DataError
from ray_mlops.mlflow_names import TAG_CONFIG_HASH, TAG_FINGERPRINT, TAG_GIT_COMMIT, TAG_STAGE
from ray_mlops.pipeline import PipelineResult, run_pipeline
from ray_mlops.workspace import Workspace
from tests.conftest import write_config

STAGES = {"data", "features", "train", "evaluate", "register"}


def _run(workspace: Path, config: Path) -> PipelineResult:
    return run_pipeline(load_config(config), Console(quiet=True), workspace=Workspace(workspace))


def test_parent_run_has_a_finished_nested_run_per_stage(
    trained: PipelineResult, tracking_uri: str
) -> None:
    client = MlflowClient(tracking_uri)
    parent = client.get_run(trained.run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [trained.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{trained.run_id}'"
    )
    assert {run.data.tags[TAG_STAGE] for run in children} == STAGES
    assert all(run.info.status == "FINISHED" for run in children)


def test_params_metrics_artifacts_and_lineage_tags(
    trained: PipelineResult, tracking_uri: str, workspace: Path
) -> None:
    client = MlflowClient(tracking_uri)
    parent = client.get_run(trained.run_id)
    assert parent.data.params["train.epochs"] == "3"
    assert parent.data.params["data.target"] == "income"
    assert parent.data.metrics["test_roc_auc"] == pytest.approx(trained.test_metrics["roc_auc"])
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert parent.data.tags[TAG_GIT_COMMIT] == commit
    assert parent.data.tags[TAG_FINGERPRINT] == trained.dataset_fingerprint
    assert len(parent.data.tags[TAG_CONFIG_HASH]) == 16
    root = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"config.yaml", "model"} <= root
    by_stage = {
        run.data.tags[TAG_STAGE]: run
        for run in client.search_runs(
            [trained.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{trained.run_id}'"
        )
    }
    features_run = by_stage["features"].info.run_id
    assert [a.path for a in client.list_artifacts(features_run)] == ["feature_state.json"]
    history = client.get_metric_history(by_stage["train"].info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1, 2]


def test_first_run_registers_version_one_as_champion(
    trained: PipelineResult, tracking_uri: str
) -> None:
    client = MlflowClient(tracking_uri)
    champion = client.get_model_version_by_alias("adult-test", "champion")
    assert trained.promoted and str(champion.version) == trained.model_version
    assert champion.run_id == trained.run_id
    assert champion.tags[TAG_FINGERPRINT] == trained.dataset_fingerprint
    assert trained.test_metrics["roc_auc"] > 0.8


def test_missing_column_fails_and_registers_nothing(
    trained: PipelineResult, tracking_uri: str, workspace: Path
) -> None:
    client = MlflowClient(tracking_uri)
    before = len(client.search_model_versions("name = 'adult-test'"))
    config = write_config(
        workspace, {"tracking": {"tracking_uri": tracking_uri}}, numeric=["age", "salary"]
    )
    with pytest.raises(DataError, match="'salary' is not in the data"):
        _run(workspace, config)
    assert len(client.search_model_versions("name = 'adult-test'")) == before
    latest = client.search_runs(
        [trained.experiment_id],
        filter_string=f"tags.{TAG_STAGE} = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert latest.info.status == "FAILED"


def test_missing_file_fails_before_any_run_opens(
    trained: PipelineResult, tracking_uri: str, workspace: Path
) -> None:
    client = MlflowClient(tracking_uri)
    runs_before = len(client.search_runs([trained.experiment_id]))
    config = write_config(
        workspace, {"tracking": {"tracking_uri": tracking_uri}}, path="nowhere/data.csv"
    )
    with pytest.raises(DataError, match=r"data file not found: nowhere/data\.csv"):
        _run(workspace, config)
    assert len(client.search_runs([trained.experiment_id])) == runs_before
