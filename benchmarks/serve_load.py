"""Serving load: ray-mlops against FastAPI, a stock Ray Serve app, mlflow serve and MLServer.

The same registered model (the quick start's pipeline trained on the bundled Adult data, one
epoch) is served, one server at a time, by:

(a)  ray-mlops: ``ray-mlops serve CONFIG`` (Ray Serve behind its HAProxy ingress, one replica
     of 1 CPU, ``max_batch_size`` 64, input validation, the version in every answer; auth and
     capture off), ``POST /v1/models/adult-income:predict``;
(b1) FastAPI + uvicorn with 2 workers, the torch network loaded directly and the features
     encoded by hand in numpy (``baselines/serve_fastapi.py``);
(b2) a stock Ray Serve app with ``@serve.batch`` (64) behind Serve's HAProxy ingress, the same
     network and numpy transform, one replica of 1 CPU (``baselines/serve_rayserve.py``);
(c)  ``mlflow models serve --workers 2 --env-manager local`` (MLflow's scoring server, the
     pyfunc with its schema enforcement on every call);
(d)  MLServer with its MLflow runtime, Open Inference Protocol, adaptive batching (64 requests
     or 5 ms), in a virtualenv of its own (``baselines/serve_mlserver.sh``).

The load is ``wrk`` (one thread, keep-alive, a Lua script posting a fixed body and counting
answers that are not 2xx) in its own process, on this machine: one record per request and 32,
at concurrency 1, 16, 64 and 256, each point a warm-up then ``--seconds`` measured. Each side
is started, checked and stopped once per repetition, the order of the sides rotated every
repetition; every point runs in the first ``--full-reps`` repetitions, the goal points
(concurrency 64 and 1, one record) in all ``--reps``. Start-up (process spawn to the first
answer) is timed separately. Before any load, every side answers the same 32 records (and
the single one) and must agree with the model's pyfunc: same labels, probabilities within
1e-5. During the goal points, the CPU time of every process of the server and of wrk is read,
giving CPU microseconds per request per process (where the time goes). Then ray-mlops with 1
and 2 replicas (throughput against replicas, a curve).

With ``--device cuda`` (a GPU node): ray-mlops' replica on the GPU, batching on (64) against
off (1), at concurrency 64 and 256, for the quick start's MLP and a 4 x 2048 one; and (b1)
with the network on the same GPU.

Usage:
    python benchmarks/serve_load.py --quick --out /tmp/serve.json
    python benchmarks/serve_load.py --out benchmarks/results/serve_load-cpu2.json
    python benchmarks/serve_load.py --device cuda --out $OUT/serve_load-gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import compare, curve, emit, goal, header, rounded, summary

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "benchmarks" / "baselines"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

MODEL = "adult-income"
BATCH = 64  # max_batch_size of every batching side
SHORT = {
    "b1": "(b1) FastAPI + uvicorn, torch + numpy",
    "b2": "(b2) stock Ray Serve + @serve.batch",
    "c": "(c) mlflow models serve",
    "d": "(d) MLServer",
}
TOLERANCE = 1e-5  # largest difference of a probability between two sides
GOAL_POINTS = ((1, 64), (1, 1))  # (records per request, concurrency)
WRK_SCRIPT = """
-- POST the body of the file named after "--"; count answers that are not 2xx.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  non2xx = 0
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %.0f, "duration_us": %.0f, "non_2xx": %.0f, "connect": %.0f, '
    .. '"read": %.0f, "write": %.0f, "timeout": %.0f, "p50_us": %.1f, "p90_us": %.1f, '
    .. '"p99_us": %.1f, "mean_us": %.1f, "max_us": %.1f}\\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"""


# ---------------------------------------------------------------------------- load (wrk)


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The figures of one wrk run from the ``WRK_JSON`` line its Lua ``done`` writes.

    Raises:
        ValueError: no such line (wrk failed before the end of its run).
    """
    for line in stdout.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line[len("WRK_JSON ") :])
            seconds = raw["duration_us"] / 1e6
            return {
                "requests_per_s": raw["requests"] / seconds if seconds else 0.0,
                "p50_ms": raw["p50_us"] / 1000,
                "p90_ms": raw["p90_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "mean_ms": raw["mean_us"] / 1000,
                "max_ms": raw["max_us"] / 1000,
                "requests": int(raw["requests"]),
                "seconds": seconds,
                "non_2xx": int(raw["non_2xx"]),
                "socket_errors": int(raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]),
            }
    raise ValueError(f"wrk printed no WRK_JSON line:\n{stdout[-2000:]}")


def wrk_argv(url: str, body: Path, script: Path, concurrency: int, seconds: float) -> list[str]:
    """One wrk thread (the servers here answer thousands of requests/s at most)."""
    return [
        shutil.which("wrk") or "/usr/bin/wrk", "-t1", f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script), url,
        "--", str(body),
    ]  # fmt: skip


# ---------------------------------------------------------------------------- CPU per process


def process_label(process: Any) -> str:
    """What a process is: Ray's process titles (``ray::ServeReplica:...``) or its name."""
    try:
        command = process.cmdline()
        name = process.name()
    except Exception:
        return "gone"
    first = command[0] if command else name
    if first.startswith("ray::"):
        title = first.split()[0]
        if "ServeReplica" in title:
            return "ray::ServeReplica (model replica)"
        return title.split(":")[0] + "::" + title.split("::", 1)[1].split(":")[0].split(".")[0]
    base = Path(first).name
    if base.startswith("python"):
        rest = iter(command[1:])
        for arg in rest:
            if arg == "-c":
                code = next(rest, "")
                if "resource_tracker" in code:
                    return "python -c (multiprocessing resource tracker)"
                return "python -c (a worker process)"
            if arg == "-m":
                return f"python -m {next(rest, '')}"
            if not arg.startswith("-"):
                return f"python {Path(arg).name}"
    return base or name


