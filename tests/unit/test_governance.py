"""Who may do what: every role against every guarded action, the policy file's errors,
four-eyes, and the audit record of every refusal. Ray-free; no tracking server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ray_mlops.audit import AuditRecord, actions, audit_log
from ray_mlops.config import GovernanceConfig
from ray_mlops.errors import AccessDenied, ConfigError
from ray_mlops.governance.access import AccessControl
from ray_mlops.governance.mlflow_auth import (
    CURRENT_USER_ROUTE,
    PERMISSION_ROLES,
    USER_PERMISSION_ROUTE,
    server_identity,
)
from ray_mlops.governance.policy import Policy, load_policy
from ray_mlops.governance.roles import ACTION_ROLES, ROLES, grants
from ray_mlops.workspace import Workspace

# The guarded actions and who may take them: the table of the issue, spelt out by hand so
# that a change to ACTION_ROLES has to change this test too.
ALLOWED = {
    actions.RUN_START: {"trainer", "admin"},
    actions.PROMOTE: {"approver", "admin"},
    actions.ROLLBACK: {"approver", "admin"},
    actions.FORCE_PROMOTE: {"admin"},
    actions.SERVE_DEPLOY: {"deployer", "admin"},
    actions.SERVE_RECONFIGURE: {"deployer", "admin"},
    actions.KEY_CREATE: {"admin"},
    actions.KEY_REVOKE: {"admin"},
    actions.RETRAIN: {"trainer", "admin"},
    "models.view": set(ROLES),
    "audit.view": set(ROLES),
}


def _records(access: AccessControl) -> list[AuditRecord]:
    return list(access.audit.records())


def _access(tmp_path: Path, roles: dict[str, list[str]], **policy: object) -> AccessControl:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"roles": roles, **policy}))
    return AccessControl(audit_log(tmp_path / "audit"), load_policy(path))


def test_the_role_table_is_the_one_the_issue_asks_for() -> None:
    assert {a: {r for r in ROLES if grants({r}, need)} for a, need in ACTION_ROLES.items()} == {
        a: ALLOWED[a] for a in ACTION_ROLES
    }
    assert set(ALLOWED) <= set(ACTION_ROLES)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_every_role_against_every_guarded_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str, action: str
) -> None:
    monkeypatch.setenv("RAY_MLOPS_USER", "pat")
    access = _access(tmp_path, {"pat": [role]})
    if role in ALLOWED[action]:
        assert access.authorize(action, "adult/v3", model="adult") == "pat"
        assert _records(access) == []  # the action itself is recorded by its caller
        return
    with pytest.raises(AccessDenied) as refused:
        access.authorize(action, "adult/v3", model="adult")
    message = str(refused.value)
    assert message.startswith("pat may not ")
    assert "adult/v3" in message and f"holds {role}" in message
    assert f"needs role {ACTION_ROLES[action]}" in message
    assert f"policy {tmp_path / 'policy.yaml'}" in message
    assert refused.value.exit_code == 4
    (record,) = _records(access)
    assert (record.action, record.target, record.outcome, record.actor) == (
        action,
        "adult/v3",
        "refused",
        "pat",
    )
    assert record.reason == message
    assert record.details["needed_role"] == ACTION_ROLES[action]


def test_unlisted_actor_gets_the_default_roles_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_MLOPS_USER", "eve")
    strict = _access(tmp_path, {"bob": ["approver"]})
    with pytest.raises(AccessDenied, match="eve may not promote adult/v1: needs role approver, "):
        strict.authorize(actions.PROMOTE, "adult/v1")
    with pytest.raises(AccessDenied, match="holds none"):
        strict.authorize("models.view", "adult")
    lenient = _access(tmp_path / "b", {"bob": ["approver"]}, default=["viewer"])
    assert lenient.authorize("models.view", "adult") == "eve"
    with pytest.raises(AccessDenied):
        lenient.authorize(actions.RUN_START, "adult")


def test_no_policy_and_no_server_allows_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_MLOPS_USER", "laptop")
    access = AccessControl.of(
        GovernanceConfig(), Workspace(tmp_path), tmp_path, f"sqlite:///{tmp_path}/m.db"
    )
    for action in ALLOWED:
        assert access.authorize(action, "x") == "laptop"
    access.record(actions.KEY_CREATE, "app", details={"role": "predict"})
    (record,) = _records(access)
    assert (record.actor, record.action, record.target) == ("laptop", "key.create", "app")
    assert Path(tmp_path / ".ray-mlops" / "audit").is_dir()  # under the workspace storage


def test_policy_path_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "who.yaml").write_text("roles: {ann: [admin]}\n")
    access = AccessControl.of(
        GovernanceConfig(policy="who.yaml"), Workspace(tmp_path), tmp_path / "conf", None
    )
    assert access.policy is not None
    assert access.policy.roles_of("ann") == frozenset({"admin"})
    assert access.policy.path == tmp_path / "conf" / "who.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("roles: {bob: [aprover]}\n", r"roles\.bob\[0\]: unknown role 'aprover'"),
        ("roles: {bob: approver}\ndefault: [root]\n", r"default\[0\]: unknown role 'root'"),
        ("roles: {bob: 3}\n", r"roles\.bob: expected a list of roles, got int"),
        ("roles: [bob]\n", r"'roles' maps each actor to a list of roles, got list"),
        ("role: {bob: [admin]}\n", r"unknown key 'role' \(a policy has: roles, default\)"),
        ("- bob\n", r"a policy is a mapping"),
        ("roles: {bob: [admin]\n", r"not valid YAML"),
    ],
)
def test_a_bad_policy_file_names_the_file_and_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as failed:
        load_policy(path)
    assert str(path) in str(failed.value)
    assert failed.value.exit_code == 2


def test_a_missing_policy_file_names_the_setting_and_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"governance\.policy: cannot read .*nowhere\.yaml"):
        AccessControl.of(
            GovernanceConfig(policy="nowhere.yaml"), Workspace(tmp_path), tmp_path, None
        )


def test_one_role_alone_is_a_list_of_one(tmp_path: Path) -> None:
    policy = Policy.from_document({"roles": {"bob": "deployer"}}, tmp_path / "p.yaml")
    assert policy.roles_of("bob") == frozenset({"deployer"})


def test_four_eyes_refuses_the_trainer_and_an_unknown_trainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_MLOPS_USER", "bob")
    access = AccessControl(audit_log(tmp_path / "audit"), four_eyes=True)
    access.check_four_eyes(actions.PROMOTE, "adult/v2", trainer="alice")
    with pytest.raises(AccessDenied, match=r"bob may not promote adult/v2: bob trained it"):
        access.check_four_eyes(actions.PROMOTE, "adult/v2", trainer="bob")
    with pytest.raises(AccessDenied, match="records no trainer"):
        access.check_four_eyes(actions.FORCE_PROMOTE, "adult/v3", trainer=None)
    refused = _records(access)
    assert [(r.action, r.target, r.outcome) for r in refused] == [
        (actions.PROMOTE, "adult/v2", "refused"),
        (actions.FORCE_PROMOTE, "adult/v3", "refused"),
    ]
    assert refused[0].details == {"rule": "four_eyes", "trainer": "bob"}
    AccessControl(audit_log(tmp_path / "off")).check_four_eyes(actions.PROMOTE, "a/v1", "bob")


def test_refusal_is_a_reason_for_a_step_that_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's own promotion: held (and recorded) rather than failed."""
    monkeypatch.setenv("RAY_MLOPS_USER", "alice")
    access = _access(tmp_path, {"alice": ["trainer", "approver"]}, default=[])
    assert access.refusal(actions.PROMOTE, "adult/v1", trainer="alice") is None
    held = AccessControl(access.audit, access.policy, four_eyes=True)
    reason = held.refusal(actions.PROMOTE, "adult/v1", trainer="alice")
    assert reason is not None and "four-eyes" in reason
    assert [r.outcome for r in _records(access)] == ["refused"]


