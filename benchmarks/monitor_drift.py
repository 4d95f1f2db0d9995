"""Drift monitoring: ray-mlops' window judgement against Evidently's data drift report.

Both sides compare the same current rows with the same reference, on the quick start's
columns (5 numeric, 8 categorical) of the bundled Adult data:

- the reference: 20,000 rows (``monitor.reference_rows``' default) sampled from a 70% train
  split; the current rows are drawn with a seeded RNG, with replacement, from the other 30%,
  so an undrifted window comes from the reference's population but not from its rows;
- ray-mlops: the current rows as the server captures them (``CAPTURE_SCHEMA``: each record's
  features, prediction and probabilities as JSON text, Hive partitions by day), read with
  ``reader.read_window`` on a local Ray and judged by ``window.evaluate_window`` against a
  ``Reference`` from ``reference.build_reference``, with the ``monitor`` section's defaults
  (alpha 0.05, distance floors 0.1, ``sample_rows`` 100,000). The served model is a fixed
  logistic score of the inputs (no training needed to measure the monitor): its predictions
  and probabilities travel in the capture, so ours also tests the predictions' drift and
  estimates the performance, which Evidently's data drift report does not do;
- Evidently (``baselines/drift_evidently.py``, its own virtualenv): ``DataDriftPreset`` with
  its per-column defaults on the same rows as a Parquet file of plain columns, read with
  pandas, what its users do.

Part 1, throughput: rows/s and peak memory (PSS of the process tree, ``_proc.run_side``) at
1M and 10M current rows, each side in its own process, interleaved; ``ray.init`` is timed
apart. Part 2, detection: many windows of 5,000 rows, stable ones and ones with an injected
drift (a numeric column's mean raised by half its reference standard deviation; 10% of a
categorical column's rows moved to its second most frequent category; 5% of a categorical
column's rows given a category the reference never had), the drifted column rotating over
the columns. A window alarms when any input column is flagged (ours: ``WindowResult``'s
drifted columns; Evidently: its drifted-column count, with its dataset-drift flag beside).
Reported per side: the false-alarm rate on stable windows and the share of drifts found with
the defaults, and the share found at a matched false-alarm rate: each side's per-window score
(ours: the smallest Benjamini-Hochberg adjusted p-value of the input columns, i.e. the
test's level alone without distance floors; Evidently: the largest per-column score over its
threshold) cut on the stable windows so that at most 5% of them alarm.

Usage:
    python benchmarks/monitor_drift.py --quick --out /tmp/monitor_drift.json
    python benchmarks/monitor_drift.py --out benchmarks/results/monitor_drift-cpu2.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _proc import ProcessResult, python, run_side  # noqa: E402
from _report import compare, emit, goal, header, interleaved, rounded, summary  # noqa: E402

DATA_HOME = Path(tempfile.gettempdir()) / "ray-mlops-bench-monitor"
BASELINES = Path(__file__).resolve().parent / "baselines"
INSTALL = BASELINES / "drift_evidently.sh"
OURS, EVIDENTLY = "ray-mlops", "evidently"
MODEL = "adult-income"
TARGET = "income"
LABELS = ["<=50K", ">50K"]
NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = [
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
]
REFERENCE_ROWS = 20_000
TRAIN_SHARE = 0.7
SEED = 0
DAY = datetime(2026, 12, 1, tzinfo=timezone.utc)
ROWS_PER_FILE = 500_000
RECORDS_PER_REQUEST = 8
CAP_GIB = 16.0
MEMORY_GOAL_GIB = 8.0
SPEED_GOAL = 2.0
FALSE_ALARM_GOAL = 0.05
UNSEEN = "<never-seen>"
DRIFT_KINDS = ("numeric_mean_shift", "category_mix", "unseen_category")
# The code measured: the monitor and what its reader and judgement import from elsewhere.
MEASURES = [
    "ray_mlops/monitor",
    "ray_mlops/data/drift.py",
    "ray_mlops/serve/capture.py",
    "ray_mlops/storage.py",
    "ray_mlops/models/outputs.py",
    "ray_mlops/evaluate/metrics.py",
    "ray_mlops/evaluate/fairness.py",
]


# --- data ---------------------------------------------------------------------------------


def adult_splits() -> dict[str, pd.DataFrame]:
    """The reference (a train-like sample), the holdout and the pool current rows come from."""
    from ray_mlops.datasets import adult_path

    frame = pd.read_csv(adult_path())
    shuffled = frame.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    cut = int(TRAIN_SHARE * len(shuffled))
    train, rest = shuffled.iloc[:cut], shuffled.iloc[cut:].reset_index(drop=True)
    reference = train.sample(n=min(REFERENCE_ROWS, len(train)), random_state=SEED)
    return {"reference": reference.reset_index(drop=True), "holdout": rest, "pool": rest}


def served_probabilities(frame: pd.DataFrame) -> np.ndarray:
    """The served model: a fixed logistic score of the inputs; (n, 2) probabilities."""
    age = pd.to_numeric(frame["age"], errors="coerce").fillna(38.0).to_numpy()
    education = pd.to_numeric(frame["education_num"], errors="coerce").fillna(10.0).to_numpy()
    gain = pd.to_numeric(frame["capital_gain"], errors="coerce").fillna(0.0).to_numpy()
    hours = pd.to_numeric(frame["hours_per_week"], errors="coerce").fillna(40.0).to_numpy()
    married = frame["relationship"].isin(["Husband", "Wife"]).to_numpy()
    z = -2.4 + 0.03 * (age - 38) + 0.35 * (education - 10) + 0.0003 * gain
    z = z + 0.03 * (hours - 40) + 2.0 * married
    positive = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return np.column_stack([1.0 - positive, positive])


def with_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the served ``prediction`` and ``probability_<label>`` columns."""
    from ray_mlops.models.outputs import PREDICTION_COLUMN, PROBABILITY_PREFIX

    p = served_probabilities(frame)
    out = frame.copy()
    out[PREDICTION_COLUMN] = np.asarray(LABELS, dtype=object)[p.argmax(axis=1)]
    for i, label in enumerate(LABELS):
        out[f"{PROBABILITY_PREFIX}{label}"] = p[:, i]
    return out