def cpu_snapshot(root_pids: Sequence[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every process under ``root_pids``, by pid."""
    import psutil

    found: dict[int, tuple[str, float]] = {}
    for pid in root_pids:
        try:
            top = psutil.Process(pid)
            members = [top, *top.children(recursive=True)]
        except psutil.Error:
            continue
        for member in members:
            try:
                times = member.cpu_times()
                found[member.pid] = (process_label(member), times.user + times.system)
            except psutil.Error:
                continue
    return found


def children_cpu() -> float:
    """CPU seconds of this process's finished children (wrk's, once it has exited)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_per_request(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    requests: int,
) -> dict[str, float]:
    """CPU microseconds per request, summed by process label, largest first."""
    totals: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        spent = seconds - before.get(pid, (label, 0.0))[1]
        totals[label] = totals.get(label, 0.0) + spent
    per = {k: v * 1e6 / max(requests, 1) for k, v in totals.items() if v > 0}
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def frame_name(frame: str) -> str:
    """A py-spy frame without its line: ``predict (ray_mlops/serve/v1_endpoints.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/"):
        path = path.split(marker, 1)[-1]
    if "/lib/python3." in path:
        path = "stdlib/" + path.split("/lib/python3.", 1)[1].split("/", 1)[-1]
    return f"{name} ({path})" if path else name


def collapsed_profile(text: str, top: int = 25) -> dict[str, Any]:
    """Shares of on-CPU samples by function, from py-spy's collapsed stacks (``raw``).

    ``inclusive``: samples whose stack holds the function; ``self``: samples in it last.
    """
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame_name(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + n

    def shares(counts: dict[str, int]) -> dict[str, float]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return {k: v / max(total, 1) for k, v in ranked}

    return {"samples": total, "inclusive": shares(inclusive), "self": shares(leaf)}


# ---------------------------------------------------------------------------- the sides


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def v1_answer(answer: dict[str, Any], positive: str) -> tuple[list[str], list[float]]:
    """Labels and P(positive) of a ray-mlops, (b1) or (b2) answer."""
    return list(answer["predictions"]), [p[positive] for p in answer["probabilities"]]


def mlflow_answer(answer: dict[str, Any], positive: str) -> tuple[list[str], list[float]]:
    """Labels and P(positive) of ``mlflow models serve``'s answer."""
    rows = answer["predictions"]
    return [r["prediction"] for r in rows], [r[f"probability_{positive}"] for r in rows]


def oip_answer(answer: dict[str, Any], positive: str) -> tuple[list[str], list[float]]:
    """Labels and P(positive) of an Open Inference Protocol answer (MLServer)."""
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    return list(outputs["prediction"]), list(outputs[f"probability_{positive}"])


def oip_request(records: list[dict[str, Any]], numeric: Sequence[str]) -> dict[str, Any]:
    """The records as one Open Inference Protocol tensor per column, read as a DataFrame."""
    inputs = []
    for column in records[0]:
        values = [r[column] for r in records]
        kind = "FP64" if column in numeric else "BYTES"
        inputs.append({"name": column, "shape": [len(values)], "datatype": kind, "data": values})
    return {"inputs": inputs, "parameters": {"content_type": "pd"}}


@dataclass
class Side:
    """One server: how to start it, where it answers, its body and answer formats."""

    key: str
    label: str
    argv: Callable[[int], list[str]]  # from the HTTP port
    path: str
    body: Callable[[list[dict[str, Any]]], Any]
    answer: Callable[[dict[str, Any], str], tuple[list[str], list[float]]]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


class Server:
    """A side's process tree: started (timed to its first good answer), then stopped."""

    def __init__(self, side: Side, log: Path, probe: bytes) -> None:
        self.side = side
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{side.path}"
        self.log = log
        self.probe = probe
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 300.0) -> float:
        """Seconds from spawning the process to its first 200 answer."""
        import requests

        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.side.argv(self.port), env={**os.environ, **self.side.env},
                cwd=self.side.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        headers = {"Content-Type": "application/json"}
        failing_since = None  # answering, but not 200 (a proxy before its replica is up)
        while time.perf_counter() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.side.label} exited; see {self.log}")
            with contextlib.suppress(requests.RequestException):
                reply = requests.post(self.url, data=self.probe, headers=headers, timeout=5)
                if reply.status_code == 200:
                    return time.perf_counter() - started
                failing_since = failing_since or time.perf_counter()
                if time.perf_counter() - failing_since > 60:
                    raise RuntimeError(
                        f"{self.side.label} answers {reply.status_code}: {reply.text[:300]}"
                    )
            time.sleep(0.1)
        raise RuntimeError(f"{self.side.label} did not answer in {timeout_s} s; see {self.log}")

    def ask(self, body: Any) -> dict[str, Any]:
        import requests

        reply = requests.post(self.url, json=body, timeout=60)
        reply.raise_for_status()
        return dict(reply.json())

    def stop(self, grace_s: float = 15.0) -> float:
        """SIGTERM to the leader (each stops its own children), then SIGKILL its session.

        Ray's workers run in process groups of their own, but in the leader's session.
        """
        if self.process is None:
            return 0.0
        started = time.perf_counter()
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace_s)
        kill_session(pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.process = None
        return time.perf_counter() - started


def kill_session(sid: int) -> None:
    """SIGKILL every process left in session ``sid`` (Ray's daemons and workers, HAProxy)."""
    import psutil

    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getsid(process.pid) == sid:
                process.kill()


# ---------------------------------------------------------------------------- the model


def train_model(
    work: Path, name: str = MODEL, hidden_sizes: list[int] | None = None
) -> tuple[str, Path]:
    """Register the quick start's model (one epoch) in a SQLite store under ``work``.

    Returns the tracking URI and the config written for it (``ray-mlops serve`` reads it).
    """
    import yaml
    from rich.console import Console

    from ray_mlops.config import load_config
    from ray_mlops.pipeline import run_pipeline

    loaded = load_config(ROOT / "configs" / "quickstart.yaml")
    doc = loaded.pipeline.model_dump(mode="json")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    doc["tracking"] = {"tracking_uri": uri}
    doc["train"] |= {"epochs": 1, "num_workers": 1}
    doc["name"] = name
    doc["registry"]["model_name"] = name
    if hidden_sizes is not None:
        doc["model"] |= {"hidden_sizes": hidden_sizes, "normalization": "layer"}
    doc["gate"] = {}
    doc["data"]["path"] = str(loaded.base_dir / loaded.pipeline.data.path)
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump(doc))
    previous = Path.cwd()
    os.chdir(work)
    try:
        run_pipeline(load_config(config), Console(quiet=True))
    finally:
        os.chdir(previous)
    return uri, config