def test_the_routes_are_mlflows_own() -> None:
    from mlflow.server.auth import routes

    assert CURRENT_USER_ROUTE == routes.GET_CURRENT_USER
    assert USER_PERMISSION_ROUTE == routes.GET_USER_PERMISSION
    assert PERMISSION_ROLES["MANAGE"] == {"trainer", "approver", "deployer"}
    assert PERMISSION_ROLES["EDIT"] == {"trainer"}


def test_a_store_that_is_no_server_has_no_identity(tmp_path: Path) -> None:
    assert server_identity(f"sqlite:///{tmp_path}/m.db") is None


def _cli(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from ray_mlops.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, args)
    code = result.exit_code
    if isinstance(result.exception, AccessDenied | ConfigError):
        code = result.exception.exit_code  # what main() exits with
        return code, str(result.exception)
    return code, result.output


def test_serve_key_creates_and_revokes_in_a_keys_file_audited_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_MLOPS_USER", "ops")
    keys = tmp_path / "keys.yaml"
    code, output = _cli(["serve-key", "app", "--keys-file", str(keys)], tmp_path, monkeypatch)
    assert code == 0, output
    key = next(line for line in output.splitlines() if line.startswith("rmk_"))
    (entry,) = yaml.safe_load(keys.read_text())
    assert entry["name"] == "app" and key not in keys.read_text()
    code, output = _cli(
        ["serve-key", "app", "--revoke", "--keys-file", str(keys)], tmp_path, monkeypatch
    )
    assert code == 0, output
    assert yaml.safe_load(keys.read_text()) == []
    code, output = _cli(
        ["serve-key", "app", "--revoke", "--keys-file", str(keys)], tmp_path, monkeypatch
    )
    assert code == 2 and "no key named 'app'" in output
    log = audit_log(tmp_path / ".ray-mlops" / "audit")
    records = [(r.action, r.target, r.outcome, r.actor) for r in log.records()]
    assert records == [
        ("key.create", "app", "ok", "ops"),
        ("key.revoke", "app", "ok", "ops"),
    ]
    written = (tmp_path / ".ray-mlops" / "audit").rglob("*")
    assert all(key not in path.read_text() for path in written if path.is_file())


