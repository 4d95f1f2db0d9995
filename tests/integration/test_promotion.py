"""The gate, the alias history, rollback, lineage and webhooks across real pipeline runs.

Real Ray, real MLflow (SQLite), a real local HTTP server receiving the webhooks. A weak
model, trained on other columns, becomes champion (there is none), a strong one replaces it
(judged against it on the same frozen holdout), an identical retrain is registered but
refused as noise, a rollback restores the weak one, and ``promote`` moves it forward again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from ray_mlops.config import load_config
from ray_mlops.pipeline import PipelineResult, run_pipeline
from ray_mlops.promotion.operations import promote, rollback
from ray_mlops.registry.aliases import alias_history, alias_target
from ray_mlops.registry.lineage import version_lineage
from ray_mlops.workspace import Workspace
from tests.conftest import free_port, write_config

pytestmark = pytest.mark.usefixtures("ray_session")

NAME = "adult-gate"
WEAK = {"epochs": 1, "learning_rate": 1e-5, "num_workers": 1}
# The weak model sees other columns than the strong one: the gate scores each with its own.
WEAK_DATA = {"numeric": ["capital_loss"], "categorical": ["race"]}
STRONG = {"epochs": 4, "learning_rate": 0.01, "num_workers": 1}


RECEIVED: list[dict[str, Any]] = []


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"].startswith("application/json")
        RECEIVED.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", RECEIVED
    server.shutdown()


def _run(
    workspace: Path, uri: str, hook: str, train: dict[str, Any], data: dict[str, Any]
) -> PipelineResult:
    config = write_config(
        workspace,
        {
            "name": NAME,
            "tracking": {"tracking_uri": uri},
            "train": train,
            "gate": {"bootstrap_samples": 300, "slice_tolerance": None},
            "notify": {"webhook_url": hook, "retries": 2},
            "registry": {"intended_use": "tests of the gate", "limitations": ["3000 rows"]},
        },
        **data,
    )
    return run_pipeline(load_config(config), Console(quiet=True), workspace=Workspace(workspace))


@pytest.fixture(scope="module")
def history(
    workspace: Path, tracking_uri: str, webhook: tuple[str, list[dict[str, Any]]]
) -> list[PipelineResult]:
    hook, _ = webhook
    runs = ((WEAK, WEAK_DATA), (STRONG, {}), (STRONG, {}))
    return [_run(workspace, tracking_uri, hook, train, data) for train, data in runs]


def test_gate_promotes_better_and_refuses_noise(
    history: list[PipelineResult], tracking_uri: str
) -> None:
    weak, strong, twin = history
    assert (weak.model_version, weak.promoted) == ("1", True)
    assert "no champion yet" in weak.decision
    assert (strong.model_version, strong.promoted) == ("2", True)
    assert strong.test_metrics["roc_auc"] > weak.test_metrics["roc_auc"] + 0.05
    # The same config retrained is the same model: its gain is zero, within noise.
    assert (twin.model_version, twin.promoted) == ("3", False)
    assert "beats champion on roc_auc" in twin.decision
    client = MlflowClient(tracking_uri)
    assert alias_target(client, NAME, "champion") == "2"
    refused = client.get_model_version(NAME, "3")
    assert refused.tags["ray_mlops.gate"] == "failed"
    assert refused.tags["ray_mlops.promoted"] == "false"
    assert "beats champion" in refused.tags["ray_mlops.gate_reasons"]
    # The rule table is saved with the run the version points at.
    gate = json.loads(Path(client.download_artifacts(refused.run_id, "gate/gate.json")).read_text())
    assert gate["verdict"] == "failed"
    assert any(r["rule"] == "beats champion on roc_auc" and not r["passed"] for r in gate["rules"])
    # Evaluation report, card and frozen holdout are there too.
    for artifact in (
        "evaluation/evaluation.json",
        "evaluation/evaluation.html",
        "evaluation/holdout.parquet",
        "model_card/model_card.md",
        "model_card/model_card.html",
    ):
        assert Path(client.download_artifacts(refused.run_id, artifact)).stat().st_size > 0
    card = Path(client.download_artifacts(refused.run_id, "model_card/model_card.md")).read_text()
    assert "tests of the gate" in card and "3000 rows" in card


def test_webhook_received_every_event_with_its_payload(
    history: list[PipelineResult], webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    _, received = webhook
    events = [(m["event"], m["version"]) for m in received if m["model"] == NAME]
    assert events[:6] == [
        ("model_version_created", "1"),
        ("model_promoted", "1"),
        ("model_version_created", "2"),
        ("model_promoted", "2"),
        ("model_version_created", "3"),
        ("model_rejected", "3"),
    ]
    promoted = next(m for m in received if m["event"] == "model_promoted" and m["version"] == "2")
    assert promoted["previous_version"] == "1" and promoted["alias"] == "champion"
    rejected = next(m for m in received if m["event"] == "model_rejected")
    assert any("beats champion" in r for r in rejected["reasons"])


def test_rollback_restores_the_previous_champion_and_promote_moves_forward(
    history: list[PipelineResult],
    tracking_uri: str,
    webhook: tuple[str, list[dict[str, Any]]],
    workspace: Path,
) -> None:
    client = MlflowClient(tracking_uri)
    move = rollback(tracking_uri, NAME, "v2 misbehaves in production")
    assert (move.from_version, move.to_version, move.kind) == ("2", "1", "rollback")
    assert alias_target(client, NAME, "champion") == "1"
    assert client.get_model_version(NAME, "2").tags["ray_mlops.rolled_back"] == "true"
    # v3 (as good as v2) now beats the restored weak champion through the gate.
    outcome = promote(tracking_uri, NAME, "3", reason="retrained after the incident")
    assert outcome.moved and outcome.gate is not None and outcome.gate.passed
    assert alias_target(client, NAME, "champion") == "3"
    # A forced promotion skips the gate and says so.
    forced = subprocess.run(
        [
            sys.executable, "-m", "ray_mlops", "promote", NAME, "1",
            "--reason", "drill", "--force", "--tracking-uri", tracking_uri,
        ],
        capture_output=True, text=True, cwd=workspace, timeout=120,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert client.get_model_version(NAME, "1").tags["ray_mlops.gate"] == "forced"
    moves = alias_history(client, NAME)
    assert [(m.from_version, m.to_version, m.kind) for m in moves] == [
        (None, "1", "promote"),
        ("1", "2", "promote"),
        ("2", "1", "rollback"),
        ("1", "3", "promote"),
        ("3", "1", "force"),
    ]
    assert moves[2].why == "v2 misbehaves in production" and moves[4].why == "drill"
    shown = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "models", "history", NAME, "--tracking-uri", tracking_uri],
        capture_output=True, text=True, cwd=workspace, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0 and "rollback" in shown.stdout and "drill" in shown.stdout
    _, received = webhook
    assert any(m["event"] == "model_rolled_back" and m["version"] == "1" for m in received)


def test_lineage_chains_version_to_run_data_config_and_commit(
    history: list[PipelineResult], tracking_uri: str, workspace: Path
) -> None:
    client = MlflowClient(tracking_uri)
    strong = history[1]
    chain = version_lineage(client, NAME, "2")
    run = client.get_run(strong.run_id)
    assert chain.run_id == strong.run_id
    assert chain.dataset_fingerprint == strong.dataset_fingerprint
    assert chain.config_hash == run.data.tags["ray_mlops.config_hash"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert chain.git_commit == head
    assert "income" in chain.schema and chain.search_trial is None
    labels = [label for label, _ in chain.steps()]
    assert labels == [
        "model version",
        "training run",
        "search trial",
        "dataset fingerprint",
        "data source",
        "schema",
        "config hash",
        "git commit",
    ]
    shown = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "models", "lineage", NAME, "2", "--tracking-uri", tracking_uri],
        capture_output=True, text=True, cwd=workspace, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert strong.run_id in shown.stdout and head in shown.stdout


def test_catalog_commands_list_show_and_search(
    history: list[PipelineResult], tracking_uri: str, workspace: Path
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ray_mlops", "models", *args, "--tracking-uri", tracking_uri],
            capture_output=True,
            text=True,
            cwd=workspace,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )

    listed = cli("list")
    assert listed.returncode == 0 and NAME in listed.stdout
    strong_auc = history[1].test_metrics["roc_auc"]
    found = cli("search", f"name:{NAME} roc_auc>={strong_auc - 1e-4:.6f}")
    assert found.returncode == 0, found.stderr
    rows = [line for line in found.stdout.splitlines() if NAME in line and "│" in line]
    assert {line.split("│")[2].strip() for line in rows} == {"2", "3"}
    assert cli("search", f"name:{NAME} roc_auc>1.5").returncode == 1
    bad = cli("search", "roc_auc~1")
    assert bad.returncode == 2 and "search term 'roc_auc~1'" in bad.stderr
    shown = cli("show", NAME, "2")
    assert shown.returncode == 0
    # v2 passed the gate in its run; its metrics and card are listed.
    assert "gate: passed" in shown.stdout and "roc_auc" in shown.stdout
    assert "model_card.html" in shown.stdout


def test_large_test_sets_are_scored_with_ray_data_batch_inference(
    history: list[PipelineResult], tracking_uri: str, tmp_path: Path
) -> None:
    import pandas as pd

    from ray_mlops.mlflow_names import HOLDOUT_FILE
    from ray_mlops.promotion.judge import predict_holdout
    from ray_mlops.registry.champion import load_version

    client = MlflowClient(tracking_uri)
    version = client.get_model_version(NAME, "2")
    holdout = pd.read_parquet(client.download_artifacts(version.run_id, HOLDOUT_FILE))
    model, local = load_version(tracking_uri, NAME, "2", str(tmp_path))
    in_process = predict_holdout(model, local, holdout, batch_min_rows=10**9)
    batched = predict_holdout(model, local, holdout, batch_min_rows=1)
    assert len(batched) == len(holdout)
    pd.testing.assert_frame_equal(batched, in_process, check_dtype=False)