def serve_config(config: Path, out: Path, **serve: Any) -> Path:
    """``config`` with its ``serve`` section updated: what ``ray-mlops serve`` gets."""
    import yaml

    doc = yaml.safe_load(config.read_text())
    doc["serve"] = {**(doc.get("serve") or {}), **serve}
    out.write_text(yaml.safe_dump(doc))
    return out


def model_folder(uri: str, name: str = MODEL) -> Path:
    """The registered champion's pyfunc folder on this machine."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    return Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion"))


def sample_records(config: Path, rows: int = 32) -> tuple[list[dict[str, Any]], list[str]]:
    """``rows`` complete census rows (the model's input columns) and the numeric columns."""
    import pandas as pd
    import yaml

    doc = yaml.safe_load(config.read_text())
    numeric, categorical = doc["data"]["numeric"], doc["data"]["categorical"]
    frame = pd.read_csv(doc["data"]["path"], usecols=[*numeric, *categorical]).dropna()
    frame = frame.sample(n=rows, random_state=0)[[*numeric, *categorical]]
    records = [
        {c: (float(r[c]) if c in numeric else str(r[c])) for c in frame.columns}
        for r in frame.to_dict(orient="records")
    ]
    return records, list(numeric)


def reference(folder: Path, records: list[dict[str, Any]], positive: str) -> dict[str, Any]:
    """The model's pyfunc answer: the labels and probabilities every side must give."""
    import mlflow.pyfunc
    import pandas as pd

    out = mlflow.pyfunc.load_model(str(folder)).predict(pd.DataFrame.from_records(records))
    return {
        "labels": out["prediction"].tolist(),
        "p": out[f"probability_{positive}"].tolist(),
    }


def same_answers(expected: dict[str, Any], labels: list[str], p: list[float]) -> dict[str, Any]:
    """Whether one side's answer matches the pyfunc's: labels equal, probabilities close."""
    diff = max((abs(a - b) for a, b in zip(expected["p"], p, strict=True)), default=0.0)
    labels_equal = list(labels) == list(expected["labels"])
    return {
        "rows": len(labels),
        "labels_equal": labels_equal,
        "max_abs_diff_probability": diff,
        "same": labels_equal and diff <= TOLERANCE,
    }


def ours(key: str, label: str, config: Path, work: Path, name: str = MODEL) -> Side:
    """ray-mlops as its users start it: ``ray-mlops serve CONFIG --port PORT``."""
    return Side(
        key, label,
        lambda port: [str(BIN / "ray-mlops"), "serve", str(config), "--port", str(port)],
        f"/v1/models/{name}:predict", lambda rows: {"records": rows}, v1_answer, cwd=work,
    )  # fmt: skip


def make_sides(
    keys: Sequence[str], config: Path, uri: str, folder: Path, work: Path, numeric: list[str],
    device: str = "cpu",
) -> list[Side]:  # fmt: skip
    """The servers of this run, in their default order."""
    predictor = folder / "artifacts" / "predictor"
    records = lambda rows: {"records": rows}  # noqa: E731
    ha_ports = {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
    }
    gpus = 1.0 if device == "cuda" else 0.0
    served = serve_config(
        config, work / "serve-a.yaml", cpus_per_replica=1.0, gpus_per_replica=gpus,
        max_batch_size=BATCH, num_replicas=1,
    )  # fmt: skip
    every = {
        "a": ours("a", "ray-mlops", served, work),
        "b1": Side(
            "b1", "(b1) FastAPI + uvicorn, 2 workers, torch + numpy",
            lambda port: [
                sys.executable, "-m", "uvicorn", "serve_fastapi:app", "--app-dir",
                str(BASELINES), "--workers", "2", "--port", str(port), "--log-level", "warning",
            ],
            "/predict", records, v1_answer,
            env={"MODEL_DIR": str(predictor), "DEVICE": device},
        ),
        "b2": Side(
            "b2", "(b2) stock Ray Serve, @serve.batch, HAProxy",
            lambda port: [
                sys.executable, str(BASELINES / "serve_rayserve.py"), "--model-dir",
                str(predictor), "--port", str(port), "--device", device,
            ],
            "/predict", records, v1_answer, env=ha_ports, cwd=work,
        ),
        "c": Side(
            "c", "(c) mlflow models serve, 2 workers",
            lambda port: [
                str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
                "-p", str(port), "-h", "127.0.0.1", "--workers", "2", "--env-manager", "local",
            ],
            "/invocations", lambda rows: {"dataframe_records": rows}, mlflow_answer,
            env={"MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
            cwd=work,
        ),
        "d": Side(
            "d", "(d) MLServer + MLflow runtime, adaptive batching",
            lambda port: [
                "bash", str(BASELINES / "serve_mlserver.sh"), str(folder), str(port),
                str(free_port()), str(free_port()), str(BATCH), "0.005",
            ],
            f"/v2/models/{MODEL}/infer", lambda rows: oip_request(rows, numeric), oip_answer,
            cwd=work,
        ),
    }  # fmt: skip
    return [every[k] for k in keys]


# ---------------------------------------------------------------------------- the run


@dataclass
class Run:
    """What a run measured, side by side, point by point."""

    sides: list[Side]
    points: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    startup: dict[str, list[float]] = field(default_factory=dict)
    stop: dict[str, list[float]] = field(default_factory=dict)
    same_work: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    profile: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, side: str, point: str, result: dict[str, Any]) -> None:
        self.points.setdefault(side, {}).setdefault(point, []).append(result)


def point_name(records: int, concurrency: int) -> str:
    return f"records={records},concurrency={concurrency}"


def measure(
    server: Server, bodies: dict[int, Path], script: Path, records: int, concurrency: int,
    seconds: float, warmup: float,
) -> tuple[dict[str, Any], dict[str, float]]:  # fmt: skip
    """Warm-up, then one measured wrk run; the CPU per request of the server and of wrk."""
    body = bodies[records]
    if warmup > 0:
        subprocess.run(
            wrk_argv(server.url, body, script, concurrency, warmup), capture_output=True,
            check=False,
        )  # fmt: skip
    assert server.process is not None
    before = cpu_snapshot([server.process.pid])
    client_before = children_cpu()
    load = subprocess.Popen(
        wrk_argv(server.url, body, script, concurrency, seconds), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, _ = load.communicate()
    client_cpu = children_cpu() - client_before
    after = cpu_snapshot([server.process.pid])
    result = parse_wrk(stdout)
    cpu = cpu_per_request(before, after, result["requests"])
    cpu["wrk (client)"] = client_cpu * 1e6 / max(result["requests"], 1)
    result["cpu_us_per_request_total"] = sum(cpu.values())
    return result, cpu


def run_side(
    run: Run, side: Side, plan: Sequence[tuple[int, int]], bodies: dict[int, Path],
    script: Path, expected: dict[int, dict[str, Any]], records: list[dict[str, Any]],
    positive: str, args: argparse.Namespace, logs: Path,
) -> None:  # fmt: skip
    """Start one side, check its answers, load every point of ``plan``, stop it."""
    server = Server(side, logs / f"{side.key}.log", bodies[1].read_bytes())
    try:
        _load_side(run, server, plan, bodies, script, expected, records, positive, args)
    except Exception as exc:  # one side failing leaves the others' figures
        print(f"  {side.label}: FAILED: {exc}", flush=True)
        run.errors.setdefault(side.key, []).append(f"{type(exc).__name__}: {exc}")
    finally:
        run.stop.setdefault(side.key, []).append(server.stop())


def _load_side(
    run: Run, server: Server, plan: Sequence[tuple[int, int]], bodies: dict[int, Path],
    script: Path, expected: dict[int, dict[str, Any]], records: list[dict[str, Any]],
    positive: str, args: argparse.Namespace,
) -> None:  # fmt: skip
    side = server.side
    run.startup.setdefault(side.key, []).append(server.start())
    print(f"  {side.label}: up in {run.startup[side.key][-1]:.1f} s", flush=True)
    checks = {}
    for n, rows in ((1, records[:1]), (len(records), records)):
        labels, p = side.answer(server.ask(side.body(rows)), positive)
        checks[f"records={n}"] = same_answers(expected[n], labels, p)
    run.same_work.setdefault(side.key, []).append(checks)
    if not all(c["same"] for c in checks.values()):
        print(f"  {side.label}: ANSWERS DIFFER {checks}", flush=True)
    for n, c in plan:
        result, cpu = measure(server, bodies, script, n, c, args.seconds, args.warmup)
        run.add(side.key, point_name(n, c), result)
        if (n, c) in GOAL_POINTS:
            run.profile.setdefault(side.key, {}).setdefault(point_name(n, c), []).append(cpu)
        print(
            f"    {point_name(n, c)}: {result['requests_per_s']:.0f} req/s, p50 "
            f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, non-2xx "
            f"{result['non_2xx']}, socket errors {result['socket_errors']}",
            flush=True,
        )


def write_bodies(work: Path, side: Side, records: list[dict[str, Any]]) -> dict[int, Path]:
    """The request body of one record and of all records, as files for wrk."""
    bodies = {}
    for n in (1, len(records)):
        path = work / f"body-{side.key}-{n}.json"
        path.write_text(json.dumps(side.body(records[:n])))
        bodies[n] = path
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the goal points")
    parser.add_argument("--full-reps", type=int, default=1, help="repetitions of every point")
    parser.add_argument("--replica-reps", type=int, default=1)
    parser.add_argument(
        "--profile-seconds", type=float, default=6.0, help="py-spy per point; 0: no profile"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--records", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--sides", nargs="+", default=["a", "b1", "b2", "c", "d"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, help="reuse this folder's trained model")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.reps, args.full_reps = 2.0, 0.5, 1, 1
        args.replica_reps, args.concurrency, args.records = 0, [1, 64], [1, 32]
        args.profile_seconds = 0.0
    if not shutil.which("wrk") and not Path("/usr/bin/wrk").exists():
        sys.exit("wrk is missing: apt-get install -y wrk")
    work = args.work or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    print(f"work folder {work}", flush=True)
    if args.device == "cuda":
        gpu_run(args, work, logs, script)
        return

    import ray

    from ray_mlops.compat.ray_core import local_node_options

    started = time.perf_counter()
    if (work / "mlflow.db").exists():
        uri, config = f"sqlite:///{work / 'mlflow.db'}", work / f"{MODEL}.yaml"
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 **local_node_options())  # fmt: skip
        uri, config = train_model(work)
        ray.shutdown()
    folder = model_folder(uri)
    records, numeric = sample_records(config)
    positive = ">50K"
    expected = {
        1: reference(folder, records[:1], positive),
        32: reference(folder, records, positive),
    }
    print(f"model trained and registered in {time.perf_counter() - started:.0f} s", flush=True)
    if "d" in args.sides:  # MLServer's virtualenv, made once, outside every clock
        subprocess.run(
            ["bash", str(BASELINES / "serve_mlserver.sh"), "--install"], check=True,
            env={**os.environ, "MODEL_REQUIREMENTS": str(folder / "requirements.txt")},
        )  # fmt: skip
    sides = make_sides(args.sides, config, uri, folder, work, numeric)
    run = Run(sides)
    every = [(n, c) for n in args.records for c in args.concurrency]
    goal_plan = [p for p in GOAL_POINTS if p in every]
    for rep in range(args.reps):
        plan = every if rep < args.full_reps else goal_plan
        shift = rep % len(sides)
        for side in sides[shift:] + sides[:shift]:
            print(f"repetition {rep + 1}/{args.reps}: {side.label}", flush=True)
            bodies = write_bodies(work, side, records)
            run_side(run, side, plan, bodies, script, expected, records, positive, args, logs)
        write_cpu(args, run, {}, partial=True)  # an interrupted run keeps what it measured
    replicas = replica_curve(args, config, work, logs, script, records, expected, positive)
    write_cpu(args, run, replicas)
    if args.profile_seconds > 0:
        try:
            spy = py_spy_phase(args, sides, work, logs, script, records)
        except Exception as exc:  # the figures above stand without it
            spy = {"error": f"{type(exc).__name__}: {exc}"}
        write_cpu(args, run, replicas, extra={"py_spy": spy})


def py_spy_phase(
    args: argparse.Namespace, sides: list[Side], work: Path, logs: Path, script: Path,
    records: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """Where the serving process's Python spends its CPU: py-spy on one replica (a, b2) or
    one uvicorn worker (b1) during a load at concurrency 1 and 64, one record.

    A separate run of each server after the timed ones: sampling slows the process a little.
    """
    found: dict[str, Any] = {
        "how": f"py-spy record --rate 200 --nonblocking, {args.profile_seconds:g} s of wrk per "
        "point after 1 s of warm-up; shares of on-CPU samples of the process's Python threads "
        "(native code counts to its Python caller)",
    }
    for side in [s for s in sides if s.key in ("a", "b2", "b1")]:
        bodies = write_bodies(work, side, records)
        server = Server(side, logs / f"{side.key}-py-spy.log", bodies[1].read_bytes())
        try:
            server.start()
            assert server.process is not None
            target = serving_process(server.process.pid)
            for concurrency in (1, 64):
                subprocess.run(
                    wrk_argv(server.url, bodies[1], script, concurrency, 1.0), capture_output=True,
                    check=False,
                )  # fmt: skip
                out = work / f"py-spy-{side.key}-{concurrency}.txt"
                spy = subprocess.Popen(
                    [str(BIN / "py-spy"), "record", "--pid", str(target), "--rate", "200",
                     "--duration", str(round(args.profile_seconds)), "--format", "raw",
                     "--nonblocking", "--output", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                load = subprocess.run(
                    wrk_argv(server.url, bodies[1], script, concurrency, args.profile_seconds),
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                spy.wait(60)
                profile = collapsed_profile(out.read_text() if out.exists() else "")
                profile["requests_per_s"] = parse_wrk(load.stdout)["requests_per_s"]
                found.setdefault(side.label, {})[point_name(1, concurrency)] = profile
                print(f"  py-spy {side.label} c={concurrency}: {profile['samples']} samples")
        finally:
            server.stop()
    return found


def serving_process(leader: int) -> int:
    """The pid that runs the model: Serve's replica, else the first uvicorn worker."""
    import psutil

    members = psutil.Process(leader).children(recursive=True)
    labels = {p.pid: process_label(p) for p in members}
    for wanted in ("ray::ServeReplica", "python -c"):
        for pid, label in labels.items():
            if label.startswith(wanted):
                return pid
    raise RuntimeError(f"no replica or worker process under {leader}: {sorted(labels.values())}")


def replica_curve(
    args: argparse.Namespace, config: Path, work: Path, logs: Path, script: Path,
    records: list[dict[str, Any]], expected: dict[int, dict[str, Any]], positive: str,
) -> dict[str, Any]:  # fmt: skip
    """ray-mlops with 1 and 2 replicas (1 CPU each), interleaved: requests/s at concurrency 64."""
    counts = [1, 2]
    plan = [(n, 64) for n in args.records]
    results: dict[int, Run] = {}
    for rep in range(args.replica_reps):
        for count in counts[rep % 2 :] + counts[: rep % 2]:
            cfg = serve_config(
                config, work / f"serve-a-{count}.yaml", cpus_per_replica=1.0,
                max_batch_size=BATCH, num_replicas=count,
            )  # fmt: skip
            side = ours(f"a{count}", f"ray-mlops, {count} replicas", cfg, work)
            print(f"replicas {count}, repetition {rep + 1}/{args.replica_reps}", flush=True)
            run = results.setdefault(count, Run([side]))
            bodies = write_bodies(work, side, records)
            run_side(run, side, plan, bodies, script, expected, records, positive, args, logs)
    return {
        str(count): {
            point: summary([r["requests_per_s"] for r in values])
            for point, values in run.points.get(f"a{count}", {}).items()
        }
        for count, run in results.items()
    }


# ---------------------------------------------------------------------------- the document


def point_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests_per_s": summary([r["requests_per_s"] for r in results]),
        "p50_ms": summary([r["p50_ms"] for r in results]),
        "p99_ms": summary([r["p99_ms"] for r in results]),
        "cpu_us_per_request": summary([r["cpu_us_per_request_total"] for r in results]),
        "requests": sum(r["requests"] for r in results),
        "non_2xx": sum(r["non_2xx"] for r in results),
        "socket_errors": sum(r["socket_errors"] for r in results),
        "repetitions": len(results),
    }


def median_profile(samples: list[dict[str, float]]) -> dict[str, float]:
    """Per process label, the median of its CPU microseconds per request."""
    labels = {label for s in samples for label in s}
    medians = {k: summary([s.get(k, 0.0) for s in samples])["median"] for k in labels}
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


def write_cpu(
    args: argparse.Namespace,
    run: Run,
    replicas: dict[str, Any],
    partial: bool = False,
    extra: dict[str, Any] | None = None,
) -> None:
    labels = {s.key: s.label for s in run.sides}
    points = {
        key: {point: point_summary(values) for point, values in by_point.items()}
        for key, by_point in run.points.items()
    }
    c64, c1 = point_name(1, 64), point_name(1, 1)

    def rates(key: str, point: str) -> list[float]:
        return [r["requests_per_s"] for r in run.points.get(key, {}).get(point, [])]

    comparisons = {}
    for key in labels:
        if key == "a":
            continue
        for point in (c64, point_name(32, 64)):
            if rates("a", point) and rates(key, point):
                comparisons[f"{point}: ray-mlops vs {key}"] = compare(
                    rates("a", point), rates(key, point), higher_is_better=True
                )
    for key in labels:  # start-up: process spawn (and Ray, Serve) to the first answer
        if key != "a" and run.startup.get("a") and run.startup.get(key):
            comparisons[f"start-up seconds: ray-mlops vs {key}"] = compare(
                run.startup["a"], run.startup[key], higher_is_better=False
            )
    goals = []
    for key, target in (("b2", 1.0), ("b1", 0.8), ("c", 2.0), ("d", 2.0)):
        found = comparisons.get(f"{c64}: ray-mlops vs {key}")
        value = found["ratio_of_medians"] if found else None
        detail = (
            f"{points['a'][c64]['requests_per_s']['median']:.0f} vs "
            f"{points[key][c64]['requests_per_s']['median']:.0f} req/s, medians of "
            f"{found['ours']['n']} and {found['baseline']['n']}; paired ratios "
            f"{min(found['paired_ratios']):.2f}-{max(found['paired_ratios']):.2f}"
            if found
            else "not measured"
        )
        goals.append(
            goal(f"serving, concurrency 64, one record: requests/s vs {SHORT[key]}",
                 value, ">=", target, detail=detail)
        )  # fmt: skip
    p50 = {k: [r["p50_ms"] for r in run.points.get(k, {}).get(c1, [])] for k in ("a", "b1")}
    difference = None
    detail = "not measured"
    if p50["a"] and p50["b1"]:
        a, b = summary(p50["a"])["median"], summary(p50["b1"])["median"]
        difference = a - b
        detail = (
            f"p50 {a:.2f} ms vs (b1) {b:.2f} ms, medians of {len(p50['a'])} and "
            f"{len(p50['b1'])} runs"
        )
    goals.append(
        goal("serving, concurrency 1, one record: p50 latency minus (b1)'s", difference, "<=",
             0.5, unit="ms", detail=detail)
    )  # fmt: skip
    goals += gpu_goals_unmeasured()
    curves = []
    for n in args.records:
        xs = [c for c in args.concurrency if run.points.get("a", {}).get(point_name(n, c))]
        if not xs:
            continue
        series = {
            labels[k]: [
                points.get(k, {}).get(point_name(n, c), {}).get("requests_per_s", {}).get("median")
                for c in xs
            ]
            for k in labels
        }
        curves.append(
            curve(
                f"throughput-{n}-records",
                "concurrent connections",
                "requests/s",
                xs,
                series,
                log_x=True,
            )
        )
    if replicas:
        counts = sorted(replicas, key=int)
        curves.append(
            curve(
                "throughput-vs-replicas",
                "ray-mlops replicas (1 CPU each)",
                "requests/s at concurrency 64",
                [int(c) for c in counts],
                {
                    f"{n} record{'s' if n > 1 else ''}": [
                        replicas[c].get(point_name(n, 64), {}).get("median") for c in counts
                    ]
                    for n in args.records
                },
            )
        )
    same_work = {
        key: {
            "checks": checks,
            "same": all(c["same"] for rep in checks for c in rep.values()),
        }
        for key, checks in run.same_work.items()
    }
    same_work["all_same"] = all(v["same"] for v in same_work.values())
    same_work["non_2xx_total"] = sum(p["non_2xx"] for v in points.values() for p in v.values())
    same_work["socket_errors_total"] = sum(
        p["socket_errors"] for v in points.values() for p in v.values()
    )
    startup = {
        labels[k]: {"start_s": summary(v), "stop_s": summary(run.stop.get(k, []))}
        for k, v in run.startup.items()
    }
    document = {
        **header(
            "serve_load",
            "ray",
            "torch",
            "mlflow",
            "fastapi",
            "uvicorn",
            "ray_mlops",
            measures=[
                "ray_mlops/serve",
                "ray_mlops/models/predictor.py",
                "ray_mlops/features/transform.py",
                "ray_mlops/features/primitives.py",
                "benchmarks/baselines/serve_fastapi.py",
                "benchmarks/baselines/serve_rayserve.py",
                "benchmarks/baselines/serve_mlserver.sh",
            ],
        ),
        "device": "cpu",
        "quick": args.quick,
        "partial": partial,
        "setup": {
            "model": "quick start MLP (64, 32) on UCI Adult, 1 epoch",
            "requests": f"{args.records} records per request (complete census rows)",
            "load": "wrk -t1 (keep-alive, Lua script: fixed POST body, non-2xx counted), "
            "a separate process on the same 2 CPUs",
            "seconds_per_point": args.seconds,
            "warmup_seconds": args.warmup,
            "repetitions": {
                "goal points (1 record at concurrency 64 and 1)": args.reps,
                "other points": args.full_reps,
                "replica curve": args.replica_reps,
            },
            "order": "each side started, checked, loaded and stopped once per repetition; "
            "the order of the sides rotated every repetition",
            "sides": labels,
            "batching": f"max_batch_size {BATCH}, no wait (a, b2); MLServer 64 or 5 ms (d)",
            "gpu": "run with --device cuda on a GPU node",
        },
        "same_work": same_work,
        "errors": {labels[k]: v for k, v in run.errors.items()},
        "startup": startup,
        "points": points,
        "comparisons": comparisons,
        "replicas": replicas,
        "profile_cpu_us_per_request": {
            labels[k]: {point: median_profile(v) for point, v in by_point.items()}
            for k, by_point in run.profile.items()
        },
        "goals": goals,
        "curves": curves,
        **(extra or {}),
    }
    if partial:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_suffix(".partial").write_text(json.dumps(rounded(document), indent=2))
        return
    emit(rounded(document), args.out)
    if args.out:
        args.out.with_suffix(".partial").unlink(missing_ok=True)


def gpu_goals_unmeasured() -> list[dict[str, Any]]:
    """The GPU goals, open on a machine without one."""
    found = []
    for model in ("quick start MLP", "MLP 4 x 2048"):
        for c in (64, 256):
            found.append(
                goal(f"serving on a GPU, {model}, concurrency {c}: batching on vs off", None,
                     ">=", 3.0, detail="needs a GPU node: --device cuda")
            )  # fmt: skip
        found.append(
            goal(f"serving on a GPU, {model}, concurrency 64: ray-mlops vs (b1) on the same GPU",
                 None, ">=", 1.0, detail="needs a GPU node: --device cuda")
        )  # fmt: skip
    return found


# ---------------------------------------------------------------------------- GPU node


def gpu_run(args: argparse.Namespace, work: Path, logs: Path, script: Path) -> None:
    """On a GPU node: batching on vs off, and vs (b1) on the same GPU, two model sizes."""
    import ray

    from ray_mlops.compat.ray_core import local_node_options

    concurrency = [64] if args.quick else [64, 256]
    models = {"quick start MLP": (MODEL, None), "MLP 4 x 2048": ("adult-large", [2048] * 4)}
    positive = ">50K"
    ray.init(include_dashboard=False, log_to_driver=False, **local_node_options())
    trained = {label: train_model(work, name, hidden) for label, (name, hidden) in models.items()}
    ray.shutdown()
    goals, measured = [], {}
    for label, (name, _) in models.items():
        uri, config = trained[label]
        folder = model_folder(uri, name)
        records, numeric = sample_records(config)
        expected = {1: reference(folder, records[:1], positive), 32: reference(folder, records, positive)}  # fmt: skip
        sides = []
        for size in (BATCH, 1):
            cfg = serve_config(
                config, work / f"serve-{name}-{size}.yaml", cpus_per_replica=1.0,
                gpus_per_replica=1.0, max_batch_size=size, num_replicas=1,
            )  # fmt: skip
            sides.append(ours(f"a{size}", f"ray-mlops, max_batch_size {size}", cfg, work, name))
        sides += make_sides(["b1"], config, uri, folder, work, numeric, device="cuda")
        run = Run(sides)
        for rep in range(args.reps if not args.quick else 1):
            for side in sides[rep % 3 :] + sides[: rep % 3]:
                bodies = write_bodies(work, side, records)
                plan = [(1, c) for c in concurrency]
                run_side(run, side, plan, bodies, script, expected, records, positive, args, logs)
        measured[label] = {
            k: {p: point_summary(v) for p, v in by.items()} for k, by in run.points.items()
        }
        for c in concurrency:
            p = point_name(1, c)
            on = [r["requests_per_s"] for r in run.points["a64"][p]]
            off = [r["requests_per_s"] for r in run.points["a1"][p]]
            b1 = [r["requests_per_s"] for r in run.points["b1"][p]]
            batching = compare(on, off, higher_is_better=True)
            goals.append(
                goal(f"serving on a GPU, {label}, concurrency {c}: batching on vs off",
                     batching["ratio_of_medians"], ">=", 3.0,
                     detail=f"{summary(on)['median']:.0f} vs {summary(off)['median']:.0f} req/s")
            )  # fmt: skip
            if c == 64:
                versus = compare(on, b1, higher_is_better=True)
                goals.append(
                    goal(f"serving on a GPU, {label}, concurrency 64: ray-mlops vs (b1) on the "
                         "same GPU", versus["ratio_of_medians"], ">=", 1.0,
                         detail=f"{summary(on)['median']:.0f} vs {summary(b1)['median']:.0f} req/s")
                )  # fmt: skip
    import torch

    document = {
        **header("serve_load", "ray", "torch", "mlflow", "ray_mlops",
                 measures=["ray_mlops/serve", "benchmarks/baselines/serve_fastapi.py"]),
        "device": f"cuda: {torch.cuda.get_device_name(0)}",
        "quick": args.quick,
        "setup": {"batching": f"max_batch_size {BATCH} against 1", "load": "wrk -t1"},
        "points": measured,
        "goals": goals,
    }  # fmt: skip
    emit(rounded(document), args.out)


if __name__ == "__main__":
    main()
