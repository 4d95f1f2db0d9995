"""No secret leaves ray-mlops (issue 28, exposure), and Ray's Jobs API refuses strangers.

A distinctive secret is planted in every credential a user can configure: the serving API
key (the config holds its SHA-256; the client sends it), MLFLOW_TRACKING_PASSWORD and
MLFLOW_TRACKING_TOKEN, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, RAY_AUTH_TOKEN (the
token of the Ray the commands start), a token in notify.webhook_url (a local receiver checks
it arrives) and a database password in the tracking URI of a Serve export (a tracking URI
with a password cannot be a working SQLite store, so only the export, which connects to
nothing, gets one). Then the commands run as a user runs them: ``ray-mlops run``, a
``ray-mlops serve`` session answering an authenticated request, ``ray-mlops serve --export``.
Everything they leave is scanned: their output, every file of the workspace (the MLflow
database and artifacts, captured traffic), the export and the Ray session folders. No
secret anywhere; a control proves the scan finds a planted copy in each kind of file.

During the serve session: the dashboard (the Jobs API of CVE-2023-48022) listens on loopback
only, and no port of the whole Ray session accepts a job without the token.
"""

from __future__ import annotations

import gzip
import http.server
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
import yaml

from ray_mlops.serve.guard import generate_key, hash_key
from tests.conftest import free_port, write_config

CLI = [sys.executable, "-m", "ray_mlops"]
NUMERIC = ["age", "education_num", "capital_gain", "hours_per_week"]
CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "sex"]
LOOPBACK = {"127.0.0.1", "::1"}
JOB = {"entrypoint": "echo submitted-without-a-token"}
# Where Ray's dashboard and its agents take job submissions.
JOB_ENDPOINTS = ("/api/jobs/", "/api/job_agent/jobs/")


def _secret(kind: str) -> str:
    """Distinctive, and plain letters and digits: no encoding a URL or a log applies hides it."""
    return f"leak{kind}{secrets.token_hex(12)}"


SECRETS = {
    "api_key": generate_key(),
    "MLFLOW_TRACKING_PASSWORD": _secret("mlflowpw"),
    "MLFLOW_TRACKING_TOKEN": _secret("mlflowtoken"),
    "AWS_ACCESS_KEY_ID": _secret("awsid"),
    "AWS_SECRET_ACCESS_KEY": _secret("awssecret"),
    "RAY_AUTH_TOKEN": secrets.token_hex(32),  # the form Ray's own tokens take
    "webhook_token": _secret("hook"),
    "database_password": _secret("dbpw"),
}
ENV_SECRETS = [name for name in SECRETS if name.isupper()]


# -- the scan ---------------------------------------------------------------------------------


def _contents(path: Path) -> Iterator[bytes]:
    """The bytes of a file, and of what it packs: Parquet columns, gzip, zip members."""
    data = path.read_bytes()
    yield data
    if path.suffix == ".parquet":
        yield str(pq.read_table(path).to_pylist()).encode()
    elif data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            yield from (archive.read(member) for member in archive.namelist())


def find_secrets(
    roots: list[Path], texts: dict[str, str], skip: set[Path] | None = None
) -> list[tuple[str, str]]:
    """(secret name, where) for each secret found in a file under ``roots`` or in ``texts``."""
    pattern = re.compile("|".join(re.escape(value) for value in SECRETS.values()).encode())
    name_of = {value.encode(): name for name, value in SECRETS.items()}
    found: list[tuple[str, str]] = []
    for where, text in texts.items():
        found += [(name_of[m.group(0)], where) for m in pattern.finditer(text.encode())]
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path in (skip or set()) or path.is_symlink():
                continue
            try:
                for blob in _contents(path):
                    found += [(name_of[m.group(0)], str(path)) for m in pattern.finditer(blob)]
            except (OSError, ValueError, pa.ArrowException, zipfile.BadZipFile):
                continue  # being rewritten, a socket: its bytes were read above when possible
    return sorted(set(found))


