"""The serving benchmark's baselines and its load parsing (``benchmarks/serve_load.py``).

Ray-free and fast: (b1)'s hand-written numpy transform and torch network give the packaged
model's predictions; wrk's summary line parses; the same-work check and the OIP request are
what the driver relies on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
from ray_mlops.features.transform import transform_features
from ray_mlops.models.factory import build_model
from ray_mlops.models.package import input_example, save_pyfunc_model
from ray_mlops.models.spec import ModelSpec

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS / "baselines"))
sys.path.insert(0, str(BENCHMARKS))

import serve_fastapi  # noqa: E402
import serve_load  # noqa: E402

NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = [
    "workclass", "education", "marital_status", "occupation", "relationship", "race", "sex",
    "native_country",
]  # fmt: skip


def adult_state() -> FeatureState:
    """A fitted state shaped like the quick start's: log1p, buckets, one-hot, hashing."""
    numeric = {c: NumericState(fill=10.0, center=20.0, scale=5.0) for c in NUMERIC}
    numeric["age"] = NumericState(fill=37.0, center=38.5, scale=13.6, bucket_edges=[25.0, 45.0])
    numeric["capital_gain"] = NumericState(fill=0.0, center=0.7, scale=2.4, log1p=True)
    categorical = {
        c: CategoricalState(categories=["a", "b", "c"]) for c in CATEGORICAL if c != "race"
    }
    categorical["race"] = CategoricalState(categories=["White", "Black"], fill="White")
    categorical["native_country"] = CategoricalState(
        categories=[], encode="hashing", hash_buckets=16
    )
    return FeatureState(numeric=numeric, categorical=categorical, labels=["<=50K", ">50K"])


def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 12
    frame = pd.DataFrame({c: rng.normal(30, 15, n).round() for c in NUMERIC})
    frame["capital_gain"] = rng.choice([0.0, 2174.0, -5.0, 99999.0], n)
    for c in CATEGORICAL:
        frame[c] = rng.choice(["a", "b", "c", "zzz", "White", "Black"], n).astype(object)
    frame["native_country"] = rng.choice(["United-States", "Mexico", "India"], n).astype(object)
    frame.loc[1, "age"] = np.nan  # missing numbers and categories take their fill or slot
    frame.loc[2, "workclass"] = None
    frame.loc[3, "race"] = None
    frame.loc[4, "native_country"] = None
    return frame


def records(frame: pd.DataFrame) -> list[serve_fastapi.Record]:
    clean = frame.astype(object).where(frame.notna(), None)
    return [serve_fastapi.Record(**r) for r in clean.to_dict(orient="records")]


def test_numpy_transform_matches_the_project_transform() -> None:
    state = adult_state()
    frame = rows()
    encoder = serve_fastapi.Encoder(json.loads(state.to_json()))
    assert encoder.width == state.n_features
    ours = transform_features(frame, state)
    np.testing.assert_allclose(encoder.encode(records(frame)), ours, rtol=0, atol=1e-6)


def test_b1_gives_the_pyfunc_predictions(tmp_path: Path) -> None:
    import mlflow.pyfunc

    state = adult_state()
    torch.manual_seed(0)
    spec = ModelSpec(
        n_inputs=state.n_features, n_outputs=1, head="binary", hidden_sizes=[16, 8],
        normalization="layer", dropout=0.1,
    )  # fmt: skip
    network = build_model(spec)
    frame = rows()
    save_pyfunc_model(tmp_path / "model", network, spec, state, input_example(frame, state))
    expected = mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(frame.copy())
    model = serve_fastapi.Model(tmp_path / "model" / "artifacts" / "predictor")
    answer = model.predict(records(frame))
    assert answer["predictions"] == expected["prediction"].tolist()
    got = [p[">50K"] for p in answer["probabilities"]]
    np.testing.assert_allclose(got, expected["probability_>50K"], rtol=0, atol=1e-6)
    check = serve_load.same_answers(
        {"labels": expected["prediction"].tolist(), "p": expected["probability_>50K"].tolist()},
        *serve_load.v1_answer(answer, ">50K"),
    )
    assert check["same"] and check["rows"] == len(frame)


def test_same_answers_flags_a_label_or_a_probability_apart() -> None:
    expected = {"labels": ["a", "b"], "p": [0.1, 0.9]}
    assert serve_load.same_answers(expected, ["a", "b"], [0.1, 0.9 + 1e-7])["same"]
    assert not serve_load.same_answers(expected, ["a", "a"], [0.1, 0.9])["same"]
    assert not serve_load.same_answers(expected, ["a", "b"], [0.1, 0.91])["same"]


WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:41234/predict
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.20ms    5.10ms  90.00ms   80.00%
    Req/Sec     1.55k   100.00     1.70k    70.00%
  12400 requests in 8.00s, 3.10MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   1550.00
Transfer/sec:    396.00KB
WRK_JSON {"requests": 12400, "duration_us": 8000000, "non_2xx": 5, "connect": 0, "read": 1, "write": 0, "timeout": 2, "p50_us": 40100.0, "p90_us": 47000.5, "p99_us": 60000.0, "mean_us": 41200.0, "max_us": 90000.0}
"""


def test_parse_wrk_reads_the_lua_summary() -> None:
    parsed = serve_load.parse_wrk(WRK_OUTPUT)
    assert parsed["requests_per_s"] == pytest.approx(1550.0)
    assert parsed["p50_ms"] == pytest.approx(40.1)
    assert parsed["p99_ms"] == pytest.approx(60.0)
    assert parsed["non_2xx"] == 5  # 1xx, 3xx and 4xx/5xx all count, not only wrk's >= 400
    assert parsed["socket_errors"] == 3
    assert parsed["requests"] == 12400
    with pytest.raises(ValueError, match="WRK_JSON"):
        serve_load.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_argv_posts_the_body_file_with_the_script(tmp_path: Path) -> None:
    argv = serve_load.wrk_argv("http://x/p", tmp_path / "b.json", tmp_path / "s.lua", 64, 8.0)
    assert argv[1:5] == ["-t1", "-c64", "-d8s", "--timeout"]
    assert argv[-2:] == ["--", str(tmp_path / "b.json")]
    assert "function response(status" in serve_load.WRK_SCRIPT


def test_oip_request_and_answer() -> None:
    body = serve_load.oip_request(
        [{"age": 39.0, "sex": "Male"}, {"age": 50.0, "sex": "F"}], ["age"]
    )
    assert body["inputs"][0] == {
        "name": "age",
        "shape": [2],
        "datatype": "FP64",
        "data": [39.0, 50.0],
    }
    assert body["inputs"][1]["datatype"] == "BYTES"
    answer = {"outputs": [
        {"name": "prediction", "data": ["<=50K", ">50K"]},
        {"name": "probability_>50K", "data": [0.2, 0.7]},
    ]}  # fmt: skip
    assert serve_load.oip_answer(answer, ">50K") == (["<=50K", ">50K"], [0.2, 0.7])


def test_cpu_per_request_sums_by_process_label() -> None:
    before = {1: ("haproxy", 1.0), 2: ("ray::ServeReplica (model replica)", 2.0)}
    after = {
        1: ("haproxy", 1.5),
        2: ("ray::ServeReplica (model replica)", 3.0),
        3: ("haproxy", 0.5),
    }
    per = serve_load.cpu_per_request(before, after, 1000)
    assert per == {"ray::ServeReplica (model replica)": 1000.0, "haproxy": 1000.0}
    title = SimpleNamespace(
        cmdline=lambda: ["ray::ServeReplica:adult-income:ModelServer"], name=lambda: "x"
    )
    assert serve_load.process_label(title) == "ray::ServeReplica (model replica)"


def test_collapsed_profile_shares_by_function() -> None:
    raw = (
        "run (/x/lib/python3.11/asyncio/base_events.py:1);predict (/work/main/ray_mlops/serve/"
        "v1_endpoints.py:40);forward (/v/lib/python3.11/site-packages/torch/nn/linear.py:9) 30\n"
        "run (/x/lib/python3.11/asyncio/base_events.py:2);loads (/x/lib/python3.11/json/__init__.py:3) 10\n"
    )
    profile = serve_load.collapsed_profile(raw)
    assert profile["samples"] == 40
    assert profile["inclusive"]["run (stdlib/asyncio/base_events.py)"] == 1.0
    assert profile["inclusive"]["predict (ray_mlops/serve/v1_endpoints.py)"] == 0.75
    assert profile["self"] == {
        "forward (torch/nn/linear.py)": 0.75,
        "loads (stdlib/json/__init__.py)": 0.25,
    }
    worker = SimpleNamespace(
        cmdline=lambda: [
            "/v/bin/python",
            "-B",
            "-c",
            "from multiprocessing.spawn import spawn_main",
        ],
        name=lambda: "python",
    )
    assert serve_load.process_label(worker) == "python -c (a worker process)"
