"""Where a model version came from: run, search trial, data, schema, config, code.

Everything is read back from MLflow: the version's run (the pipeline's parent run) carries
the config hash, the git commit and the dataset tags; its data stage logged the source
schema; a searched model's search stage has the trial tagged best.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ray_mlops.mlflow_names import (
    CONTRACT_FILE,
    SOURCE_SCHEMA_FILE,
    TAG_BEST_TRIAL,
    TAG_CONFIG_HASH,
    TAG_FINGERPRINT,
    TAG_GIT_COMMIT,
    TAG_SCHEMA_HASH,
    TAG_SOURCE,
    TAG_STAGE,
    TAG_TRIAL_ID,
)
from ray_mlops.registry.catalog import version_aliases
from ray_mlops.tracking import read_artifact_text


@dataclass(frozen=True)
class Lineage:
    """The chain from a model version back to its code."""

    model: str
    version: str
    aliases: list[str]
    run_id: str
    run_name: str
    search_trial: str | None
    dataset_fingerprint: str | None
    data_source: str | None
    schema_hash: str | None
    schema: dict[str, str]
    config_hash: str | None
    git_commit: str | None

    def steps(self) -> list[tuple[str, str]]:
        """(label, value) pairs in order: version -> run -> trial -> data -> config -> commit."""
        missing = "—"
        version = f"{self.model} v{self.version}"
        if self.aliases:
            version += f" ({', '.join('@' + a for a in self.aliases)})"
        schema = ", ".join(f"{k}: {v}" for k, v in self.schema.items()) or missing
        return [
            ("model version", version),
            ("training run", f"{self.run_id} ({self.run_name})"),
            ("search trial", self.search_trial or "none (trained directly)"),
            ("dataset fingerprint", self.dataset_fingerprint or missing),
            ("data source", self.data_source or missing),
            ("schema", f"{self.schema_hash or missing}: {schema}"),
            ("config hash", self.config_hash or missing),
            ("git commit", self.git_commit or "not in a git repository"),
        ]


def version_lineage(client: MlflowClient, name: str, version: str) -> Lineage:
    """Read the lineage of ``name`` version ``version``.

    Raises:
        LookupError: no such model version.
    """
    try:
        found = client.get_model_version(name, version)
    except MlflowException as exc:
        raise LookupError(f"model {name!r} has no version {version!r}") from exc
    if not found.run_id:
        raise LookupError(f"{name} v{version} was registered without a run")
    run_id = found.run_id
    run = client.get_run(run_id)
    tags = run.data.tags
    return Lineage(
        model=name,
        version=str(found.version),
        aliases=version_aliases(client, found),
        run_id=run_id,
        run_name=run.info.run_name or "",
        search_trial=_best_trial(client, run.info.experiment_id, run_id),
        dataset_fingerprint=found.tags.get(TAG_FINGERPRINT) or tags.get(TAG_FINGERPRINT),
        data_source=tags.get(TAG_SOURCE),
        schema_hash=tags.get(TAG_SCHEMA_HASH),
        schema=_schema(client, run.info.experiment_id, run_id),
        config_hash=found.tags.get(TAG_CONFIG_HASH) or tags.get(TAG_CONFIG_HASH),
        git_commit=tags.get(TAG_GIT_COMMIT),
    )


def _stage_run(client: MlflowClient, experiment_id: str, parent: str, stage: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent}' and tags.`{TAG_STAGE}` = '{stage}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _best_trial(client: MlflowClient, experiment_id: str, parent: str) -> str | None:
    search = _stage_run(client, experiment_id, parent, "search")
    if search is None:
        return None
    best = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{search}' and tags.`{TAG_BEST_TRIAL}` = 'true'",
        max_results=1,
    )
    if not best:
        return None
    trial = best[0]
    return f"{trial.info.run_id} (Tune trial {trial.data.tags.get(TAG_TRIAL_ID, '?')})"


def _schema(client: MlflowClient, experiment_id: str, parent: str) -> dict[str, str]:
    """Each source column's type: the contract's (``float``, ``int``, ``string``, ...) where
    it has one, else the type it was read as. The source is read as text so that bad values
    can be quarantined as written, so its read types alone say ``string`` for every column."""
    data_run = _stage_run(client, experiment_id, parent, "data")
    if data_run is None:
        return {}
    text = read_artifact_text(client, data_run, SOURCE_SCHEMA_FILE)
    schema: dict[str, str] = dict(json.loads(text)) if text else {}
    contract_text = read_artifact_text(client, data_run, CONTRACT_FILE)
    contract = (yaml.safe_load(contract_text) or {}).get("contract", {}) if contract_text else {}
    for column, spec in contract.items():
        if isinstance(spec, dict) and spec.get("dtype"):
            schema[column] = str(spec["dtype"])
    return schema