def _record_json(frame: pd.DataFrame) -> list[str]:
    """Each row's features as the capture writes them (JSON, missing as null)."""
    records = frame[[*NUMERIC, *CATEGORICAL]].astype(object)
    records = records.where(records.notna(), None)
    return [json.dumps(r) for r in records.to_dict(orient="records")]


def ensure_inputs(home: Path = DATA_HOME) -> Path:
    """The reference, holdout and pool files, written once."""
    folder = home / "inputs"
    marker = folder / "_COMPLETE"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    splits = adult_splits()
    for name, frame in splits.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    pool = splits["pool"]
    p = served_probabilities(pool)
    texts = pd.DataFrame(
        {
            "features": _record_json(pool),
            "prediction": [json.dumps(LABELS[i]) for i in p.argmax(axis=1)],
            "probabilities": [
                json.dumps(dict(zip(LABELS, map(float, row), strict=True))) for row in p
            ],
        }
    )
    texts.to_parquet(folder / "pool_capture_text.parquet", index=False)
    marker.write_text("ok")
    return folder


def ensure_current(rows: int, home: Path = DATA_HOME) -> dict[str, Path]:
    """``rows`` current rows drawn from the pool: a capture folder and a plain Parquet file.

    Both hold the same rows in the same order (one seeded draw of pool indices), written once
    and reused; the capture spreads them over one day in requests of
    :data:`RECORDS_PER_REQUEST` records.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ray_mlops.serve.capture import CAPTURE_SCHEMA, PARTITION_COLUMN

    inputs = ensure_inputs(home)
    capture = home / f"capture-{rows}"
    plain = home / f"plain-{rows}.parquet"
    marker = home / f"current-{rows}.complete"
    if marker.exists():
        return {"capture": capture, "plain": plain}
    pool = pq.read_table(inputs / "pool.parquet").select([*NUMERIC, *CATEGORICAL])
    texts = pq.read_table(inputs / "pool_capture_text.parquet")
    day = capture / f"{PARTITION_COLUMN}={DAY.date().isoformat()}"
    day.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + rows)
    started = time.perf_counter()
    with pq.ParquetWriter(plain, pool.schema) as writer:
        for part, first in enumerate(range(0, rows, ROWS_PER_FILE)):
            n = min(ROWS_PER_FILE, rows - first)
            take = pa.array(rng.integers(0, pool.num_rows, n))
            writer.write_table(pool.take(take))
            index = np.arange(first, first + n)
            request = pc.cast(pa.array(index // RECORDS_PER_REQUEST), pa.string())
            # Spread over DAY, in order: the window [DAY, DAY + 1 day) holds every row.
            micros = int(DAY.timestamp() * 10**6) + index * (86_400 * 10**6 // rows)
            table = pa.table(
                {
                    "request_id": pc.binary_join_element_wise("req-", request, ""),
                    "time": pa.array(micros, pa.timestamp("us", tz="UTC")),
                    "model_name": pa.array([MODEL] * n, pa.string()),
                    "model_version": pa.array(["1"] * n, pa.string()),
                    "latency_ms": pa.array(np.full(n, 2.0)),
                    "record_index": pa.array(index % RECORDS_PER_REQUEST, pa.int32()),
                    "features": texts.column("features").take(take),
                    "prediction": texts.column("prediction").take(take),
                    "probabilities": texts.column("probabilities").take(take),
                },
                schema=CAPTURE_SCHEMA,
            )
            pq.write_table(table, day / f"part-{part:05d}.parquet")
    marker.write_text(str(rows))
    print(f"generated {rows:,} current rows in {time.perf_counter() - started:.0f} s", flush=True)
    return {"capture": capture, "plain": plain}


# --- ray-mlops, the candidate (runs in its own process: --worker) -------------------------


def _data_config() -> Any:
    from ray_mlops.config import parse_config

    cfg = parse_config(
        {
            "name": MODEL,
            "data": {
                "path": "unused",
                "target": TARGET,
                "id_column": "person_id",
                "numeric": NUMERIC,
                "categorical": CATEGORICAL,
            },
        }
    )
    return cfg


def load_reference(inputs: Path) -> Any:
    """The model version's reference, built as the monitor builds it."""
    from ray_mlops.monitor.reference import build_reference

    cfg = _data_config()
    train_sample = pd.read_parquet(inputs / "reference.parquet")
    holdout = pd.read_parquet(inputs / "holdout.parquet")
    predictions = with_predictions(holdout)
    return build_reference(
        cfg.data, train_sample, holdout, predictions, labels=LABELS, profile=None
    )


