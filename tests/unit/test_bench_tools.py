"""The benchmarks' own tools: statistics, goals, stale results, generated figures, baselines.

Ray-free: the benchmark scripts run elsewhere (``make bench``); here is what decides what a
result says and whether a README may print it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _proc  # noqa: E402
import _report  # noqa: E402
import figures  # noqa: E402
import stale  # noqa: E402


def test_no_baseline_imports_ray_mlops() -> None:
    scripts = sorted((BENCHMARKS / "baselines").glob("*.py"))
    assert scripts, "benchmarks/baselines/ holds no baseline"
    for script in scripts:
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "ray_mlops" for n in names), script.name
        assert "ray_mlops" not in script.read_text().replace("ray-mlops", ""), script.name


def test_interleaved_rotates_the_order_every_repetition() -> None:
    order: list[str] = []
    sides = {name: (lambda n=name: order.append(n) or len(order)) for name in "abc"}
    results = _report.interleaved(3, sides)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert results["a"] == [1, 6, 8]


def test_compare_gives_the_ratio_of_medians_and_the_median_of_paired_ratios() -> None:
    # Seeds where one side is sometimes much faster: the two statistics disagree.
    ours = [10.0, 10.0, 30.0, 2.0, 40.0]
    baseline = [20.0, 5.0, 10.0, 20.0, 20.0]
    result = _report.compare(ours, baseline, higher_is_better=False)
    assert result["ratio_of_medians"] == pytest.approx(10.0 / 20.0)
    assert result["paired_ratios"] == pytest.approx([0.5, 2.0, 3.0, 0.1, 2.0])
    assert result["median_of_paired_ratios"] == pytest.approx(2.0)
    assert result["speedup"] == pytest.approx(2.0)  # times: baseline / ours
    assert result["ours"]["min"] == 2.0 and result["ours"]["max"] == 40.0
    throughput = _report.compare([3.0], [2.0], higher_is_better=True)
    assert throughput["speedup"] == pytest.approx(1.5)


def test_a_goal_is_judged_from_its_value_and_open_without_one() -> None:
    assert _report.goal("rows/s vs pandas", 1.1, ">=", 1.0)["met"] is True
    assert _report.goal("rows/s vs pandas", 0.99, ">=", 1.0)["met"] is False
    assert _report.goal("peak GiB", 5.9, "<=", 6.0, unit="GiB")["met"] is True
    assert _report.goal("on a GPU", None, ">=", 3.0)["met"] is None
    with pytest.raises(ValueError, match="op"):
        _report.goal("x", 1.0, ">", 1.0)


def test_a_curve_refuses_series_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="pandas"):
        _report.curve("rows/s", "rows", "rows/s", [1, 2], {"pandas": [1.0]})


def test_a_side_past_its_memory_cap_is_killed_and_reported() -> None:
    grow = "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n    time.sleep(0.01)"
    result = _proc.run_side(_proc.python("-c", grow), cap_gib=0.5, timeout_s=60)
    assert result.out_of_memory and not result.ok
    assert 0.5 <= result.peak_rss_gib < 3
    answered = _proc.run_side(_proc.python("-c", "print('noise'); print('{\"rows\": 3}')"))
    assert answered.ok and answered.answer == {"rows": 3}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("SPEED = 1\n")
    (tmp_path / "other.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def write_result(repo: Path, measures: list[str]) -> Path:
    result = repo / "result.json"
    fingerprint = _report.code_fingerprint(measures, root=repo)
    result.write_text(
        json.dumps(
            {"benchmark": "b", "commit": "x", "measures": measures, "code_fingerprint": fingerprint}
        )
    )
    return result


def test_a_result_goes_stale_when_the_code_it_measured_changes(repo: Path) -> None:
    result = write_result(repo, ["pkg"])
    assert not stale.judge(result, repo).stale
    (repo / "other.py").write_text("x = 2\n")
    git(repo, "commit", "-qam", "unrelated")
    assert not stale.judge(result, repo).stale
    (repo / "pkg" / "code.py").write_text("SPEED = 2\n")
    git(repo, "commit", "-qam", "faster")
    verdict = stale.judge(result, repo)
    assert verdict.stale and "faster" not in verdict.reason and "code changed" in verdict.reason


def test_a_result_measured_on_uncommitted_code_is_current_once_that_code_is_committed(
    repo: Path,
) -> None:
    (repo / "pkg" / "new.py").write_text("NEW = 1\n")  # untracked while the benchmark runs
    result = write_result(repo, ["pkg"])
    assert stale.judge(result, repo).stale  # HEAD lacks the file it measured
    git(repo, "add", "pkg/new.py")
    git(repo, "commit", "-qm", "add")
    assert not stale.judge(result, repo).stale


def test_a_result_without_a_commit_is_stale(repo: Path) -> None:
    result = repo / "old.json"
    result.write_text(json.dumps({"benchmark": "serve_load"}))
    assert "no commit" in stale.judge(result, repo).reason


def test_figures_render_goals_verdicts_and_plots_from_the_json(tmp_path: Path) -> None:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    for readme in (tmp_path / "README.md", tmp_path / "benchmarks" / "README.md"):
        readme.write_text(f"intro\n{figures.BEGIN}\nold typed figure 9.99x\n{figures.END}\nend\n")
    document = {
        "benchmark": "data_prep",
        "machine": "2 cpu",
        "date": "2026-12-05",
        "commit": "abc1234",
        "goals": [
            _report.goal("vs polars at 10M", 0.62, ">=", 0.8, detail="196k vs 330k rows/s"),
            _report.goal("peak at 100M", 4.2, "<=", 6.0, unit="GiB"),
            _report.goal("vs polars at 30M on 16 CPUs", None, ">=", 1.0),
        ],
        "curves": [_report.curve("throughput", "rows", "rows/s", [1, 10], {"polars": [1.0, 2.0]})],
    }
    (tmp_path / "benchmarks" / "results" / "data_prep-cpu2.json").write_text(json.dumps(document))
    rendered = figures.render(tmp_path)
    top = rendered[tmp_path / "README.md"]
    assert "9.99x" not in top and top.startswith("intro\n") and top.endswith("end\n")
    assert "| data_prep | vs polars at 10M | 0.62x | >= 0.80x | **missed** |" in top
    assert "| peak at 100M | 4.2 GiB | <= 6 GiB | met |" in top.replace("| data_prep ", "")
    assert "open (not measured here)" in top
    detail = rendered[tmp_path / "benchmarks" / "README.md"]
    assert "196k vs 330k rows/s" in detail and "commit `abc1234`" in detail
    assert "results/plots/data_prep-cpu2--throughput.png" in detail
    assert "Where the time goes" not in detail  # no profiles, no section
    (tmp_path / "benchmarks" / "results" / "profiles").mkdir()
    profile = {"machine": "2 cpu", "date": "2026-12-05", "commit": "def5678", "setup": "3M rows"}
    profile["findings"] = ["prepare_data 48.4 s (67%)", "driver 40%"]
    (tmp_path / "benchmarks" / "results" / "profiles" / "data_prep-cpu2.json").write_text(
        json.dumps(profile)
    )
    detail = figures.render(tmp_path)[tmp_path / "benchmarks" / "README.md"]
    assert "results/profiles/data_prep-cpu2.json" in detail and "commit `def5678`" in detail
    assert "- prepare_data 48.4 s (67%)\n- driver 40%" in detail
    out = tmp_path / "plot.png"
    figures.draw(Path("data_prep-cpu2.json"), document["curves"][0], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_committed_readmes_match_the_committed_results() -> None:
    rendered = figures.render()
    for path, text in rendered.items():
        assert path.read_text() == text, f"{path}: run make bench-figures"


def test_profiles_split_samples_by_training_step_and_by_process() -> None:
    import profile_data
    import profile_train

    raw = "\n".join(
        [
            "main (t.py:1);forward (torch/nn/modules/module.py:2) 6",
            "main (t.py:1);backward (torch/_tensor.py:3) 3",
            "main (t.py:1);report (ray/train/x.py:4) 1",
        ]
    )
    shares = profile_train.step_share({"samples": 10}, raw)
    assert shares["forward"] == 0.6 and shares["backward"] == 0.3
    assert abs(shares["everything else"] - 0.1) < 1e-9
    spread = (
        'process 7:"ray::MapBatches(check) x";work (a.py:1) 3\nprocess 1:"python d.py";w (b.py:1) 1'
    )
    assert profile_data.by_process(spread) == {"ray::MapBatches(check)": 0.75, "d.py": 0.25}
    assert profile_data.by_process(spread, {1: "driver"}) == {
        "ray::MapBatches(check)": 0.75,
        "driver": 0.25,
    }
    assert profile_data.ours_by_function(
        "a (x.py:1);check (/w/ray_mlops/data/validate.py:9) 3\nb (y.py:2) 1"
    ) == {"check (data/validate.py)": 0.75}
    before = {1: ("raylet", 1.0), 2: ("worker", 2.0)}
    after = {1: ("raylet", 1.5), 2: ("worker", 5.0), 3: ("new", 0.01)}
    assert profile_train.cpu_by_process(before, after) == {"worker": 3.0, "raylet": 0.5}
