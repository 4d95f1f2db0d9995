"""Glue between the pipeline and a search: its inputs, its MLflow record, its best model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ray_mlops.config import PipelineConfig
from ray_mlops.features.state import FeatureState
from ray_mlops.mlflow_names import (
    LEADERBOARD_CSV,
    LEADERBOARD_HTML,
    MLFLOW_PARENT_RUN_ID,
    TAG_BEST_TRIAL,
    TAG_BEST_TRIAL_ID,
    TAG_TRIAL_ID,
    TAG_TRIAL_STATUS,
)
from ray_mlops.models.factory import build_model
from ray_mlops.models.predictor import FEATURES_FILE, SPEC_FILE
from ray_mlops.models.spec import ModelSpec
from ray_mlops.search.automl import search_space
from ray_mlops.search.report import render_leaderboard_html
from ray_mlops.search.trial import SearchInputs, features_key, to_arrays
from ray_mlops.search.tuner import FAILED, SearchOutcome
from ray_mlops.storage import fetch_directory
from ray_mlops.train.checkpoint import read_weights
from ray_mlops.train.trainer import TrainingOutcome

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ray_mlops.data.stage import PreparedData


def search_inputs(
    cfg: PipelineConfig,
    base_dir: Path,
    data: PreparedData,
    state: FeatureState,
    tracking_uri: str | None,
    experiment_id: str | None,
    search_run_id: str | None,
    trainer_storage: str,
) -> SearchInputs:
    """Encode the splits once with the base features; trials with other features refit.

    The rows travel to the trials through the object store as pandas frames: a search holds
    its train and validation splits in memory, as each trial trains on them resident.
    """
    train = data.splits["train"].to_pandas()
    validation = data.splits["validation"].to_pandas()
    arrays = {
        name: to_arrays(rows, state, cfg.data.target)
        for name, rows in (("train", train), ("validation", validation))
    }
    return SearchInputs(
        # Trials validate their own config; without the search section they skip its checks.
        base_doc=cfg.model_dump(mode="json", exclude={"search"}),
        space=search_space(cfg),
        base_dir=str(base_dir),
        train=train,
        validation=validation,
        base_features=features_key(cfg.features),
        base_state_json=state.to_json(),
        base_arrays=arrays,
        trial_workers=cfg.search.trial_workers,
        trial_cpus=cfg.search.trial_cpus,
        trial_gpus=cfg.search.trial_gpus,
        trainer_storage=trainer_storage,
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        search_run_id=search_run_id,
    )


def best_model(outcome: SearchOutcome) -> tuple[TrainingOutcome, FeatureState]:
    """The best trial's network, spec and feature state, from its best checkpoint."""
    with fetch_directory(outcome.best_checkpoint) as directory:
        spec = ModelSpec.from_json((directory / SPEC_FILE).read_text())
        state = FeatureState.from_json((directory / FEATURES_FILE).read_text())
        network = build_model(spec)
        network.load_state_dict(read_weights(directory))
    metrics = outcome.best_metrics
    training = TrainingOutcome(
        network=network.eval(),
        spec=spec,
        best_metrics=metrics,
        last_metrics=metrics,
        checkpoint_path=outcome.best_checkpoint,
        ingest="resident",
        epochs_run=int(metrics.get("training_iteration", 0)),
        stopped_early=False,
        restarts=0,
    )
    return training, state


def record_search(
    client: MlflowClient, experiment_id: str, search_run_id: str, outcome: SearchOutcome, title: str
) -> None:
    """Tag every trial run with how it ended (the best one too), close them, log the leaderboard.

    Runs of trials that a resumed search no longer knows are soft-deleted.
    """
    from ray_mlops.tracking import RunHandle

    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{search_run_id}'"
    )
    by_trial = {r.data.tags.get(TAG_TRIAL_ID): r for r in runs if TAG_TRIAL_ID in r.data.tags}
    board = outcome.leaderboard
    for trial_id in set(by_trial) - set(board["trial_id"]):
        # A trial that started after Tune's last saved state before a kill: the resumed
        # search never knew it and proposed another in its place. Its partial run goes
        # (soft-deleted, marked why), so the runs match the leaderboard.
        lost = RunHandle(client, by_trial.pop(trial_id).info.run_id)
        lost.record_tags({TAG_TRIAL_STATUS: "lost in an interruption"})
        lost.end("KILLED")
        lost.delete()
    board.insert(
        2,
        "mlflow_run_id",
        [by_trial[t].info.run_id if t in by_trial else None for t in board["trial_id"]],
    )
    for _, row in board.iterrows():
        run = by_trial.get(row["trial_id"])
        if run is None:
            continue
        best = row["trial_id"] == outcome.best_trial_id
        trial = RunHandle(client, run.info.run_id)
        trial.record_tags({TAG_TRIAL_STATUS: row["status"], TAG_BEST_TRIAL: str(best).lower()})
        if run.info.status == "RUNNING":  # pruned trials are stopped mid-run by Tune
            trial.end("FAILED" if row["status"] == FAILED else "FINISHED")
    search = RunHandle(client, search_run_id)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / Path(LEADERBOARD_CSV).name
        board.to_csv(csv, index=False)
        page = Path(tmp) / Path(LEADERBOARD_HTML).name
        page.write_text(render_leaderboard_html(board, outcome.metric, outcome.mode, title))
        search.upload_file(csv, str(Path(LEADERBOARD_CSV).parent))
        search.upload_file(page, str(Path(LEADERBOARD_HTML).parent))
    search.record_metrics(
        {
            f"best_{outcome.metric}": outcome.best_metrics[outcome.metric],
            "trials": float(len(board)),
            "trial_epochs": float(outcome.trial_epochs),
        },
        step=0,
        timestamp_ms=0,
    )
    search.record_params({f"best.{k}": v for k, v in outcome.best_params.items()})
    search.record_tags({TAG_BEST_TRIAL_ID: outcome.best_trial_id})
