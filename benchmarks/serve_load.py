"""Serving load: ray-mlops on Ray Serve against plain FastAPI and ``mlflow models serve``.

The same registered model (the quick start's pipeline trained on the bundled Adult data, one
epoch) is served in the same run by:

(a) ray-mlops (``ray_mlops.serve``): Ray Serve behind its HAProxy ingress, one replica,
    ``@serve.batch``, input validation, version in every answer; auth and capture off;
(b) plain FastAPI + uvicorn in one process calling the pyfunc model: what a user writes;
(c) ``mlflow models serve`` (MLflow's scoring server, local env manager).

Each takes one-record JSON requests from an asyncio HTTP client (aiohttp, keep-alive) at
concurrency 1, 16 and 64 for ``--seconds`` each: requests/s, p50 and p99 latency, errors.
Also: ray-mlops with capture on (every request sampled) against off, batching on
(``max_batch_size`` 64) against off (1) at the top concurrency, and the seconds from a load
step to a second replica serving under autoscaling.

On a GPU node (``--device cuda``) the replica gets the GPU and only batching on against off
is measured (goal: at least 3x the unbatched requests/s), for the quick start's MLP and for
a larger one (4 x 2048, layer norm), at concurrency 64 and 256.

Goals on a 2-core machine: (a) at least (b)'s requests/s at concurrency 64, p50 at
concurrency 1 within 1 ms of (b), at least 2x (c); capture costing at most 5%.

Usage:
    python benchmarks/serve_load.py --quick --out /tmp/serve.json
    python benchmarks/serve_load.py --out benchmarks/results/serve_load-cpu2.json
    python benchmarks/serve_load.py --device cuda --out $OUT/serve_load-gpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import emit, header

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN_APP = """
import os, mlflow.pyfunc, pandas as pd
from fastapi import FastAPI, Request
app = FastAPI()
model = mlflow.pyfunc.load_model(os.environ["MODEL_URI"])
schema = model.metadata.get_input_schema()
numeric = [s.name for s in schema.inputs if "string" not in str(s.type).lower()]

@app.post("/predict")
async def predict(request: Request):
    records = (await request.json())["records"]
    frame = pd.DataFrame.from_records(records).astype({c: "float64" for c in numeric})
    out = model.predict(frame)
    return {"predictions": out["prediction"].tolist()}
