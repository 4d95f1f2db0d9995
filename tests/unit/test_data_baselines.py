"""The data_prep baselines do the same work: run on one tiny generated dataset, they agree.

Ray-free: pandas, polars (in memory and streaming) and DuckDB run as subprocesses, the way
``benchmarks/data_prep.py`` runs them; its same-work check must pass on their answers and
fail on a tampered one. The Ray sides (ray-mlops, Ray Data) run in the benchmark only.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import data_prep  # noqa: E402

ROWS = 20_000
SIDES = ["pandas", "polars", "polars-streaming", "duckdb"]


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    home = tmp_path_factory.mktemp("data")
    data_prep.SCRATCH = home / "scratch"
    data_prep.SCRATCH.mkdir()
    folder = data_prep.ensure_data(ROWS, processes=1, home=home)
    out = {}
    for side in SIDES:
        argv = data_prep.side_argv(side, folder)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        out[side] = {"ok": True, "answer": json.loads(done.stdout.splitlines()[-1])}
    return out


def test_every_baseline_finds_the_injected_bad_rows(answers: dict[str, Any]) -> None:
    f = data_prep.fault_rows(ROWS)
    for side, run in answers.items():
        answer = run["answer"]
        assert answer["rows_read"] == ROWS + 3 * f, side
        assert answer["bad"] == {
            "missing_target": f,
            "duplicate_id": 2 * f,
            "conflicting_labels": 2 * f,
        }, side
        rows = sum(split["rows"] for split in answer["splits"].values())
        assert rows == ROWS + 3 * f - 5 * f, side
        assert len(answer["fit"]["categories"]["city"]) == 50, side


def test_same_work_holds_among_the_baselines(answers: dict[str, Any]) -> None:
    checks = data_prep.same_work(answers)
    assert checks["reference"] == "pandas"
    assert checks["all"], checks
    for side in SIDES[1:]:
        assert checks[side]["numeric_sums_max_abs_diff"] < 1e-3, side


def test_same_work_fails_on_other_work(answers: dict[str, Any]) -> None:
    tampered = copy.deepcopy(answers)
    split = tampered["duckdb"]["answer"]["splits"]["test"]
    split["numeric_sums"]["income"] += 5.0
    tampered["polars"]["answer"]["bad"]["duplicate_id"] -= 1
    checks = data_prep.same_work(tampered)
    assert not checks["duckdb"]["numeric_sums"]
    assert not checks["polars"]["bad_rows_per_reason"]
    assert not checks["all"]


def test_ray_mlops_is_checked_within_sampling_error(answers: dict[str, Any]) -> None:
    """ray-mlops' split is another hash: the same answer passes, a shifted mean does not."""
    ours = copy.deepcopy(answers["polars"]["answer"])
    ours["split_counts"] = {name: split["rows"] for name, split in ours["splits"].items()}
    runs = {"pandas": answers["pandas"], data_prep.OURS: {"ok": True, "answer": ours}}
    assert data_prep.same_work(runs)[data_prep.OURS]["all"]
    train = ours["splits"]["train"]
    train["numeric_sums"]["age"] += 0.1 * train["rows"]
    assert not data_prep.same_work(runs)[data_prep.OURS]["numeric_means_within_6_se"]


def test_a_side_out_of_memory_is_not_run_again_and_the_others_rotate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def fake_measure(side: str, rows: int, folder: Path, timeout_s: float) -> dict[str, Any]:
        calls.append(side)
        oom = side == "pandas"
        return {"side": side, "ok": not oom, "out_of_memory": oom, "timed_out": False}

    monkeypatch.setattr(data_prep, "measure", fake_measure)
    runs = data_prep.run_size(1_000, {"polars": 3, "pandas": 3, "duckdb": 2}, timeout_s=1)
    assert [len(runs[s]) for s in ("polars", "pandas", "duckdb")] == [3, 1, 2]
    assert calls[:3] == ["polars", "pandas", "duckdb"]
    assert calls[3:5] == ["duckdb", "polars"]  # rotated by one, pandas left out
