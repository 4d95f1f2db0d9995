"""The monitor over real traffic: the frozen model served by Ray Serve with capture on, rows
of Adult the model never saw replayed through HTTP window by window (some with a known drift
injected), labels posted to the feedback endpoint, and the monitor judging the captured windows
from MLflow's reference; then retrains through the same gate, one the gate refuses (the
champion keeps serving) and one it passes (the server answers with the new version, no
request failing on the way)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from ray_mlops.config import PipelineConfig, load_config
from ray_mlops.datasets import adult_path
from ray_mlops.monitor.service import (
    DRIFT_EVENT,
    REPORT_HTML,
    TAG_RETRAIN_DECISION,
    TAG_RETRAIN_RESULT,
    Monitor,
    monitor_range,
    watch,
)
from ray_mlops.notify import notifier_for
from ray_mlops.serve.guard import generate_key, hash_key
from ray_mlops.serve.launch import ServedModel, deploy_model, stop_serving
from ray_mlops.workspace import Workspace
from tests.conftest import TEST_ROWS, free_port, write_config
from tests.integration.test_alerting import Receiver

MODEL = "adult-monitor"
KEY = generate_key()
INPUTS = [
    "age", "education_num", "capital_gain", "hours_per_week",
    "workclass", "education", "marital_status", "occupation", "sex",
]  # fmt: skip
WINDOW_S = 2.0


@dataclass
class Setup:
    directory: Path
    cfg: PipelineConfig
    served: ServedModel
    champion: str
    unseen: pd.DataFrame  # Adult rows the model never saw, with their labels


@pytest.fixture(scope="module")
def setup(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory, tracking_uri: str
) -> Iterator[Setup]:
    """A weak champion (one short epoch) trained on the first rows, served with capture."""
    from rich.console import Console

    from ray_mlops.pipeline import run_pipeline

    directory = tmp_path_factory.mktemp("monitoring")
    with gzip.open(adult_path(), "rt") as handle:
        adult = pd.read_csv(handle, nrows=20_000, keep_default_na=True)
    adult.head(TEST_ROWS).to_csv(directory / "sample.csv", index=False)
    overrides: dict[str, Any] = {
        "name": MODEL,
        "tracking": {"tracking_uri": tracking_uri},
        "train": {"num_workers": 1, "epochs": 1, "batch_size": 256, "learning_rate": 0.003},
        "serve": {
            "auth": {
                "enabled": True,
                "keys": [{"name": "app", "sha256": hash_key(KEY), "role": "predict"}],
            },
            "rate_limit": {"requests_per_s": 10_000, "burst": 10_000},
            "capture": {"enabled": True, "sample_rate": 1.0, "flush_interval_s": 0.2},
            "max_records": 1000,
            "max_body_bytes": 2_000_000,
            "alias_poll_s": 0.5,
            "cpus_per_replica": 0.25,
        },
        "monitor": {"window": f"{int(WINDOW_S)}s", "min_rows": 100},
        "gate": {"slice_tolerance": None},
    }
    config = write_config(directory, overrides)
    loaded = load_config(config)
    workspace = Workspace(directory)
    run_pipeline(loaded, Console(quiet=True), workspace=workspace)
    cfg = loaded.pipeline
    served = deploy_model(cfg, tracking_uri, base_dir=directory, workspace=workspace)
    try:
        yield Setup(directory, cfg, served, served.version, adult.iloc[TEST_ROWS:])
    finally:
        stop_serving()


def _monitor(
    setup: Setup, tracking_uri: str, webhook_url: str | None = None, **monitor: Any
) -> Monitor:
    section = setup.cfg.monitor.model_validate(
        {**setup.cfg.monitor.model_dump(mode="json"), **monitor}
    )
    notify = setup.cfg.notify.model_copy(update={"webhook_url": webhook_url, "retries": 0})
    cfg = setup.cfg.model_copy(update={"monitor": section, "notify": notify})
    return Monitor(
        cfg,
        Workspace(setup.directory),
        tracking_uri,
        notifier_for(cfg.notify),
        config_source=setup.directory / f"{MODEL}.yaml",
    )


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    rows = frame[INPUTS].astype(object)
    return json.loads(rows.where(rows.notna(), None).to_json(orient="records"))


def _predict(served: ServedModel, frame: pd.DataFrame) -> tuple[str, str]:
    """(request id, version) of one prediction request for ``frame``'s rows."""
    response = requests.post(
        served.predict_url,
        json={"records": _records(frame)},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"], response.json()["model_version"]


def _feedback(served: ServedModel, request_id: str, labels: pd.Series) -> None:
    body = {
        "labels": [
            {"request_id": request_id, "record_index": i, "label": str(label)}
            for i, label in enumerate(labels)
        ]
    }
    url = f"{served.base_url}/v1/models/{MODEL}/feedback"
    response = requests.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert response.status_code == 202 and response.json() == {"accepted": len(labels)}


def _replay(
    setup: Setup, windows: list[pd.DataFrame], label: bool = False, length: float = WINDOW_S
) -> datetime:
    """Send each frame inside its own window of ``length`` seconds (aligned to the monitor's
    windows); post the labels of each answered record when ``label``. Returns the first
    window's start."""
    now = time.time()
    first = (int(now / length) + 1) * length
    for i, frame in enumerate(windows):
        time.sleep(max(0.0, first + i * length + 0.05 - time.time()))
        for start in range(0, len(frame), 1000):
            chunk = frame.iloc[start : start + 1000]
            request_id, _ = _predict(setup.served, chunk)
            if label:
                _feedback(setup.served, request_id, chunk["income"])
        assert time.time() < first + (i + 1) * length, "a window's requests overran it"
    time.sleep(max(0.0, first + len(windows) * length - time.time()) + 1.5)  # capture flush
    return datetime.fromtimestamp(first, timezone.utc)


def _judge(monitor: Monitor, since: datetime, count: int) -> list[Any]:
    return monitor_range(monitor, since, since + timedelta(seconds=WINDOW_S * count))


def test_injected_drifts_are_flagged_in_their_window_and_named_in_the_report(
    setup: Setup, tracking_uri: str
) -> None:
    rng = np.random.default_rng(7)
    stable = setup.unseen.sample(400, random_state=1)
    shifted = setup.unseen.sample(400, random_state=2).copy()
    shifted["age"] = shifted["age"] + 0.5 * setup.unseen["age"].std()
    mix = setup.unseen.sample(400, random_state=3).copy()
    mix["sex"] = rng.choice(["Male", "Female"], size=len(mix), p=[0.2, 0.8])
    unseen = setup.unseen.sample(400, random_state=4).copy()
    unseen.loc[unseen.index[:80], "occupation"] = "Space-pilot"
    since = _replay(setup, [stable, shifted, mix, unseen])
    receiver = Receiver()
    try:
        monitor = _monitor(setup, tracking_uri, webhook_url=receiver.url)
        results = _judge(monitor, since, 4)
        monitor.notifier.close(timeout_s=10)
    finally:
        receiver.stop()
    assert [r.rows for r in results] == [400] * 4
    assert not results[0].drifted_columns and not results[0].alarmed
    for result, column in zip(results[1:], ["age", "sex", "occupation"], strict=True):
        assert column in result.drifted_columns, (column, result.drifted_columns)
        assert any(b.signal == "drift" for b in result.breaches)
    # One MLflow run per window in the monitoring experiment, its report naming the column.
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(setup.cfg.monitoring_experiment_name)
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=10
    )
    assert [r.data.tags["ray_mlops.alarmed"] for r in runs[-4:]] == [
        "false",
        "true",
        "true",
        "true",
    ]
    assert runs[-3].data.metrics["drift.age.adjusted_p"] < 0.05
    report = Path(client.download_artifacts(runs[-1].info.run_id, REPORT_HTML)).read_text()
    # The breach names the column; the drift table shows its share of unseen categories
    # (among the rows with a value).
    share = 80 / unseen["occupation"].notna().sum()
    assert "<td>drift</td><td>occupation</td>" in report and f"{share:.1%}</td>" in report
    # The project's webhook: one model_drift event per alarmed window, naming its run and column.
    events = [body for _, body in receiver.messages if body.get("event") == DRIFT_EVENT]
    assert [e["run_id"] for e in events] == [r.info.run_id for r in runs[-3:]]
    assert [
        {b["name"] for b in e["breaches"]} >= {c}
        for e, c in zip(events, ["age", "sex", "occupation"], strict=True)
    ] == [True] * 3


