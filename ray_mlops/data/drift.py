"""Drift of one monitored window against the reference: per-column tests, distances and PSI.

Ray-free on purpose: the monitor reads a captured window with Ray Data and hands this module
plain numpy arrays (numeric columns, prediction scores) and value counts (categorical columns,
predicted labels), so the statistics can be tested, benchmarked and reused without a cluster.
Every test and distance is scipy's; only the population stability index, which no library
offers, is written here.

One window is judged in two steps: ``numeric_drift`` / ``categorical_drift`` (and the
prediction helpers) measure each column, then ``decide`` controls the false alarms across the
window's many tests (Benjamini-Hochberg) and sets ``drifted``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> age = numeric_drift("age", rng.normal(40, 10, 2000), rng.normal(45, 10, 2000))
    >>> city = categorical_drift("city", {"Oslo": 500, "Rome": 500}, ["Oslo"] * 300 + ["Rome"] * 700)
    >>> [(c.column, c.drifted) for c in decide([age, city], alpha=0.05)]
    [('age', True), ('city', True)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance as scipy_distance

from ray_mlops.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ray_mlops.data.profile import CategoricalProfile

Kind = Literal["numeric", "categorical", "prediction"]
DistanceName = Literal["wasserstein_normalised", "jensen_shannon"]
DISTANCE_NAMES: tuple[DistanceName, ...] = ("wasserstein_normalised", "jensen_shannon")

# An empty bin would make ln(c / r) infinite: shares below this floor are raised to it (the
# value Evidently uses, so PSI figures compare with its reports).
PSI_EPSILON = 1e-4
# The conventional reading of PSI (see ``population_stability_index``).
PSI_MODERATE = 0.1
PSI_SHIFT = 0.25


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one column (or model output) in one window against the reference.

    Attributes:
        column: Column name (for predictions, the name the helper was given).
        kind: ``"numeric"``, ``"categorical"`` or ``"prediction"`` (a model output).
        test: ``"ks"`` (two-sample Kolmogorov-Smirnov) or ``"chi2"`` (chi-square test of
            homogeneity).
        statistic: The test's statistic; None when the window had nothing to test.
        p_value: The test's p-value; None when the window had nothing to test (such a column
            is left out of ``decide``'s correction and never drifts).
        distance: Effect size: Wasserstein distance over the reference's standard deviation
            (numeric) or Jensen-Shannon distance in base 2, in [0, 1] (categorical); None when
            untested.
        distance_name: ``"wasserstein_normalised"`` or ``"jensen_shannon"``.
        psi: Population stability index over the reference's quantile bins (numeric) or the
            categories (categorical); None when untested.
        n_reference: Non-missing reference values the test used.
        n_current: Non-missing current values the test used.
        missing_share: Share of the current window's values that are missing (None or NaN);
            None for a window without rows.
        out_of_range_share: Numeric with bounds: share of the current non-missing values
            outside them; otherwise None.
        unseen_share: Categorical: share of the current non-missing values whose category the
            reference never had; None for numeric columns and when the reference lists only
            its most frequent categories (``reference_other`` > 0).
        adjusted_p: Benjamini-Hochberg adjusted p-value, set by ``decide``; None before.
        drifted: The decision of ``decide``; False before it.
    """

    column: str
    kind: Kind
    test: Literal["ks", "chi2"]
    statistic: float | None
    p_value: float | None
    distance: float | None
    distance_name: DistanceName
    psi: float | None
    n_reference: int
    n_current: int
    missing_share: float | None
    out_of_range_share: float | None = None
    unseen_share: float | None = None
    adjusted_p: float | None = None
    drifted: bool = False

    @property
    def tested(self) -> bool:
        """Whether the window had values to test (else the column cannot drift)."""
        return self.p_value is not None

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-safe values: plain floats, and None for NaN or infinity."""
        return {name: _json_safe(value) for name, value in dataclasses.asdict(self).items()}


def numeric_drift(
    column: str,
    reference: Any,
    current: Any,
    *,
    bounds: tuple[float | None, float | None] | None = None,
    psi_bins: int = 10,
    kind: Literal["numeric", "prediction"] = "numeric",
) -> ColumnDrift:
    """Drift of a numeric column: KS test, normalised Wasserstein distance and PSI.

    NaN (or None) values are missing: they count in ``missing_share`` and are left out of the
    test, the distance and PSI.

    The Wasserstein distance is divided by the reference's population standard deviation
    (``np.std``, as Evidently's normed Wasserstein, so a floor such as 0.1 reads the same),
    which makes it scale-free: 0.5 is a shift of half a standard deviation. A constant
    reference has no spread to measure against: the distance is then divided by the standard
    deviation of both windows pooled, which keeps it finite and scale-free (0 when both
    windows hold the same constant; two different constants give at least 2).

    PSI uses the reference's quantiles as bin edges (``psi_bins`` equal-frequency bins,
    deciles by default); the outer bins reach to minus and plus infinity so that current values
    beyond the reference's range are counted, and duplicate edges (ties in the reference,
    a constant column) are merged, which leaves fewer, wider bins.

    A current window with no non-missing values is not an error (one empty column must not stop
    the monitoring of the others): the result has ``statistic``, ``p_value``, ``distance``
    and ``psi`` None, ``missing_share`` tells why, and ``decide`` never flags it.

    Args:
        column: Column name, for the result and the messages.
        reference: 1-D array-like of the reference values (for example a sample of the train
            split kept with the model version).
        current: 1-D array-like of the window's values.
        bounds: ``(low, high)`` of the contract's range, inclusive, either end None for open;
            sets ``out_of_range_share``.
        psi_bins: Equal-frequency bins of PSI before duplicate edges merge (at least 2).
        kind: ``"numeric"`` for an input column, ``"prediction"`` for a model output.

    Returns:
        The column's drift, undecided (``adjusted_p`` None, ``drifted`` False).

    Raises:
        DataError: A window is not a 1-D numeric array or holds infinite values, or the
            reference has no non-missing value.
        ConfigError: ``psi_bins`` is below 2 or ``bounds`` has low above high.
    """
    if psi_bins < 2:
        raise ConfigError(f"column {column!r}: psi_bins must be at least 2, got {psi_bins}")
    reference_all = _floats(column, "reference", reference)
    current_all = _floats(column, "current", current)
    ref = reference_all[~np.isnan(reference_all)]
    cur = current_all[~np.isnan(current_all)]
    if ref.size == 0:
        raise DataError(f"column {column!r}: the reference has no non-missing values")
    untested = ColumnDrift(
        column=column,
        kind=kind,
        test="ks",
        statistic=None,
        p_value=None,
        distance=None,
        distance_name="wasserstein_normalised",
        psi=None,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        missing_share=_share(current_all.size - cur.size, current_all.size),
        out_of_range_share=None if bounds is None else _out_of_range_share(column, cur, bounds),
    )
    if cur.size == 0:
        return untested
    ks = stats.ks_2samp(ref, cur)
    return dataclasses.replace(
        untested,
        statistic=float(ks.statistic),
        p_value=float(ks.pvalue),
        distance=_normalised_wasserstein(ref, cur),
        psi=population_stability_index(*_quantile_bin_shares(ref, cur, psi_bins)),
    )


def categorical_drift(
    column: str,
    reference_counts: Mapping[str, int],
    current: Mapping[Any, int] | Iterable[Any],
    *,
    reference_other: int = 0,
    kind: Literal["categorical", "prediction"] = "categorical",
) -> ColumnDrift:
    """Drift of a categorical column: chi-square test, Jensen-Shannon distance, PSI, unseen share.

    The reference and current counts form a 2 x K contingency table whose cells are the
    reference's categories plus one pooled cell ``"<unseen>"`` for every current category the
    reference never had (pooling keeps a burst of new values from adding a sparse cell each).
    The chi-square test of homogeneity on it is ``scipy.stats.chi2_contingency`` without
    Yates' correction, which scipy applies only to 2 x 2 tables: a binary column is tested like
    any other. The Jensen-Shannon distance (base 2, so in [0, 1]) and PSI use the same cells.

    Categories are compared as strings (``str(value)``), as the data profile names them.
    A profile keeps only its ``top_k`` categories and counts the rest as ``other_count``: pass
    that as ``reference_other`` (``profile_reference`` does). Current categories outside the
    listed ones then share one ``"<other>"`` cell with the reference's rest, and
    ``unseen_share`` is None, because a value outside the list may still have been seen.

    A current window with no non-missing value gives an untested result, as in
    ``numeric_drift``.

    Args:
        column: Column name, for the result and the messages.
        reference_counts: Reference count per category (categories with count 0 are unseen).
        current: The window as counts per category (a mapping; a None or NaN key counts
            missing values) or as the values themselves (any iterable but a string; None and
            NaN are missing).
        reference_other: Reference values outside ``reference_counts``'s categories.
        kind: ``"categorical"`` for an input column, ``"prediction"`` for predicted labels.

    Returns:
        The column's drift, undecided (``adjusted_p`` None, ``drifted`` False).

    Raises:
        DataError: A count is negative or not an integer, ``current`` is a string, or the
            reference has no values.
    """
    reference = {
        str(category): n
        for category, n in _checked_counts(column, "reference", reference_counts.items())
        if n > 0
    }
    other = _checked_count(column, "reference_other", reference_other)
    if not reference and other == 0:
        raise DataError(f"column {column!r}: the reference has no values")
    counts, missing = _current_counts(column, current)
    n_current = sum(counts.values())
    categories = sorted(reference)
    outside = n_current - sum(counts.get(category, 0) for category in categories)
    untested = ColumnDrift(
        column=column,
        kind=kind,
        test="chi2",
        statistic=None,
        p_value=None,
        distance=None,
        distance_name="jensen_shannon",
        psi=None,
        n_reference=sum(reference.values()) + other,
        n_current=n_current,
        missing_share=_share(missing, n_current + missing),
        unseen_share=None if other else _share(outside, n_current),
    )
    if n_current == 0:
        return untested
    table = np.array(
        [
            [reference[c] for c in categories] + [other],
            [counts.get(c, 0) for c in categories] + [outside],
        ],
        dtype=np.float64,
    )
    if other == 0 and outside == 0:
        table = table[:, :-1]  # no pooled cell: an all-zero column is not a category
    chi2 = stats.chi2_contingency(table, correction=False)
    return dataclasses.replace(
        untested,
        statistic=float(chi2.statistic),
        p_value=float(chi2.pvalue),
        distance=_jensen_shannon(table[0], table[1]),
        psi=population_stability_index(table[0], table[1]),
    )


def profile_reference(profile: CategoricalProfile) -> tuple[dict[str, int], int]:
    """The reference counts of a categorical column from its data profile.

    Args:
        profile: The column's ``CategoricalProfile`` (from ``profile.json``).

    Returns:
        ``(counts, other)``: the counts of the profile's top categories, and the count of the
        rest, to pass to ``categorical_drift`` as ``reference_counts`` and ``reference_other``.
    """
    return {str(category): int(n) for category, n in profile.top}, int(profile.other_count)


def population_stability_index(
    reference_shares: Any, current_shares: Any, epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index: ``sum((c - r) * ln(c / r))`` over the bins.

    Conventional reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a
    significant shift (``PSI_MODERATE``, ``PSI_SHIFT``). It has no p-value: it is a
    distance, reported beside the tests.

    Args:
        reference_shares: Share of the reference in each bin; counts work too (each side is
            divided by its total).
        current_shares: Share of the current window in the same bins.
        epsilon: Shares below it (empty bins) are raised to it, so the logarithm stays finite;
            the shares are not renormalised afterwards.

    Returns:
        The index, 0 for identical shares, never negative.

    Raises:
        DataError: The two sides differ in length, are empty, hold a negative or non-finite
            value, or sum to zero.
        ConfigError: ``epsilon`` is not positive.
    """
    if not epsilon > 0:
        raise ConfigError(f"PSI epsilon must be positive, got {epsilon}")
    r = _shares("reference", reference_shares)
    c = _shares("current", current_shares)
    if r.shape != c.shape:
        raise DataError(f"PSI: {r.size} reference bins against {c.size} current bins")
    r, c = np.maximum(r, epsilon), np.maximum(c, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def decide(
    columns: Sequence[ColumnDrift],
    *,
    alpha: float = 0.05,
    min_distance: Mapping[str, float] | None = None,
) -> list[ColumnDrift]:
    """Which columns of one window drifted, with the false alarms of many tests controlled.

    A window runs one test per column, so at ``alpha`` = 0.05 a stable stream with 20 columns
    would raise about one alarm per window by chance. The p-values are adjusted together with
    Benjamini-Hochberg (``scipy.stats.false_discovery_control``), which bounds the expected
    share of false alarms among the flagged columns by ``alpha``; when nothing drifted every
    alarm is false, so the chance that a stable window raises any alarm is at most ``alpha``
    too (for independent tests, or positively dependent ones).

    A column drifted when its adjusted p-value is at most ``alpha`` and, where
    ``min_distance`` gives a floor for its distance, its distance reaches the floor. The floor
    is an effect size: with large windows the tests find differences far too small to matter
    (a KS test on a million rows rejects a shift of a hundredth of a standard deviation), and
    the distance says how large the drift is.

    Untested columns (``p_value`` None: nothing to test in the window) take no part in the
    correction and never drift.

    Args:
        columns: The window's per-column results, decided or not (earlier decisions are
            replaced).
        alpha: Level of the false discovery rate, in (0, 1).
        min_distance: Effect-size floors keyed by distance name (``"wasserstein_normalised"``,
            ``"jensen_shannon"``): the two distances have different units, so the floor is per
            distance, not per column kind; a distance missing from it has no floor.

    Returns:
        New results in the same order, with ``adjusted_p`` and ``drifted`` set.

    Raises:
        ConfigError: ``alpha`` is outside (0, 1), or ``min_distance`` names an unknown
            distance or holds a negative floor.
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"drift alpha must be in (0, 1), got {alpha}")
    floors = dict(min_distance or {})
    unknown = sorted(set(floors) - set(DISTANCE_NAMES))
    if unknown:
        raise ConfigError(f"min_distance: unknown distance {unknown}, expected {DISTANCE_NAMES}")
    if any(not floor >= 0 for floor in floors.values()):
        raise ConfigError(f"min_distance: floors must be non-negative, got {floors}")
    decided = [dataclasses.replace(c, adjusted_p=None, drifted=False) for c in columns]
    tested = [i for i, c in enumerate(columns) if c.p_value is not None]
    if not tested:
        return decided
    adjusted = stats.false_discovery_control([columns[i].p_value for i in tested], method="bh")
    for i, p in zip(tested, adjusted, strict=True):
        result = columns[i]
        floor = floors.get(result.distance_name)
        large = floor is None or (result.distance is not None and result.distance >= floor)
        decided[i] = dataclasses.replace(
            result, adjusted_p=float(p), drifted=bool(p <= alpha and large)
        )
    return decided


def drift_share(columns: Sequence[ColumnDrift]) -> float | None:
    """Share of the input columns (numeric and categorical, not predictions) that drifted.

    Args:
        columns: Decided results of one window.

    Returns:
        Drifted input columns over all input columns; None without input columns.
    """
    inputs = [c for c in columns if c.kind != "prediction"]
    return _share(sum(c.drifted for c in inputs), len(inputs))


def prediction_class_drift(
    reference_counts: Mapping[str, int],
    current: Mapping[Any, int] | Iterable[Any],
    *,
    column: str = "predicted_class",
) -> ColumnDrift:
    """Drift of the shares of predicted classes (``categorical_drift`` with kind "prediction").

    Args:
        reference_counts: Predicted labels on the reference sample, counted per label.
        current: The window's predicted labels, as counts or as values.
        column: Name of the result.

    Returns:
        The undecided result.
    """
    return categorical_drift(column, reference_counts, current, kind="prediction")


def prediction_score_drift(
    reference: Any,
    current: Any,
    *,
    positive_index: int | None = None,
    column: str = "predicted_score",
    psi_bins: int = 10,
) -> ColumnDrift:
    """Drift of a classifier's scores (``numeric_drift`` with kind "prediction").

    The score is P(positive) when ``positive_index`` is given or the arrays are 1-D already,
    else the top probability of each row (the model's confidence). Probabilities outside
    [0, 1] count in ``out_of_range_share``. For a regressor's outputs call ``numeric_drift``
    with kind "prediction".

    Args:
        reference: Scores on the reference sample: shape (n,) or class probabilities (n, k).
        current: The window's scores, shaped like ``reference``.
        positive_index: Column of the positive class in (n, k) probabilities.
        column: Name of the result.
        psi_bins: As in ``numeric_drift``.

    Returns:
        The undecided result.

    Raises:
        DataError: The scores are not 1-D or 2-D, or ``positive_index`` is out of range.
    """
    return numeric_drift(
        column,
        _scores(column, "reference", reference, positive_index),
        _scores(column, "current", current, positive_index),
        bounds=(0.0, 1.0),
        psi_bins=psi_bins,
        kind="prediction",
    )


def _floats(column: str, side: str, values: Any) -> np.ndarray:
    """A window as a 1-D float64 array, missing values (None, NaN) as NaN."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"column {column!r}: {side} values are not numeric ({exc})") from None
    if array.ndim != 1:
        raise DataError(f"column {column!r}: {side} values must be 1-D, got shape {array.shape}")
    infinite = int(np.isinf(array).sum())
    if infinite:
        raise DataError(f"column {column!r}: {infinite} infinite {side} values")
    return array


def _out_of_range_share(
    column: str, values: np.ndarray, bounds: tuple[float | None, float | None]
) -> float | None:
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise ConfigError(f"column {column!r}: bounds ({low}, {high}) have low above high")
    outside = np.zeros(values.shape, dtype=bool)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    return _share(int(outside.sum()), values.size)


def _normalised_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance over the reference's spread (pooled spread for a constant one)."""
    distance = stats.wasserstein_distance(reference, current)
    # ptp rather than std == 0: the std of identical floats can come out as 1e-17.
    if np.ptp(reference) > 0:
        return float(distance / np.std(reference))
    both = np.concatenate([reference, current])
    if np.ptp(both) == 0:
        return 0.0
    return float(distance / np.std(both))


def _quantile_bin_shares(
    reference: np.ndarray, current: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shares of both windows in the reference's equal-frequency bins, duplicate edges merged."""
    inner = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))

    def shares(values: np.ndarray) -> np.ndarray:
        # Bin i holds [edge i-1, edge i); the first and last bins are open-ended.
        index = np.searchsorted(inner, values, side="right")
        return np.bincount(index, minlength=inner.size + 1) / values.size

    return shares(reference), shares(current)


def _jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    distance = float(scipy_distance.jensenshannon(reference, current, base=2))
    # Identical distributions can round to the square root of a tiny negative number.
    return 0.0 if math.isnan(distance) else distance


def _shares(side: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise DataError(f"PSI: {side} shares must be a non-empty 1-D array, got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise DataError(f"PSI: {side} shares must be finite and non-negative")
    total = array.sum()
    if total <= 0:
        raise DataError(f"PSI: {side} shares sum to zero")
    return array / total


def _current_counts(column: str, current: Any) -> tuple[dict[str, int], int]:
    """Counts per category (as strings) and the count of missing values of a window."""
    if isinstance(current, Mapping):
        counts: dict[str, int] = {}
        missing = 0
        for value, n in _checked_counts(column, "current", current.items()):
            if _is_missing(value):
                missing += n
            else:
                counts[str(value)] = counts.get(str(value), 0) + n
        return counts, missing
    if isinstance(current, str | bytes):
        raise DataError(f"column {column!r}: current values must be a collection, not a string")
    values = current if isinstance(current, np.ndarray | pd.Series) else list(current)
    series = pd.Series(values, dtype=object)
    found = series.value_counts(dropna=True)
    counts = {}
    for value, n in found.items():
        counts[str(value)] = counts.get(str(value), 0) + int(n)
    return counts, int(series.size - found.sum())


def _checked_counts(
    column: str, side: str, items: Iterable[tuple[Any, Any]]
) -> list[tuple[Any, int]]:
    return [(value, _checked_count(column, f"{side} count of {value!r}", n)) for value, n in items]


def _checked_count(column: str, what: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise DataError(f"column {column!r}: {what} must be a non-negative integer, got {n!r}")
    return int(n)


def _scores(column: str, side: str, values: Any, positive_index: int | None) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"column {column!r}: {side} scores are not numeric ({exc})") from None
    if array.ndim == 1:
        return array
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(
            f"column {column!r}: {side} scores must be (n,) or (n, classes), got {array.shape}"
        )
    if positive_index is None:
        return array.max(axis=1)  # a row with a missing probability gives NaN: missing
    if not -array.shape[1] <= positive_index < array.shape[1]:
        raise DataError(
            f"column {column!r}: positive_index {positive_index} is outside "
            f"{array.shape[1]} {side} classes"
        )
    return array[:, positive_index]


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _json_safe(value: Any) -> Any:
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
