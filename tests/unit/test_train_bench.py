"""benchmarks/train_throughput.py without Ray: the plain loop, the same-work checks, the
start-up probe and its breakdown."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from ray_mlops.models.factory import build_model
from ray_mlops.models.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load(BENCH / "train_throughput.py", "train_throughput_under_test")


@pytest.fixture(scope="module")
def plain_run(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The plain loop on a tiny split, on the CPU, as the driver runs it."""
    folder = tmp_path_factory.mktemp("plain")
    train, val = bench.make_data(600, 8), bench.make_data(100, 8, seed=1)
    bench.write_npy(folder, train, val)
    argv = [
        sys.executable,
        str(BENCH / "baselines" / "train_torch.py"),
        "--data",
        str(folder),
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--hidden",
        "16,16",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    answer = json.loads(out.strip().splitlines()[-1])
    return answer | {"batch_size": 128, "expected_print": bench.fingerprint(*train)}


def test_plain_loop_answers_with_its_work(plain_run: dict) -> None:
    assert plain_run["epochs"] == 2 and plain_run["steps"] == 2 * 5  # ceil(600 / 128) = 5
    assert plain_run["samples"] == 1200 and len(plain_run["samples_per_s"]) == 2
    assert plain_run["train_loss"][1] < plain_run["train_loss"][0] < 0.8
    expected = plain_run["expected_print"] | {"validation_rows": 100}
    assert plain_run["data"]["rows"] == 600 and plain_run["data"]["validation_rows"] == 100
    assert plain_run["data"]["positives"] == expected["positives"]
    assert plain_run["data"]["feature_sum"] == pytest.approx(expected["feature_sum"], rel=1e-9)


def test_same_work_accepts_the_same_run_and_refuses_other_work(
    bench: ModuleType, plain_run: dict
) -> None:
    ours = {
        "data": dict(plain_run["data"]),
        "epochs": 2,
        "samples_per_epoch": 600,
        "steps_per_epoch": 5,
        "train_loss": plain_run["train_loss"][-1] + 0.01,
        "val_loss": plain_run["val_loss"] - 0.01,
    }
    assert bench.same_work(plain_run, ours)["ok"]
    assert not bench.same_work(plain_run, ours | {"epochs": 1})["ok"]
    assert not bench.same_work(plain_run, ours | {"steps_per_epoch": 4})["ok"]
    assert not bench.same_work(plain_run, ours | {"train_loss": ours["train_loss"] + 0.1})["ok"]
    other = ours["data"] | {"feature_sum": ours["data"]["feature_sum"] + 1.0}
    assert not bench.same_work(plain_run, ours | {"data": other})["ok"]
    # Two workers: each steps through half the rows with the same batch; losses not compared.
    two = ours | {"steps_per_epoch": 3, "train_loss": 9.0}
    assert bench.same_work(plain_run, two, workers=2)["ok"]


def test_plain_loop_starts_from_ray_mlops_weights() -> None:
    """Same seed, same layers: both sides start from identical weights."""
    baseline = _load(BENCH / "baselines" / "train_torch.py", "train_torch_under_test")
    torch.manual_seed(0)
    plain = baseline.build_mlp(8, [16, 16])
    torch.manual_seed(0)
    ours = build_model(ModelSpec(n_inputs=8, n_outputs=1, head="binary", hidden_sizes=[16, 16]))
    assert [p.shape for p in plain.parameters()] == [p.shape for p in ours.parameters()]
    assert all(
        torch.equal(a, b) for a, b in zip(plain.parameters(), ours.parameters(), strict=True)
    )


def test_startup_phases_add_up_to_the_total(bench: ModuleType) -> None:
    names = [
        "interpreter",
        "ray.init:start",
        "ray.init:end",
        "data:start",
        "data:end",
        "features:end",
        "train_encoded:start",
        "build_trainer:end",
        "run_loop:start",
        "shard_load:end",
        "first_step",
    ]
    events = [{"event": n, "t": 100.0 + i, "pid": 1 if i < 8 else 2} for i, n in enumerate(names)]
    phases = bench.startup_breakdown(events, spawned=99.5, driver_pid=1)
    assert phases["process_start_s"] == pytest.approx(0.5)
    assert phases["total_s"] == pytest.approx(10.5)
    parts = [v for k, v in phases.items() if k != "total_s"]
    assert None not in parts and sum(parts) == pytest.approx(phases["total_s"])
    no_step = bench.startup_breakdown(events[:-1], spawned=99.5, driver_pid=1)
    assert no_step["total_s"] is None and no_step["first_step_s"] is None


def test_ray_train_breakdown_reads_the_controller_log(bench: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    lines = [
        {"message": "[Worker Group Initialization] 1 worker actors created in 4.19s."},
        {"message": "[Worker Group Initialization] Train context initialized on workers in 2.65s."},
        {"message": "Started training worker group of size 1"},
    ]
    log = tmp_path / "train" / "ray-train-sys-controller-abc.log"
    log.write_text("\n".join(json.dumps(line) for line in lines))
    found = bench.ray_train_breakdown(str(tmp_path))
    assert found == {"worker actors created": 4.19, "Train context initialized on workers": 2.65}


def test_probe_stamps_the_first_optimizer_step(bench: ModuleType, tmp_path: Path) -> None:
    """The probe still finds what it wraps in ray_mlops' training loop."""
    (tmp_path / "sitecustomize.py").write_text(bench.PROBE)
    trace = tmp_path / "trace.jsonl"
    script = (
        "import torch\n"
        "from ray_mlops.config import TrainConfig\n"
        "from ray_mlops.train import loop\n"
        "import ray_mlops.train.ingest as ingest\n"
        "model = torch.nn.Linear(2, 1)\n"
        "opt = loop.build_optimizer(model.parameters(), TrainConfig(), torch.device('cpu'))\n"
        "for _ in range(2):\n"
        "    model(torch.ones(1, 2)).sum().backward(); opt.step()\n"
        "assert callable(loop.run_loop) and isinstance(ingest.ResidentShard.__dict__['load'], classmethod)\n"
    )
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "TRAIN_BENCH_TRACE": str(trace),
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    events = [json.loads(line)["event"] for line in trace.read_text().splitlines()]
    assert events.count("interpreter") == 1 and events.count("first_step") == 1


def test_fingerprint_changes_with_the_data(bench: ModuleType) -> None:
    x, y = bench.make_data(50, 4)
    print_ = bench.fingerprint(x, y)
    assert bench.same_print(print_, dict(print_))
    y2 = y.copy()
    y2[0] = 1 - y2[0]
    assert not bench.same_print(print_, bench.fingerprint(x, y2))
    assert not bench.same_print(print_, bench.fingerprint(x + np.float32(1e-3), y))


def test_the_probe_targets_still_exist() -> None:
    """What the probe wraps by name in the driver's modules (read, not imported: no Ray)."""
    import ast

    def functions(relative: str) -> set[str]:
        tree = ast.parse((ROOT / relative).read_text())
        return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}

    assert {"_data_stage", "_features_stage", "_train_stage"} <= functions("ray_mlops/pipeline.py")
    assert {"train_encoded", "build_torch_trainer"} <= functions("ray_mlops/train/trainer.py")
    assert {"run_loop"} <= functions("ray_mlops/train/loop.py")


def test_document_of_fake_rounds_has_every_goal(bench: ModuleType, plain_run: dict) -> None:
    """The JSON document from rounds (no Ray): goals, comparisons, same-work checks."""
    import argparse

    args = argparse.Namespace(
        device="cpu", quick=False, rows=600, validation_rows=100, features=8, hidden="16,16",
        batch_size=128, epochs=2, rounds=2,
    )  # fmt: skip
    plain = [plain_run | {"samples_per_s": rate, "wall_s": 2.0} for rate in (100.0, 120.0)]
    ours = {
        "data": dict(plain_run["data"]), "epochs": 2, "samples_per_epoch": 600,
        "steps_per_epoch": 5, "train_loss": plain_run["train_loss"][-1],
        "val_loss": plain_run["val_loss"], "wall_s": 4.0,
    }  # fmt: skip
    rounds = {
        bench.PLAIN: plain,
        bench.RESIDENT: [ours | {"samples_per_s": 95.0}, ours | {"samples_per_s": 102.0}],
        bench.STREAMING: [ours | {"samples_per_s": 50.0}, None],
    }
    startup = [{"total_s": 20.0, "ray_init_s": 5.0, "command": "ray-mlops train"}]
    document = bench.build_document(args, rounds, startup, [2.5], [], {})
    goals = {g["claim"].split(":")[0]: g for g in document["goals"]}
    assert len(document["goals"]) == 4
    cpu = next(g for g in document["goals"] if "2 CPUs: ray-mlops" in g["claim"])
    assert cpu["value"] == pytest.approx(98.5 / 110.0) and cpu["met"] is False
    assert all(g["value"] is None for c, g in goals.items() if "GPU" in c)
    resident = document["comparisons"][bench.RESIDENT]["samples_per_s_last_epoch"]
    assert resident["paired_ratios"] == pytest.approx([0.95, 0.85])
    assert document["same_work"][bench.RESIDENT]["ok"]
    assert not document["same_work"][bench.STREAMING]["ok"]  # a failed round is no check
    assert document["startup"]["medians"]["total_s"] == 20.0
