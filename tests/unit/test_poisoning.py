"""The poisoning check's comparison, Ray-free: changed labels, injected copies, column jumps,
the snapshot's hashes and its store (issue 28, point 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ray_mlops.config import DRIFT_DISTANCES, DataConfig, PoisoningConfig, parse_config
from ray_mlops.data.drift import DISTANCE_NAMES
from ray_mlops.data.poison import (
    REPORT_HTML,
    REPORT_JSON,
    PoisoningCheck,
    column_jumps,
    compare_versions,
    duplicate_rows,
    label_changes,
)
from ray_mlops.data.versions import (
    CONTENT,
    ID,
    KEY,
    LABEL,
    DataVersion,
    Layout,
    VersionStore,
    narrow_rows,
    sample_columns,
)
from ray_mlops.errors import PoisonedDataError

DATA = DataConfig(
    path="people.csv",
    target="income",
    id_column="person_id",
    numeric=["age"],
    categorical=["city"],
)
LAYOUT = Layout.of(DATA, "classification", "/data/people.csv")


def _people(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person_id": np.arange(n),
            "age": rng.integers(18, 90, n),
            "city": rng.choice(["Oslo", "Rome", "Lima", "Pune"], n),
            "income": rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]),
        }
    )


def _version(frame: pd.DataFrame, fingerprint: str = "v") -> DataVersion:
    rows = narrow_rows(frame, LAYOUT).astype({KEY: np.uint64, CONTENT: np.uint64})
    return DataVersion(fingerprint, rows, sample_columns(frame, LAYOUT), {})


def _flip(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    flipped = frame.copy()
    labels = flipped.loc[rows, "income"]
    flipped.loc[rows, "income"] = np.where(labels == ">50K", "<=50K", ">50K")
    return flipped


def _copies(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``frame`` with the rows at ``rows`` copied under fresh ids, as a poisoner dodging the
    duplicate-id check would."""
    copies = frame.loc[rows].copy()
    copies["person_id"] = np.arange(len(copies)) + frame["person_id"].max() + 1
    return pd.concat([frame, copies], ignore_index=True)


def test_flipped_labels_on_known_rows_are_counted_exactly() -> None:
    before = _people()
    rows = np.random.default_rng(1).choice(len(before), 100, replace=False)
    after = _flip(before, rows)
    # New rows and removed rows change no label: only rows seen in both count.
    after = pd.concat(
        [
            after.drop(index=[int(r) for r in range(5) if r not in rows]),
            _people(50, 9).assign(person_id=lambda f: f.person_id + 10_000),
        ]
    )
    changes = label_changes(_version(before).rows, _version(after).rows)
    assert changes.changed == 100
    assert changes.seen == len(before) - sum(1 for r in range(5) if r not in rows)
    assert changes.share == pytest.approx(100 / changes.seen)
    example = changes.examples[0]
    assert int(example["id"]) in set(rows.tolist())
    assert example["before"] != example["after"]


def test_without_an_id_rows_with_the_same_features_match_as_a_multiset() -> None:
    layout = Layout.of(DATA.model_copy(update={"id_column": None}), "classification", "/d.csv")
    twins = pd.DataFrame(
        {"person_id": [1, 2, 3], "age": [30, 30, 40], "city": ["Oslo"] * 3, "income": list("aab")}
    )
    relabelled = twins.assign(income=list("abb"))  # one of the twins changed label
    before, after = narrow_rows(twins, layout), narrow_rows(relabelled, layout)
    assert before[KEY].iloc[0] == before[KEY].iloc[1] != before[KEY].iloc[2]
    changes = label_changes(before, after)
    assert (changes.seen, changes.changed) == (3, 1)
    # The twins swapping labels between them changes nothing that can be told apart.
    assert label_changes(before, narrow_rows(twins.assign(income=list("aab")), layout)).changed == 0


