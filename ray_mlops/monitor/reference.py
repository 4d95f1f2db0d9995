"""A model version's reference for monitoring, from its training data and holdout. Ray-free.

The drift of each input column is measured against a sample of the train split kept with
the model version (numeric values) and the data profile (categorical counts, which cover
every training row; the sample's counts when there is no profile); the drift of the outputs
and the performance estimate against the model's predictions on its frozen holdout, whose
labels also calibrate the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ray_mlops.data.drift import profile_reference
from ray_mlops.errors import DataError
from ray_mlops.monitor.estimate import fit_calibrator
from ray_mlops.monitor.window import PREDICTION, PROBABILITY_PREFIX, Reference

if TYPE_CHECKING:
    from ray_mlops.config import DataConfig
    from ray_mlops.data.profile import DatasetProfile


def build_reference(
    data: DataConfig,
    train_sample: pd.DataFrame,
    holdout: pd.DataFrame,
    holdout_predictions: pd.DataFrame,
    *,
    labels: Sequence[str] | None,
    profile: DatasetProfile | None = None,
) -> Reference:
    """The reference of a model version.

    Args:
        data: The data section the model was trained with (columns, target, contract).
        train_sample: A sample of the train split, raw input columns.
        holdout: The frozen holdout rows, with the target.
        holdout_predictions: The packaged model's predictions for ``holdout``, row for row:
            ``prediction`` and, for a classifier, ``probability_<label>`` columns.
        labels: The classifier's classes in its order; None for a regressor.
        profile: The data stage's profile, for complete categorical counts.

    Returns:
        The reference.

    Raises:
        DataError: A column of the data section missing from the sample or the holdout, or
            predictions that do not match the holdout row for row.
    """
    missing = [c for c in [*data.numeric, *data.categorical] if c not in train_sample]
    if missing:
        raise DataError(f"the train sample of the model version lacks the columns {missing}")
    if len(holdout_predictions) != len(holdout):
        raise DataError(
            f"{len(holdout_predictions)} holdout predictions for {len(holdout)} holdout rows"
        )
    numeric = {
        c: pd.to_numeric(train_sample[c], errors="coerce").to_numpy(dtype=float)
        for c in data.numeric
    }
    categorical, other = {}, {}
    for column in data.categorical:
        found = profile.categorical.get(column) if profile is not None else None
        if found is not None:
            categorical[column], other[column] = profile_reference(found)
        else:
            counts = train_sample[column].dropna().astype(str).value_counts()
            categorical[column], other[column] = {str(k): int(v) for k, v in counts.items()}, 0
    bounds = {
        column: (rule.min, rule.max)
        for column, rule in (data.contract or {}).items()
        if column in numeric and (rule.min is not None or rule.max is not None)
    }
    if not labels:
        served = pd.to_numeric(holdout_predictions[PREDICTION], errors="coerce")
        return Reference(
            numeric=numeric,
            categorical=categorical,
            categorical_other=other,
            bounds=bounds,
            scores=served.to_numpy(dtype=float),
        )
    columns = [f"{PROBABILITY_PREFIX}{label}" for label in labels]
    absent = [c for c in columns if c not in holdout_predictions]
    if absent:
        raise DataError(f"the holdout predictions lack the probability columns {absent}")
    probabilities = holdout_predictions[columns].to_numpy(dtype=float)
    truth = holdout[data.target].astype(str).to_numpy()
    y_index = np.array([list(labels).index(t) if t in labels else -1 for t in truth])
    predicted = np.asarray(labels, dtype=object)[probabilities.argmax(axis=1)]
    return Reference(
        numeric=numeric,
        categorical=categorical,
        categorical_other=other,
        bounds=bounds,
        labels=list(labels),
        prediction_counts={str(k): int(v) for k, v in pd.Series(predicted).value_counts().items()},
        scores=probabilities,
        calibrator=fit_calibrator(probabilities, y_index, list(labels)),
        positive=labels[1] if len(labels) == 2 else None,
    )
