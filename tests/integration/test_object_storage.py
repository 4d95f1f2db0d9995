"""A workspace in an object store: a real S3-compatible server (moto's standalone server).

The capture writer, its reader, the monitor's window reader (its decoding in Ray Data tasks),
checkpoint fetching and the preflight's storage check talk to the server through pyarrow, as
Ray Train, Tune and Data do. The Ray side (checkpoints,
Tune state, quarantine from workers on several nodes) is tested on the local cluster
(tests/cluster/).
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ray_mlops.config import LoadedConfig, PipelineConfig
from ray_mlops.errors import ConfigError
from ray_mlops.preflight import preflight
from ray_mlops.serve.capture import TrafficCapture, read_capture
from ray_mlops.storage import fetch_directory, location_of, open_location
from ray_mlops.workspace import Workspace

BUCKET = "ray-mlops-test"
WHEN = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)
DATA = Path(__file__).resolve().parents[2] / "ray_mlops" / "datasets" / "adult" / "adult.csv.gz"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the AWS variables pointing at it."""
    port = _free_port()
    server = str(Path(sys.executable).parent / "moto_server")
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _AWS}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.kill()
        process.wait()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
)


def _objects(prefix: str) -> list[str]:
    import boto3

    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _offer(capture: TrafficCapture, request_id: str, n: int) -> None:
    records: list[dict[str, Any]] = [{"age": 30 + i, "sex": "F"} for i in range(n)]
    capture.offer(
        request_id=request_id,
        model_name="adult",
        model_version="3",
        records=records,
        predictions=[">50K"] * n,
        probabilities=[{"<=50K": 0.25, ">50K": 0.75}] * n,
        latency_ms=4.5,
        time=WHEN,
    )


def test_capture_writes_whole_parquet_objects_to_the_bucket_and_reads_them_back(
    s3_endpoint: str,
) -> None:
    location = f"s3://{BUCKET}/runs/capture"
    capture = TrafficCapture(
        location, sample_rate=1.0, max_buffer=100, flush_rows=4, flush_interval_s=0.2, replica="r1"
    )
    assert capture.path is None and capture.location == location
    for i in range(3):
        _offer(capture, f"req-{i}", n=3)
    capture.close()
    assert capture.stats()["written"] == 9 and capture.stats()["failed_writes"] == 0
    keys = _objects("runs/capture/")
    assert keys and all(k.startswith("runs/capture/date=2026-12-05/part-r1-") for k in keys)
    assert all(k.endswith(".parquet") for k in keys)  # no temporary objects left behind
    frame = read_capture(location)
    assert len(frame) == 9
    assert sorted(set(frame["request_id"])) == ["req-0", "req-1", "req-2"]
    assert set(frame["date"]) == {"2026-12-05"}
    assert read_capture(f"s3://{BUCKET}/runs/nothing-here").empty


def test_a_checkpoint_prefix_is_fetched_to_a_local_folder_and_its_uri_rebuilt(
    s3_endpoint: str, tmp_path: Path
) -> None:
    filesystem, path = open_location(f"s3://{BUCKET}/ckpt/checkpoint_000003")
    with filesystem.open_output_stream(f"{path}/weights.pt") as out:
        out.write(b"weights")
    with filesystem.open_output_stream(f"{path}/spec.json") as out:
        out.write(b"{}")
    # Ray reports an object store checkpoint as bucket/key, without the scheme.
    assert location_of(filesystem, path) == f"s3://{BUCKET}/ckpt/checkpoint_000003"
    with fetch_directory(location_of(filesystem, path)) as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["spec.json", "weights.pt"]
        assert (folder / "weights.pt").read_bytes() == b"weights"
        fetched = folder
    assert not fetched.exists()  # the copy is removed


def _loaded(tmp_path: Path, storage: str) -> LoadedConfig:
    shutil.copy(DATA, tmp_path / "adult.csv.gz")
    pipeline = PipelineConfig.model_validate(
        {
            "name": "s3-check",
            "data": {"path": "adult.csv.gz", "target": "income", "numeric": ["age"]},
            "workspace": {"storage": storage},
        }
    )
    return LoadedConfig(pipeline=pipeline, source=tmp_path / "pipeline.yaml")


