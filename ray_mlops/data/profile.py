"""Dataset profile (EDA): per-column statistics, histograms and association with the target.

Every number comes from Ray Data aggregations or from one small summary row per block, so the
driver never holds the rows. The JSON form is the reference that monitoring compares live
traffic against.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ray_mlops.errors import DataError

if TYPE_CHECKING:
    import ray.data

FORMAT_VERSION = 1
TASKS = ("classification", "regression")
QUANTILES: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}
# A variance below this fraction of the raw second moment is rounding noise: the values are
# constant and an association with them is undefined.
_ZERO_VARIANCE = 1e-12


@dataclass(frozen=True)
class NumericProfile:
    """Statistics of a numeric column; missing values (null or NaN) are left out of all of them.

    Attributes:
        count: Non-missing values.
        missing: Missing values.
        distinct: Distinct non-missing values.
        mean: Mean, None without values.
        std: Sample standard deviation (ddof=1, as pandas ``Series.std``), None below 2 values.
        min: Smallest value.
        max: Largest value.
        quantiles: Exact quantiles with linear interpolation, keyed ``p01`` ... ``p99``; empty
            without values.
        histogram_edges: ``bins + 1`` equal-width edges from min to max; ``[v, v]`` for a
            constant column; empty without values.
        histogram_counts: Values per bin (the last bin includes max, as ``np.histogram``).
        target_association: Association with the target (see ``profile_dataset``).
    """

    count: int
    missing: int
    distinct: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    quantiles: dict[str, float]
    histogram_edges: list[float]
    histogram_counts: list[int]
    target_association: float | None


@dataclass(frozen=True)
class CategoricalProfile:
    """Statistics of a categorical column.

    Attributes:
        count: Non-missing values.
        missing: Missing values.
        distinct: Distinct non-missing values.
        top: ``(value, count)`` of the most frequent values, at most ``top_k``, most frequent
            first, ties by value.
        other_count: Non-missing values outside ``top``.
        target_association: Association with the target (see ``profile_dataset``).
    """

    count: int
    missing: int
    distinct: int
    top: list[tuple[str, int]]
    other_count: int
    target_association: float | None


@dataclass(frozen=True)
class DatasetProfile:
    """The profile of a dataset: what ``profile_dataset`` returns and monitoring compares to.

    Attributes:
        rows: Rows in the dataset.
        numeric: Profile per numeric feature.
        categorical: Profile per categorical feature.
        target: Name of the target column.
        task: ``"classification"`` or ``"regression"``.
        target_balance: Classification: rows per label (labels as strings, missing left out).
        target_summary: Regression: the target's numeric profile.
    """

    rows: int
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    target: str
    task: str
    target_balance: dict[str, int] | None
    target_summary: NumericProfile | None

    def to_json(self) -> str:
        """The profile as a JSON document with a ``format_version``; ``from_json`` reads it back."""
        return json.dumps({"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> DatasetProfile:
        """Read a document written by ``to_json``; the result equals the profile written.

        Raises:
            DataError: The document has another ``format_version``.
        """
        data = json.loads(text)
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise DataError(f"profile format_version {version!r} is not {FORMAT_VERSION}")
        summary = data["target_summary"]
        return cls(
            rows=data["rows"],
            numeric={name: NumericProfile(**p) for name, p in data["numeric"].items()},
            categorical={
                name: CategoricalProfile(**{**p, "top": [(str(v), int(n)) for v, n in p["top"]]})
                for name, p in data["categorical"].items()
            },
            target=data["target"],
            task=data["task"],
            target_balance=data["target_balance"],
            target_summary=None if summary is None else NumericProfile(**summary),
        )


def profile_dataset(
    ds: ray.data.Dataset,
    numeric: list[str],
    categorical: list[str],
    target: str,
    task: str,
    bins: int = 20,
    top_k: int = 20,
) -> DatasetProfile:
    """Profile ``ds`` with Ray Data aggregations; only summaries reach the driver.

    Passes over the data, each one small summary per block combined on the driver (no
    shuffle): one aggregation (counts, moments, value counts, and every numeric column's
    values once, for exact quantiles, the distinct count and the histogram), one for the
    per-class statistics behind the associations, and for regression one for the sums of
    Pearson's r plus one per categorical feature (the target's statistics per category).
    Null and NaN are missing. Each pass runs ``ds``'s plan again: materialise a dataset read
    from slow sources first.

    Association with the target, from the rows where both the feature and the target are
    present (in [0, 1], Pearson in [-1, 1]; None when undefined: no variance, fewer than two
    classes or categories):

    - classification, numeric: correlation ratio eta = sqrt(sum_k n_k (m_k - m)^2 / sum_i
      (x_i - m)^2) over the classes k, from per-class count, mean and variance.
    - classification, categorical: Cramér's V = sqrt(chi2 / (n (min(r, c) - 1))) of the
      r x c contingency table, without bias correction.
    - regression, numeric: Pearson's r.
    - regression, categorical: eta of the target over the categories.

    Args:
        ds: The dataset; other columns are ignored.
        numeric: Numeric feature columns.
        categorical: Categorical feature columns.
        target: The target column (numeric for regression).
        task: ``"classification"`` or ``"regression"``.
        bins: Equal-width histogram bins per numeric column.
        top_k: Most frequent values kept per categorical column.

    Returns:
        The profile.

    Raises:
        DataError: A column is missing, listed twice or not numeric where it must be, or the
            task is unknown.

    Example:
        >>> import pandas as pd, ray
        >>> frame = pd.DataFrame({"x": [1.0, 2.0, None], "c": ["a", "b", "a"], "y": [0, 1, 1]})
        >>> profile = profile_dataset(ray.data.from_pandas(frame), ["x"], ["c"], "y", "classification")
        >>> profile.numeric["x"].missing, profile.target_balance
        (1, {'0': 1, '1': 2})
    """
    from ray_mlops.data.aggregate import aggregate_blocks

    _check_arguments(ds, numeric, categorical, target, task, bins, top_k)
    data = ds.select_columns([*numeric, *categorical, target])
    data = data.map_batches(_nan_to_null, batch_format="pyarrow", batch_size=None)
    summarised = [*numeric, target] if task == "regression" else list(numeric)
    aggregations = _summary_aggregations(summarised, categorical, target, task, bins)
    stats = aggregate_blocks(data, *aggregations)
    profiles = {column: _numeric_profile(column, stats) for column in summarised}
    categories = {c: _categorical_profile(c, stats, top_k) for c in categorical}
    numeric_assoc, categorical_assoc = _associations(data, numeric, categorical, target, task)
    if task == "regression":
        summary = _block_summaries(data, profiles, numeric, target)
        for column in numeric:
            numeric_assoc[column] = _pearson(_summed(summary, f"sums:{column}", 6))
    summary_profile = profiles.pop(target) if task == "regression" else None
    return DatasetProfile(
        rows=int(stats.get("count()") or 0),
        numeric={
            c: dataclasses.replace(profiles[c], target_association=numeric_assoc.get(c))
            for c in numeric
        },
        categorical={
            c: dataclasses.replace(categories[c], target_association=categorical_assoc.get(c))
            for c in categorical
        },
        target=target,
        task=task,
        target_balance=_target_balance(stats, target) if task == "classification" else None,
        target_summary=summary_profile,
    )


def _check_arguments(
    ds: ray.data.Dataset,
    numeric: list[str],
    categorical: list[str],
    target: str,
    task: str,
    bins: int,
    top_k: int,
) -> None:
    if task not in TASKS:
        raise DataError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if bins < 1 or top_k < 1:
        raise DataError(f"bins ({bins}) and top_k ({top_k}) must be at least 1")
    columns = [*numeric, *categorical, target]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"columns listed more than once (features or target): {repeated}")
    schema = ds.schema()
    types = dict(zip(schema.names, schema.types, strict=True)) if schema is not None else {}
    absent = [c for c in columns if c not in types]
    if absent:
        raise DataError(f"columns not in the dataset: {absent}")
    summarised = [*numeric, target] if task == "regression" else numeric
    not_numeric = [c for c in summarised if not _is_numeric_type(types[c])]
    if not_numeric:
        raise DataError(f"columns profiled as numeric hold non-numeric values: {not_numeric}")


def _is_numeric_type(dtype: Any) -> bool:
    if not isinstance(dtype, pa.DataType):
        return True  # not an Arrow type: leave the check to the aggregations
    return bool(
        pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_null(dtype)
    )


def _nan_to_null(batch: pa.Table) -> pa.Table:
    """Make float NaN null, which Ray Data aggregations skip, and give all-null columns a type.

    A column of only nulls arrives with Arrow's ``null`` type, which Ray's quantile cannot read.
    """
    for index, field in enumerate(batch.schema):
        column = batch.column(index)
        if pa.types.is_null(field.type):
            batch = batch.set_column(index, field.name, column.cast(pa.float64()))
        elif pa.types.is_floating(field.type):
            nulled = pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column)
            batch = batch.set_column(index, field.name, nulled)
    return batch


def _summary_aggregations(
    summarised: list[str], categorical: list[str], target: str, task: str, bins: int
) -> list[Any]:
    from ray.data.aggregate import Count, ValueCounter

    aggs: list[Any] = [Count()]
    for column in summarised:
        aggs.append(_column_values_class()(on=column, bins=bins, alias_name=f"values({column})"))
    for column in categorical:
        # The value counts also give the distinct count: no set of values per column.
        aggs += [Count(column, ignore_nulls=True), ValueCounter(column)]
    if task == "classification":
        aggs.append(ValueCounter(target))
    return aggs


@functools.cache
def _column_values_class() -> type[Any]:
    """Ray's exact ``Quantile``, finalised into every statistic of a numeric column.

    Built on first use so that importing this module does not import Ray. It gathers the
    column once (as ``Quantile`` does) and takes the count, moments, extremes, quantiles of
    ``QUANTILES``, distinct count and histogram from that one copy: no set of values for the
    distinct count, no second pass for the histogram. A column without values (or a dataset
    without rows) gives None. Interpolation is linear: ``np.quantile``'s default, as in pandas
    ``Series.quantile`` and Ray's own ``Quantile``.
    """
    from ray_mlops.compat.ray_data import empty_safe_quantile

    class ColumnValues(empty_safe_quantile()):  # type: ignore[misc]
        def __init__(self, on: str, bins: int, alias_name: str) -> None:
            super().__init__(on=on, alias_name=alias_name)
            self._bins = bins

        # A summary where Quantile gives one value: a deliberate change of the output type.
        def finalize(self, accumulator: Any) -> dict[str, Any] | None:
            values = np.asarray(accumulator, dtype=np.float64)
            values = values[~np.isnan(values)]
            if values.size == 0:
                return None
            low, high = float(values.min()), float(values.max())
            if low == high:
                counts = [int(values.size)]
            else:
                counts = np.histogram(values, bins=self._bins, range=(low, high))[0].tolist()
            return {
                "count": int(values.size),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if values.size > 1 else None,
                "min": low,
                "max": high,
                "quantiles": [float(v) for v in np.quantile(values, list(QUANTILES.values()))],
                "distinct": int(pd.unique(values).size),
                "histogram": [int(n) for n in counts],
            }

    return ColumnValues


def _numeric_profile(column: str, stats: dict[str, Any]) -> NumericProfile:
    values = stats.get(f"values({column})") or {}
    count = int(values.get("count") or 0)
    low, high = _number(values.get("min")), _number(values.get("max"))
    counts = [int(n) for n in values.get("histogram") or []]
    return NumericProfile(
        count=count,
        missing=int(stats.get("count()") or 0) - count,
        distinct=int(values.get("distinct") or 0),
        mean=_number(values.get("mean")),
        std=_number(values.get("std")),
        min=low,
        max=high,
        quantiles=dict(
            zip(QUANTILES, (float(q) for q in values.get("quantiles") or []), strict=False)
        ),
        histogram_edges=_histogram_edges(low, high, len(counts)),
        histogram_counts=counts,
        target_association=None,
    )


def _histogram_edges(low: float | None, high: float | None, bins: int) -> list[float]:
    if low is None or high is None:
        return []
    if low == high:
        return [low, high]
    return [float(edge) for edge in np.linspace(low, high, bins + 1)]


def _categorical_profile(column: str, stats: dict[str, Any], top_k: int) -> CategoricalProfile:
    count = int(stats.get(f"count({column})") or 0)
    ranked = _value_counts(stats.get(f"value_counter({column})"))
    top = ranked[:top_k]
    return CategoricalProfile(
        count=count,
        missing=int(stats.get("count()") or 0) - count,
        distinct=len(ranked),
        top=top,
        other_count=count - sum(n for _, n in top),
        target_association=None,
    )


def _value_counts(counts: dict[str, list[Any]] | None) -> list[tuple[str, int]]:
    """Non-missing values as strings with their counts, most frequent first, ties by value."""
    if not counts:
        return []
    pairs = [
        (str(value), int(n))
        for value, n in zip(counts["values"], counts["counts"], strict=True)
        if not _is_missing(value)
    ]
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))


def _target_balance(stats: dict[str, Any], target: str) -> dict[str, int]:
    return dict(sorted(_value_counts(stats.get(f"value_counter({target})"))))


def _block_summaries(
    data: ray.data.Dataset,
    profiles: dict[str, NumericProfile],
    pearson_features: list[str],
    target: str,
) -> pd.DataFrame:
    """One row per block with the sums behind Pearson's r; the driver adds them up."""
    if not pearson_features:
        return pd.DataFrame()
    shifts = {c: p.mean or 0.0 for c, p in profiles.items()}
    summarise = _PearsonSums(shifts=shifts, features=pearson_features, target=target)
    return data.map_batches(summarise, batch_format="pyarrow", batch_size=None).to_pandas()


