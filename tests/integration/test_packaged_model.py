"""The registered model of the session's pipeline run, used as a user would from Python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ray_mlops.pipeline import PipelineResult
from ray_mlops.registry.champion import load_version


def test_the_registered_model_predicts_a_frame_read_from_the_raw_csv(
    trained: PipelineResult, workspace: Path, tracking_uri: str, tmp_path: Path
) -> None:
    """Issue 23: ``predict(pd.read_csv(...))`` failed with "Can not safely convert int64 to
    float64"; the integer columns of the raw file are accepted as they are read."""
    assert trained.model_version is not None
    model, _ = load_version(tracking_uri, trained.model_name, trained.model_version, str(tmp_path))
    raw = pd.read_csv(workspace / "sample.csv", nrows=300)
    numeric = ["age", "education_num", "capital_gain", "hours_per_week"]
    assert all(raw[c].dtype == np.int64 for c in numeric)
    got = model.predict(raw)
    assert len(got) == 300 and set(got["prediction"]) <= {"<=50K", ">50K"}
    expected = model.predict(raw.astype({c: "float64" for c in numeric}))
    pd.testing.assert_frame_equal(got, expected)
    assert (got["prediction"] == raw["income"]).mean() > 0.7  # a trained model, not noise