def test_preflight_reaches_the_object_store_and_refuses_one_it_cannot_reach(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _loaded(tmp_path, f"s3://{BUCKET}/runs")
    workspace = Workspace.of(loaded, tmp_path)
    preflight(loaded, workspace)  # the bucket answers
    assert workspace.ray_results == f"s3://{BUCKET}/runs/ray_results"
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nobody there
    with pytest.raises(ConfigError, match=r"workspace.storage s3://ray-mlops-test/runs cannot be"):
        preflight(loaded, Workspace.of(loaded, tmp_path))


def test_ray_gets_an_s3_filesystem_that_rides_out_a_store_refusing_connections(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    import pyarrow.fs as pafs

    from ray_mlops.storage import ray_storage

    assert ray_storage("/srv/shared/runs") == ("/srv/shared/runs", None)
    assert ray_storage(Path("/srv/shared/runs")) == ("/srv/shared/runs", None)  # a Path too
    port = _free_port()  # nobody listens there for the first 2 s
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    path, filesystem = ray_storage(f"s3://{BUCKET}/runs/")
    assert path == f"{BUCKET}/runs" and isinstance(filesystem, pafs.S3FileSystem)
    # Ray ships the filesystem to the Train controller and workers: pickled, it still retries.
    filesystem = pickle.loads(pickle.dumps(filesystem))
    default, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}/runs")
    with pytest.raises(OSError):  # Arrow's default client gives up at once
        default.get_file_info(f"{BUCKET}/runs")
    late = subprocess.Popen(
        ["sleep 2 && exec " + str(Path(sys.executable).parent / "moto_server")
         + f" -H 127.0.0.1 -p {port}"],
        shell=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = time.monotonic()
        info = filesystem.get_file_info(f"{BUCKET}/runs")  # retried until the store answers
        assert time.monotonic() - started >= 1.5
        assert info.type == pafs.FileType.NotFound  # a fresh store: reached, nothing there
    finally:
        late.kill()
        late.wait()


def test_the_monitor_reads_a_window_of_capture_from_the_bucket(
    s3_endpoint: str, ray_session: None
) -> None:
    from datetime import timedelta

    from ray_mlops.monitor.reader import read_windows

    location = f"s3://{BUCKET}/monitor/capture"
    capture = TrafficCapture(
        location, sample_rate=1.0, max_buffer=100, flush_rows=4, flush_interval_s=0.2, replica="r2"
    )
    for i in range(4):
        _offer(capture, f"m-{i}", n=2)
    capture.close()
    hour = (WHEN - timedelta(minutes=30), WHEN + timedelta(minutes=30))
    later = (WHEN + timedelta(hours=1), WHEN + timedelta(hours=2))
    # The count (Arrow's scanner in this process) and the decode (Ray Data tasks, which get
    # the driver's S3 filesystem) both read the bucket.
    found, empty = read_windows(
        location, "adult", [hour, later], numeric=["age"], categorical=["sex"],
        labels=["<=50K", ">50K"],
    )  # fmt: skip
    assert found.rows == 8 and found.versions == ("3",) and empty.rows == 0
    assert sorted(found.frame["age"]) == [30.0, 30.0, 30.0, 30.0, 31.0, 31.0, 31.0, 31.0]
    assert set(found.frame["probability_>50K"]) == {0.75}


def test_the_audit_log_chains_records_as_objects_under_concurrent_writers_and_finds_a_deletion(
    s3_endpoint: str,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ray_mlops.audit import actions, audit_log

    location = f"s3://{BUCKET}/ws/audit"

    def append_five(writer: int) -> None:
        log = audit_log(location)  # a filesystem of its own, as another process would have
        for i in range(5):
            log.append(action=actions.PROMOTE, target=f"m/v{writer}{i}", actor=f"w{writer}")

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(append_five, range(3)))
    log = audit_log(location)
    result = log.verify()
    assert result.intact and result.records == 15, result.message
    assert len({r.target for r in log.records()}) == 15
    assert "ws/audit/head.json" in _objects("ws/audit/")
    # One object per record (a writer that lost a race left at most an empty folder marker).
    keys = [k for k in _objects("ws/audit/records/") if k.endswith(".json")]
    assert len(keys) == 15 and keys[7].startswith("ws/audit/records/000000000007/")

    import boto3

    boto3.client("s3").delete_object(Bucket=BUCKET, Key=keys[7])
    result = audit_log(location).verify()
    assert (result.kind, result.seq) == ("deleted", 7)
    assert "record 7 deleted: object records/000000000008/" in result.message
