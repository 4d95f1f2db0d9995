"""Every name ray-mlops gives things in MLflow: run and version tags, artifact paths.

One module, as MLflow keeps its own in ``mlflow/utils/mlflow_tags.py``, so a reader finds
what a tag means and who writes it in one place. It imports nothing, MLflow least of all:
the catalog commands (``ray-mlops models list|show|search``) read version tags without
importing MLflow, whose import alone takes seconds.
"""

from __future__ import annotations

# MLflow's own parent-run tag (``mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID``), spelled
# here for the modules that search nested runs without importing MLflow.
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"

# --- Tags of a run --------------------------------------------------------------------------
# Layout: one parent run per invocation (stage "pipeline"), one nested run per stage.
TAG_STAGE = "ray_mlops.stage"
TAG_COMMAND = "ray_mlops.command"
TAG_GIT_COMMIT = "ray_mlops.git_commit"
# How often ``--resume`` reopened the parent run.
TAG_RESUMES = "ray_mlops.resumes"
TAG_CHECKPOINT = "ray_mlops.checkpoint"
# The Ray node ids of the training workers, in rank order (comma-separated).
TAG_WORKER_NODES = "ray_mlops.worker_nodes"
# The address of the node a search trial ran on (last, if it was restarted elsewhere).
TAG_TRIAL_NODE = "ray_mlops.trial_node"
# How training read its data (the ingest path the trainer chose).
TAG_INGEST = "ray_mlops.ingest"
# The data a run used: also logged as an MLflow dataset input.
TAG_SCHEMA_HASH = "ray_mlops.schema_hash"
TAG_SOURCE = "ray_mlops.data_source"
TAG_ROWS = "ray_mlops.rows"
TAG_QUARANTINE_PATH = "ray_mlops.quarantine_path"
# Why the current champion could not be judged (the gate then fails).
TAG_CHAMPION_ERROR = "ray_mlops.champion_error"
# The version the register stage created from this run.
TAG_MODEL_VERSION = "ray_mlops.model_version"
# A search trial's nested run: its Tune trial id, its status, and the best trial's mark;
# the search run names the best trial.
TAG_TRIAL_ID = "ray_mlops.trial_id"
TAG_TRIAL_STATUS = "ray_mlops.trial_status"
TAG_BEST_TRIAL = "ray_mlops.best_trial"
TAG_BEST_TRIAL_ID = "ray_mlops.best_trial_id"

# --- Tags of a run and of its model version ------------------------------------------------
TAG_CONFIG_HASH = "ray_mlops.config_hash"
TAG_FINGERPRINT = "ray_mlops.dataset_fingerprint"
# The gate's verdict (passed, failed, forced); on the version, the failed rules too.
TAG_GATE = "ray_mlops.gate"
# Whether the version took the champion alias.
TAG_PROMOTED = "ray_mlops.promoted"

# --- Tags of a model version ---------------------------------------------------------------
TAG_GATE_REASONS = "ray_mlops.gate_reasons"
TAG_DECISION = "ray_mlops.decision"
TAG_CARD = "ray_mlops.model_card"
# ``promote --force``: who forced it; ``rollback``: the version rolled back from.
TAG_FORCED_BY = "ray_mlops.forced_by"
TAG_ROLLED_BACK = "ray_mlops.rolled_back"
# One tag per test metric: ``ray_mlops.metric.roc_auc`` = "0.8996".
TAG_METRIC_PREFIX = "ray_mlops.metric."
# The metric the version was judged by, once more on its own: ``test_roc_auc`` = "0.899637".
TAG_PRIMARY_PREFIX = "test_"

# --- Tags of a registered model ------------------------------------------------------------
# One per move of an alias: ``ray_mlops.alias_move.000003`` = JSON (when, from, to, who, why).
TAG_MOVE_PREFIX = "ray_mlops.alias_move."

# --- Artifact paths of a run ---------------------------------------------------------------
CONFIG_FILE = "config.yaml"
# The data stage's run.
PROFILE_JSON_FILE = "profile.json"
PROFILE_HTML_FILE = "profile.html"
CONTRACT_FILE = "data_contract.yaml"
SPLIT_PLAN_FILE = "split_plan.json"
SOURCE_SCHEMA_FILE = "source_schema.json"
SCHEMA_CHANGES_FILE = "schema_changes.json"
QUARANTINE_DIR = "quarantine"
# The features stage's run.
FEATURE_STATE_FILE = "feature_state.json"
# The search stage's run.
LEADERBOARD_CSV = "search/leaderboard.csv"
LEADERBOARD_HTML = "search/leaderboard.html"
# The parent run (the run a model version points at) and the evaluate stage's run.
MODEL_ARTIFACT_PATH = "model"
EVALUATION_JSON = "evaluation/evaluation.json"
EVALUATION_HTML = "evaluation/evaluation.html"
HOLDOUT_FILE = "evaluation/holdout.parquet"
# A sample of the train split's inputs: the monitor's drift reference for the version.
TRAIN_SAMPLE_FILE = "monitor/train_sample.parquet"
GATE_JSON = "gate/gate.json"
GATE_MD = "gate/gate.md"
CARD_MD = "model_card/model_card.md"
CARD_HTML = "model_card/model_card.html"


def promote_gate_file(stamp: str) -> str:
    """Where ``ray-mlops promote`` stores the gate it ran at ``stamp`` (UTC, compact ISO)."""
    return f"gate/promote-{stamp}.json"
