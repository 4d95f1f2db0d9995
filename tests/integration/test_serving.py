"""The served champion over real HTTP, against the same model loaded without Ray."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from ray_mlops.config import load_config
from ray_mlops.pipeline import PipelineResult
from ray_mlops.serve.launch import ServedModel, deploy_model, stop_serving

LOAD_WITHOUT_RAY = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model("models:/adult-test@champion")
records = json.load(sys.stdin)["records"]
# The signature declares numeric inputs as doubles: MLflow refuses int64 -> double.
numeric = ["age", "education_num", "capital_gain", "hours_per_week"]
frame = pd.DataFrame.from_records(records).astype({c: "float64" for c in numeric})
out = model.predict(frame)
assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules), "ray was imported"
print(out.to_json(orient="records", double_precision=15))
"""


@pytest.fixture(scope="module")
def served(trained: PipelineResult, workspace: Path, tracking_uri: str) -> Iterator[ServedModel]:
    cfg = load_config(workspace / "adult-test.yaml").pipeline
    yield deploy_model(cfg, tracking_uri)
    stop_serving()


def _records(sample: pd.DataFrame, rows: int) -> list[dict[str, object]]:
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
    frame = sample[columns].iloc[:rows].astype(object)
    return json.loads(frame.where(frame.notna(), None).to_json(orient="records"))


def test_http_and_a_ray_free_process_give_the_same_predictions(
    served: ServedModel, trained: PipelineResult, adult_sample: pd.DataFrame, tracking_uri: str
) -> None:
    records = _records(adult_sample, 40)
    assert any(r["workclass"] is None for r in records), "cover missing values too"
    response = requests.post(served.predict_url, json={"records": records}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "adult-test"
    assert body["model_version"] == trained.model_version
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_RAY],
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


def test_concurrent_requests_are_answered_each_with_its_own_rows(
    served: ServedModel, adult_sample: pd.DataFrame
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    records = _records(adult_sample, 16)
    single = requests.post(served.predict_url, json={"records": records}, timeout=60).json()

    def one(i: int) -> str:
        body = requests.post(served.predict_url, json={"records": [records[i]]}, timeout=60)
        return str(body.json()["predictions"][0])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == single["predictions"]


def test_client_mistakes_are_4xx_with_messages(served: ServedModel) -> None:
    bad_json = requests.post(served.predict_url, data=b"{oops", timeout=30)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    missing = requests.post(served.predict_url, json={"records": [{"age": 30}]}, timeout=30)
    assert missing.status_code == 422
    locs = {tuple(d["loc"]) for d in missing.json()["details"]}
    assert ("body", "records", 0, "sex") in locs
    other = served.predict_url.replace("adult-test", "other-model")
    assert requests.post(other, json={"records": []}, timeout=30).status_code == 404


def test_metadata_describes_inputs_and_gives_a_working_example(served: ServedModel) -> None:
    meta = requests.get(f"{served.base_url}/v1/models/adult-test", timeout=30).json()
    assert meta["inputs"]["numeric"] == ["age", "education_num", "capital_gain", "hours_per_week"]
    answer = requests.post(served.predict_url, json=meta["example_request"], timeout=30)
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == len(meta["example_request"]["records"])
