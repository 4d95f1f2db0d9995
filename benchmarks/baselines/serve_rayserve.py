"""Baseline (b2) of ``serve_load.py``: a stock Ray Serve app with ``@serve.batch``.

Written as Ray Serve's docs show (a deployment class whose ``__call__`` takes the Starlette
request, a ``@serve.batch`` method that runs the model once for the requests queued
meanwhile, ``serve.start`` for the HTTP port, ``serve.run``), behind Serve's HAProxy ingress
(``RAY_SERVE_ENABLE_HA_PROXY=1`` in the environment before Ray starts). It serves the same
network and hand-written numpy transform as (b1) (``serve_fastapi.Model``), one replica with
one CPU.

Run:
    PYTHONPATH=benchmarks/baselines python benchmarks/baselines/serve_rayserve.py \
        --model-dir .../artifacts/predictor --port 8002

Prints ``{"ready": true, ...}`` once serving, then serves until SIGTERM or Ctrl-C.
``POST /predict`` takes and answers what (b1) does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

# Before Ray starts: its processes read the switch when they import Serve.
os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")

import ray
from ray import serve
from starlette.requests import Request

HERE = str(Path(__file__).resolve().parent)
sys.path.insert(0, HERE)
# The replicas import (b1)'s model code too: Ray's processes inherit this environment.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
from serve_fastapi import Model, PredictRequest  # noqa: E402


@serve.deployment(ray_actor_options={"num_cpus": 1})
class AdultIncome:
    """One replica: the network and its transform, requests batched into one model call."""

    def __init__(self, model_dir: str, device: str = "cpu", max_batch_size: int = 64) -> None:
        self.model = Model(model_dir, device)
        self.predict_batch.set_max_batch_size(max_batch_size)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def predict_batch(self, requests: list[list[Any]]) -> list[dict[str, list[Any]]]:
        rows = [row for records in requests for row in records]
        answer = self.model.predict(rows)
        out, start = [], 0
        for records in requests:
            end = start + len(records)
            out.append({key: values[start:end] for key, values in answer.items()})
            start = end
        return out

    async def __call__(self, request: Request) -> dict[str, list[Any]]:
        body = PredictRequest.model_validate_json(await request.body())
        return await self.predict_batch(body.records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch-size", type=int, default=64)
    args = parser.parse_args()
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    options: dict[str, Any] = {}
    if args.device == "cuda":
        options["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 1}
    deployment = AdultIncome.options(**options) if options else AdultIncome
    app = deployment.bind(args.model_dir, args.device, args.max_batch_size)
    serve.run(app, route_prefix="/predict")
    print(json.dumps({"ready": True, "start_s": time.perf_counter() - started}), flush=True)

    def stop(*_: Any) -> None:
        serve.shutdown()
        ray.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop()


if __name__ == "__main__":
    main()
