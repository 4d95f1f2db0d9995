"""The audit trail: records, the chain, tampering of every kind, the actor, concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from ray_mlops.audit import (
    GENESIS_HASH,
    AuditLog,
    AuditRecord,
    VerifyResult,
    actions,
    audit_log,
    audit_log_for,
    current_actor,
    key_actor,
)
from ray_mlops.errors import AuditError


def _log(tmp_path: Path, n: int = 10) -> AuditLog:
    log = audit_log(tmp_path / "audit")
    for i in range(n):
        log.append(
            action=actions.PROMOTE if i % 2 else actions.REGISTER,
            target=f"adult-income/v{i}",
            reason=f"step {i}",
            actor="alice" if i % 3 else "bob",
            details={"i": i, "note": 'ünïcode "quoted"', "nested": {"outcome": "ok"}},
        )
    return log


def _lines(tmp_path: Path) -> list[bytes]:
    return (tmp_path / "audit" / "audit.jsonl").read_bytes().splitlines()


def _write(tmp_path: Path, lines: list[bytes]) -> None:
    (tmp_path / "audit" / "audit.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def _tampered(tmp_path: Path, change: Callable[[list[bytes]], None]) -> VerifyResult:
    """Verify a 10-record log after ``change`` edited its lines in place."""
    _log(tmp_path)
    lines = _lines(tmp_path)
    change(lines)
    _write(tmp_path, lines)
    return audit_log(tmp_path / "audit").verify()


def _forge(seq: int, prev_hash: str, target: str = "adult-income/v99") -> bytes:
    """A record with a self-consistent hash, as a forger who knows the format writes it."""
    return AuditRecord.create(
        seq,
        prev_hash,
        "2026-12-05T10:00:00.000000+00:00",
        "mallory",
        actions.PROMOTE,
        target,
        "ok",
        "forged",
        {},
    ).line()


def test_records_chain_from_the_genesis_hash_and_read_back(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    records = list(log.records())
    assert [r.seq for r in records] == [0, 1, 2]
    assert records[0].prev_hash == GENESIS_HASH
    assert records[1].prev_hash == records[0].hash
    assert records[2].details["note"] == 'ünïcode "quoted"'
    # The hash is the SHA-256 of the canonical JSON of every other field, as documented.
    value = json.loads(_lines(tmp_path)[1])
    digest = value.pop("hash")
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == digest
    assert log.head() is not None and log.head().seq == 2  # type: ignore[union-attr]
    assert log.verify().message == "3 records, chain intact"


def test_append_takes_the_actor_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_MLOPS_USER", "carol")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    record = audit_log(tmp_path).append(action=actions.ROLLBACK, target="m@champion")
    assert (record.actor, record.outcome, record.reason) == ("carol", "ok", "")


def test_append_refuses_an_unknown_outcome(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outcome 'maybe'"):
        audit_log(tmp_path).append(action=actions.PROMOTE, target="m/v1", outcome="maybe")


def test_current_actor_prefers_the_authenticated_tracking_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dana")
    monkeypatch.setenv("RAY_MLOPS_USER", "carol")
    assert current_actor("https://mlflow.example:5000") == "dana"
    assert current_actor("sqlite:///x.db") == "carol"  # no server authenticated dana
    monkeypatch.delenv("RAY_MLOPS_USER")
    monkeypatch.setattr("getpass.getuser", lambda: "osuser")
    assert current_actor("sqlite:///x.db") == "osuser"

    def no_passwd() -> str:
        raise KeyError("uid 1234")

    monkeypatch.setattr("getpass.getuser", no_passwd)
    assert current_actor("sqlite:///x.db") == "unknown"
    assert key_actor("dashboard") == "key:dashboard"


def test_audit_log_for_puts_the_log_under_the_storage_unless_configured(tmp_path: Path) -> None:
    assert audit_log_for(str(tmp_path)).location == str(tmp_path / "audit")
    assert audit_log_for(str(tmp_path), "trail").location == str(tmp_path / "trail")
    assert audit_log_for(str(tmp_path), "/srv/audit").location == "/srv/audit"
    assert audit_log_for("s3://b/p", None).location == "s3://b/p/audit"


def test_an_empty_or_missing_log_is_intact(tmp_path: Path) -> None:
    result = audit_log(tmp_path / "none").verify()
    assert result.intact and result.records == 0


# Tampering: each kind is found at exactly the record it happened to.


def test_an_edited_field_is_named(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        lines[4] = lines[4].replace(b'"actor":"alice"', b'"actor":"eve"')

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq, result.line) == ("edited", 4, 5)
    assert "record 4 (line 5) was edited" in result.message


def test_an_edit_that_recomputes_the_hash_is_named(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        record = AuditRecord.from_line(lines[4])
        lines[4] = _forge(4, record.prev_hash, target="other/v1")

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq, result.line) == ("edited", 4, 5)
    assert "re-hashed" in result.message


def test_a_deleted_record_is_named(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        del lines[6]

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq, result.line) == ("deleted", 6, 7)
    assert "record 6 deleted: line 7 holds record 7" in result.message


def test_deleting_the_first_record_is_named(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        del lines[0]

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq, result.line) == ("deleted", 0, 1)


def test_an_inserted_record_with_a_consistent_hash_is_named(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        before = AuditRecord.from_line(lines[4])
        lines.insert(5, _forge(5, before.hash))  # fits after record 4; record 5 follows it

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq, result.line) == ("inserted", 5, 6)
    assert "record 5 (line 6) was inserted" in result.message


def test_an_inserted_record_that_does_not_link_is_named(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        lines.insert(3, _forge(3, "f" * 64))

    result = _tampered(tmp_path, change)
    assert (result.kind, result.line) == ("inserted", 4)


def test_swapped_records_are_named(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        lines[3], lines[4] = lines[4], lines[3]

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq, result.line) == ("reordered", 4, 4)
    assert "record 4 (line 4) comes before record 3 (line 5)" in result.message


def test_a_truncated_tail_is_found_by_the_head_marker(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        del lines[7:]

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq) == ("truncated", 7)
    assert "records 7 to 9 were deleted" in result.message


def test_a_rewritten_tail_is_found_by_the_head_marker(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        lines[9] = _forge(9, AuditRecord.from_line(lines[8]).hash)

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq) == ("edited", 9)
    assert "head marker" in result.message


def test_a_missing_head_marker_is_reported(tmp_path: Path) -> None:
    _log(tmp_path, 3)
    (tmp_path / "audit" / "head.json").unlink()
    result = audit_log(tmp_path / "audit").verify()
    assert result.kind == "truncated" and "head marker is missing" in result.message


def test_a_garbled_line_is_named_by_its_number(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        lines[2] = lines[2][: len(lines[2]) // 2]

    result = _tampered(tmp_path, change)
    assert (result.kind, result.line) == ("unparseable", 3)
    assert "line 3 is not an audit record" in result.message


def test_check_raises_an_audit_error_naming_the_record(tmp_path: Path) -> None:
    _log(tmp_path)
    lines = _lines(tmp_path)
    del lines[2]
    _write(tmp_path, lines)
    with pytest.raises(AuditError, match="record 2 deleted") as raised:
        audit_log(tmp_path / "audit").check()
    assert raised.value.exit_code == 7


def test_nothing_is_appended_after_a_partial_line(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with open(tmp_path / "audit" / "audit.jsonl", "ab") as f:
        f.write(b'{"action":"model.prom')
    with pytest.raises(AuditError, match="partial line"):
        log.append(action=actions.PROMOTE, target="m/v1")


def test_the_log_stays_intact_after_appends_to_a_long_line(tmp_path: Path) -> None:
    log = audit_log(tmp_path)
    log.append(action=actions.PROMOTE, target="m/v1", details={"blob": "x" * 20_000})
    log.append(action=actions.PROMOTE, target="m/v2")
    assert [r.seq for r in log.records()] == [0, 1]
    assert log.verify().intact


def _append_many(location: str, worker: int, count: int) -> None:
    log = audit_log(location)
    for i in range(count):
        log.append(action=actions.RUN_START, target=f"run-{worker}-{i}", actor=f"w{worker}")


def test_concurrent_processes_append_one_unbroken_chain(tmp_path: Path) -> None:
    location = str(tmp_path / "audit")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(location, w, 50)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    log = audit_log(location)
    result = log.verify()
    assert result.intact and result.records == 200, result.message
    targets = {r.target for r in log.records()}
    assert len(targets) == 200
    assert log.head() is not None and log.head().seq == 199  # type: ignore[union-attr]


def test_several_deleted_records_are_named_as_a_range(tmp_path: Path) -> None:
    def change(lines: list[bytes]) -> None:
        del lines[4:6]

    result = _tampered(tmp_path, change)
    assert (result.kind, result.seq) == ("deleted", 4)
    assert "records 4 to 5 deleted: line 5 holds record 6" in result.message


def test_records_written_after_the_head_marker_are_accepted_and_counted(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    head = (tmp_path / "audit" / "head.json").read_bytes()
    log.append(action=actions.PROMOTE, target="m/v9")  # as if the writer died before the head
    (tmp_path / "audit" / "head.json").write_bytes(head)
    result = log.verify()
    assert result.intact and result.records == 4
    assert "1 after the head marker" in result.message
