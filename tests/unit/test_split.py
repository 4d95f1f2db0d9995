import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ray_mlops.config import DataConfig, SplitConfig
from ray_mlops.data.split import assign_splits

SPLIT = SplitConfig(validation=0.2, test=0.2, seed=3)


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n)})


def test_same_rows_get_the_same_split_every_time() -> None:
    frame = _frame(2000)
    first = assign_splits(frame, SPLIT, "id")
    assert (first == assign_splits(frame.copy(), SPLIT, "id")).all()


def test_split_does_not_depend_on_order_batching_or_new_rows() -> None:
    frame = _frame(2000)
    whole = pd.Series(assign_splits(frame, SPLIT, "id"), index=frame["id"])
    shuffled = frame.sample(frac=1.0, random_state=1)
    parts = [shuffled.iloc[:700], shuffled.iloc[700:]]
    pieces = pd.concat(pd.Series(assign_splits(p, SPLIT, "id"), index=p["id"]) for p in parts)
    assert (pieces.sort_index() == whole.sort_index()).all()
    grown = pd.concat([frame, _frame(3000).iloc[2000:]])
    grown_split = pd.Series(assign_splits(grown, SPLIT, "id"), index=grown["id"])
    assert (grown_split.loc[whole.index] == whole).all()


def test_shares_follow_the_config_and_the_seed_reshuffles() -> None:
    frame = _frame(20_000)
    names = assign_splits(frame, SPLIT, "id")
    shares = pd.Series(names).value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.02
    assert abs(shares["validation"] - 0.2) < 0.02
    other = assign_splits(frame, SplitConfig(validation=0.2, test=0.2, seed=4), "id")
    assert (names != other).mean() > 0.3


def test_integer_and_string_ids_agree_and_rows_hash_without_id() -> None:
    ints = pd.DataFrame({"id": [1, 2, 3, 4, 5]})
    strings = pd.DataFrame({"id": ["1", "2", "3", "4", "5"]})
    assert (assign_splits(ints, SPLIT, "id") == assign_splits(strings, SPLIT, "id")).all()
    frame = _frame(500)
    by_row = assign_splits(frame, SPLIT, None)
    assert (by_row == assign_splits(frame.iloc[::-1], SPLIT, None)[::-1]).all()


def test_a_group_keeps_all_its_rows_in_one_split() -> None:
    """Panel data: 400 people with 5 rows each; the split hashes the person, not the row."""
    rng = np.random.default_rng(5)
    panel = pd.DataFrame(
        {"person": np.repeat(np.arange(400), 5), "year": np.tile(np.arange(2010, 2015), 400)}
    )
    panel["x"] = rng.normal(size=len(panel))
    data = DataConfig(
        path="p.csv", target="y", numeric=["x"], id_column="row", group_column="person"
    )
    assert data.split_key == "person"
    names = pd.Series(assign_splits(panel, SPLIT, data.split_key))
    assert names.groupby(panel["person"]).nunique().max() == 1
    shares = names.groupby(panel["person"]).first().value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.06
    by_row = pd.Series(assign_splits(panel, SPLIT, None))
    assert by_row.groupby(panel["person"]).nunique().max() > 1  # what a row key would do


def test_group_column_refuses_the_id_column_and_a_stratified_split() -> None:
    base = {"path": "p.csv", "target": "y", "numeric": ["x"], "group_column": "person"}
    with pytest.raises(ValidationError, match="a group has many rows, an id one"):
        DataConfig.model_validate(base | {"id_column": "person"})
    with pytest.raises(ValidationError, match="cannot keep a group's rows together"):
        DataConfig.model_validate(base | {"split": {"strategy": "stratified"}})