def test_the_scan_finds_a_planted_secret_in_every_kind_of_file(tmp_path: Path) -> None:
    """The control: a copy of a secret is found in text, SQLite, Parquet, gzip and zip."""
    secret = SECRETS["AWS_SECRET_ACCESS_KEY"]
    (tmp_path / "log.txt").write_text(f"line\nkey={secret}\n")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("create table params (key text, value text)")
        db.execute("insert into params values ('aws', ?)", (secret,))
    pq.write_table(pa.table({"v": [secret] * 100}), tmp_path / "c.parquet", compression="zstd")
    (tmp_path / "x.log.gz").write_bytes(gzip.compress(secret.encode()))
    with zipfile.ZipFile(tmp_path / "pkg.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.yaml", f"token: {secret}\n")
    found = find_secrets([tmp_path], {"stdout": f"say {SECRETS['api_key']}"})
    where = {place for _, place in found}
    assert {Path(p).name for p in where if p != "stdout"} == {
        "log.txt",
        "mlflow.db",
        "c.parquet",
        "x.log.gz",
        "pkg.zip",
    }
    assert ("api_key", "stdout") in found


# -- a webhook receiver that checks the token arrived ---------------------------------------


@dataclass
class Receiver:
    url: str
    paths: list[str]


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # not to the test's stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    yield Receiver(f"http://127.0.0.1:{port}/hook?token={SECRETS['webhook_token']}", paths)
    server.shutdown()