def limits(floors: bool = True) -> Any:
    """The ``monitor`` section's defaults as the judgement's thresholds."""
    from ray_mlops.config import MonitorConfig
    from ray_mlops.monitor.window import Limits

    m = MonitorConfig()
    return Limits(
        alpha=m.alpha,
        min_distance={str(k): v for k, v in m.min_distance.items()} if floors else {},
        min_rows=m.min_rows,
    )


def run_ours(capture: Path, inputs: Path) -> dict[str, Any]:
    """read_window + build_reference + evaluate_window over the whole capture, on a local Ray."""
    started = time.perf_counter()
    import ray
    import ray.data

    from ray_mlops.compat.ray_core import local_node_options
    from ray_mlops.config import MonitorConfig
    from ray_mlops.monitor.reader import read_window
    from ray_mlops.monitor.window import Window, evaluate_window

    import_s = time.perf_counter() - started
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        **local_node_options(),
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_s = time.perf_counter() - started - import_s
    start = time.perf_counter()
    reference = load_reference(inputs)
    reference_s = time.perf_counter() - start
    end = DAY + timedelta(days=1)
    records = read_window(
        str(capture),
        MODEL,
        DAY,
        end,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        labels=LABELS,
        sample_rows=MonitorConfig().sample_rows,
    )
    read_s = time.perf_counter() - start - reference_s
    result = evaluate_window(
        Window(MODEL, DAY, end, records.frame, records.versions), reference, limits()
    )
    seconds = time.perf_counter() - start
    ray.shutdown()
    return {
        "seconds": seconds,
        "import_s": import_s,
        "init_s": init_s,
        "stages": {
            "build_reference": reference_s,
            "read_window": read_s,
            "evaluate_window": seconds - reference_s - read_s,
        },
        "rows": records.rows,
        "sampled_rows": len(records.frame),
        "drifted_columns": result.drifted_columns,
        "columns": {
            c.column: {"distance": c.distance, "adjusted_p": c.adjusted_p, "drifted": c.drifted}
            for c in result.columns
        },
    }


def profile_reader(capture: Path) -> dict[str, Any]:
    """Where read_window's time goes (a diagnostic, run after the timed runs).

    ``read_window`` run twice (the first also starts Ray's workers), each Ray Data execution
    inside it timed apart (``Dataset.to_pandas`` wrapped: the version counts, then the
    sampled decode, which reads the files again); a count pass that reads only the three
    columns it needs, for comparison; and the per-file steps in this one process: Parquet
    reads, and the reader's per-record sampling hash and JSON decode where they still have
    the signatures this script knows (a diagnostic must not break on the reader's changes).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import ray.data

    from ray_mlops.compat.ray_core import local_node_options
    from ray_mlops.config import MonitorConfig
    from ray_mlops.monitor import reader

    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        **local_node_options(),
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    executions: list[float] = []
    to_pandas = ray.data.Dataset.to_pandas

    def timed_to_pandas(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = to_pandas(self, *args, **kwargs)
        executions.append(time.perf_counter() - start)
        return out

    ray.data.Dataset.to_pandas = timed_to_pandas  # type: ignore[method-assign]
    sample_rows = MonitorConfig().sample_rows
    totals = []
    for _ in range(2):
        executions.clear()
        start = time.perf_counter()
        records = reader.read_window(
            str(capture),
            MODEL,
            DAY,
            DAY + timedelta(days=1),
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            labels=LABELS,
            sample_rows=sample_rows,
        )
        totals.append(time.perf_counter() - start)
    passes = list(executions)
    ray.data.Dataset.to_pandas = to_pandas  # type: ignore[method-assign]
    day = next(capture.iterdir())

    def count(batch: pa.Table) -> pa.Table:
        grouped = batch.group_by("model_version").aggregate([("time", "count")])
        return grouped.rename_columns(["model_version", "n"])

    start = time.perf_counter()
    ray.data.read_parquet(
        [str(day)], file_extensions=["parquet"], columns=["time", "model_name", "model_version"]
    ).map_batches(count, batch_format="pyarrow").to_pandas()
    narrow_s = time.perf_counter() - start
    ray.shutdown()
    share = min(1.0, sample_rows / max(records.rows, 1))
    schema = pa.schema(
        [
            *(pa.field(c, pa.float64()) for c in NUMERIC),
            *(pa.field(c, pa.string()) for c in CATEGORICAL),
        ]
    )
    steps: dict[str, float] = {}

    def timed(name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            out = function(*args, **kwargs)
        except TypeError as exc:  # the reader changed: say so, measure the rest
            steps[f"{name} (not measured: {exc})"] = math.nan
            return None
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - start
        return out

    for path in sorted(day.glob("*.parquet")):
        table = timed("read_parquet, every column", pq.read_table, path)
        timed("read_parquet, three columns", pq.read_table, path, columns=["time", "model_name"])
        draws = timed("reader._draw: sampling hash per record", reader._draw, table, 0)
        sample = table if draws is None else table.filter(pa.array(draws < share))
        timed(
            "reader._json_lines: the sample's features",
            reader._json_lines,
            sample.column("features"),
            schema,
        )
    return {
        "rows": records.rows,
        "sampled_rows": len(records.frame),
        "read_window_s": totals,
        "ray_data_executions_s": passes,
        "count_pass_three_columns_s": narrow_s,
        "one_process_steps_s": steps,
    }


# --- running a side -----------------------------------------------------------------------


def evidently_python() -> str:
    """The Python of Evidently's virtualenv, installed on first use."""
    done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{INSTALL} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def _columns_args() -> list[str]:
    return ["--numeric", *NUMERIC, "--categorical", *CATEGORICAL]