def test_copies_under_fresh_ids_are_counted_exactly_beyond_the_old_ones() -> None:
    base = _people()
    base = _copies(base, np.arange(20))  # 20 copies the previous version already had
    rows = np.random.default_rng(2).choice(len(base), 200, replace=False)
    after = _copies(base, rows)
    found = duplicate_rows(_version(base).rows, _version(after).rows)
    assert found.copies == 200
    # The shares of rows that copy another (every column but the id), as pandas counts them;
    # these rows repeat a lot by nature (few columns, coarse values).
    assert found.share_before == pytest.approx(base.drop(columns="person_id").duplicated().mean())
    assert found.share_after == pytest.approx(after.drop(columns="person_id").duplicated().mean())
    assert found.share_after > found.share_before
    assert found.examples[0]["new_copies"] >= 1
    # A row copied three times counts three.
    thrice = _copies(base, np.array([7, 7, 7]))
    assert duplicate_rows(_version(base).rows, _version(thrice).rows).copies == 3
    # An exact copy under the same id is added too (its key has one row more than before).
    same_id = pd.concat([base, base.iloc[[3, 4]]], ignore_index=True)
    assert duplicate_rows(_version(base).rows, _version(same_id).rows).copies == 2
    # The same data has no new copies, however many it had.
    assert duplicate_rows(_version(base).rows, _version(base).rows).copies == 0


def test_the_hashes_do_not_depend_on_parsed_types_or_column_order() -> None:
    frame = _people(50)
    parsed = frame.assign(age=frame["age"].astype("Float64"))[list(reversed(frame.columns))]
    plain, typed = narrow_rows(frame, LAYOUT), narrow_rows(parsed, LAYOUT)
    assert plain[KEY].tolist() == typed[KEY].tolist()
    assert plain[CONTENT].tolist() == typed[CONTENT].tolist()
    # The id is the key, not part of the content: a copy under a fresh id has the same content.
    moved = narrow_rows(frame.assign(person_id=frame["person_id"] + 100), LAYOUT)
    assert moved[CONTENT].tolist() == plain[CONTENT].tolist()
    assert moved[KEY].tolist() != plain[KEY].tolist()
    assert plain[ID].tolist() == [str(i) for i in range(50)]
    assert set(plain[LABEL]) <= {"<=50K", ">50K"}


def test_a_shifted_column_jumps_and_a_stable_one_does_not() -> None:
    limits = PoisoningConfig()
    before = _people(5000, seed=3)
    stable = _people(5000, seed=4)
    shifted = stable.assign(
        age=stable["age"] + 15, city=np.where(stable.index % 2, "Oslo", stable["city"])
    )
    calm = column_jumps(
        sample_columns(before, LAYOUT), sample_columns(stable, LAYOUT), LAYOUT, limits
    )
    assert [c.column for c in calm] == ["age", "city", "income"]
    assert not any(c.drifted for c in calm)
    jumped = column_jumps(
        sample_columns(before, LAYOUT), sample_columns(shifted, LAYOUT), LAYOUT, limits
    )
    assert [c.column for c in jumped if c.drifted] == ["age", "city"]
    # A distance left out of min_distance is not checked.
    only_numeric = PoisoningConfig(min_distance={"wasserstein_normalised": 0.25})
    assert [
        c.column
        for c in column_jumps(
            sample_columns(before, LAYOUT), sample_columns(shifted, LAYOUT), LAYOUT, only_numeric
        )
    ] == ["age"]