# -- the commands ------------------------------------------------------------------------------


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """Ray's temp folder for the commands' own Rays: their session logs, to scan. Short:
    Ray's socket paths under it must stay within 107 characters."""
    folder = Path(tempfile.mkdtemp(prefix="rx", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(ray_tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "MLFLOW_"))}
    env.update({name: SECRETS[name] for name in ENV_SECRETS})
    env.update({"RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "token"})
    return env


def _listening(root: psutil.Process) -> list[tuple[str, int, str]]:
    """(address, port, process) of every TCP port that ``root`` and its descendants listen on."""
    pids = {p.pid: p.name() for p in [root, *root.children(recursive=True)]}
    return [
        (c.laddr.ip, c.laddr.port, pids[c.pid])
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


def _dashboard(output: str) -> str:
    match = re.search(r"dashboard at \S*?(http://[\d.]+:\d+)", output)
    assert match, f"no dashboard address in the serve output:\n{output[-3000:]}"
    return match.group(1)


class Session:
    """A ``ray-mlops serve`` process whose stdout and stderr are collected as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, ls=lines: ls.extend(s), daemon=True).start()

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.err + self.out):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"serve did not print {text!r}:\n{''.join(self.err)[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        time.sleep(0.5)  # the reader threads take the last lines


def _jobs_api_checks(session: Session) -> dict[str, Any]:
    """Probe the serve session's Ray as a stranger on the network would, and as its owner."""
    output = "".join(session.err + session.out)
    dashboard = _dashboard(output)
    ports = _listening(psutil.Process(session.process.pid))
    answers: dict[str, tuple[int, str]] = {}
    for address, port, _ in ports:
        host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
        for endpoint in JOB_ENDPOINTS:
            try:
                answer = requests.post(f"http://{host}:{port}{endpoint}", json=JOB, timeout=3)
            except requests.RequestException:
                continue  # not HTTP: Ray's gRPC ports check the token themselves
            answers[f"{host}:{port}{endpoint}"] = (answer.status_code, answer.text[:200])
    owner = requests.get(
        f"{dashboard}/api/jobs/",
        headers={"Authorization": f"Bearer {SECRETS['RAY_AUTH_TOKEN']}"},
        timeout=10,
    )
    return {"dashboard": dashboard, "ports": ports, "answers": answers, "owner": owner}


def test_no_secret_in_anything_a_run_a_serve_session_and_an_export_leave(
    tmp_path: Path, adult_sample: pd.DataFrame, webhook: Receiver, ray_tmp: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    adult_sample.to_csv(workspace / "sample.csv", index=False)
    serve_port = free_port()
    config = write_config(
        workspace,
        {
            "train": {"num_workers": 1, "epochs": 1},
            "notify": {"webhook_url": webhook.url, "retries": 1},
            "serve": {
                "port": serve_port,
                "cpus_per_replica": 0.25,
                "access_log": True,  # the log line of a request with a key in its headers
                "auth": {
                    "enabled": True,
                    "keys": [{"name": "client", "sha256": hash_key(SECRETS["api_key"])}],
                },
                "capture": {"enabled": True, "sample_rate": 1.0, "flush_interval_s": 0.5},
            },
        },
    )
    env = _env(ray_tmp)
    texts: dict[str, str] = {}

    run = subprocess.run(
        [*CLI, "run", config.name], cwd=workspace, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    texts.update({"run stdout": run.stdout, "run stderr": run.stderr})
    assert run.returncode == 0, run.stderr[-3000:]
    # The token in the webhook URL still works: the receiver got the events with it.
    assert webhook.paths and all(SECRETS["webhook_token"] in p for p in webhook.paths)

    session = Session([*CLI, "serve", config.name, "--verbose"], workspace, env)
    try:
        session.wait_for("serving", timeout_s=300)
        predict = f"http://127.0.0.1:{serve_port}/v1/models/adult-test:predict"
        record = adult_sample[[*NUMERIC, *CATEGORICAL]].iloc[:1].astype(object)
        body = {"records": record.to_dict(orient="records")}
        key = {"Authorization": f"Bearer {SECRETS['api_key']}"}
        answered = requests.post(predict, json=body, headers=key, timeout=60)
        stranger = requests.post(predict, json=body, timeout=60)
        wrong = requests.post(predict, json=body, headers={"X-API-Key": "rmk_wrong"}, timeout=60)
        probe = _jobs_api_checks(session)
    finally:
        session.stop()
    texts.update({"serve stdout": "".join(session.out), "serve stderr": "".join(session.err)})
    assert answered.status_code == 200, answered.text
    assert stranger.status_code == 401 and wrong.status_code == 401

    # CVE-2023-48022: nobody without the token submits a job, on any port of the session.
    answers = probe["answers"]
    assert answers[f"{probe['dashboard'][7:]}/api/jobs/"][0] == 401, answers
    accepted = {where: a for where, a in answers.items() if a[0] < 300 and "submission_id" in a[1]}
    assert not accepted, accepted
    # Its owner, with the token, sees the Jobs API, and no job was submitted.
    assert probe["owner"].status_code == 200, probe["owner"].text
    jobs = probe["owner"].json()
    assert not [job for job in jobs if job["type"] != "DRIVER"], jobs  # serve's own driver only
    assert JOB["entrypoint"] not in probe["owner"].text
    # The dashboard (Jobs API) and the model server listen on loopback only.
    dashboard_port = int(probe["dashboard"].rsplit(":", 1)[1])
    for address, port, process in probe["ports"]:
        if port in (dashboard_port, serve_port):
            assert address in LOOPBACK, (address, port, process)

    export_config = workspace / "export.yaml"
    document = yaml.safe_load(config.read_text())
    database = f"postgresql://mlflow:{SECRETS['database_password']}@127.0.0.1:9/mlflow"
    document["tracking"] = {"tracking_uri": database}
    export_config.write_text(yaml.safe_dump(document))
    exported = tmp_path / "serve-export.yaml"
    export = subprocess.run(
        [*CLI, "serve", export_config.name, "--export", str(exported)],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    texts.update({"export stdout": export.stdout, "export stderr": export.stderr})
    assert export.returncode == 0, export.stderr
    assert "MLFLOW_TRACKING_URI from a Kubernetes Secret" in exported.read_text()

    # The configs are the user's own input, where the webhook token and password belong.
    sessions = sorted((ray_tmp / "ray").glob("session_2*"))
    assert len(sessions) == 2, sessions  # the run's Ray and the serve session's
    assert list((workspace / ".ray-mlops").rglob("*.parquet")), "no captured traffic to scan"
    leaks = find_secrets(
        [workspace, exported, ray_tmp], texts, skip={config, export_config, workspace / ".git"}
    )
    assert not leaks, leaks