def side_argv(side: str, paths: dict[str, Path], inputs: Path, evidently: str) -> list[str]:
    if side == OURS:
        return python(__file__, "--worker", str(paths["capture"]), "--inputs", str(inputs))
    return [
        evidently,
        str(BASELINES / "drift_evidently.py"),
        str(inputs / "reference.parquet"),
        str(paths["plain"]),
        *_columns_args(),
    ]


def measure(
    side: str, rows: int, paths: dict[str, Path], inputs: Path, evidently: str, timeout_s: float
) -> dict[str, Any]:
    """One run of one side: its answer, wall time, peak memory, and how it ended."""
    result: ProcessResult = run_side(
        side_argv(side, paths, inputs, evidently), cap_gib=CAP_GIB, timeout_s=timeout_s
    )
    answer = result.answer
    record: dict[str, Any] = {
        "side": side,
        "rows": rows,
        "ok": result.ok and "seconds" in answer,
        "out_of_memory": result.out_of_memory,
        "timed_out": result.timed_out,
        "wall_s": result.wall_s,
        "peak_gib": result.peak_rss_gib,
        "seconds": answer.get("seconds"),
        "init_s": answer.get("init_s"),
        "answer": answer,
    }
    if not record["ok"] and not (result.out_of_memory or result.timed_out):
        record["error"] = result.stderr_tail[-1500:]
    state = "ok" if record["ok"] else _outcome(record)
    seconds = f"{record['seconds']:.1f} s" if record["seconds"] else "-"
    init = f" (+ init {record['init_s']:.1f} s)" if record["init_s"] else ""
    print(
        f"  {side:>10} {rows:>11,} rows: {seconds}{init}, wall {result.wall_s:.1f} s, "
        f"peak {result.peak_rss_gib:.2f} GiB, {state}",
        flush=True,
    )
    if "error" in record:
        print(record["error"], flush=True)
    return record


def _outcome(record: dict[str, Any]) -> str:
    if record["out_of_memory"]:
        return f"out of memory (killed at {CAP_GIB:.0f} GiB)"
    if record["timed_out"]:
        return "timed out"
    if not record["ok"]:
        return "failed"
    return f"{record['peak_gib']:.1f} GiB in {record['seconds']:.0f} s"


def run_size(
    rows: int, reps: int, inputs: Path, evidently: str, timeout_s: float
) -> dict[str, list[dict[str, Any]]]:
    """``reps`` interleaved repetitions of both sides on ``rows`` current rows; a side that
    ran out of memory or time is not run again at this size."""
    paths = ensure_current(rows)
    runs: dict[str, list[dict[str, Any]]] = {OURS: [], EVIDENTLY: []}
    for repetition in range(reps):
        sides = [OURS, EVIDENTLY]
        shift = repetition % 2
        order = [
            s
            for s in sides[shift:] + sides[:shift]
            if not any(r["out_of_memory"] or r["timed_out"] for r in runs[s])
        ]
        done = interleaved(
            1, {s: partial(measure, s, rows, paths, inputs, evidently, timeout_s) for s in order}
        )
        for side, results in done.items():
            runs[side] += results
    return runs


# --- detection ----------------------------------------------------------------------------


def make_windows(
    pool: pd.DataFrame, reference: pd.DataFrame, stable: int, per_kind: int, size: int
) -> list[dict[str, Any]]:
    """Stable windows and windows with one injected drift each, drawn with a seeded RNG."""
    rng = np.random.default_rng(SEED + 1)
    sd = {c: float(np.nanstd(pd.to_numeric(reference[c], errors="coerce"))) for c in NUMERIC}
    second = {c: reference[c].value_counts().index[1] for c in CATEGORICAL}
    plan = [("stable", None)] * stable
    for kind in DRIFT_KINDS:
        columns = NUMERIC if kind == "numeric_mean_shift" else CATEGORICAL
        plan += [(kind, columns[i % len(columns)]) for i in range(per_kind)]
    windows = []
    for number, (kind, column) in enumerate(plan):
        frame = pool.iloc[rng.integers(0, len(pool), size)][[*NUMERIC, *CATEGORICAL]]
        frame = frame.reset_index(drop=True)
        if kind == "numeric_mean_shift":
            frame[column] = pd.to_numeric(frame[column], errors="coerce") + 0.5 * sd[column]
        elif kind in ("category_mix", "unseen_category"):
            share, value = (0.10, second[column]) if kind == "category_mix" else (0.05, UNSEEN)
            moved = rng.random(size) < share
            frame[column] = frame[column].astype(object)
            frame.loc[moved, column] = value
        windows.append({"window": number, "kind": kind, "column": column, "frame": frame})
    return windows