def test_the_service_judges_the_last_window_every_tick_and_serves_its_series(
    setup: Setup, tracking_uri: str
) -> None:
    monitor = _monitor(setup, tracking_uri, window="2s", metrics_port=free_port())
    stop, urls, judged = threading.Event(), [], []
    service = threading.Thread(
        target=watch,
        args=(monitor, timedelta(seconds=1), stop),
        kwargs={"on_window": judged.append, "on_serving": urls.append},
    )
    service.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(r.rows for r in judged):
            _predict(setup.served, setup.unseen.sample(150, random_state=len(judged)))
            time.sleep(0.5)
        (url,) = urls
        text = requests.get(url, timeout=10).text
    finally:
        stop.set()
        service.join(timeout=30)
    assert not service.is_alive() and len(judged) >= 2
    assert all(r.end - r.start == timedelta(seconds=2) for r in judged)
    rows = next(r.rows for r in judged if r.rows)
    assert 0 < rows < 1000  # the last 2 s of traffic, not all that was captured before
    assert f'ray_mlops_monitor_window_rows{{model="{MODEL}"}}' in text
    with pytest.raises(requests.ConnectionError):  # the series stop with the service
        requests.get(url, timeout=5)


def test_a_stable_stream_over_50_windows_alarms_at_most_at_the_stated_rate(
    setup: Setup, tracking_uri: str
) -> None:
    windows = [setup.unseen.sample(300, random_state=100 + i) for i in range(50)]
    since = _replay(setup, windows, length=1.0)
    monitor = _monitor(setup, tracking_uri, window="1s")
    # Judged as `ray-mlops monitor` judges them (one scan of the capture), without writing
    # 50 MLflow runs and reports: the other tests here check those.
    bounds = [(since + timedelta(seconds=i), since + timedelta(seconds=i + 1)) for i in range(50)]
    results = [judged.result for judged in monitor.judge(bounds)]
    assert all(r.rows == 300 and r.tested for r in results)
    false_alarms = sum(bool(r.drifted_columns) for r in results)
    # Benjamini-Hochberg at alpha keeps the share of windows with a false alarm about alpha.
    assert false_alarms <= monitor.cfg.monitor.alpha * len(results), [
        r.drifted_columns for r in results
    ]


