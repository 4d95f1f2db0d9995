"""Who may do what, against a real ``mlflow server --app-name basic-auth``; and the audit
records a normal run, promotion and rollback leave behind.

The server's admin makes four users with different MLflow permissions on a registered
model: alice EDIT (trainer), bob MANAGE (trainer, approver, deployer), carol READ
(viewer), root an MLflow admin (admin). Every guarded command runs through the command
line's entry point (``ray_mlops.cli.main``, one a real ``ray-mlops`` process) as one of
them, and is refused (exit 4, recorded as refused) or allowed as the role table says. Every
refusal comes before any heavy work; the allowed actions take the cheapest real path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from ray_mlops.audit import AuditRecord, audit_log
from ray_mlops.config import load_config
from tests.conftest import free_port, write_config

MODEL = "gov-demo"
ADMIN_PASSWORD = "admin-pass-123"
USERS = {"alice": "EDIT", "bob": "MANAGE", "carol": "READ", "root": None}


def _password(user: str) -> str:
    return ADMIN_PASSWORD if user == "admin" else f"{user}-pass-123"


@contextlib.contextmanager
def _as(uri: str, user: str) -> Iterator[None]:
    """MLflow calls of this process as ``user`` of the server at ``uri``."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict(zip(keys, (uri, user, _password(user)), strict=True)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'auth.db'}\n"
        f"admin_username = admin\nadmin_password = {ADMIN_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Checked credentials are cached a minute: each request otherwise pays a PBKDF2 hash
        # (0.3 s here), and the commands make dozens.
        "auth_cache_ttl_seconds = 60\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-secret",
    }
    command = [
        sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError((folder / "server.log").read_text()[-3000:])
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                return server, uri
        time.sleep(0.5)
    server.kill()
    raise RuntimeError("the MLflow auth server did not start in 90 s")


def _seed(uri: str, folder: Path) -> dict[str, Any]:
    """Users, their permissions, and two versions of MODEL from one run (trained by bob)."""
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    from ray_mlops.registry.aliases import move_alias

    with _as(uri, "admin"):
        auth = get_app_client("basic-auth", tracking_uri=uri)
        client = MlflowClient(uri)
        client.create_registered_model(MODEL)
        for user, permission in USERS.items():
            auth.create_user(user, _password(user))
            if permission:
                auth.grant_user_permission(user, "registered_model", MODEL, permission)
        auth.update_user_admin("root", True)
        config = load_config(write_config(folder, {"name": MODEL}))
        experiment = client.create_experiment(MODEL)
        run = client.create_run(experiment, tags={"mlflow.user": "bob"})
        run_id = run.info.run_id
        staged = folder / "staged"
        (staged / "model").mkdir(parents=True)
        (staged / "model" / "MLmodel").write_text("flavors: {}\n")
        (staged / "config.yaml").write_text(yaml.safe_dump(config.pipeline.model_dump(mode="json")))
        client.log_artifacts(run_id, str(staged))
        for _ in range(2):
            client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id)
        move_alias(client, MODEL, "champion", "1", why="seed")
    return {"run_id": run_id}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("auth-server")
    process, uri = _start_server(folder)
    try:
        seeded = _seed(uri, folder)
        work = folder / "work"
        work.mkdir()
        yield {"uri": uri, "work": work, **seeded}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _main(
    cwd: Path, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``ray-mlops ARGS`` in ``cwd``, through the command's own entry point (in this process,
    which has paid the imports already); its exit code and output."""
    from ray_mlops.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["ray-mlops", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out + captured.err


def _cli(
    server: dict[str, Any],
    user: str,
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    """``ray-mlops ARGS`` as ``user`` of the auth server."""
    with _as(server["uri"], user):
        return _main(server["work"], list(args), monkeypatch, capsys)


def _audit(server: dict[str, Any]) -> list[AuditRecord]:
    return list(audit_log(server["work"] / ".ray-mlops" / "audit").records())


def _config(server: dict[str, Any], name: str, **governance: Any) -> str:
    folder = server["work"] / name
    folder.mkdir(exist_ok=True)
    overrides = {"name": MODEL, "governance": governance, "workspace": {"root": ".."}}
    return str(write_config(folder, overrides))


# (user, command, what is refused or None when allowed, the target recorded)
CASES = [
    ("carol", ["run", "{missing}"], "run a pipeline of", MODEL),
    ("alice", ["run", "{missing}"], None, MODEL),
    ("alice", ["promote", MODEL, "2", "--reason", "r"], "promote", f"{MODEL}/v2"),
    ("bob", ["promote", MODEL, "2", "--reason", "r"], None, f"{MODEL}/v2"),
    ("bob", ["promote", MODEL, "2", "--reason", "r", "--force"], "force the promotion of",
     f"{MODEL}/v2"),
    ("root", ["promote", MODEL, "2", "--reason", "drill", "--force"], None, f"{MODEL}/v2"),
    ("carol", ["rollback", MODEL, "--reason", "r"], "roll back", f"{MODEL}@champion"),
    ("bob", ["rollback", MODEL, "--reason", "v2 misbehaves"], None, f"{MODEL}@champion"),
    ("carol", ["serve", "{config}"], "deploy", f"{MODEL}@champion"),
    ("bob", ["serve-key", "app", "--keys-file", "{keys}"], "create the serving key", "app"),
    ("root", ["serve-key", "app", "--keys-file", "{keys}"], None, "app"),
    ("bob", ["serve-key", "app", "--revoke", "--keys-file", "{keys}"], "revoke the serving key",
     "app"),
    ("root", ["serve-key", "app", "--revoke", "--keys-file", "{keys}"], None, "app"),
]  # fmt: skip


def test_every_guarded_command_as_mlflow_permissions_say(
    server: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = server["work"]
    config = _config(server, "plain")
    missing = _config(server, "missing")
    (Path(config).parent / "sample.csv").write_text("person_id,age\n1,30\n")
    values = {
        "config": config,
        "missing": missing,  # no sample.csv: an allowed run stops in the data checks
        "keys": str(work / "keys.yaml"),
    }
    for user, template, refused, target in CASES:
        args = [a.format(**values) for a in template]
        before = len(_audit(server))
        code, output = _cli(server, user, *args, monkeypatch=monkeypatch, capsys=capsys)
        new = _audit(server)[before:]
        said = f"{user}: ray-mlops {' '.join(template)} -> {code}: {output[-600:]}"
        if refused:
            assert code == 4, said
            assert f"{user} may not {refused} {target}: needs role" in output, said
            assert f"MLflow permissions at {server['uri']}" in output, said
            assert [(r.actor, r.target, r.outcome) for r in new] == [(user, target, "refused")]
            continue
        assert code != 4 and "may not" not in output, said
        assert all(r.outcome != "refused" and r.actor == user for r in new), said
    # What the allowed ones did: alice's run stopped at the data check, before any record;
    # bob's promotion passed the guard and failed at the gate (no frozen holdout);
    # root forced v2 in, bob rolled it back; root made and revoked a key.
    done = [
        (r.actor, r.action, r.target, r.outcome) for r in _audit(server) if r.outcome != "refused"
    ]
    assert done == [
        ("bob", "model.promote", f"{MODEL}/v2", "failed"),
        ("root", "alias.move", f"{MODEL}@champion", "ok"),
        ("root", "model.force_promote", f"{MODEL}/v2", "ok"),
        ("bob", "alias.move", f"{MODEL}@champion", "ok"),
        ("bob", "model.rollback", f"{MODEL}@champion", "ok"),
        ("root", "key.create", "app", "ok"),
        ("root", "key.revoke", "app", "ok"),
    ]
    assert yaml.safe_load((work / "keys.yaml").read_text()) == []


def test_four_eyes_refuses_the_trainer_through_a_real_process(server: dict[str, Any]) -> None:
    """bob trained the run and manages the model: four-eyes still refuses his promotion."""
    config = _config(server, "four-eyes", four_eyes=True)
    executable = shutil.which("ray-mlops", path=str(Path(sys.executable).parent))
    assert executable is not None
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server["uri"],
        "MLFLOW_TRACKING_USERNAME": "bob",
        "MLFLOW_TRACKING_PASSWORD": _password("bob"),
    }
    before = len(_audit(server))
    done = subprocess.run(
        [executable, "promote", MODEL, "1", "--reason", "mine", "-c", config],
        capture_output=True, text=True, cwd=server["work"], env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert "bob may not promote gov-demo/v1: bob trained it" in done.stderr
    (record,) = _audit(server)[before:]
    assert (record.actor, record.action, record.outcome) == ("bob", "model.promote", "refused")
    assert record.details == {"rule": "four_eyes", "trainer": "bob"}


def test_a_wrong_password_is_refused_as_not_authenticated(
    server: dict[str, Any], tmp_path: Path
) -> None:
    from ray_mlops.audit import actions
    from ray_mlops.errors import AccessDenied
    from ray_mlops.governance.access import AccessControl

    access = AccessControl(audit_log(tmp_path / "audit"), tracking_uri=server["uri"])
    with _as(server["uri"], "bob"):
        access.authorize(actions.SERVE_DEPLOY, f"{MODEL}@champion", model=MODEL)
        os.environ["MLFLOW_TRACKING_PASSWORD"] = "wrong"
        with pytest.raises(AccessDenied, match=r"bob may not deploy .*: not authenticated"):
            access.authorize(actions.SERVE_DEPLOY, f"{MODEL}@champion", model=MODEL)


@pytest.mark.usefixtures("ray_session")
def test_run_promote_and_rollback_leave_their_records_and_the_chain_verifies(
    trained: Any,
    workspace: Path,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The session's pipeline run, then two versions copied from it promoted through the
    gate, forced and rolled back by the command line: every record, and `audit verify`."""
    from mlflow.tracking import MlflowClient

    log = audit_log(workspace / ".ray-mlops" / "audit")
    ran = [r for r in log.records() if trained.run_id in (r.target, r.details.get("run_id"))]
    version = f"{trained.model_name}/v{trained.model_version}"
    promoted = [("model.promote", version, "ok")] if trained.promoted else []
    assert [(r.action, r.target, r.outcome) for r in ran] == [
        ("run.start", trained.run_id, "ok"),
        ("model.register", version, "ok"),
        *promoted,
        ("run.end", trained.run_id, "ok"),
    ]
    assert ran[-1].details["fingerprint"] == trained.dataset_fingerprint
    name = "adult-audit"
    client = MlflowClient(tracking_uri)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, trained.model_uri, trained.run_id)
    before = sum(1 for _ in log.records())
    for args in (
        ["promote", name, "1", "--reason", "first"],
        ["promote", name, "2", "--reason", "drill", "--force"],
        ["rollback", name, "--reason", "v2 misbehaves"],
    ):
        code, output = _main(
            workspace, [*args, "--tracking-uri", tracking_uri], monkeypatch, capsys
        )
        assert code == 0, output
    records = list(log.records())[before:]
    assert [(r.action, r.target, r.outcome) for r in records] == [
        ("alias.move", f"{name}@champion", "ok"),
        ("model.promote", f"{name}/v1", "ok"),
        ("alias.move", f"{name}@champion", "ok"),
        ("model.force_promote", f"{name}/v2", "ok"),
        ("alias.move", f"{name}@champion", "ok"),
        ("model.rollback", f"{name}@champion", "ok"),
    ]
    assert records[1].details["gate"] == "passed"
    assert records[4].details == {"from_version": "2", "to_version": "1", "kind": "rollback"}
    assert records[5].reason == "v2 misbehaves"
    code, output = _main(workspace, ["audit", "verify"], monkeypatch, capsys)
    assert code == 0 and "chain intact" in output, output
