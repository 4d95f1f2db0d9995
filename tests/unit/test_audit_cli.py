"""`ray-mlops audit log|verify`: where the log is found, filters, exit codes and messages."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ray_mlops.audit import actions, audit_log
from ray_mlops.audit_cli import audit_app, parse_when

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)


def _ray_mlops(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, so the exit code and message are what a user sees."""
    code = "from ray_mlops.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _fill(location: Path) -> None:
    log = audit_log(location)
    log.append(action=actions.PROMOTE, target="adult-income/v3", reason="better", actor="alice")
    log.append(
        action=actions.SERVE_DEPLOY,
        target="adult-income@champion",
        outcome="refused",
        reason="needs role deployer",
        actor="bob",
    )
    log.append(action=actions.KEY_CREATE, target="dashboard", actor="root")
    log.append(action=actions.PROMOTE, target="adult-income-v2/v1", actor="alice")


def test_verify_passes_an_intact_log_and_exits_7_naming_the_tampered_record(
    tmp_path: Path,
) -> None:
    _fill(tmp_path / ".ray-mlops" / "audit")
    done = _ray_mlops(tmp_path, "audit", "verify")
    assert done.returncode == 0, done.stderr
    assert "4 records, chain intact" in done.stdout

    log_file = tmp_path / ".ray-mlops" / "audit" / "audit.jsonl"
    lines = log_file.read_bytes().splitlines(keepends=True)
    del lines[1]
    log_file.write_bytes(b"".join(lines))
    done = _ray_mlops(tmp_path, "audit", "verify")
    assert done.returncode == 7
    assert "chain broken: record 1 deleted: line 2 holds record 2" in done.stdout + done.stderr


def test_verify_reads_the_log_the_config_names(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "name: m\ndata: {path: data.csv, target: y, numeric: [x]}\n"
        f"governance: {{audit: {{location: {tmp_path / 'trail'}}}}}\n"
    )
    _fill(tmp_path / "trail")
    done = _ray_mlops(tmp_path, "audit", "verify", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'trail'}: 4 records, chain intact" in done.stdout


def _log_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> list[dict]:
    _fill(tmp_path / ".ray-mlops" / "audit")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(audit_app, ["log", "--json", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_log_filters_by_model_actor_and_action_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _log_rows(tmp_path, monkeypatch, "--model", "adult-income")
    assert [r["target"] for r in rows] == ["adult-income/v3", "adult-income@champion"]
    rows = _log_rows(tmp_path / "a", monkeypatch, "--actor", "alice", "--action", "model")
    assert [r["seq"] for r in rows] == [0, 3]
    rows = _log_rows(tmp_path / "b", monkeypatch, "--action", "key.create")
    assert [(r["actor"], r["hash"] != "") for r in rows] == [("root", True)]


def test_log_filters_by_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(_log_rows(tmp_path, monkeypatch, "--since", "1h")) == 4
    assert _log_rows(tmp_path / "a", monkeypatch, "--until", "2000-01-01") == []
    assert len(_log_rows(tmp_path / "b", monkeypatch, "--until", "2999-01-01T00:00+00:00")) == 4


def test_log_prints_a_table_with_the_outcomes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(tmp_path / ".ray-mlops" / "audit")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(audit_app, ["log", "--actor", "bob"])
    assert result.exit_code == 0, result.output
    assert "serve.deploy" in result.stdout and "refused" in result.stdout
    assert "alice" not in result.stdout


def test_times_are_durations_back_from_now_or_iso_times() -> None:
    assert parse_when("2h", NOW) == NOW - dt.timedelta(hours=2)
    assert parse_when("7d", NOW) == NOW - dt.timedelta(days=7)
    assert parse_when("2026-12-01T08:30", NOW) == dt.datetime(
        2026, 12, 1, 8, 30, tzinfo=dt.timezone.utc
    )
    with pytest.raises(typer.BadParameter, match="duration back from now"):
        parse_when("last week", NOW)
