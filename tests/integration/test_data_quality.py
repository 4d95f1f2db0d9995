"""Contracts, quarantine, split strategies, URI sources and schema-change reports."""

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from ray_mlops.config import load_config, parse_config
from ray_mlops.data.stage import prepare_data
from ray_mlops.errors import DataError, PoisonedDataError
from ray_mlops.pipeline import run_data_stage

pytestmark = pytest.mark.usefixtures("ray_session")

CONTRACT = {
    "x": {"dtype": "float", "min": 0, "max": 100},
    "c": {"dtype": "string", "categories": ["a", "b"], "nullable": False},
}


def _good_rows(n: int, start: int = 0) -> pd.DataFrame:
    ids = range(start, start + n)
    return pd.DataFrame(
        {
            "id": list(ids),
            "x": [str((i * 7) % 90) for i in ids],
            "c": ["a" if i % 3 else "b" for i in ids],
            "y": ["yes" if (i * 7) % 90 > 40 else "no" for i in ids],
            "t": pd.date_range("2024-01-01", periods=n, freq="h").astype(str),
        }
    )


BAD_ROWS = pd.DataFrame(
    {
        "id": [9001, 9002, 9003, 9004, 9005, 9006, 7, 9008, 9009],
        "x": ["abc", "5", "150", "-5", "5", "5", "5", "88.5", "88.5"],
        "c": ["a", "a", "a", "a", "z", None, "a", "b", "b"],
        "y": ["no", None, "no", "no", "no", "no", "no", "yes", "no"],
        "t": ["2024-01-02 00:00:00"] * 9,
    }
)
EXPECTED = {
    "unparseable:x": 1,
    "missing_target": 1,
    "above_max:x": 1,
    "below_min:x": 1,
    "unknown_category:c": 1,
    "null:c": 1,
    "duplicate_id": 2,  # row 9007 above and the good row with id 7
    "conflicting_labels": 2,
}


def _data_config(path: Path, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "path": str(path),
        "target": "y",
        "id_column": "id",
        "numeric": ["x"],
        "categorical": ["c"],
        "contract": CONTRACT,
        **overrides,
    }
    return {"name": "quality", "data": data}


def _prepare(tmp_path: Path, frame: pd.DataFrame, **overrides: object):
    frame.to_csv(tmp_path / "rows.csv", index=False)
    cfg = parse_config(_data_config(tmp_path / "rows.csv", **overrides))
    return prepare_data(cfg.data, cfg.task, tmp_path, tmp_path / "quarantine")


def test_each_reason_is_counted_and_written_with_its_rows(tmp_path: Path) -> None:
    frame = pd.concat([_good_rows(300), BAD_ROWS], ignore_index=True)
    prepared = _prepare(tmp_path, frame)
    assert prepared.quarantine.by_reason == EXPECTED
    written = pq.read_table(tmp_path / "quarantine").to_pandas()
    assert len(written) == sum(EXPECTED.values())
    assert written.groupby("quarantine_reason").size().to_dict() == EXPECTED
    assert set(written.loc[written.quarantine_reason == "duplicate_id", "id"]) == {7}
    assert (prepared.quarantine.hint or "").startswith(
        "2 rows share 1 value of data.id_column 'id' (up to 2 rows each). If one 'id' has"
    )
    # The offending value as read, beside its reason (issue 23: it held <NA>).
    raw = written.set_index("quarantine_reason")["quarantine_raw_value"]
    assert raw["unparseable:x"] == "abc" and raw["above_max:x"] == "150"
    assert raw["below_min:x"] == "-5" and raw["unknown_category:c"] == "z"
    assert pd.isna(raw["null:c"]) and pd.isna(raw["missing_target"])
    assert sum(prepared.split_counts.values()) == len(frame) - sum(EXPECTED.values())


def test_the_run_fails_over_the_limit_and_names_the_top_reasons(tmp_path: Path) -> None:
    frame = pd.concat([_good_rows(300), BAD_ROWS], ignore_index=True)
    with pytest.raises(DataError) as caught:
        _prepare(tmp_path, frame, quarantine={"max_bad_fraction": 0.01})
    message = str(caught.value)
    assert "10 of 309 rows" in message and "duplicate_id (2)" in message
    assert "above_max (1: x 1)" in message
    assert str(tmp_path / "quarantine") in message
    prepared = _prepare(tmp_path, frame, quarantine={"max_bad_fraction": 0.05})
    assert prepared.quarantine.rows == 10