@dataclass(frozen=True)
class _PearsonSums:
    """One row per block: the sums behind Pearson's r of each feature with the target.

    The sums (n, x, y, x², y², xy over rows where both are present) use values shifted by the
    column means, which keeps them free of cancellation when values are large.
    """

    shifts: dict[str, float]
    features: list[str]
    target: str

    def __call__(self, batch: pa.Table) -> pa.Table:
        row: dict[str, list[Any]] = {}
        y = _floats(batch, self.target) - self.shifts[self.target]
        for column in self.features:
            x = _floats(batch, column) - self.shifts[column]
            both = ~np.isnan(x) & ~np.isnan(y)
            x, yb = x[both], y[both]
            sums = [float(both.sum()), x.sum(), yb.sum(), x @ x, yb @ yb, x @ yb]
            row[f"sums:{column}"] = [[float(s) for s in sums]]
        return pa.table(row)


def _floats(batch: pa.Table, column: str) -> np.ndarray:
    """A column as float64, missing values as NaN."""
    return np.asarray(pc.cast(batch.column(column), pa.float64()).to_numpy(), dtype=np.float64)


def _summed(summary: pd.DataFrame, key: str, width: int) -> list[float]:
    """Element-wise sum of the per-block lists in column ``key`` (zeros without blocks)."""
    if summary.empty:
        return [0.0] * width
    total = np.sum(np.stack([np.asarray(v, dtype=np.float64) for v in summary[key]]), axis=0)
    return [float(v) for v in total]


