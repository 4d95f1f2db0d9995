"""The served champion over real HTTP (Ray Serve behind HAProxy), as clients, operators and
attackers meet it: predictions equal to the pyfunc model, every error status, OIP v2 from
tritonclient, API keys and rate limits, capture, metrics, alias moves under load, canary,
shadow, autoscaling, a killed replica, and a schemathesis fuzz of the OpenAPI schema."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from ray_mlops.config import PipelineConfig, load_config
from ray_mlops.pipeline import PipelineResult
from ray_mlops.serve.capture import read_capture
from ray_mlops.serve.guard import generate_key, hash_key
from ray_mlops.serve.launch import ServedModel, deploy_model, stop_serving

MODEL = "adult-test"
LOAD_WITHOUT_RAY = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
records = json.load(sys.stdin)["records"]
# The signature declares numeric inputs as doubles: MLflow refuses int64 -> double.
numeric = ["age", "education_num", "capital_gain", "hours_per_week"]
frame = pd.DataFrame.from_records(records).astype({c: "float64" for c in numeric})
out = model.predict(frame)
assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules), "ray was imported"
print(out.to_json(orient="records", double_precision=15))
"""
KEYS = {"alice": generate_key(), "ops": generate_key(), "slow": generate_key()}


def _auth(who: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def _serve_section(workspace: Path, **changes: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "auth": {
            "enabled": True,
            "keys": [
                {"name": "alice", "sha256": hash_key(KEYS["alice"]), "role": "predict"},
                {"name": "ops", "sha256": hash_key(KEYS["ops"]), "role": "admin"},
                {
                    "name": "slow",
                    "sha256": hash_key(KEYS["slow"]),
                    "role": "predict",
                    "requests_per_s": 0.5,
                    "burst": 1,
                },
            ],
        },
        "rate_limit": {"requests_per_s": 1000, "burst": 1000},
        "capture": {
            "enabled": True,
            "sample_rate": 1.0,
            "path": str(workspace / "capture"),
            "flush_interval_s": 0.5,
        },
        "max_body_bytes": 20_000,
        "max_records": 50,
        "alias_poll_s": 0.5,
        "cpus_per_replica": 0.25,
    }
    section.update(changes)
    return section


def _cfg(base: PipelineConfig, section: dict[str, Any]) -> PipelineConfig:
    serve = base.serve.model_validate({**base.serve.model_dump(mode="json"), **section})
    return base.model_copy(update={"serve": serve})


@pytest.fixture(scope="module")
def base_cfg(trained: PipelineResult, workspace: Path) -> PipelineConfig:
    return load_config(workspace / "adult-test.yaml").pipeline


@pytest.fixture(scope="module")
def deploy(
    base_cfg: PipelineConfig, workspace: Path, tracking_uri: str
) -> Iterator[Callable[..., ServedModel]]:
    """Deploy (or redeploy in place) the server with changes to the serve section."""

    def run(**changes: Any) -> ServedModel:
        cfg = _cfg(base_cfg, _serve_section(workspace, **changes))
        return deploy_model(cfg, tracking_uri, base_dir=workspace)

    yield run
    stop_serving()


@pytest.fixture(scope="module")
def served(deploy: Callable[..., ServedModel]) -> ServedModel:
    return deploy()


@pytest.fixture(scope="module")
def champion(trained: PipelineResult, tracking_uri: str) -> str:
    client = MlflowClient(tracking_uri)
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


@pytest.fixture(scope="module")
def twin(champion: str, tracking_uri: str) -> str:
    """A new version of the champion's model files: same answers, another version number."""
    client = MlflowClient(tracking_uri)
    source = client.get_model_version(MODEL, champion)
    copy = client.create_model_version(MODEL, source=source.source, run_id=source.run_id)
    return str(copy.version)


def _records(sample: pd.DataFrame, rows: int, start: int = 0) -> list[dict[str, object]]:
    columns = [
        "age",
        "education_num",
        "capital_gain",
        "hours_per_week",
        "workclass",
        "education",
        "marital_status",
        "occupation",
        "sex",
    ]
    frame = sample[columns].iloc[start : start + rows].astype(object)
    return json.loads(frame.where(frame.notna(), None).to_json(orient="records"))


def _post(served: ServedModel, body: Any, who: str = "alice", **kw: Any) -> requests.Response:
    return requests.post(served.predict_url, json=body, headers=_auth(who), timeout=60, **kw)


def test_http_and_a_ray_free_process_give_the_same_predictions(
    served: ServedModel, champion: str, adult_sample: pd.DataFrame, tracking_uri: str
) -> None:
    records = _records(adult_sample, 40)
    assert any(r["workclass"] is None for r in records), "cover missing values too"
    response = _post(served, {"records": records})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"]) == (MODEL, champion)
    assert response.headers["X-Model-Version"] == champion
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_RAY, f"models:/{MODEL}/{champion}"],
        input=json.dumps({"records": records}),
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        timeout=300,
        check=True,
    )
    local = json.loads(done.stdout.strip().splitlines()[-1])
    assert body["predictions"] == [row["prediction"] for row in local]
    for served_p, local_row in zip(body["probabilities"], local, strict=True):
        for label, p in served_p.items():
            assert p == pytest.approx(local_row[f"probability_{label}"], abs=1e-12)
    # The same rows as columns give the same answer.
    columns = {k: [r[k] for r in records] for k in records[0]}
    as_columns = _post(served, {"columns": columns}).json()
    assert as_columns["predictions"] == body["predictions"]


