import pandas as pd

from ray_mlops.config import DataConfig, QuarantineConfig
from ray_mlops.data.stage import QuarantineReport
from ray_mlops.data.validate import (
    RAW_VALUE_COLUMN,
    REASON_COLUMN,
    DatasetWideIssues,
    RowRules,
    check_batch,
    mark_dataset_wide_issues,
)

DATA = DataConfig(
    path="x.csv",
    target="y",
    id_column="id",
    numeric=["a"],
    categorical=["c"],
    contract={
        "a": {"dtype": "int", "min": 0, "max": 10},
        "c": {"dtype": "string", "categories": ["p", "q"], "nullable": False},
        "t": {"dtype": "timestamp", "role": "timestamp"},
    },
)


def test_each_row_gets_its_first_failed_check() -> None:
    batch = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "a": ["1", "x", "2.5", "11", "-1", "3", "3", "3", "3"],
            "c": ["p", "p", "p", "p", "p", "z", None, "q", "q"],
            "y": ["n", "n", "n", "n", "n", "n", "n", None, "n"],
            "t": ["2024-01-01"] * 8 + ["not a date"],
        }
    )
    checked = check_batch(batch, RowRules.from_config(DATA, "classification"))
    reasons = checked[REASON_COLUMN]
    assert reasons.tolist() == [
        "",
        "unparseable:a",
        "not_integer:a",
        "above_max:a",
        "below_min:a",
        "unknown_category:c",
        "null:c",
        "missing_target",
        "unparseable:t",
    ]
    # The value each row failed on, as read (not the <NA> it parsed to); null where no value.
    assert checked[RAW_VALUE_COLUMN].tolist() == [
        pd.NA,
        "x",
        "2.5",
        "11",
        "-1",
        "z",
        pd.NA,
        pd.NA,
        "not a date",
    ]
    assert checked[RAW_VALUE_COLUMN].dtype == "string[pyarrow]"


def test_float_nan_is_missing_not_unparseable() -> None:
    batch = pd.DataFrame({"id": [1], "a": [float("nan")], "c": ["p"], "y": ["n"], "t": [None]})
    checked = check_batch(batch, RowRules.from_config(DATA, "classification"))
    assert checked[REASON_COLUMN].tolist() == [""]
    assert checked["a"].isna().all()


def test_dataset_wide_reasons_only_mark_rows_still_valid() -> None:
    batch = pd.DataFrame(
        {"id": [1, 1, 2, 3], "a": [1.0] * 4, "c": ["p"] * 4, "y": ["n"] * 4, "t": [None] * 4}
    )
    checked = check_batch(batch, RowRules.from_config(DATA, "classification"))
    checked.loc[3, REASON_COLUMN] = "below_min:a"
    hashes = [int(checked.loc[2, "_ray_mlops_feature_hash"])]
    marked = mark_dataset_wide_issues(checked, DatasetWideIssues([1], hashes), "id")
    assert marked[REASON_COLUMN].tolist() == [
        "duplicate_id",
        "duplicate_id",
        "conflicting_labels",
        "below_min:a",
    ]


def test_conflicting_labels_is_on_for_classification_and_off_for_regression() -> None:
    assert QuarantineConfig().checks_conflicting_labels("classification")
    assert not QuarantineConfig().checks_conflicting_labels("regression")
    asked = QuarantineConfig(conflicting_labels=True)
    assert asked.checks_conflicting_labels("regression")
    assert not QuarantineConfig(conflicting_labels=False).checks_conflicting_labels(
        "classification"
    )


def test_reasons_are_grouped_by_kind_so_a_cause_spread_over_columns_ranks_first() -> None:
    by_reason = {
        "duplicate_id": 30,
        "missing_target": 25,
        "null:c": 20,
        "unparseable:age": 18,
        "unparseable:fnlwgt": 17,
        "unparseable:hours": 16,
    }
    text = QuarantineReport(rows=126, by_reason=by_reason).top_reasons()
    assert text == (
        "unparseable (51: age 18, fnlwgt 17, hours 16), duplicate_id (30), missing_target (25)"
    )
    many = {f"unparseable:c{i}": 10 - i for i in range(6)}
    assert QuarantineReport(rows=45, by_reason=many).top_reasons() == (
        "unparseable (45: c0 10, c1 9, c2 8, c3 7, 2 more columns)"
    )

    hinted = QuarantineReport(rows=4, by_reason={"duplicate_id": 4}, hint="use group_column")
    assert hinted.describe() == "duplicate_id (4). use group_column"