def _pearson(sums: list[float]) -> float | None:
    n, sx, sy, sxx, syy, sxy = sums
    if n < 2:
        return None
    var_x, var_y = sxx - sx * sx / n, syy - sy * sy / n
    if var_x <= _ZERO_VARIANCE * sxx or var_y <= _ZERO_VARIANCE * syy:
        return None
    r = (sxy - sx * sy / n) / math.sqrt(var_x * var_y)
    return float(min(1.0, max(-1.0, r)))


def _associations(
    data: ray.data.Dataset, numeric: list[str], categorical: list[str], target: str, task: str
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Association of each feature with the target, except Pearson's r (from the block sums)."""
    if task == "regression":
        return {}, {c: _category_eta(data, c, target) for c in categorical}
    if not numeric and not categorical:
        return {}, {}
    groups = _per_class_summaries(data, numeric, categorical, target)
    numeric_assoc = {
        c: _correlation_ratio(groups, f"n{i}", f"mean{i}", f"std{i}") for i, c in enumerate(numeric)
    }
    categorical_assoc = {c: _cramers_v(groups, f"counts{j}") for j, c in enumerate(categorical)}
    return numeric_assoc, categorical_assoc


_SUMMARY_COLUMNS = ["kind", "cls", "column", "value", "n", "mean", "m2"]


def _block_class_summaries(
    batch: pa.Table, numeric: list[str], categorical: list[str], target: str
) -> pd.DataFrame:
    """Per class in this block: count, mean, M2 of each numeric; value counts of each categorical.

    One long table (kind, class, column, value, n, mean, m2) so blocks can be concatenated.
    Vectorised with ``np.bincount`` over dictionary codes: no group-by per column. Classes
    and values are named by ``str()`` of their values, as everywhere in the profile.
    """
    classes, codes = _dictionary_codes(batch.column(target))
    k = len(classes)
    labelled = codes >= 0
    parts: list[pd.DataFrame] = []
    for column in numeric:
        x = _floats(batch, column)
        rows = labelled & ~np.isnan(x)
        c, xs = codes[rows], x[rows]
        n = np.bincount(c, minlength=k).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(c, weights=xs, minlength=k) / n
        m2 = np.bincount(c, weights=(xs - mean[c]) ** 2, minlength=k)
        parts.append(
            pd.DataFrame(
                {"kind": "num", "cls": classes, "column": column, "value": "", "n": n}
                | {"mean": np.nan_to_num(mean), "m2": m2}
            )
        )
    for column in categorical:
        values, value_codes = _dictionary_codes(batch.column(column))
        rows = labelled & (value_codes >= 0)
        cells = np.bincount(
            codes[rows] * len(values) + value_codes[rows], minlength=k * len(values)
        )
        found = np.flatnonzero(cells)
        parts.append(
            pd.DataFrame(
                {
                    "kind": "cat",
                    "cls": np.asarray(classes, dtype=object)[found // max(len(values), 1)],
                    "column": column,
                    "value": np.asarray(values, dtype=object)[found % max(len(values), 1)],
                    "n": cells[found].astype(np.float64),
                    "mean": 0.0,
                    "m2": 0.0,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=_SUMMARY_COLUMNS)
    return pd.concat(parts, ignore_index=True)[_SUMMARY_COLUMNS]


def _dictionary_codes(column: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray]:
    """The distinct non-missing values as strings, and each row's index into them (-1: missing)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_floating(array.type):
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
    encoded = pc.dictionary_encode(array)
    names = [str(v) for v in encoded.dictionary.to_pylist()]
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    return names, codes


def _per_class_summaries(
    data: ray.data.Dataset, numeric: list[str], categorical: list[str], target: str
) -> pd.DataFrame:
    """Per-class count/mean/std and value counts, from per-block partials (no shuffle).

    Blocks are combined with Chan's parallel formula for the variance, so the result equals a
    one-pass computation; the frame has the columns ``_correlation_ratio`` and ``_cramers_v``
    read (n{i}, mean{i}, std{i}, counts{j}).
    """
    summarize = partial(
        _block_class_summaries, numeric=numeric, categorical=categorical, target=target
    )
    partials = data.map_batches(summarize, batch_format="pyarrow", batch_size=None).to_pandas()
    if partials.empty:
        partials = pd.DataFrame(columns=_SUMMARY_COLUMNS)
    text_columns = ["kind", "cls", "column", "value"]
    partials = partials.astype(
        {c: object for c in text_columns} | {"n": float, "mean": float, "m2": float}
    )
    classes = sorted(partials["cls"].unique()) if not partials.empty else []
    groups = pd.DataFrame({target: classes})
    nums = partials[(partials["kind"] == "num") & (partials["n"] > 0)]
    for i, column in enumerate(numeric):
        rows = nums[nums["column"] == column]
        n = rows.groupby("cls")["n"].sum()
        mean = (rows["n"] * rows["mean"]).groupby(rows["cls"]).sum() / n
        spread = rows["m2"] + rows["n"] * (rows["mean"] - rows["cls"].map(mean)) ** 2
        m2 = spread.groupby(rows["cls"]).sum()
        groups[f"n{i}"] = groups[target].map(n).fillna(0.0)
        groups[f"mean{i}"] = groups[target].map(mean)
        groups[f"std{i}"] = np.sqrt(groups[target].map(m2) / groups[f"n{i}"].replace(0, np.nan))
    cats = partials[partials["kind"] == "cat"]
    for j, column in enumerate(categorical):
        rows = cats[cats["column"] == column].groupby(["cls", "value"])["n"].sum()
        groups[f"counts{j}"] = [
            {"values": list(rows[cls].index), "counts": [int(v) for v in rows[cls].to_numpy()]}
            if cls in rows.index.get_level_values(0)
            else {"values": [], "counts": []}
            for cls in groups[target]
        ]
    return groups


def _category_eta(data: ray.data.Dataset, column: str, target: str) -> float | None:
    """Correlation ratio of the (regression) target over the categories of ``column``."""
    # The per-class summaries with the roles swapped: the categories are the classes.
    groups = _per_class_summaries(data, [target], [], column)
    return _correlation_ratio(groups, "n0", "mean0", "std0")


def _correlation_ratio(groups: pd.DataFrame, n: str, mean: str, std: str) -> float | None:
    """eta from per-group count, mean and population std; None below two groups or no variance."""
    if groups.empty:
        return None
    counts = groups[n].to_numpy(dtype=np.float64)
    present = counts > 0
    if present.sum() < 2:
        return None
    counts = counts[present]
    means = groups[mean].to_numpy(dtype=np.float64)[present]
    stds = groups[std].to_numpy(dtype=np.float64)[present]
    grand = counts @ means / counts.sum()
    between = counts @ (means - grand) ** 2
    total = between + counts @ stds**2
    if total <= _ZERO_VARIANCE * (counts @ (means**2 + stds**2)):
        return None
    return float(min(1.0, math.sqrt(between / total)))


def _cramers_v(groups: pd.DataFrame, key: str) -> float | None:
    """Cramér's V (no bias correction) from the per-class value counts of one feature."""
    if groups.empty:
        return None
    table = pd.DataFrame(
        [dict(_value_counts(counts)) for counts in groups[key]], dtype=np.float64
    ).fillna(0.0)
    observed = table.loc[table.sum(axis=1) > 0, table.sum(axis=0) > 0].to_numpy()
    if min(observed.shape) < 2:
        return None
    n = observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    return float(min(1.0, math.sqrt(chi2 / (n * (min(observed.shape) - 1)))))


def _number(value: Any) -> float | None:
    """A finite-or-infinite float, or None for a missing result (None or NaN)."""
    return None if _is_missing(value) else float(value)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
