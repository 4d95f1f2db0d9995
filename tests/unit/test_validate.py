import pandas as pd

from ray_mlops.config import DataConfig
from ray_mlops.data.validate import (
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
    reasons = check_batch(batch, RowRules.from_config(DATA, "classification"))[REASON_COLUMN]
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