def test_hash_split_keeps_rows_in_place_when_rows_are_appended(tmp_path: Path) -> None:
    before = _prepare(tmp_path, _good_rows(400), contract=None)
    after = _prepare(tmp_path, _good_rows(600), contract=None)
    for name in ("train", "validation", "test"):
        old = set(before.splits[name].to_pandas()["id"])
        new = set(after.splits[name].to_pandas()["id"])
        assert old <= new, name


def test_stratified_split_gives_each_class_its_share(tmp_path: Path) -> None:
    frame = _good_rows(2000)
    prepared = _prepare(
        tmp_path, frame, contract=None, split={"strategy": "stratified", "test": 0.2}
    )
    test = prepared.splits["test"].to_pandas()
    for label, group in frame.groupby("y"):
        share = (test["y"] == label).sum() / len(group)
        assert share == pytest.approx(0.2, abs=0.005), label


def test_time_split_puts_the_latest_rows_in_test(tmp_path: Path) -> None:
    prepared = _prepare(
        tmp_path,
        _good_rows(1000),
        contract=None,
        timestamp_column="t",
        split={"strategy": "time", "test": 0.2, "validation": 0.1},
    )
    times = {
        n: pd.to_datetime(prepared.splits[n].to_pandas()["t"])
        for n in ("train", "validation", "test")
    }
    assert times["train"].max() < times["validation"].min()
    assert times["validation"].max() < times["test"].min()
    assert prepared.split_counts["test"] == pytest.approx(200, abs=2)


def test_uri_folder_and_glob_sources_read_the_same_rows(tmp_path: Path) -> None:
    frame = _good_rows(300)
    (tmp_path / "parts").mkdir()
    frame.iloc[:150].to_parquet(tmp_path / "parts" / "a.parquet")
    frame.iloc[150:].to_parquet(tmp_path / "parts" / "b.parquet")
    fingerprints = set()
    for path in (
        f"file://{tmp_path}/parts",
        f"file://{tmp_path}/parts/*.parquet",
        str(tmp_path / "parts"),
    ):
        cfg = parse_config(_data_config(Path(path), contract=None) | {"name": "uri"})
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": path})})
        prepared = prepare_data(cfg.data, cfg.task, tmp_path, tmp_path / "q")
        assert prepared.rows_read == 300, path
        fingerprints.add(prepared.fingerprint)
    assert len(fingerprints) == 1


