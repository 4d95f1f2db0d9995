"""The search's MLflow record after the search (record_search) on a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from ray_mlops.mlflow_names import TAG_BEST_TRIAL, TAG_TRIAL_ID, TAG_TRIAL_STATUS
from ray_mlops.search.stage import record_search
from ray_mlops.search.tuner import SearchOutcome


def test_trial_runs_match_the_leaderboard_after_an_interrupted_search(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    search = client.create_run(experiment, run_name="search").info.run_id
    runs = {
        trial_id: client.create_run(
            experiment, tags={"mlflow.parentRunId": search, TAG_TRIAL_ID: trial_id}
        ).info.run_id
        # t3 started after Tune's last saved state; the resumed search never knew it.
        for trial_id in ("t1", "t2", "t3")
    }
    board = pd.DataFrame(
        {
            "trial": [1, 2],
            "trial_id": ["t2", "t1"],
            "val_loss": [0.30, 0.35],
            "epochs": [4, 1],
            "status": ["completed", "pruned"],
            "seconds": [2.0, 0.5],
        }
    )
    outcome = SearchOutcome(
        leaderboard=board,
        best_params={"train.learning_rate": 0.01},
        best_metrics={"val_loss": 0.30},
        best_checkpoint=str(tmp_path),
        best_trial_id="t2",
        trial_epochs=5,
        experiment_path=str(tmp_path),
        metric="val_loss",
        mode="min",
    )

    record_search(client, experiment, search, outcome, "search")

    nested = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{search}'")
    tags = {r.data.tags[TAG_TRIAL_ID]: r.data.tags for r in nested}
    assert sorted(tags) == ["t1", "t2"]
    assert tags["t2"][TAG_BEST_TRIAL] == "true" and tags["t1"][TAG_BEST_TRIAL] == "false"
    assert tags["t1"][TAG_TRIAL_STATUS] == "pruned"
    lost = client.get_run(runs["t3"])
    assert lost.info.lifecycle_stage == "deleted" and lost.info.status == "KILLED"
    assert lost.data.tags[TAG_TRIAL_STATUS] == "lost in an interruption"
    every = client.search_runs([experiment], run_view_type=ViewType.ALL)
    assert len(every) == 4  # soft-deleted: still there for `mlflow runs restore`
