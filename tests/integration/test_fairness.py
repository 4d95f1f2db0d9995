"""A server flooded by one API key keeps answering the others (issue 28, per-key fairness).

The session's champion served for real (Ray Serve behind HAProxy, loopback only); two keys
with the same rate limit. One floods at ten times its rate for 20 s while the other sends at
a normal pace: the flood is cut to its rate with 429s carrying Retry-After, and the steady key
gets at least 99% of its answers, on time. Open loop: each request leaves at its planned time
whatever happened to the ones before, as a real flood does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest

from ray_mlops.config import load_config
from ray_mlops.pipeline import PipelineResult
from ray_mlops.serve.guard import generate_key, hash_key
from ray_mlops.serve.launch import ServedModel, deploy_model, stop_serving

RATE = 10.0  # each key's requests_per_s
BURST = 10
FLOOD_RATE = 10 * RATE  # the 10x
STEADY_RATE = 0.8 * RATE  # a normal client, below its limit
SECONDS = 20.0
TIMEOUT_S = 5.0  # an answer later than this counts as a failure
KEYS = {"flood": generate_key(), "steady": generate_key()}


@dataclass
class Outcome:
    """What one key's requests got: status codes (0: no answer in time) and Retry-After."""

    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: list[str | None] = field(default_factory=list)
    sent: int = 0
    elapsed_s: float = 0.0


@pytest.fixture(scope="module")
def fair_server(
    trained: PipelineResult, workspace: Path, tracking_uri: str
) -> Iterator[ServedModel]:
    base = load_config(workspace / "adult-test.yaml").pipeline
    keys = [
        {"name": name, "sha256": hash_key(key), "requests_per_s": RATE, "burst": BURST}
        for name, key in KEYS.items()
    ]
    serve = base.serve.model_validate(
        {
            **base.serve.model_dump(mode="json"),
            "host": "127.0.0.1",
            "auth": {"enabled": True, "keys": keys},
            "cpus_per_replica": 0.25,
        }
    )
    cfg = base.model_copy(update={"serve": serve})
    yield deploy_model(cfg, tracking_uri, base_dir=workspace)
    stop_serving()


async def _send(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str, outcome: Outcome
) -> None:
    try:
        async with session.post(url, json=body, headers={"X-API-Key": key}) as response:
            await response.read()
            outcome.statuses[response.status] += 1
            if response.status == 429:
                outcome.retry_after.append(response.headers.get("Retry-After"))
    except (TimeoutError, aiohttp.ClientError):
        outcome.statuses[0] += 1


async def _pace(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str, rate: float
) -> Outcome:
    """Requests at ``rate`` per second for :data:`SECONDS`, each at its planned time."""
    outcome, tasks = Outcome(), []
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(int(rate * SECONDS)):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_send(session, url, body, key, outcome)))
        outcome.sent += 1
    outcome.elapsed_s = loop.time() - start
    await asyncio.gather(*tasks)
    return outcome


async def _flood_and_steady(url: str, body: dict[str, Any]) -> tuple[Outcome, Outcome]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        flood, steady = await asyncio.gather(
            _pace(session, url, body, KEYS["flood"], FLOOD_RATE),
            _pace(session, url, body, KEYS["steady"], STEADY_RATE),
        )
    return flood, steady


def test_a_key_flooding_at_ten_times_its_rate_does_not_starve_another_key(
    fair_server: ServedModel, adult_sample: pd.DataFrame
) -> None:
    columns = ["age", "education_num", "capital_gain", "hours_per_week", "workclass"]
    columns += ["education", "marital_status", "occupation", "sex"]
    record = adult_sample[columns].iloc[0].to_dict()
    body = {"records": [{k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}]}
    began = time.monotonic()
    flood, steady = asyncio.run(_flood_and_steady(fair_server.predict_url, body))
    took = time.monotonic() - began

    # The flood really was ten times the key's rate, for the whole 20 s.
    assert flood.sent == int(FLOOD_RATE * SECONDS)
    assert flood.sent / flood.elapsed_s >= 0.9 * FLOOD_RATE, flood
    # It was cut to its own rate: 429s with Retry-After, never more 200s than the bucket gives.
    allowed = RATE * took + BURST
    assert flood.statuses[200] <= allowed, (flood.statuses, allowed)
    assert flood.statuses[429] >= flood.sent - allowed - flood.statuses[0], flood.statuses
    assert flood.retry_after and all(int(value or 0) >= 1 for value in flood.retry_after)
    # The other key was answered as if nobody flooded.
    assert steady.sent == int(STEADY_RATE * SECONDS)
    success = steady.statuses[200] / steady.sent
    assert success >= 0.99, (steady.statuses, flood.statuses)
    assert took < SECONDS + 2 * TIMEOUT_S