def test_concurrent_requests_are_answered_each_with_its_own_rows(
    served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    records = _records(adult_sample, 16)
    single = _post(served, {"records": records}).json()

    def one(i: int) -> str:
        return str(_post(served, {"records": [records[i]]}).json()["predictions"][0])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == single["predictions"]


def test_every_client_mistake_is_a_4xx_with_a_message(
    served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    url = served.predict_url
    good = _records(adult_sample, 1)
    bad_json = requests.post(url, data=b"{oops", headers=_auth(), timeout=30)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    no_key = requests.post(url, json={"records": good}, timeout=30)
    assert no_key.status_code == 401 and "Authorization: Bearer" in no_key.json()["error"]
    wrong = requests.post(url, json={"records": good}, headers={"X-API-Key": "nope"}, timeout=30)
    assert wrong.status_code == 401 and "invalid API key" in wrong.json()["error"]
    metrics = requests.get(f"{served.base_url}/metrics", headers=_auth("alice"), timeout=30)
    assert metrics.status_code == 403 and "'admin'" in metrics.json()["error"]
    other = url.replace(MODEL, "other-model")
    assert (
        requests.post(other, json={"records": good}, headers=_auth(), timeout=30).status_code == 404
    )
    huge = _post(served, {"records": good * 200})
    assert huge.status_code == 413 and "limit" in huge.json()["error"]
    too_many = _post(served, {"records": good * 51})
    assert too_many.status_code == 413 and "limit is 50" in too_many.json()["error"]
    missing = _post(served, {"records": [{"age": 30}]})
    assert missing.status_code == 422
    assert ["body", "records", 0, "sex"] in [d["loc"] for d in missing.json()["details"]]
    typed = _post(served, {"records": [{**good[0], "age": "old", "extra": 1}]})
    messages = {tuple(d["loc"][-1:]): d["msg"] for d in typed.json()["details"]}
    assert typed.status_code == 422
    assert (
        messages[("age",)].startswith("expected a number")
        and messages[("extra",)] == "unknown field"
    )
    nan = requests.post(
        url,
        data=json.dumps({"records": [{**good[0], "age": float("nan")}]}),
        headers={**_auth(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert nan.status_code == 422 and "finite" in json.dumps(nan.json())


def test_rate_limit_answers_429_with_retry_after(
    served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    body = {"records": _records(adult_sample, 1)}
    statuses = [_post(served, body, who="slow") for _ in range(3)]
    assert statuses[0].status_code == 200
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert "rate limit" in limited[0].json()["error"]
    # Another key is not affected.
    assert _post(served, body).status_code == 200


def _triton_inputs(meta: dict[str, Any], frame: pd.DataFrame, binary: bool = True) -> list[Any]:
    """One tensor per input column, set as tritonclient does by default (binary data)."""
    import numpy as np
    import tritonclient.http as triton

    inputs = []
    for spec in meta["inputs"]:
        values = frame[spec["name"]]
        if spec["datatype"] == "BYTES":
            array = np.array([v if v is not None else "" for v in values], dtype=object)
        else:
            array = values.astype("float64").to_numpy()
        tensor = triton.InferInput(spec["name"], [len(array)], spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_tritonclient_works_unchanged_with_its_defaults(
    served: ServedModel, champion: str, adult_sample: pd.DataFrame
) -> None:
    """Every call of the Open Inference Protocol's REST API, as tritonclient makes it by
    default: binary tensors in and out (the binary data extension)."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=served.base_url.removeprefix("http://"))
    headers = _auth()
    assert client.is_server_live(headers=headers) and client.is_server_ready(headers=headers)
    server = client.get_server_metadata(headers=headers)
    assert server["name"] == "ray-mlops" and "binary_tensor_data" in server["extensions"]
    assert client.is_model_ready(MODEL, headers=headers)
    assert client.is_model_ready(MODEL, champion, headers=headers)
    assert not client.is_model_ready(MODEL, "999", headers=headers)
    meta = client.get_model_metadata(MODEL, headers=headers)
    assert meta["versions"] == [champion]
    assert client.get_model_metadata(MODEL, champion, headers=headers)["inputs"] == meta["inputs"]
    with pytest.raises(InferenceServerException, match=r"version '999'.*not served"):
        client.get_model_metadata(MODEL, "999", headers=headers)

    records = _records(adult_sample, 12)
    frame = pd.DataFrame.from_records(records)
    rest = _post(
        served, {"records": [{**r, "workclass": r["workclass"] or ""} for r in records]}
    ).json()
    for version in ("", champion):
        # A fresh dict each call: infer() adds its Inference-Header-Content-Length to it.
        result = client.infer(
            MODEL, _triton_inputs(meta, frame), model_version=version, headers=_auth()
        )
        assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] > 0
        assert [p.decode() for p in result.as_numpy("prediction")] == rest["predictions"]
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (12, 2)
        assert probabilities[:, 1] == pytest.approx(
            [p[">50K"] for p in rest["probabilities"]], abs=1e-12
        )
    # JSON tensors and JSON outputs, asked for by name, give the same answers.
    outputs = [triton.InferRequestedOutput(o["name"], binary_data=False) for o in meta["outputs"]]
    as_json = client.infer(
        MODEL, _triton_inputs(meta, frame, binary=False), outputs=outputs, headers=_auth()
    )
    assert "data" in as_json.get_response()["outputs"][0]
    assert as_json.as_numpy("prediction").tolist() == rest["predictions"]
    # A client's mistake reaches it as the server's message, in the protocol's error body.
    with pytest.raises(InferenceServerException, match="missing tensor 'sex'"):
        inputs = [t for t in _triton_inputs(meta, frame) if t.name() != "sex"]
        client.infer(MODEL, inputs, headers=_auth())


def _oip_tensors(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record as OIP v2 JSON tensors, one per column."""
    return [
        {
            "name": column,
            "shape": [1],
            "datatype": "FP64" if isinstance(value, float | int) else "BYTES",
            "data": [value],
        }
        for column, value in record.items()
    ]


def test_out_of_range_numbers_and_deep_nesting_are_4xx_not_500(
    served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    """The two client mistakes that were 500s: a number the model's arithmetic overflows on
    (1e300, finite in JSON) and JSON nested 5,000 levels deep."""
    good = _records(adult_sample, 2)
    huge = _post(served, {"records": [good[0], {**good[1], "age": 1e300}]})
    assert huge.status_code == 422, huge.text
    assert huge.json()["details"][0]["loc"] == ["body", "records", 1, "age"]
    assert "age=1e+300" in huge.json()["error"]
    tensors = _oip_tensors({**good[0], "age": 1e300})
    infer = requests.post(
        served.predict_url.replace("v1/models", "v2/models").replace(":predict", "/infer"),
        json={"inputs": tensors},
        headers=_auth(),
        timeout=30,
    )
    assert infer.status_code == 422 and "age=1e+300" in infer.json()["error"], infer.text
    for body in (b"[" * 5000 + b"]" * 5000, b'{"records": [' * 1000, b"1" * 5000):
        nested = requests.post(served.predict_url, data=body, headers=_auth(), timeout=30)
        assert nested.status_code == 400, nested.text
        assert "not valid JSON" in nested.json()["error"]


def test_compressed_bodies_are_read_within_the_size_limit(
    served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    """tritonclient's request compression works; a small body that expands past
    max_body_bytes (a "zip bomb") is a 413, an unknown encoding a 415."""
    import gzip

    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=served.base_url.removeprefix("http://"))
    meta = client.get_model_metadata(MODEL, headers=_auth())
    frame = pd.DataFrame.from_records(_records(adult_sample, 3))
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            MODEL,
            _triton_inputs(meta, frame),
            request_compression_algorithm=algorithm,
            headers=_auth(),
        )
        assert result.as_numpy("prediction").shape == (3,)
    bomb = gzip.compress(b" " * 5_000_000)
    assert len(bomb) < 20_000  # under max_body_bytes as sent
    headers = {**_auth(), "Content-Encoding": "gzip"}
    expanded = requests.post(served.predict_url, data=bomb, headers=headers, timeout=30)
    assert expanded.status_code == 413 and "expands" in expanded.json()["error"]
    headers["Content-Encoding"] = "br"
    brotli = requests.post(served.predict_url, data=b"{}", headers=headers, timeout=30)
    assert brotli.status_code == 415 and "'br'" in brotli.json()["error"]


def test_wrong_methods_and_paths_are_405_and_404_in_the_error_body(
    served: ServedModel,
) -> None:
    """A GET on the predict path is a 405 (it was a 404 naming model 'x:predict'); every
    refusal has the one error body, and each answer one X-Request-ID."""
    get_predict = requests.get(served.predict_url, headers=_auth(), timeout=30)
    assert get_predict.status_code == 405, get_predict.text
    assert get_predict.headers["Allow"] == "POST"
    assert get_predict.json() == {"error": f"/v1/models/{MODEL}:predict takes POST", "details": []}
    get_infer = requests.get(f"{served.base_url}/v2/models/{MODEL}/infer", timeout=30)
    assert get_infer.status_code == 405 and get_infer.headers["Allow"] == "POST"
    assert set(get_infer.json()) == {"error", "details"} and "POST" in get_infer.json()["error"]
    nowhere = requests.get(f"{served.base_url}/v3/models", timeout=30)
    assert nowhere.status_code == 404 and nowhere.json()["error"].startswith("no API at /v3")
    for given in (None, "my-request-7"):
        sent = {} if given is None else {"X-Request-ID": given}
        answer = requests.get(
            f"{served.base_url}/v1/models/{MODEL}", headers=_auth() | sent, timeout=30
        )
        ids = answer.raw.headers.getlist("X-Request-ID")
        assert answer.status_code == 200 and len(ids) == 1, ids
        assert given is None or ids == [given]


def test_openapi_documents_the_error_answers_and_metrics_as_text(served: ServedModel) -> None:
    document = requests.get(f"{served.base_url}/openapi.json", timeout=30).json()
    predict = document["paths"]["/v1/models/{name}:predict"]["post"]["responses"]
    assert {"400", "404", "413", "422", "429"} <= set(predict)
    error_schema = predict["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error_schema.endswith("/ErrorBody")
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert {"400", "404", "413", "422"} <= set(infer["responses"])
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert "/v2/models/{name}/versions/{version}/infer" in document["paths"]
    assert "/v2" in document["paths"]
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_metrics_export_requests_latency_batches_and_version(
    served: ServedModel, champion: str
) -> None:
    deadline = time.monotonic() + 40
    text = ""
    while time.monotonic() < deadline:
        response = requests.get(f"{served.base_url}/metrics", headers=_auth("ops"), timeout=30)
        assert response.status_code == 200
        text = response.text
        if 'status="422"' in text and "ray_mlops_batch_size_bucket" in text:
            break
        time.sleep(1)
    # One prefix: Ray's exporter adds "ray_" to the names, which start "mlops_".
    assert "ray_ray_" not in text
    assert "ray_mlops_requests_total" in text and 'status="200"' in text and 'status="422"' in text
    assert "ray_mlops_request_latency_ms_bucket" in text
    assert "ray_mlops_batch_size_bucket" in text
    version_lines = [x for x in text.splitlines() if x.startswith("ray_mlops_model_version{")]
    names = sorted({x.split("{")[0].split(" ")[0] for x in text.splitlines() if "mlops" in x})
    assert any(x.endswith(f" {float(champion)}") for x in version_lines), names
    assert any(x.startswith("ray_mlops_replica_up{") for x in text.splitlines())


def test_a_sample_of_traffic_is_captured_to_parquet(
    served: ServedModel, workspace: Path, champion: str
) -> None:
    deadline = time.monotonic() + 20
    captured = pd.DataFrame()
    while time.monotonic() < deadline:
        captured = read_capture(workspace / "capture")
        # The first request alone has 40 rows: wait for the files of the ones after it too.
        if len(captured) >= 40 and captured["request_id"].nunique() > 1:
            break
        time.sleep(0.5)
    assert len(captured) >= 40
    row = captured.iloc[0]
    assert row["model_name"] == MODEL and row["model_version"] == champion
    assert "age" in json.loads(row["features"]) and row["latency_ms"] >= 0
    assert captured["request_id"].nunique() > 1


def test_schemathesis_fuzzing_finds_no_server_error(served: ServedModel, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "schemathesis"
    done = subprocess.run(
        [
            str(cli), "run", f"{served.base_url}/openapi.json",
            "--checks", "not_a_server_error",
            "--max-examples", "40",
            "--header", f"Authorization: Bearer {KEYS['ops']}",
            "--generation-deterministic",
            "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    # Both predict APIs were fuzzed (a summary line per operation), none answered a 5xx.
    assert "predict" in done.stdout and "infer" in done.stdout, done.stdout[-4000:]


def _load(
    served: ServedModel, body: Any, seconds: float, threads: int = 4
) -> list[tuple[int, str]]:
    """Steady traffic: (status, version) of every request."""
    results: list[tuple[int, str]] = []
    stop = time.monotonic() + seconds

    def worker() -> None:
        session = requests.Session()
        while time.monotonic() < stop:
            try:
                response = session.post(served.predict_url, json=body, headers=_auth(), timeout=30)
                version = response.json().get("model_version", "") if response.ok else ""
                results.append((response.status_code, version))
            except requests.RequestException:
                results.append((0, ""))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


def test_alias_move_under_load_switches_versions_without_a_failed_request(
    served: ServedModel, champion: str, twin: str, tracking_uri: str, adult_sample: pd.DataFrame
) -> None:
    client = MlflowClient(tracking_uri)
    body = {"records": _records(adult_sample, 2)}
    mover = threading.Timer(3.0, client.set_registered_model_alias, (MODEL, "champion", twin))
    mover.start()
    try:
        results = _load(served, body, seconds=12)
    finally:
        mover.join()
        client.set_registered_model_alias(MODEL, "champion", champion)
    statuses = Counter(status for status, _ in results)
    assert statuses == Counter({200: len(results)}), statuses
    versions = [v for _, v in results]
    assert versions[0] == champion and versions[-1] == twin
    switched = versions.index(twin)
    assert set(versions[switched + 20 :]) <= {twin}
    # Back to the champion for the tests that follow.
    deadline = time.monotonic() + 20
    while _post(served, body).json()["model_version"] != champion and time.monotonic() < deadline:
        time.sleep(0.5)


FAILING_MODEL = """
import mlflow.pyfunc
from mlflow.models import set_model


class Failing(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this model version fails on every call")


set_model(Failing())
"""


@pytest.fixture
def failing_version(
    champion: str, tracking_uri: str, workspace: Path, adult_sample: pd.DataFrame
) -> Iterator[str]:
    """A registered version of the model, with the champion's inputs, whose predict raises:
    the one way left for the server to fail on a request. Deleted after the test."""
    import mlflow
    from mlflow.models import infer_signature

    from ray_mlops.signing import ensure_key_pair, key_dir, sign_model

    code = workspace / "failing_model.py"
    code.write_text(FAILING_MODEL)
    frame = pd.DataFrame.from_records(_records(adult_sample, 2))
    numeric = ["age", "education_num", "capital_gain", "hours_per_week"]
    signature = infer_signature(frame.astype({c: "float64" for c in numeric}))
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(
        "failing-model", artifact_location=(workspace / "failing-artifacts").as_uri()
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                signature=signature,
                pip_requirements=["mlflow"],
                registered_model_name=MODEL,
            )
        # Signed where it is stored, as ray-mlops signs what it registers: replicas load
        # only signed versions (governance.signing), and this one must load to fail.
        stored = mlflow.get_logged_model(info.model_id).artifact_location
        sign_model(Path(stored.removeprefix("file://")), ensure_key_pair(key_dir())[0])
    finally:
        mlflow.set_tracking_uri(previous)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(MODEL, "challenger", version)
    yield version
    client.delete_registered_model_alias(MODEL, "challenger")
    client.delete_model_version(MODEL, version)


def test_a_server_failure_is_a_500_in_the_error_body_and_counted(
    deploy: Callable[..., ServedModel], failing_version: str, adult_sample: pd.DataFrame
) -> None:
    """500s are in the project's requests_total (they were only in Serve's own counter)."""
    # The failing version is loaded as challenger, answering no share of traffic: only a
    # request for its version reaches it.
    served = deploy(rollout={"mode": "canary", "canary_share": 0.0})
    try:
        tensors = _oip_tensors(_records(adult_sample, 1)[0])
        url = f"{served.base_url}/v2/models/{MODEL}/versions/{failing_version}/infer"
        headers = {**_auth(), "X-Request-ID": "fails-1"}
        failed = requests.post(url, json={"inputs": tensors}, headers=headers, timeout=60)
        assert failed.status_code == 500, failed.text
        assert failed.json() == {
            "error": "internal server error; request id fails-1, see the server log",
            "details": [],
        }
        deadline = time.monotonic() + 40
        counted: list[str] = []
        while not counted and time.monotonic() < deadline:
            text = requests.get(f"{served.base_url}/metrics", headers=_auth("ops"), timeout=30).text
            counted = [
                line
                for line in text.splitlines()
                if line.startswith("ray_mlops_requests_total{")
                and 'status="500"' in line
                and 'route="v2_infer"' in line
            ]
            time.sleep(1)
        assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1
    finally:
        deploy()


def test_canary_sends_its_share_to_the_challenger(
    deploy: Callable[..., ServedModel],
    champion: str,
    twin: str,
    tracking_uri: str,
    adult_sample: pd.DataFrame,
) -> None:
    MlflowClient(tracking_uri).set_registered_model_alias(MODEL, "challenger", twin)
    served = deploy(rollout={"mode": "canary", "canary_share": 0.3})
    body = {"records": _records(adult_sample, 1)}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _post(served, body).json(), range(250)))
    share = sum(a["model_version"] == twin for a in answers) / len(answers)
    # 3 standard deviations of a binomial share of 0.3 over 250 requests: about 0.09.
    assert 0.21 <= share <= 0.39, share
    assert {a["model_version"] for a in answers} == {champion, twin}


def test_shadow_traffic_reaches_the_challenger_but_never_the_caller(
    deploy: Callable[..., ServedModel],
    champion: str,
    twin: str,
    workspace: Path,
    adult_sample: pd.DataFrame,
) -> None:
    served = deploy(rollout={"mode": "shadow"})
    started = pd.Timestamp.now(tz="UTC")
    body = {"records": _records(adult_sample, 1)}
    answers = [_post(served, body).json() for _ in range(30)]
    assert {a["model_version"] for a in answers} == {champion}
    deadline = time.monotonic() + 20
    shadowed = pd.DataFrame()
    while time.monotonic() < deadline:
        captured = read_capture(workspace / "capture")
        shadowed = captured[(captured["model_version"] == twin) & (captured["time"] >= started)]
        if len(shadowed) >= 30:
            break
        time.sleep(0.5)
    assert len(shadowed) >= 30  # the challenger answered every mirrored request


def _replicas(app: str = MODEL) -> int:
    from ray import serve

    states = serve.status().applications[app].deployments["ModelServer"].replica_states
    return int(states.get("RUNNING", 0))


def test_a_serve_change_reconfigures_the_replica_in_place_and_a_late_answer_is_a_504(
    deploy: Callable[..., ServedModel], adult_sample: pd.DataFrame
) -> None:
    """Only the serve section changed: the same replica process applies the new deadline
    (Serve's user_config and reconfigure), with no new replica, reload or drain."""
    before = deploy()
    pid = requests.get(f"{before.base_url}/healthz", timeout=10).json()["pid"]
    body = {"records": _records(adult_sample, 5)}
    assert _post(before, body).status_code == 200
    served = deploy(request_timeout_s=0.0001)
    response = _post(served, body)
    assert response.status_code == 504 and "deadline" in response.json()["error"]
    assert requests.get(f"{served.base_url}/healthz", timeout=10).json()["pid"] == pid
    assert _replicas() == 1


def test_autoscaling_adds_replicas_under_load_and_removes_them_after(
    deploy: Callable[..., ServedModel], adult_sample: pd.DataFrame
) -> None:
    served = deploy(
        autoscaling={
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 1,
            "upscale_delay_s": 0.5,
            "downscale_delay_s": 3,
            # Serve's 30-s average would keep the load in view for half a minute after it ends.
            "look_back_period_s": 11,
        }
    )
    assert _replicas() == 1
    body = {"records": _records(adult_sample, 20)}
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _replicas())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        deadline = time.monotonic() + 60
        while peak < 2 and time.monotonic() < deadline:
            _load(served, body, seconds=3, threads=8)
    finally:
        stop.set()
        watcher.join()
    assert peak == 2
    deadline = time.monotonic() + 60
    while _replicas() > 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert _replicas() == 1


def test_a_killed_replica_under_load_costs_almost_nothing_and_is_replaced(
    deploy: Callable[..., ServedModel], adult_sample: pd.DataFrame
) -> None:
    served = deploy(num_replicas=2, autoscaling=None)

    def replica_pids() -> set[int]:
        """The processes of the replicas that answer, seen through the load balancer."""
        session = requests.Session()
        return {
            session.get(f"{served.base_url}/healthz", timeout=10).json()["pid"] for _ in range(40)
        }

    def settle(ready: Callable[[set[int]], bool]) -> set[int]:
        """The answering replicas once ``ready`` holds for them, or after 60 s."""
        deadline = time.monotonic() + 60
        pids = replica_pids()
        while not ready(pids) and time.monotonic() < deadline:
            time.sleep(1)
            pids = replica_pids()
        return pids

    # The deployment keeps its version (only num_replicas changed), so Serve scales the
    # running replica up in place; the load balancer lists the new one a moment later.
    before = settle(lambda pids: len(pids) == 2)
    assert len(before) == 2
    victim = min(before)
    killer = threading.Timer(3.0, os.kill, (victim, signal.SIGKILL))
    killer.start()
    results = _load(served, {"records": _records(adult_sample, 1)}, seconds=18, threads=4)
    killer.join()
    ok = sum(status == 200 for status, _ in results)
    # Enough requests that 99.9% means something: at most 1 lost per 1000.
    assert len(results) > 1000
    assert ok / len(results) >= 0.999, Counter(s for s, _ in results)
    now = settle(lambda pids: len(pids) == 2 and victim not in pids)
    assert len(now) == 2 and victim not in now


def test_serve_config_export_is_what_serve_deploy_accepts(
    base_cfg: PipelineConfig, workspace: Path, tracking_uri: str, tmp_path: Path
) -> None:
    from ray.serve.schema import ServeDeploySchema

    out = tmp_path / "serve.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "serve", "adult-test.yaml", "--export", str(out)],
        cwd=workspace, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    import yaml

    document = yaml.safe_load(out.read_text())
    parsed = ServeDeploySchema.model_validate(document)
    app = parsed.applications[0]
    assert app.import_path == "ray_mlops.serve.app:build_app"
    assert app.runtime_env["env_vars"]["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert app.deployments[0].name == "ModelServer"
    # serve.access_log (off by default) reaches Serve's own logging config.
    assert document["applications"][0]["deployments"][0]["logging_config"] == {
        "enable_access_log": False
    }


def test_stopping_the_server_writes_every_captured_request(
    deploy: Callable[..., ServedModel], workspace: Path, adult_sample: pd.DataFrame
) -> None:
    """Runs last in this module: it stops Serve. Rows a replica still buffers when Serve is
    stopped (as ``ray-mlops serve`` does on Ctrl-C) are written, not lost with the process."""
    folder = workspace / "capture-at-stop"
    capture = {"enabled": True, "sample_rate": 1.0, "path": str(folder), "flush_interval_s": 600}
    served = deploy(capture=capture)
    sent = [f"stop-{i}" for i in range(25)]
    body = {"records": _records(adult_sample, 1)}
    for request_id in sent:
        headers = {**_auth(), "X-Request-ID": request_id}
        assert requests.post(served.predict_url, json=body, headers=headers, timeout=60).ok
    assert read_capture(folder).empty  # all of it still in the replica's buffer
    stop_serving()
    assert set(read_capture(folder)["request_id"]) == set(sent)