def test_schema_changes_are_reported_and_the_test_split_is_frozen(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    frame = _good_rows(500)
    frame.to_csv(tmp_path / "rows.csv", index=False)

    def run(config: dict[str, object]):
        path = tmp_path / "quality.yaml"
        path.write_text(json.dumps(config | {"tracking": {"tracking_uri": db}}))
        return run_data_stage(load_config(path), Console(quiet=True))

    base = _data_config(tmp_path / "rows.csv", contract=None, split={"strategy": "stratified"})
    first = run(base)
    # Same data, other shares: the frozen plan of this fingerprint wins.
    again = run(base | {"data": {**base["data"], "split": {"strategy": "stratified", "test": 0.3}}})  # type: ignore[dict-item]
    ids = [set(r.data.splits["test"].to_pandas()["id"]) for r in (first, again)]
    assert ids[0] == ids[1]
    frame.assign(extra=1, c=frame["id"] % 2).drop(columns=["t"]).to_csv(
        tmp_path / "rows.csv", index=False
    )
    # A column retyped and one dropped also trip the poisoning check (column c's categories
    # are all new); a change made on purpose runs with the check off, as its message says.
    with pytest.raises(PoisonedDataError, match="c \\(jensen_shannon"):
        run(base)
    changed = run(base | {"governance": {"poisoning": {"enabled": False}}})
    client = MlflowClient(db)
    report = json.loads(
        Path(client.download_artifacts(changed.stage_run_id, "schema_changes.json")).read_text()
    )
    assert report["added"] == ["extra"] and report["removed"] == ["t"]
    assert report["retyped"] == {"c": ["string", "int64"]}
    contract = Path(client.download_artifacts(first.stage_run_id, "data_contract.yaml")).read_text()
    assert "categories:\n    - a\n    - b" in contract
    inputs = client.get_run(first.run_id).inputs.dataset_inputs
    assert inputs[0].dataset.digest == first.data.fingerprint


def _adult_frame(adult_sample: pd.DataFrame, tmp_path: Path, rows: int = 900) -> Path:
    adult_sample.head(rows).to_csv(tmp_path / "adult.csv", index=False)
    return tmp_path / "adult.csv"


def test_regression_targets_keep_identical_features_with_different_values(
    tmp_path: Path, adult_sample: pd.DataFrame
) -> None:
    """Issue 23: a continuous target lost every row whose features repeated another's."""
    path = _adult_frame(adult_sample, tmp_path)
    features = ["age", "sex", "education"]
    config = {
        "name": "hours",
        "task": "regression",
        "data": {
            "path": str(path),
            "target": "hours_per_week",
            "id_column": "person_id",
            "numeric": ["age"],
            "categorical": ["sex", "education"],
        },
    }
    frame = adult_sample.head(900)
    spread = frame.groupby(features, dropna=False)["hours_per_week"].transform("nunique")
    conflicting = int((spread > 1).sum())
    assert conflicting > 100  # the check would have dropped these rows

    cfg = parse_config(config)
    assert cfg.data.quarantine.conflicting_labels is None
    prepared = prepare_data(cfg.data, cfg.task, tmp_path, tmp_path / "q1")
    assert prepared.quarantine.rows == 0
    assert sum(prepared.split_counts.values()) == 900

    asked = {"conflicting_labels": True, "max_bad_fraction": 1.0}
    cfg = parse_config(config | {"data": {**config["data"], "quarantine": asked}})  # type: ignore[dict-item]
    prepared = prepare_data(cfg.data, cfg.task, tmp_path, tmp_path / "q2")
    assert prepared.quarantine.by_reason == {"conflicting_labels": conflicting}


def _panel(adult_sample: pd.DataFrame, tmp_path: Path) -> Path:
    """Adult rows as panel data: 300 people, 3 yearly rows each."""
    frame = adult_sample.head(900).drop(columns=["person_id"])
    frame.insert(0, "person", [f"p{i // 3}" for i in range(900)])
    frame.insert(1, "year", [2018 + i % 3 for i in range(900)])
    frame.to_csv(tmp_path / "panel.csv", index=False)
    return tmp_path / "panel.csv"


def _panel_config(path: Path, **data: object) -> dict[str, object]:
    return {
        "name": "panel",
        "data": {
            "path": str(path),
            "target": "income",
            "numeric": ["age", "hours_per_week"],
            "categorical": ["education", "sex"],
            "quarantine": {"conflicting_labels": False},
            **data,
        },
    }


def test_a_person_id_as_id_column_says_to_use_group_column(
    tmp_path: Path, adult_sample: pd.DataFrame
) -> None:
    """Issue 23: 100% of panel rows went to quarantine as duplicate_id, with no way out."""
    cfg = parse_config(_panel_config(_panel(adult_sample, tmp_path), id_column="person"))
    with pytest.raises(DataError) as caught:
        prepare_data(cfg.data, cfg.task, tmp_path, tmp_path / "quarantine")
    message = str(caught.value)
    assert "900 of 900 rows" in message and "duplicate_id (900)" in message
    assert "900 rows share 300 values of data.id_column 'person' (up to 3 rows each)" in message
    assert "`group_column: person` in the data section in place of `id_column: person`" in message


def test_group_column_keeps_a_persons_rows_together_and_not_duplicates(
    tmp_path: Path, adult_sample: pd.DataFrame
) -> None:
    cfg = parse_config(_panel_config(_panel(adult_sample, tmp_path), group_column="person"))
    prepared = prepare_data(cfg.data, cfg.task, tmp_path, tmp_path / "quarantine")
    assert prepared.quarantine.rows == 0 and prepared.quarantine.hint is None
    where = pd.concat(
        prepared.splits[name].to_pandas()[["person"]].assign(split=name)
        for name in ("train", "validation", "test")
    )
    assert len(where) == 900
    assert where.groupby("person")["split"].nunique().max() == 1
    assert where.drop_duplicates("person")["split"].value_counts()["test"] > 20
    assert prepared.contract["person"].role == "group"
