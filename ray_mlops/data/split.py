"""Train/validation/test assignment that does not move rows between runs.

``hash``: a row's split depends only on a salted hash of its group, id or whole row, so
adding rows never moves existing ones, and all rows of a group share a split. ``stratified``: the same hash, cut per class so every class
has the configured shares exactly (rows near a cut may move if a class's size changes).
``time``: the latest rows are the test split, those just before them validation.

A :class:`SplitPlan` holds everything assignment needs; it is saved with the data stage and
reused for the same dataset fingerprint, so the test split of a dataset is frozen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from ray_mlops.config import DataConfig, SplitConfig

if TYPE_CHECKING:
    import ray.data

SplitName = Literal["train", "validation", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")
BUCKETS = 10_000


@dataclass(frozen=True)
class SplitPlan:
    """How rows are assigned; JSON round-trippable.

    Example:
        >>> plan = SplitPlan(strategy="hash", validation=0.2, test=0.2, seed=0)
        >>> SplitPlan.from_json(plan.to_json()) == plan
        True
    """

    strategy: str
    validation: float
    test: float
    seed: int
    # stratified: label -> [test_cut, validation_cut] in hash buckets
    class_cuts: dict[str, list[int]] = field(default_factory=dict)
    # time: rows at or after these epoch-ns instants are test / validation
    test_from_ns: int | None = None
    validation_from_ns: int | None = None

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SplitPlan:
        """Read a document written by :meth:`to_json`."""
        return cls(**json.loads(text))


def hash_buckets(frame: pd.DataFrame, seed: int, key_column: str | None) -> np.ndarray:
    """A bucket in ``[0, BUCKETS)`` per row from a salted hash of its key (the group or id
    column, see ``DataConfig.split_key``) or of the whole row."""
    keys = frame[[key_column]] if key_column else frame
    # Hash a string form so that the id 7 read from CSV (int) and from JSON ("7") agree.
    salted = keys.astype("string").fillna("<null>") + f"|{seed}"
    hashes = pd.util.hash_pandas_object(salted, index=False).to_numpy()
    return (hashes % BUCKETS).astype(np.int64)


def assign_splits(frame: pd.DataFrame, split: SplitConfig, key_column: str | None) -> np.ndarray:
    """Split names by the plain hash strategy (see :func:`assign_by_plan` for all).

    Example:
        >>> frame = pd.DataFrame({"id": range(1000)})
        >>> names = assign_splits(frame, SplitConfig(validation=0.2, test=0.2), "id")
        >>> sorted(set(names.tolist()))
        ['test', 'train', 'validation']
    """
    plan = SplitPlan("hash", split.validation, split.test, split.seed)
    return assign_by_plan(frame, plan, key_column, target=None, timestamp_column=None)


def assign_by_plan(
    frame: pd.DataFrame,
    plan: SplitPlan,
    key_column: str | None,
    target: str | None,
    timestamp_column: str | None,
) -> np.ndarray:
    """The split name of every row of ``frame`` under ``plan``; rows with the same value of
    ``key_column`` share their split (hash strategy)."""
    if plan.strategy == "time":
        assert timestamp_column is not None and plan.test_from_ns is not None
        instants = _epoch_ns(frame[timestamp_column])
        return np.select(
            [instants >= plan.test_from_ns, instants >= (plan.validation_from_ns or 0)],
            ["test", "validation"],
            default="train",
        )
    key_frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_ray_mlops")])
    bucket = hash_buckets(key_frame, plan.seed, key_column)
    default_test, default_validation = _default_cuts(plan)
    test_cut = np.full(len(frame), default_test)
    validation_cut = np.full(len(frame), default_validation)
    if plan.strategy == "stratified":
        assert target is not None
        labels = frame[target].astype("string").fillna("<null>")
        for label, (label_test, label_validation) in plan.class_cuts.items():
            rows = (labels == label).to_numpy(bool)
            test_cut[rows], validation_cut[rows] = label_test, label_validation
    return np.select(
        [bucket < test_cut, bucket < validation_cut], ["test", "validation"], default="train"
    )


def _default_cuts(plan: SplitPlan) -> list[int]:
    return [round(plan.test * BUCKETS), round((plan.test + plan.validation) * BUCKETS)]


def _epoch_ns(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values, utc=True).astype("int64").to_numpy()


def plan_splits(valid: ray.data.Dataset, data: DataConfig) -> SplitPlan:
    """Compute the plan for ``data.split`` over the valid rows (aggregations only)."""
    split = data.split
    plan = SplitPlan(split.strategy, split.validation, split.test, split.seed)
    if split.strategy == "stratified":
        return _plan_stratified(valid, data, plan)
    if split.strategy == "time":
        return _plan_time(valid, data, plan)
    return plan


def _plan_stratified(valid: ray.data.Dataset, data: DataConfig, plan: SplitPlan) -> SplitPlan:
    from ray_mlops.data.partials import count_by

    def label_buckets(batch: pd.DataFrame) -> pd.DataFrame:
        keys = batch.drop(columns=[c for c in batch.columns if c.startswith("_ray_mlops")])
        return pd.DataFrame(
            {
                "label": batch[data.target].astype("string").to_numpy(dtype=object),
                "bucket": hash_buckets(keys, plan.seed, data.split_key),
            }
        )

    counts = count_by(valid.map_batches(label_buckets, batch_format="pandas"), ["label", "bucket"])
    cuts: dict[str, list[int]] = {}
    for label, group in counts.groupby("label"):
        per_bucket = np.zeros(BUCKETS, dtype=np.int64)
        per_bucket[group["bucket"].astype(int).to_numpy()] = group["count"].to_numpy()
        share = np.cumsum(per_bucket) / per_bucket.sum()
        # The first bucket at which the cumulative share reaches the target share.
        test_cut = int(np.searchsorted(share, plan.test, side="left")) + 1
        validation_cut = int(np.searchsorted(share, plan.test + plan.validation, side="left")) + 1
        cuts[str(label)] = [test_cut, max(validation_cut, test_cut)]
    return replace(plan, class_cuts=cuts)


def _plan_time(valid: ray.data.Dataset, data: DataConfig, plan: SplitPlan) -> SplitPlan:
    from ray.data.aggregate import Quantile

    from ray_mlops.data.aggregate import aggregate_blocks

    column = data.timestamp_column
    assert column is not None
    instants = valid.map_batches(
        lambda b: pd.DataFrame({"t": _epoch_ns(b[column])}), batch_format="pandas"
    )
    result = aggregate_blocks(
        instants,
        Quantile("t", q=1 - plan.test, alias_name="test_from"),
        Quantile("t", q=1 - plan.test - plan.validation, alias_name="validation_from"),
    )
    return replace(
        plan,
        test_from_ns=int(result["test_from"]),
        validation_from_ns=int(result["validation_from"]),
    )
