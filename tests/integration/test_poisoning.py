"""Poisoned copies of the quick start data are stopped before training, with exact counts, and
audited; the clean data and a legitimate new version pass (issue 28, point 4)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from ray_mlops.audit import audit_log_for
from ray_mlops.config import load_config
from ray_mlops.datasets import adult_path
from ray_mlops.errors import PoisonedDataError
from ray_mlops.pipeline import DataResult, run_data_stage
from ray_mlops.workspace import Workspace
from tests.conftest import TEST_ROWS, write_config

pytestmark = pytest.mark.usefixtures("ray_session")

FLIPPED = TEST_ROWS // 20  # 5% of the rows
COPIED = TEST_ROWS // 10  # 10%


def _data_stage(directory: Path, frame: pd.DataFrame) -> DataResult:
    frame.to_csv(directory / "sample.csv", index=False)
    tracking = {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}"}
    loaded = load_config(write_config(directory, {"tracking": tracking}))
    return run_data_stage(loaded, Console(quiet=True), Workspace(directory))


def _refused(directory: Path, frame: pd.DataFrame) -> str:
    with pytest.raises(PoisonedDataError) as caught:
        _data_stage(directory, frame)
    return str(caught.value)


def _report(message: str) -> dict:
    html = message.split("Report: ", 1)[1].split(". If", 1)[0]
    return json.loads(Path(html).with_name("poisoning.json").read_text())


def _cli_run(
    directory: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``ray-mlops run adult-test.yaml`` through the command's entry point, on the session's
    Ray (a subprocess would start a Ray of its own: 15 s more)."""
    from ray_mlops.cli import main

    monkeypatch.chdir(directory)
    monkeypatch.setattr(sys, "argv", ["ray-mlops", "run", "adult-test.yaml"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_flipped_labels_and_injected_copies_stop_the_run_with_exact_counts(
    tmp_path: Path,
    adult_sample: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(0)
    first = _data_stage(tmp_path, adult_sample)
    assert first.data.quarantine.rows == 0

    # 5% of the labels flipped on known rows, through `ray-mlops run`: exit 6 in the data stage.
    flipped = adult_sample.copy()
    rows = rng.choice(len(flipped), FLIPPED, replace=False)
    flipped.loc[rows, "income"] = np.where(flipped.loc[rows, "income"] == ">50K", "<=50K", ">50K")
    flipped.to_csv(tmp_path / "sample.csv", index=False)
    code, err = _cli_run(tmp_path, monkeypatch, capsys)
    assert code == 6, err[-2000:]
    assert f"{FLIPPED:,} of {TEST_ROWS:,} rows seen before changed label (5.00%)" in err
    assert "max_changed_label_share 1.00%" in err
    assert f"vs version {first.data.fingerprint}: {FLIPPED} labels changed, 0 duplicates" in err
    assert "✗ data" in err and "features" not in err  # stopped before the features and training
    report = _report(err)
    assert report["labels"]["changed"] == FLIPPED and report["duplicates"]["copies"] == 0
    changed_ids = {int(e["id"]) for e in report["labels"]["examples"]}
    assert changed_ids <= set(flipped.loc[rows, "person_id"])
    # The report is logged to the run under data/.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
    failed = client.search_runs([experiment.experiment_id], "attributes.status = 'FAILED'")
    [parent] = [r for r in failed if "mlflow.parentRunId" not in r.data.tags]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "data")}
    assert {"data/poisoning.json", "data/poisoning.html"} <= logged

    # 10% copies under fresh ids, as a poisoner would make them to pass the duplicate-id check.
    copies = adult_sample.loc[rng.choice(len(adult_sample), COPIED, replace=False)].copy()
    copies["person_id"] = np.arange(COPIED) + adult_sample["person_id"].max() + 1
    message = _refused(tmp_path, pd.concat([adult_sample, copies], ignore_index=True))
    assert f"{COPIED:,} rows are new exact copies of other rows" in message
    assert "max_duplicate_share 2.00%" in message
    report = _report(message)
    assert (report["duplicates"]["copies"], report["labels"]["changed"]) == (COPIED, 0)
    assert report["columns_jumped"] == []

    # Each refusal is audited with its counts; the baseline never moved.
    refusals = [
        r
        for r in audit_log_for(Workspace(tmp_path).storage).records()
        if r.action == "data.poisoning_refused"
    ]
    assert [
        (r.outcome, r.details["labels_changed"], r.details["duplicates"]) for r in refusals
    ] == [
        ("refused", FLIPPED, 0),
        ("refused", 0, COPIED),
    ]
    assert all(r.details["previous"] == first.data.fingerprint for r in refusals)
    assert "max_changed_label_share" in refusals[0].reason

    # The clean data again: the accepted version itself, nothing to compare.
    again = _data_stage(tmp_path, adult_sample)
    assert again.data.fingerprint == first.data.fingerprint

    # A legitimate new version (the next 300 census rows appended) is compared and accepted.
    with gzip.open(adult_path(), "rt") as handle:
        grown = pd.read_csv(handle, nrows=TEST_ROWS + COPIED, keep_default_na=True)
    _data_stage(tmp_path, grown)
    store = next((tmp_path / ".ray-mlops" / "data_versions").iterdir())
    assert json.loads((store / "latest.json").read_text())["fingerprint"] != first.data.fingerprint