def judge_ours(windows: list[dict[str, Any]], inputs: Path) -> dict[int, dict[str, Any]]:
    """Each window through evaluate_window (in-process: the frames are already decoded)."""
    from ray_mlops.monitor.window import Window, evaluate_window

    reference = load_reference(inputs)
    found = {}
    for w in windows:
        result = evaluate_window(
            Window(MODEL, DAY, DAY + timedelta(hours=1), with_predictions(w["frame"])),
            reference,
            limits(),
        )
        adjusted = [c.adjusted_p for c in result.columns if c.adjusted_p is not None]
        found[w["window"]] = {
            "alarm": bool(result.drifted_columns),
            "drifted": result.drifted_columns,
            # Tuned score: the smallest adjusted p of the inputs (the test alone, no floors).
            "score": -math.log10(max(min(adjusted), 1e-300)) if adjusted else 0.0,
        }
    return found


def judge_evidently(
    windows: list[dict[str, Any]], inputs: Path, evidently: str, timeout_s: float
) -> dict[int, dict[str, Any]]:
    """Each window through Evidently's report, in its virtualenv (one process for all)."""
    path = DATA_HOME / "windows.parquet"
    frames = [w["frame"].assign(window=w["window"]) for w in windows]
    table = pd.concat(frames, ignore_index=True)
    for column in CATEGORICAL:
        table[column] = table[column].astype(object)
    table.to_parquet(path, index=False)
    result = run_side(
        [
            evidently,
            str(BASELINES / "drift_evidently.py"),
            str(inputs / "reference.parquet"),
            str(path),
            "--windows",
            *_columns_args(),
        ],
        cap_gib=CAP_GIB,
        timeout_s=timeout_s,
    )
    if not result.ok or "windows" not in result.answer:
        raise SystemExit(f"Evidently's window reports failed:\n{result.stderr_tail}")
    found = {}
    for key, report in result.answer["windows"].items():
        scores = [
            c["threshold"] / max(c["score"], 1e-300)
            if "p_value" in c["method"]
            else c["score"] / c["threshold"]
            for c in report["columns"].values()
        ]
        drifted = [
            name
            for name, c in report["columns"].items()
            if (
                c["score"] < c["threshold"]
                if "p_value" in c["method"]
                else c["score"] >= c["threshold"]
            )
        ]
        found[int(key)] = {
            "alarm": report["drifted_count"] > 0,
            "dataset_drift": report["dataset_drift"],
            "drifted": drifted,
            "score": max(scores),
            "methods": sorted({c["method"] for c in report["columns"].values()}),
        }
    return found


def detection_rates(
    windows: list[dict[str, Any]], judged: dict[int, dict[str, Any]], target: float
) -> dict[str, Any]:
    """False alarms and drifts found, with the defaults and at a matched false-alarm rate."""
    stable = [judged[w["window"]] for w in windows if w["kind"] == "stable"]
    drifted = {
        kind: [judged[w["window"]] for w in windows if w["kind"] == kind] for kind in DRIFT_KINDS
    }
    every = [j for group in drifted.values() for j in group]
    scores = sorted((j["score"] for j in stable), reverse=True)
    allowed = math.floor(target * len(scores))
    # Alarm above the (allowed + 1)-th highest stable score: at most ``allowed`` false alarms.
    cut = scores[allowed] if scores else math.inf

    def found(group: list[dict[str, Any]], key: str) -> float:
        return sum(bool(j[key]) for j in group) / len(group) if group else math.nan

    def tuned(group: list[dict[str, Any]]) -> float:
        return sum(j["score"] > cut for j in group) / len(group) if group else math.nan

    out: dict[str, Any] = {
        "defaults": {
            "false_alarm_rate": found(stable, "alarm"),
            "detected": found(every, "alarm"),
            "detected_by_kind": {k: found(g, "alarm") for k, g in drifted.items()},
        },
        "matched": {
            "target_false_alarm_rate": target,
            "score_cut": cut,
            "false_alarm_rate": tuned(stable),
            "detected": tuned(every),
            "detected_by_kind": {k: tuned(g) for k, g in drifted.items()},
        },
    }
    if stable and "dataset_drift" in stable[0]:
        out["dataset_drift_flag"] = {
            "false_alarm_rate": found(stable, "dataset_drift"),
            "detected": found(every, "dataset_drift"),
            "detected_by_kind": {k: found(g, "dataset_drift") for k, g in drifted.items()},
        }
    return out


