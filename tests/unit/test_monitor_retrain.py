"""The retrain policy: breach, labelled rows, cool-down, each decision with its reason."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest

from ray_mlops.config import parse_config
from ray_mlops.errors import DataError
from ray_mlops.monitor.result import Breach, WindowResult
from ray_mlops.monitor.retrain import decide_retrain
from ray_mlops.monitor.retraining import labelled_rows_as

T0 = datetime(2026, 12, 5, tzinfo=timezone.utc)


def _cfg(**retrain):
    return parse_config(
        {
            "name": "m",
            "data": {"path": "x.csv", "target": "y", "numeric": ["a"], "categorical": ["c"]},
            "monitor": {"retrain": {"enabled": True, "min_labelled_rows": 100, **retrain}},
        }
    )


def _window(hour: int, labelled: int, *signals: str) -> WindowResult:
    start = T0 + timedelta(hours=hour)
    breaches = tuple(Breach(s, "x", 1.0, None, f"{s} breached") for s in signals)  # type: ignore[arg-type]
    return WindowResult(
        "m", ("1",), start, start + timedelta(hours=1), 1000, labelled, True, breaches=breaches
    )


def test_a_breach_with_enough_labels_retrains_and_says_why() -> None:
    policy = _cfg().monitor.retrain
    results = [_window(0, 60), _window(1, 60, "drift")]
    decision = decide_retrain(results, policy, now=T0 + timedelta(hours=2), last_retrain=None)
    assert decision.retrain and decision.signals == ("drift",) and decision.labelled_rows == 120
    assert decision.reason == "drift breached in 2 window(s), with 120 labelled rows"
    assert len(decision.windows) == 2


@pytest.mark.parametrize(
    ("results", "last", "policy", "why"),
    [
        ([_window(0, 500)], None, {}, "no breach of drift"),
        ([_window(0, 50, "drift")], None, {}, "50 labelled rows are fewer than"),
        (
            [_window(3, 500, "drift")],
            T0 + timedelta(hours=2),
            {},
            "within monitor.retrain.cooldown",
        ),
        ([_window(0, 500, "fairness")], None, {"on": ["drift"]}, "no breach of drift"),
        ([_window(0, 500, "drift")], None, {"enabled": False}, "enabled is false"),
    ],
)
def test_what_holds_a_retrain_back_is_named(results, last, policy, why) -> None:  # type: ignore[no-untyped-def]
    decision = decide_retrain(
        results, _cfg(**policy).monitor.retrain, now=T0 + timedelta(hours=5), last_retrain=last
    )
    assert not decision.retrain and why in decision.reason


def test_windows_before_the_last_retrain_do_not_count() -> None:
    results = [_window(0, 500, "drift"), _window(30, 10)]
    decision = decide_retrain(
        results, _cfg(cooldown="1h").monitor.retrain, now=T0 + timedelta(hours=31),
        last_retrain=T0 + timedelta(hours=2),
    )  # fmt: skip
    assert not decision.retrain and decision.labelled_rows == 10 and len(decision.windows) == 1


def test_overlapping_windows_count_their_labelled_rows_once() -> None:
    # A service with --every 20m and a 1h window: each labelled row sits in three windows.
    policy = _cfg().monitor.retrain
    results = [
        WindowResult(
            "m", ("1",), T0 + timedelta(minutes=20 * k), T0 + timedelta(minutes=20 * k + 60),
            1000, 40, True,
            breaches=(Breach("drift", "x", 1.0, None, "drift breached"),) if k == 1 else (),
        )
        for k in range(4)
    ]  # fmt: skip
    decision = decide_retrain(results, policy, now=T0 + timedelta(hours=2), last_retrain=None)
    # Windows 3 (1:00-2:00) and 0 (0:00-1:00) do not overlap: 80 rows, not 160; too few.
    assert decision.labelled_rows == 80 and not decision.retrain
    assert decision.signals == ("drift",) and len(decision.windows) == 4


def test_labelled_captured_rows_take_the_original_schema() -> None:
    cfg = parse_config(
        {
            "name": "m",
            "data": {
                "path": "x.csv", "target": "y", "id_column": "id",
                "numeric": ["a"], "categorical": ["c"],
            },
        }
    )  # fmt: skip
    # A CSV source: numbers read as text (parsed row by row by the data stage), ids inferred.
    schema = pa.schema(
        [("id", pa.int64()), ("a", pa.string()), ("c", pa.string()), ("y", pa.string()),
         ("other", pa.float64())]
    )  # fmt: skip
    captured = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r2"], "record_index": [0, 1, 0],
            "a": [39.0, 2.5, None], "c": ["z", "x", None], "label": ["yes", None, "no"],
        }
    )  # fmt: skip
    table = labelled_rows_as(captured, schema, cfg.data, first_id=101)
    assert table.schema == schema
    # Unlabelled records are left out; new ids follow the original's highest.
    assert table.to_pydict() == {
        "id": [101, 102], "a": ["39", None], "c": ["z", None], "y": ["yes", "no"],
        "other": [None, None],
    }  # fmt: skip
    # Text ids name the record they came from.
    text_ids = schema.set(0, pa.field("id", pa.string()))
    assert labelled_rows_as(captured, text_ids, cfg.data, 0)["id"].to_pylist() == [
        "capture:r1:0",
        "capture:r2:0",
    ]
    # Parquet sources keep numbers as numbers; a label that does not fit the target is named.
    numeric = pa.schema([("a", pa.float64()), ("c", pa.string()), ("y", pa.int64())])
    with pytest.raises(DataError, match="label"):
        labelled_rows_as(captured, numeric, cfg.data, 0)
    with pytest.raises(DataError, match=r"\['c'\]"):
        labelled_rows_as(captured.drop(columns="c"), schema, cfg.data, 0)