def test_estimated_accuracy_is_within_003_of_realised_on_shifted_inputs(
    setup: Setup, tracking_uri: str
) -> None:
    # Covariate shift, same concept: older, married people over-represented.
    older = setup.unseen[setup.unseen["age"] >= 40]
    shifted = pd.concat([older.head(1600), setup.unseen[setup.unseen["age"] < 40].head(400)])
    since = _replay(setup, [shifted], label=True)
    time.sleep(2.0)  # the feedback sink's flush
    (result,) = _judge(_monitor(setup, tracking_uri), since, 1)
    assert result.rows == 2000 and result.labelled_rows == 2000
    assert "age" in result.drifted_columns
    estimated = result.estimated.metrics["accuracy"]
    realised = result.realised.metrics["accuracy"]
    assert abs(estimated - realised) <= 0.03, (estimated, realised)


def test_feedback_takes_the_predict_keys_and_names_each_bad_label(setup: Setup) -> None:
    url = f"{setup.served.base_url}/v1/models/{MODEL}/feedback"
    body = {"labels": [{"request_id": "r-1", "label": ">50K"}]}
    assert requests.post(url, json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-a-key"}
    assert requests.post(url, json=body, headers=wrong, timeout=30).status_code == 401
    bad = {
        "labels": [
            {"request_id": "r-1", "label": ">50K"},
            {"request_id": "", "label": ">50K"},
            {"request_id": "r-3", "label": ">50K", "record_index": -1},
        ]
    }
    response = requests.post(url, json=bad, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert response.status_code == 422, response.text
    message = response.json()["error"]
    # Both bad labels are named, by position and field; none of the post is stored.
    assert "label 2, request_id" in message and "label 3, record_index" in message, message
    assert "nothing was written" in message


def _labelled_drifted_window(setup: Setup, seed: int) -> datetime:
    frame = setup.unseen.sample(600, random_state=seed).copy()
    frame["age"] = frame["age"] + 0.5 * setup.unseen["age"].std()
    return _replay(setup, [frame], label=True)


def _champion(tracking_uri: str) -> str:
    return str(MlflowClient(tracking_uri).get_model_version_by_alias(MODEL, "champion").version)


def test_a_retrain_the_gate_refuses_leaves_the_champion_serving(
    setup: Setup, tracking_uri: str
) -> None:
    since = _labelled_drifted_window(setup, seed=11)
    time.sleep(2.0)
    strict = setup.cfg.gate.model_copy(update={"minimums": {"accuracy": 0.99}})
    monitor = _monitor(
        setup, tracking_uri, retrain={"enabled": True, "min_labelled_rows": 500, "cooldown": "1s"}
    )
    monitor.cfg = monitor.cfg.model_copy(update={"gate": strict})
    (result,) = _judge(monitor, since, 1)
    assert result.alarmed and result.labelled_rows == 600
    client = MlflowClient(tracking_uri)
    window_run = client.search_runs(
        [monitor.tracker.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert window_run.data.tags[TAG_RETRAIN_DECISION] == "yes"
    assert window_run.data.tags[TAG_RETRAIN_RESULT] == "rejected"
    retrain = json.loads(
        Path(client.download_artifacts(window_run.info.run_id, "retrain.json")).read_text()
    )
    assert retrain["outcome"]["promoted"] is False and retrain["outcome"]["labelled_rows"] == 600
    pipeline_run = client.get_run(retrain["outcome"]["run_id"])
    assert pipeline_run.data.tags["ray_mlops.retrain.monitor_run"] == window_run.info.run_id
    assert since.isoformat() in pipeline_run.data.tags["ray_mlops.retrain.windows"]
    assert _champion(tracking_uri) == setup.champion
    _, version = _predict(setup.served, setup.unseen.head(3))
    assert version == setup.champion


def test_drift_retrain_gate_promote_and_the_server_answers_with_the_new_version(
    setup: Setup, tracking_uri: str
) -> None:
    since = _labelled_drifted_window(setup, seed=12)
    time.sleep(2.0)
    # The retrain trains properly (the champion had one short epoch): it beats the champion.
    monitor = _monitor(
        setup, tracking_uri, retrain={"enabled": True, "min_labelled_rows": 500, "cooldown": "1s"}
    )
    better = monitor.cfg.train.model_copy(update={"epochs": 4, "learning_rate": 0.01})
    monitor.cfg = monitor.cfg.model_copy(update={"train": better})
    statuses: Counter[int] = Counter()
    versions: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        body = {"records": _records(setup.unseen.head(2))}
        while not stop.is_set():
            response = requests.post(
                setup.served.predict_url,
                json=body,
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30,
            )
            statuses[response.status_code] += 1
            if response.ok:
                versions.append(response.json()["model_version"])
            time.sleep(0.05)

    load = threading.Thread(target=traffic)
    load.start()
    try:
        (result,) = _judge(monitor, since, 1)
        new = _champion(tracking_uri)
        deadline = time.monotonic() + 30
        while (not versions or versions[-1] != new) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop.set()
        load.join()
    assert result.alarmed
    assert new != setup.champion
    assert statuses == Counter({200: sum(statuses.values())}), statuses
    assert versions[0] == setup.champion and versions[-1] == new
    client = MlflowClient(tracking_uri)
    window_run = client.search_runs(
        [monitor.tracker.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert window_run.data.tags[TAG_RETRAIN_RESULT] == "promoted"
    assert window_run.data.tags["ray_mlops.model_version"] == new
    # The new version's training set held the original rows and the labelled captured ones.
    lineage = client.get_run(window_run.data.tags["ray_mlops.retrain.run"]).data.tags
    assert lineage["ray_mlops.retrain.labelled_rows"] == "600"