def run_detection(settings: dict[str, Any], inputs: Path, evidently: str) -> dict[str, Any]:
    """Both sides on the same windows; the rates per side."""
    pool = pd.read_parquet(inputs / "pool.parquet")
    reference = pd.read_parquet(inputs / "reference.parquet")
    windows = make_windows(
        pool, reference, settings["stable"], settings["per_kind"], settings["window_rows"]
    )
    started = time.perf_counter()
    ours = judge_ours(windows, inputs)
    ours_s = time.perf_counter() - started
    theirs = judge_evidently(windows, inputs, evidently, settings["timeout_s"])
    theirs_s = time.perf_counter() - started - ours_s
    print(f"  detection: ours {ours_s:.0f} s, evidently {theirs_s:.0f} s", flush=True)
    methods = sorted({m for j in theirs.values() for m in j["methods"]})
    return {
        "windows": {
            "stable": settings["stable"],
            "per_drift_kind": settings["per_kind"],
            "rows_per_window": settings["window_rows"],
            "kinds": {
                "numeric_mean_shift": "mean + 0.5 x the reference's standard deviation, one "
                "numeric column per window, rotating",
                "category_mix": "10% of the rows moved to the column's second most frequent "
                "reference category, one categorical column per window, rotating",
                "unseen_category": f"5% of the rows given the category {UNSEEN!r}, one "
                "categorical column per window, rotating",
            },
        },
        "alarm_rule": (
            "a window alarms when any input column is flagged: ours, WindowResult's drifted "
            "columns (monitor defaults: BH alpha 0.05, distance floors 0.1); Evidently, its "
            "drifted-column count above 0 (DataDriftPreset defaults); Evidently's dataset drift "
            "flag (at least half the columns) is reported beside"
        ),
        "matched_rule": (
            "each side's per-window score cut on the stable windows so that at most "
            f"{FALSE_ALARM_GOAL:.0%} of them alarm (tuned and measured on the same stable "
            "windows): ours -log10 of the smallest BH-adjusted p of the input columns (the "
            "test's level alone, no distance floors); Evidently the largest per-column score "
            "over its threshold (p-value tests: threshold over p)"
        ),
        "evidently_methods": methods,
        "seconds": {OURS: ours_s, EVIDENTLY: theirs_s},
        OURS: detection_rates(windows, ours, FALSE_ALARM_GOAL),
        EVIDENTLY: detection_rates(windows, theirs, FALSE_ALARM_GOAL),
        "per_window": [
            {
                "window": w["window"],
                "kind": w["kind"],
                "column": w["column"],
                OURS: {k: ours[w["window"]][k] for k in ("alarm", "drifted", "score")},
                EVIDENTLY: {
                    k: theirs[w["window"]][k]
                    for k in ("alarm", "dataset_drift", "drifted", "score")
                },
            }
            for w in windows
        ],
    }


# --- plan and main ------------------------------------------------------------------------