"""


# max_batch_size when batching is on (the config's default is 32; 64 fills at high load).
BATCH = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout_s: float = 120.0, method: str = "GET", body: Any = None) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = requests.request(method, url, json=body, timeout=2)
            if response.status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


async def _load(url: str, body: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                            continue
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "requests": len(latencies),
        "errors": errors,
    }


def load(url: str, record: dict[str, Any], concurrency: int, seconds: float) -> dict[str, Any]:
    body = json.dumps({"records": [record]}).encode()
    asyncio.run(_load(url, body, concurrency, 1.0))  # warm-up: connections, lazy imports
    return asyncio.run(_load(url, body, concurrency, seconds))


def train_model(
    work: Path, name: str = "adult-income", hidden_sizes: list[int] | None = None
) -> tuple[str, dict[str, Any], Any]:
    """Register the quick start's model (one epoch) in a SQLite store under ``work``."""
    from rich.console import Console

    from ray_mlops.config import load_config
    from ray_mlops.pipeline import run_pipeline

    loaded = load_config(ROOT / "configs" / "quickstart.yaml")
    doc = loaded.pipeline.model_dump(mode="json")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    doc["tracking"] = {"tracking_uri": uri}
    doc["train"] |= {"epochs": 1, "num_workers": 1}
    doc["name"] = name
    if hidden_sizes is not None:
        doc["model"] |= {"hidden_sizes": hidden_sizes, "normalization": "layer"}
    doc["gate"] = {}
    doc["data"]["path"] = str(loaded.base_dir / loaded.pipeline.data.path)
    config = work / f"{name}.yaml"
    import yaml

    config.write_text(yaml.safe_dump(doc))
    previous = Path.cwd()
    os.chdir(work)
    try:
        result = run_pipeline(load_config(config), Console(quiet=True))
    finally:
        os.chdir(previous)
    from mlflow.tracking import MlflowClient

    model = MlflowClient(uri).get_model_version(result.model_name, result.model_version)
    import mlflow.pyfunc

    example = mlflow.pyfunc.load_model(model.source).input_example
    record = json.loads(example.head(1).to_json(orient="records"))[0]
    return uri, record, load_config(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--quick", action="store_true", help="3 s per level")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--batching-only",
        action="store_true",
        help="only the batching on/off cases for two model sizes (implied by --device cuda)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.seconds = 3.0
    if args.device == "cuda" or args.batching_only:
        batching_cases(args)
        return

    from ray_mlops.compat.ray_core import local_node_options
    from ray_mlops.settings_env import HA_PROXY_SETTINGS

    for key, value in HA_PROXY_SETTINGS.items():
        os.environ.setdefault(key, value)
    import ray

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             **local_node_options())  # fmt: skip
    uri, record, loaded = train_model(work)
    cfg = loaded.pipeline
    model_uri = f"models:/{cfg.model_name}@champion"
    # `mlflow models serve` starts `uvicorn` by name: the venv's bin must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MODEL_URI": model_uri, "PATH": path}
    cases: dict[str, dict[str, Any]] = {}

    # (b) plain FastAPI + uvicorn, (c) mlflow models serve: one at a time, alone with Ray idle.
    (work / "plain_app.py").write_text(PLAIN_APP)
    port = free_port()
    plain = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "plain_app:app", "--port", str(port), "--log-level",
         "warning"], cwd=work, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/predict"
        wait_for(url, method="POST", body={"records": [record]})
        cases["(b) FastAPI + uvicorn"] = {
            str(c): load(url, record, c, args.seconds) for c in args.concurrency
        }
    finally:
        os.killpg(plain.pid, signal.SIGTERM)
        plain.wait(30)
    port = free_port()
    scorer = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "-p",
         str(port), "--env-manager", "local"], cwd=work, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        wait_for(f"http://127.0.0.1:{port}/ping", timeout_s=180)
        mlflow_body = {"dataframe_records": [record]}
        cases["(c) mlflow models serve"] = {
            str(c): _load_raw(url, mlflow_body, c, args.seconds) for c in args.concurrency
        }
    finally:
        os.killpg(scorer.pid, signal.SIGTERM)
        scorer.wait(30)

    # (a) ray-mlops, then with capture on.
    from ray_mlops.serve.launch import deploy_model, stop_serving

    serve_port = free_port()
    base = cfg.serve.model_copy(
        update={"port": serve_port, "cpus_per_replica": 1.0, "max_batch_size": BATCH}
    )
    served = deploy_model(cfg.model_copy(update={"serve": base}), uri, base_dir=work)
    cases["(a) ray-mlops"] = {
        str(c): load(served.predict_url, record, c, args.seconds) for c in args.concurrency
    }
    top = max(args.concurrency)
    served = deploy_model(
        cfg.model_copy(update={"serve": base.model_copy(update={"max_batch_size": 1})}),
        uri,
        base_dir=work,
    )
    cases["(a) ray-mlops, batching off"] = {
        str(top): load(served.predict_url, record, top, args.seconds)
    }
    capture = base.capture.model_copy(
        update={"enabled": True, "sample_rate": 1.0, "path": str(work / "capture")}
    )
    served = deploy_model(
        cfg.model_copy(update={"serve": base.model_copy(update={"capture": capture})}),
        uri,
        base_dir=work,
    )
    middle = str(args.concurrency[len(args.concurrency) // 2])
    cases["(a) ray-mlops, capture on"] = {
        middle: load(served.predict_url, record, int(middle), args.seconds)
    }
    scale_up_s = _scale_up_seconds(cfg, base, uri, work, record)
    stop_serving()
    ray.shutdown()
    write(args, cases, scale_up_s, middle)


def batching_cases(args: argparse.Namespace) -> None:
    """One replica (on the GPU with --device cuda), batching on against off, two model sizes."""
    from ray_mlops.compat.ray_core import local_node_options
    from ray_mlops.serve.launch import deploy_model, stop_serving
    from ray_mlops.settings_env import HA_PROXY_SETTINGS

    for key, value in HA_PROXY_SETTINGS.items():
        os.environ.setdefault(key, value)
    import ray
    from ray import serve

    work = Path(tempfile.mkdtemp(prefix="serve-gpu-bench-"))
    ray.init(include_dashboard=False, log_to_driver=False, **local_node_options())
    concurrency = [64, 256] if not args.quick else [64]
    models = {"quick start MLP (64, 32)": None, "MLP 4 x 2048, layer norm": [2048] * 4}
    cases: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    port = free_port()  # Serve keeps its first HTTP port until it shuts down
    for label, hidden in models.items():
        name = "adult-large" if hidden else "adult-income"
        uri, record, loaded = train_model(work, name, hidden)
        cfg = loaded.pipeline
        runs: dict[str, dict[str, Any]] = {}
        for batching, size in (("on", BATCH), ("off", 1)):
            serve_cfg = cfg.serve.model_copy(
                update={
                    "port": port,
                    "cpus_per_replica": 1.0,
                    "gpus_per_replica": 1.0 if args.device == "cuda" else 0.0,
                    "max_batch_size": size,
                }
            )
            served = deploy_model(cfg.model_copy(update={"serve": serve_cfg}), uri, base_dir=work)
            runs[batching] = {
                str(c): load(served.predict_url, record, c, args.seconds) for c in concurrency
            }
        serve.delete(cfg.model_name)  # frees its CPU (and GPU) for the next model
        cases[label] = runs
        for c in map(str, concurrency):
            results.append(
                _rate_row(
                    f"{label}, {args.device} replica, concurrency={c}",
                    ("batching off (1)", runs["off"][c]),
                    (f"batching on ({BATCH})", runs["on"][c]),
                    goal=3.0 if args.device == "cuda" else None,
                )
            )
    stop_serving()
    ray.shutdown()
    setup = {
        "models": "UCI Adult, 1 epoch: the quick start's MLP and a 4 x 2048 one",
        "seconds_per_level": args.seconds,
        "client": "aiohttp, keep-alive, one process on the same node",
        "ingress": "Ray Serve HAProxy, 1 replica: 1 CPU (+ 1 GPU with cuda)",
        "batching": f"max_batch_size {BATCH} against 1, batch_wait_timeout_s 0",
    }
    _emit(args, args.device, setup, results, cases)


def _rate_row(
    case: str,
    baseline: tuple[str, dict[str, Any]],
    candidate: tuple[str, dict[str, Any]],
    goal: float | None = None,
) -> dict[str, Any]:
    """A requests/s comparison: (name, load result) of each side, their ratio, the goal."""
    row: dict[str, Any] = {
        "case": case,
        "metric": "requests/s",
        "higher_is_better": True,
        "baseline": {"name": baseline[0], "value": baseline[1]["requests_per_s"]},
        "candidate": {"name": candidate[0], "value": candidate[1]["requests_per_s"]},
        "ratio": candidate[1]["requests_per_s"] / baseline[1]["requests_per_s"],
    }
    if goal is not None:
        row["goal"] = goal
    return row


def _load_raw(url: str, body: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    data = json.dumps(body).encode()
    asyncio.run(_load(url, data, concurrency, 1.0))
    return asyncio.run(_load(url, data, concurrency, seconds))


def _scale_up_seconds(
    cfg: Any, base: Any, uri: str, work: Path, record: dict[str, Any]
) -> float | None:
    """Seconds from the start of a load step to a second replica RUNNING."""
    import threading

    from ray import serve

    from ray_mlops.config import AutoscalingConfig
    from ray_mlops.serve.launch import deploy_model

    scaling = AutoscalingConfig(
        min_replicas=1, max_replicas=2, target_ongoing_requests=1, upscale_delay_s=1.0,
        downscale_delay_s=60,
    )  # fmt: skip
    serve_cfg = base.model_copy(update={"autoscaling": scaling, "cpus_per_replica": 0.5})
    served = deploy_model(cfg.model_copy(update={"serve": serve_cfg}), uri, base_dir=work)
    body = json.dumps({"records": [record] * 20}).encode()
    started = time.perf_counter()
    loader = threading.Thread(
        target=lambda: asyncio.run(_load(served.predict_url, body, 16, 60.0)), daemon=True
    )
    loader.start()
    while time.perf_counter() - started < 60:
        app = serve.status().applications[cfg.model_name]
        if app.deployments["ModelServer"].replica_states.get("RUNNING", 0) >= 2:
            return time.perf_counter() - started
        time.sleep(0.2)
    return None


def write(
    args: argparse.Namespace,
    cases: dict[str, dict[str, Any]],
    scale_up_s: float | None,
    middle: str,
) -> None:
    ours, plain, scorer = "(a) ray-mlops", "(b) FastAPI + uvicorn", "(c) mlflow models serve"
    results = []
    for c in map(str, args.concurrency):
        for base, goal in (
            (plain, 1.0 if c == str(max(args.concurrency)) else None),
            (scorer, 2.0),
        ):
            results.append(
                _rate_row(f"concurrency={c}", (base, cases[base][c]), (ours, cases[ours][c]), goal)
            )
    low = str(min(args.concurrency))
    results.append(
        {
            "case": f"concurrency={low}",
            "metric": "p50 ms",
            "higher_is_better": False,
            "baseline": {"name": plain, "value": cases[plain][low]["p50_ms"]},
            "candidate": {"name": ours, "value": cases[ours][low]["p50_ms"]},
            "difference_ms": cases[ours][low]["p50_ms"] - cases[plain][low]["p50_ms"],
            "goal": "difference <= 1 ms",
        }
    )
    captured = f"{ours}, capture on"
    results.append(
        _rate_row(
            f"capture of every request, concurrency={middle}",
            (ours, cases[ours][middle]),
            (captured, cases[captured][middle]),
            goal=0.95,
        )
    )
    top = str(max(args.concurrency))
    unbatched = f"{ours}, batching off"
    results.append(
        _rate_row(
            f"batching (max_batch_size {BATCH}) against off (1), concurrency={top}",
            (unbatched, cases[unbatched][top]),
            (ours, cases[ours][top]),
        )
    )
    results.append(
        {
            "case": "load step to a second replica serving (autoscaling, upscale_delay_s 1)",
            "metric": "seconds",
            "higher_is_better": False,
            "candidate": {"name": ours, "value": scale_up_s},
        }
    )
    setup = {
        "model": "quick start MLP on UCI Adult (1 epoch), one record per request",
        "seconds_per_level": args.seconds,
        "client": "aiohttp, keep-alive, in the same machine",
        "ingress": "Ray Serve HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1), 1 replica x 1 CPU",
        "batching": f"max_batch_size {BATCH}, batch_wait_timeout_s 0 (the config default)",
        "gpu_batching": "measured separately with --device cuda on a GPU node",
    }
    _emit(args, "cpu", setup, results, cases)


def _emit(
    args: argparse.Namespace,
    device: str,
    setup: dict[str, Any],
    results: list[dict[str, Any]],
    cases: dict[str, Any],
) -> None:
    import torch

    if device == "cuda":
        device = f"cuda: {torch.cuda.get_device_name(0)}"
    document = {
        **header("serve_load", "ray", "torch", "mlflow", "ray_mlops"),
        "device": device,
        "quick": args.quick,
        "setup": setup,
        "results": results,
        "cases": cases,
    }
    emit(document, args.out)


if __name__ == "__main__":
    main()