def test_breaches_name_each_count_and_its_limit() -> None:
    limits = PoisoningConfig()
    before = _people()
    flipped = _flip(before, np.arange(100))  # 5%
    comparison = compare_versions(_version(before, "a"), _version(flipped, "b"), LAYOUT, limits)
    breaches = comparison.breaches(limits)
    # Flipped rows that now equal another row (common in these coarse rows) are not copies.
    assert comparison.duplicates.copies == 0
    assert len(breaches) == 1
    assert "100 of 2,000 rows seen before changed label (5.00%)" in breaches[0]
    assert "max_changed_label_share 1.00%" in breaches[0]
    copied = _copies(before, np.arange(200))  # 10%
    comparison = compare_versions(_version(before, "a"), _version(copied, "c"), LAYOUT, limits)
    assert comparison.labels.changed == 0
    [breach] = comparison.breaches(limits)
    assert "200 rows are new exact copies" in breach and "max_duplicate_share 2.00%" in breach
    # Within the limits: a few flips and a few copies pass.
    mild = _copies(_flip(before, np.arange(10)), np.arange(10))
    comparison = compare_versions(_version(before, "a"), _version(mild, "d"), LAYOUT, limits)
    assert (comparison.labels.changed, comparison.duplicates.copies) == (10, 10)
    assert comparison.breaches(limits) == []


def test_the_refusal_names_counts_limits_and_report_and_exits_6(tmp_path: Path) -> None:
    limits = PoisoningConfig()
    before = _people()
    comparison = compare_versions(
        _version(before, "a"), _version(_flip(before, np.arange(100)), "b"), LAYOUT, limits
    )
    check = PoisoningCheck(
        source="people.csv",
        store=str(tmp_path),
        fingerprint="b",
        previous="a",
        comparison=comparison,
        breaches=comparison.breaches(limits),
        report=str(tmp_path / "refused"),
    )
    assert (
        check.describe()
        == "vs version a: 100 labels changed, 0 duplicates, 0 columns jumped (refused)"
    )
    error = check.error()
    assert isinstance(error, PoisonedDataError) and error.exit_code == 6
    assert "100 of 2,000 rows seen before changed label" in str(error)
    assert f"{tmp_path / 'refused'}/{REPORT_HTML}" in str(error)
    files = check.report_files(limits)
    report = json.loads(files[REPORT_JSON])
    assert report["labels"]["changed"] == 100 and report["refused"] is True
    assert "Labels changed" in files[REPORT_HTML]


def test_the_store_keeps_the_accepted_version_and_moves_only_on_accept(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path), LAYOUT.source_key)
    assert store.latest_fingerprint() is None
    first = _version(_people(), "a")
    folder = store.accept(first, run_id="r1")
    assert store.latest_fingerprint() == "a"
    assert Path(folder, "rows.parquet").is_file()
    loaded = store.load("a")
    assert loaded.rows[KEY].dtype == np.uint64
    pd.testing.assert_frame_equal(loaded.rows, first.rows)
    assert loaded.info["run_id"] == "r1"
    report = store.write_report("b-r2", {REPORT_JSON: "{}"})
    assert Path(report, REPORT_JSON).read_text() == "{}"
    assert store.latest_fingerprint() == "a"


def test_the_source_key_names_the_file_and_what_a_row_key_means() -> None:
    key = LAYOUT.source_key
    assert key.startswith("people.csv-")
    by_features = Layout.of(
        DATA.model_copy(update={"id_column": None}), "classification", "/data/people.csv"
    )
    other_file = Layout.of(DATA, "classification", "/elsewhere/people.csv")
    # Another feature list over the same id keeps the same baseline (the rows are the same).
    more_features = Layout.of(
        DATA.model_copy(update={"numeric": ["age", "hours"]}), "classification", "/data/people.csv"
    )
    assert len({key, by_features.source_key, other_file.source_key}) == 3
    assert more_features.source_key == key


def test_config_defaults_and_distances() -> None:
    poisoning = parse_config(
        {"name": "x", "data": {"path": "a.csv", "target": "y", "numeric": ["a"]}}
    ).governance.poisoning
    assert poisoning.enabled
    assert set(poisoning.min_distance) == set(DRIFT_DISTANCES) == set(DISTANCE_NAMES)
    assert (poisoning.max_changed_label_share, poisoning.max_duplicate_share) == (0.01, 0.02)