def plan(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "sizes": {200_000: 1},
            "timeout_s": 300,
            "detection": {
                "stable": 12,
                "per_kind": 6,
                "window_rows": 2_000,
                "timeout_s": 300,
            },
        }
    return {
        "sizes": {1_000_000: 5, 10_000_000: 1},
        "timeout_s": 900,
        "detection": {"stable": 60, "per_kind": 40, "window_rows": 5_000, "timeout_s": 900},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument("--sizes", type=int, nargs="*", help="only these sizes (development)")
    parser.add_argument("--reps", type=int, help="repetitions (development)")
    parser.add_argument("--no-detection", action="store_true", help="skip part 2")
    parser.add_argument("--no-throughput", action="store_true", help="skip part 1")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_worker:
        print(json.dumps(profile_reader(args.profile_worker), default=float))
        return
    if args.worker:
        print(json.dumps(run_ours(args.worker, args.inputs), default=float))
        return
    began = time.perf_counter()
    load_before = os.getloadavg()
    settings = plan(args.quick)
    evidently = evidently_python()
    inputs = ensure_inputs()
    sizes = {
        n: args.reps or reps
        for n, reps in settings["sizes"].items()
        if not args.sizes or n in args.sizes
    }
    if args.sizes:
        sizes |= {n: args.reps or 1 for n in args.sizes if n not in sizes}
    if args.no_throughput:
        sizes = {}
    for rows in sizes:
        ensure_current(rows)
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for rows, reps in sizes.items():
        print(f"{rows:,} rows, {reps} repetitions, after {time.perf_counter() - began:.0f} s")
        runs[rows] = run_size(rows, reps, inputs, evidently, settings["timeout_s"])
        if args.out:  # an interrupted run keeps the sizes it measured
            emit(rounded(build_document(args.quick, runs, None) | {"partial": True}), args.out)
    profile = None
    if sizes:
        at = min(sizes, key=lambda n: abs(n - 1_000_000))
        print(f"profile of read_window at {at:,} rows", flush=True)
        done = run_side(
            python(__file__, "--profile-worker", str(ensure_current(at)["capture"])),
            timeout_s=settings["timeout_s"],
        )
        profile = done.answer or {"error": done.stderr_tail[-1500:]}
    detection = None
    if not args.no_detection:
        print(f"detection, after {time.perf_counter() - began:.0f} s", flush=True)
        detection = run_detection(settings["detection"], inputs, evidently)
    document = build_document(args.quick, runs, detection)
    if profile is not None:
        document["profile_read_window"] = profile
    document["total_wall_s"] = time.perf_counter() - began
    # Other work on the machine during the run shows here (2 CPUs: a load above 2 competes).
    document["load_average_1_5_15"] = {"before": load_before, "after": os.getloadavg()}
    emit(rounded(document), args.out)


# --- the document -------------------------------------------------------------------------


def _rate(record: dict[str, Any], with_init: bool = False) -> float | None:
    if not record["ok"]:
        return None
    seconds = record["seconds"] + ((record["init_s"] or 0.0) if with_init else 0.0)
    return record["rows"] / seconds


def build_document(
    quick: bool,
    runs: dict[int, dict[str, list[dict[str, Any]]]],
    detection: dict[str, Any] | None,
) -> dict[str, Any]:
    document = header(
        "monitor_drift",
        "ray",
        "pandas",
        "pyarrow",
        "scipy",
        "ray_mlops",
        measures=[
            *MEASURES,
            "benchmarks/baselines/drift_evidently.py",
            "benchmarks/baselines/drift_evidently.sh",
        ],
    )
    document["versions"]["evidently"] = _evidently_version()
    document |= {
        "device": "cpu",
        "quick": quick,
        "memory_cap_gib": CAP_GIB,
        "repetitions": {
            f"{n:,}": {side: len(records) for side, records in sides.items()}
            for n, sides in runs.items()
        },
        "repetitions_note": (
            "5 interleaved repetitions at 1M rows and 1 at 10M (one, to keep the whole run "
            "under 25 minutes on 2 CPUs); a side that ran out of memory or time is not run "
            "again at that size"
        ),
        "inputs": {
            "reference": (
                f"{REFERENCE_ROWS:,} rows sampled from a {TRAIN_SHARE:.0%} train split of the "
                "bundled Adult data (seed 0)"
            ),
            "current": (
                "rows drawn with replacement (seeded RNG) from the other 30% of Adult; the "
                "same rows for both sides"
            ),
            OURS: (
                "capture-format Parquet (CAPTURE_SCHEMA: features, prediction and "
                f"probabilities as JSON text per record, {RECORDS_PER_REQUEST} records per "
                "request, one day's partition) read by reader.read_window with the monitor's "
                "default sample_rows (100,000), judged by evaluate_window against "
                "build_reference's Reference (which ours' timing includes), monitor defaults"
            ),
            EVIDENTLY: (
                "the same rows as one Parquet file of plain columns read with pandas "
                "(pd.read_parquet), then Report([DataDriftPreset()]) with a DataDefinition of "
                "the same numeric and categorical columns; the reference read is timed too"
            ),
            "served_model": (
                "a fixed logistic score of the inputs; ours also tests prediction drift and "
                "estimates performance (CBPE) in the same call, Evidently's data drift report "
                "does not"
            ),
        },
    }
    sizes: dict[str, Any] = {}
    for rows, sides in runs.items():
        entry: dict[str, Any] = {"rows": rows, "sides": {}}
        for side, records in sides.items():
            ok = [r for r in records if r["ok"]]
            entry["sides"][side] = {
                "runs": len(records),
                "ok": len(ok),
                "out_of_memory": sum(r["out_of_memory"] for r in records),
                "timed_out": sum(r["timed_out"] for r in records),
                "seconds": summary([r["seconds"] for r in ok]),
                "rows_per_s": summary([_rate(r) for r in ok]),
                "init_s": summary([r["init_s"] for r in ok if r["init_s"] is not None]),
                "wall_s": summary([r["wall_s"] for r in records]),
                "peak_gib": summary([r["peak_gib"] for r in records]),
                **(
                    {
                        "stages_s": {
                            k: summary([r["answer"]["stages"][k] for r in ok])
                            for k in ok[0]["answer"]["stages"]
                        }
                    }
                    if side == OURS and ok
                    else {}
                ),
                **(
                    {
                        "stages_s": {
                            k: summary([r["answer"][k] for r in ok]) for k in ("read_s", "report_s")
                        }
                    }
                    if side == EVIDENTLY and ok
                    else {}
                ),
                **(
                    {"errors": [r["error"] for r in records if "error" in r][:1]}
                    if any("error" in r for r in records)
                    else {}
                ),
            }
        if sides.get(OURS) and sides.get(EVIDENTLY):
            entry["vs_evidently"] = {
                "rows_per_s": compare(
                    [_rate(r) for r in sides[OURS]],
                    [_rate(r) for r in sides[EVIDENTLY]],
                    higher_is_better=True,
                ),
                "rows_per_s_with_init": compare(
                    [_rate(r, True) for r in sides[OURS]],
                    [_rate(r) for r in sides[EVIDENTLY]],
                    higher_is_better=True,
                ),
                "peak_gib": compare(
                    [r["peak_gib"] for r in sides[OURS]],
                    [r["peak_gib"] for r in sides[EVIDENTLY]],
                    higher_is_better=False,
                ),
            }
        entry["same_work"] = same_work(sides)
        sizes[f"{rows:,}"] = entry
    document["sizes"] = sizes
    if detection is not None:
        document["detection"] = detection
    document["goals"] = goals(runs, sizes, detection)
    return document


def same_work(sides: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Both sides saw every row, and where they both judge a column by the same distance
    (ours on its sample) they agree on the flags: the current rows are undrifted, so a
    flag on either side is a false alarm worth seeing."""
    answers = {s: next((r["answer"] for r in rs if r["ok"]), None) for s, rs in sides.items()}
    ours, theirs = answers.get(OURS), answers.get(EVIDENTLY)
    if not ours or not theirs:
        return {}
    return {
        "rows": {OURS: ours["rows"], EVIDENTLY: theirs["rows"]},
        "same_rows": ours["rows"] == theirs["rows"],
        "ours_sampled_rows": ours["sampled_rows"],
        "drifted_columns": {
            OURS: ours["drifted_columns"],
            EVIDENTLY: sorted(
                name
                for name, c in theirs["columns"].items()
                if ("p_value" not in c["method"] and c["score"] >= c["threshold"])
                or ("p_value" in c["method"] and c["score"] < c["threshold"])
            ),
        },
        "distances": {
            name: {
                OURS: ours["columns"].get(name, {}).get("distance"),
                EVIDENTLY: c["score"],
                "evidently_method": c["method"],
            }
            for name, c in theirs["columns"].items()
        },
    }


def _evidently_version() -> str:
    venv = os.environ.get("EVIDENTLY_VENV", "/tmp/evidently-venv")
    done = subprocess.run(
        [f"{venv}/bin/python", "-c", "import evidently; print(evidently.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "not installed"


def goals(
    runs: dict[int, Any], sizes: dict[str, Any], detection: dict[str, Any] | None
) -> list[dict[str, Any]]:
    out = []
    at = 1_000_000 if f"{1_000_000:,}" in sizes else min(runs, default=0)
    cmp = sizes.get(f"{at:,}", {}).get("vs_evidently")
    if cmp:
        speed, with_init = cmp["rows_per_s"], cmp["rows_per_s_with_init"]
        ours, theirs = speed["ours"], speed["baseline"]
        detail = "not measured: a side failed"
        if ours["median"] and theirs["median"]:
            detail = (
                f"ray-mlops {ours['median'] / 1e3:.0f}k ({ours['min'] / 1e3:.0f}-"
                f"{ours['max'] / 1e3:.0f}k) vs Evidently {theirs['median'] / 1e3:.0f}k "
                f"({theirs['min'] / 1e3:.0f}-{theirs['max'] / 1e3:.0f}k) rows/s, medians of "
                f"{ours['n']}; paired {speed['speedup_paired']:.2f}x; with ray.init "
                f"{with_init['speedup']:.2f}x; peak {cmp['peak_gib']['ours']['median']:.1f} vs "
                f"{cmp['peak_gib']['baseline']['median']:.1f} GiB"
            )
        out.append(
            goal(
                f"drift of {at:,} captured rows on 2 CPUs: rows/s at least {SPEED_GOAL:.0f}x "
                "Evidently's DataDriftPreset (ray.init excluded)",
                speed["speedup"],
                ">=",
                SPEED_GOAL,
                detail=detail,
            )
        )
    big = max(runs, default=0)
    if big >= 10_000_000:
        ours_runs = runs[big][OURS]
        theirs_runs = runs[big].get(EVIDENTLY, [])
        done = [r for r in ours_runs if r["ok"]]
        peak = max((r["peak_gib"] for r in ours_runs), default=None)
        evidently = ", ".join(
            f"Evidently {_outcome(r)}, peak {r['peak_gib']:.1f} GiB" for r in theirs_runs
        )
        ours_detail = (
            f"ray-mlops {done[0]['seconds']:.0f} s (+ ray.init {done[0]['init_s']:.1f} s), "
            f"peak {done[0]['peak_gib']:.1f} GiB"
            if done
            else f"ray-mlops {_outcome(ours_runs[0])}"
        )
        out.append(
            goal(
                f"{big:,} captured rows judged within {MEMORY_GOAL_GIB:.0f} GiB (peak PSS of the "
                "process tree)",
                peak if done else None,
                "<=",
                MEMORY_GOAL_GIB,
                unit="GiB",
                detail=f"{ours_detail}; {evidently or 'Evidently not run'}",
            )
        )
    if detection:
        ours, theirs = detection[OURS], detection[EVIDENTLY]
        windows = detection["windows"]
        out.append(
            goal(
                "drifts found at a matched false-alarm rate (at most 5% of stable windows): "
                "at least Evidently's share",
                round(ours["matched"]["detected"], 4),
                ">=",
                round(theirs["matched"]["detected"], 4),
                unit="",
                detail=(
                    f"{windows['per_drift_kind']} windows of {windows['rows_per_window']:,} rows "
                    f"per drift kind, {windows['stable']} stable; found by kind, ours vs "
                    "Evidently: "
                    + ", ".join(
                        f"{k} {ours['matched']['detected_by_kind'][k]:.0%} vs "
                        f"{theirs['matched']['detected_by_kind'][k]:.0%}"
                        for k in DRIFT_KINDS
                    )
                    + f"; false alarms {ours['matched']['false_alarm_rate']:.0%} vs "
                    f"{theirs['matched']['false_alarm_rate']:.0%}"
                ),
            )
        )
        out.append(
            goal(
                "false-alarm rate on stable windows with the monitor's defaults at most 5%",
                round(ours["defaults"]["false_alarm_rate"], 4),
                "<=",
                FALSE_ALARM_GOAL,
                unit="",
                detail=(
                    f"Evidently's per-column defaults "
                    f"{theirs['defaults']['false_alarm_rate']:.0%} (dataset drift flag "
                    f"{theirs['dataset_drift_flag']['false_alarm_rate']:.0%}); drifts found "
                    f"with the defaults {ours['defaults']['detected']:.0%} vs "
                    f"{theirs['defaults']['detected']:.0%} (dataset drift flag "
                    f"{theirs['dataset_drift_flag']['detected']:.0%})"
                ),
            )
        )
    return out


if __name__ == "__main__":
    main()