def test_serve_key_refused_without_admin_exits_4_and_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import write_config

    monkeypatch.setenv("RAY_MLOPS_USER", "bob")
    (tmp_path / "policy.yaml").write_text("roles: {bob: [deployer], root: [admin]}\n")
    (tmp_path / "sample.csv").write_text("x\n")
    config = write_config(tmp_path, {"governance": {"policy": "policy.yaml"}})
    keys = tmp_path / "keys.yaml"
    args = ["serve-key", "app", "--keys-file", str(keys), "-c", str(config)]
    code, message = _cli(args, tmp_path, monkeypatch)
    assert code == 4
    assert message == (
        f"bob may not create the serving key app: needs role admin, holds deployer "
        f"(policy {tmp_path / 'policy.yaml'})"
    )
    assert not keys.exists()
    monkeypatch.setenv("RAY_MLOPS_USER", "root")
    assert _cli(args, tmp_path, monkeypatch)[0] == 0
    log = audit_log(tmp_path / ".ray-mlops" / "audit")
    assert [(r.action, r.outcome, r.actor) for r in log.records()] == [
        ("key.create", "refused", "bob"),
        ("key.create", "ok", "root"),
    ]


class _PlainServer(BaseHTTPRequestHandler):
    """A tracking server without MLflow's auth app: every auth route is unknown."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_without_the_auth_app_decides_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _PlainServer)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{http.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dora")
        assert server_identity(uri) is None
        access = AccessControl(audit_log(tmp_path / "audit"), tracking_uri=uri)
        assert access.authorize(actions.KEY_CREATE, "app") == "dora"
    finally:
        http.shutdown()
