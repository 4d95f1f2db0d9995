"""Data drift with Evidently's DataDriftPreset, as its docs show: the baseline of monitor_drift.py.

Runs in Evidently's own virtualenv (``drift_evidently.sh`` creates it; Evidently is no
dependency of the project). The reference and the current rows are Parquet files of plain
columns read with pandas, what Evidently's users do; the columns are declared with a
``DataDefinition`` (the same numeric and categorical columns the monitor is configured with),
and the preset keeps its per-column defaults: above 1,000 reference rows, the normed
Wasserstein distance for numeric columns and the Jensen-Shannon distance for categorical
ones, each with threshold 0.1, and dataset drift when at least half the columns drifted.

Two modes:

- ``REFERENCE CURRENT``: one report of the whole current file; prints the time to read and
  to run the report;
- ``REFERENCE WINDOWS --windows``: one report per window (the ``window`` column of the file
  numbers them); prints each window's flags and scores.

The last line printed is one JSON object.

Usage:
    python drift_evidently.py REFERENCE.parquet CURRENT.parquet --numeric A B --categorical C D
    python drift_evidently.py REFERENCE.parquet WINDOWS.parquet --windows --numeric ... --categorical ...
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

WINDOW = "window"


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
) -> dict[str, Any]:
    """One DataDriftPreset report: Evidently's dataset flag, drifted-column count, per-column scores."""
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset()])
    evaluation = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    found: dict[str, Any] = {"columns": {}}
    for metric in evaluation.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            found["drifted_count"] = int(metric["value"]["count"])
            found["drifted_share"] = float(metric["value"]["share"])
            found["dataset_drift"] = found["drifted_share"] >= config["drift_share"]
        elif config["type"].endswith("ValueDrift"):
            found["columns"][config["column"]] = {
                "method": config["method"],
                "score": float(metric["value"]),
                "threshold": float(config["threshold"]),
            }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="Parquet file of the reference rows")
    parser.add_argument("current", help="Parquet file of the current rows (or of the windows)")
    parser.add_argument("--numeric", nargs="+", required=True)
    parser.add_argument("--categorical", nargs="+", required=True)
    parser.add_argument("--windows", action="store_true", help="one report per window")
    args = parser.parse_args()
    columns = [*args.numeric, *args.categorical]
    started = time.perf_counter()
    reference = pd.read_parquet(args.reference, columns=columns)
    if args.windows:
        frames = pd.read_parquet(args.current, columns=[WINDOW, *columns])
        windows = {
            int(key): drift_report(
                reference, frame.drop(columns=WINDOW), args.numeric, args.categorical
            )
            for key, frame in frames.groupby(WINDOW, sort=True)
        }
        print(json.dumps({"windows": windows}))
        return
    current = pd.read_parquet(args.current, columns=columns)
    read_s = time.perf_counter() - started
    found = drift_report(reference, current, args.numeric, args.categorical)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "read_s": read_s,
                "report_s": seconds - read_s,
                "rows": len(current),
                **found,
            }
        )
    )


if __name__ == "__main__":
    main()
