"""Permutation importance of raw input columns, for any predict function on DataFrames."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from sklearn.inspection import permutation_importance as sk_permutation_importance

from ray_mlops.config import Task
from ray_mlops.evaluate.holdout import score_predictions
from ray_mlops.evaluate.metrics import higher_is_better

PredictFn = Callable[[pd.DataFrame], pd.DataFrame]


def permutation_importance(
    predict: PredictFn,
    holdout: pd.DataFrame,
    target: str,
    task: Task,
    labels: list[str] | None,
    metric: str,
    columns: list[str],
    *,
    n_repeats: int = 3,
    max_rows: int = 2000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """How much ``metric`` worsens when each raw input column is shuffled.

    Uses ``sklearn.inspection.permutation_importance``: it shuffles one column of a DataFrame
    at a time, whatever its dtype, and calls a scorer. The model sees whole raw rows, so the
    columns not being scored ride along in a small wrapper, and the score is the task metric
    signed so that larger is better. An importance is thus the drop of the metric in its
    "better" direction: positive means the model relies on the column, about 0 that it
    ignores it, negative that shuffling helped by chance.

    Args:
        predict: Raw rows (without the target column) -> prediction frame, as the packaged
            model returns it (``prediction`` and, for classifiers, ``probability_<label>``).
        holdout: The rows to score on, with the target column.
        target: Name of the target column.
        task: ``classification`` or ``regression``.
        labels: The model's classes (classification), ``None`` for regression.
        metric: A metric of the task, e.g. ``roc_auc`` or ``rmse``.
        columns: The input columns to shuffle, one at a time.
        n_repeats: Shuffles per column.
        max_rows: At most this many holdout rows are used, sampled with ``seed``.
        seed: Seed of the row sample and the shuffles.

    Returns:
        Column -> (mean, standard deviation) of the importance over the repeats.

    Raises:
        ValueError: A column is the target or is absent, or ``metric`` is not defined on the
            sampled rows.
    """
    if target in columns:
        raise ValueError(f"the target column {target!r} cannot be permuted")
    absent = [c for c in columns if c not in holdout.columns]
    if absent:
        raise ValueError(f"columns absent from the holdout: {absent}")
    if not columns:
        return {}
    sample = holdout.sample(n=max_rows, random_state=seed) if len(holdout) > max_rows else holdout
    sample = sample.reset_index(drop=True)
    inputs = sample.drop(columns=[target])
    model = _Reassembled(predict, inputs)
    sign = 1.0 if higher_is_better(metric) else -1.0

    def scorer(estimator: _Reassembled, x: pd.DataFrame, y: pd.Series) -> float:
        scores = score_predictions(task, y, estimator.predict(x), labels)
        if metric not in scores:
            raise ValueError(
                f"metric {metric!r} is not defined on these rows; one of {sorted(scores)}"
            )
        return sign * scores[metric]

    result = sk_permutation_importance(
        model,
        sample[columns],
        sample[target],
        scoring=scorer,
        n_repeats=n_repeats,
        random_state=seed,
    )
    return {
        column: (float(result.importances_mean[i]), float(result.importances_std[i]))
        for i, column in enumerate(columns)
    }


class _Reassembled:
    """An estimator-shaped wrapper: the scored columns from sklearn, the rest held fixed.

    sklearn shuffles only the columns it is given, so the columns that are not scored are
    kept here and joined back (same RangeIndex, same column order) before each prediction.
    """

    def __init__(self, predict: PredictFn, inputs: pd.DataFrame) -> None:
        self._predict = predict
        self._inputs = inputs

    def fit(self, x: pd.DataFrame, y: pd.Series) -> _Reassembled:
        """Nothing to fit: the model is trained already (sklearn's estimator protocol)."""
        return self

    def predict(self, x: pd.DataFrame) -> pd.DataFrame:
        """The prediction frame of the held rows with ``x``'s columns swapped in."""
        frame = self._inputs.copy()
        for column in x.columns:
            # set_axis, not to_numpy: the column keeps its dtype (string, categorical).
            frame[column] = x[column].set_axis(frame.index)
        return self._predict(frame)
