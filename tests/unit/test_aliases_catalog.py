"""Alias moves, their history, rollback targets and catalog search, on real MLflow (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ray_mlops.mlflow_names import TAG_FINGERPRINT
from ray_mlops.promotion.record import metric_tags
from ray_mlops.registry.aliases import (
    PROMOTE,
    ROLLBACK,
    alias_history,
    alias_target,
    move_alias,
    previous_champion,
)
from ray_mlops.registry.catalog import parse_query, search_versions
from ray_mlops.registry.champion import register_version
from ray_mlops.registry.reader import (
    MlflowRegistryReader,
    RegistryReader,
    SqliteRegistryReader,
    open_registry,
)


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def client(tmp_path: Path, uri: str) -> MlflowClient:
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MLmodel").write_text("flavors: {}\n")
    client.log_artifacts(run.info.run_id, str(tmp_path / "m"), "model")
    source = f"{run.info.artifact_uri}/model"
    for auc, fingerprint, team in (
        (0.80, "aaa111", "risk"),
        (0.86, "bbb222", "risk"),
        (0.90, "aaa111", "ops"),
    ):
        register_version(
            client,
            "adult",
            source,
            run.info.run_id,
            {**metric_tags({"roc_auc": auc}), TAG_FINGERPRINT: fingerprint, "team": team},
            "",
        )
    register_version(client, "fraud", source, run.info.run_id, metric_tags({"roc_auc": 0.95}), "")
    return client


def test_moves_are_recorded_in_order_with_who_and_why(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_MLOPS_USER", "ana")
    move_alias(client, "adult", "champion", "1", why="first")
    move_alias(client, "adult", "champion", "2", why="better", who="bo")
    moves = alias_history(client, "adult")
    assert [(m.from_version, m.to_version, m.who, m.why, m.kind) for m in moves] == [
        (None, "1", "ana", "first", PROMOTE),
        ("1", "2", "bo", "better", PROMOTE),
    ]
    assert alias_target(client, "adult", "champion") == "2"


def test_rollback_goes_back_one_promotion_at_a_time(client: MlflowClient) -> None:
    for version in ("1", "2", "3"):
        move_alias(client, "adult", "champion", version, why=f"v{version}")
    assert previous_champion(client, "adult", "champion") == "2"
    move_alias(client, "adult", "champion", "2", why="bad v3", kind=ROLLBACK)
    # A second rollback goes further back, not "undo the rollback".
    assert previous_champion(client, "adult", "champion") == "1"
    move_alias(client, "adult", "champion", "1", why="bad v2", kind=ROLLBACK)
    with pytest.raises(LookupError, match="no earlier 'champion'"):
        previous_champion(client, "adult", "champion")
    kinds = [m.kind for m in alias_history(client, "adult", "champion")]
    assert kinds == [PROMOTE, PROMOTE, PROMOTE, ROLLBACK, ROLLBACK]


def test_rollback_without_alias_is_an_error(client: MlflowClient) -> None:
    with pytest.raises(LookupError, match="has no 'champion' alias"):
        previous_champion(client, "adult", "champion")


READERS = {
    # The catalog commands' own reader of a SQLite store (no MLflow import), and MLflow's.
    "sqlite": lambda client, uri: open_registry(uri),
    "mlflow": lambda client, uri: MlflowRegistryReader(client),
}


@pytest.mark.parametrize("kind", READERS)
def test_search_by_metric_name_tag_fingerprint_and_alias(
    client: MlflowClient, uri: str, kind: str
) -> None:
    reader: RegistryReader = READERS[kind](client, uri)

    def found(query: str) -> list[tuple[str, str]]:
        return [(v.name, str(v.version)) for v in search_versions(reader, query)]

    assert found("roc_auc>=0.86") == [("adult", "3"), ("adult", "2"), ("fraud", "1")]
    assert found("name:adult roc_auc>0.85") == [("adult", "3"), ("adult", "2")]
    assert found("name:fr* roc_auc<0.99") == [("fraud", "1")]
    assert found("tag:team=risk") == [("adult", "2"), ("adult", "1")]
    assert found("fingerprint:aaa") == [("adult", "3"), ("adult", "1")]
    move_alias(client, "adult", "champion", "2", why="x")
    assert found("alias:champion") == [("adult", "2")]
    assert found("roc_auc>0.99") == []


def test_the_sqlite_reader_reads_what_mlflow_reads(client: MlflowClient, uri: str) -> None:
    move_alias(client, "adult", "champion", "2", why="x")
    move_alias(client, "adult", "challenger", "3", why="y")
    client.delete_model_version("adult", "1")  # kept in the table, marked deleted
    sqlite, mlflow = open_registry(uri), MlflowRegistryReader(client)
    assert isinstance(sqlite, SqliteRegistryReader), "the fast path was not taken"
    assert sqlite.models() == mlflow.models()
    assert [m.aliases for m in sqlite.models()] == [{"challenger": "3", "champion": "2"}, {}]
    assert sqlite.versions() == mlflow.versions()
    assert [v.version for v in sqlite.versions("adult")] == ["3", "2"]
    assert sqlite.version("adult", "2") == mlflow.version("adult", "2")
    assert sqlite.version("adult", "2").aliases == ["champion"]  # type: ignore[union-attr]
    assert sqlite.version("adult", "1") is None and mlflow.version("adult", "1") is None
    assert sqlite.version("nobody", "1") is None and sqlite.version("adult", "x") is None


def test_a_store_without_the_registry_tables_is_read_by_mlflow(tmp_path: Path) -> None:
    (tmp_path / "other.db").write_bytes(b"")
    reader = open_registry(f"sqlite:///{tmp_path / 'other.db'}")
    assert isinstance(reader, MlflowRegistryReader)
    assert reader.models() == []


def test_bad_query_names_the_term() -> None:
    with pytest.raises(ValueError, match=r"search term 'roc_auc~0\.8'"):
        parse_query("name:adult roc_auc~0.8")
    with pytest.raises(ValueError, match="empty search query"):
        parse_query("   ")
