from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ray_mlops.config import ApiKeyConfig, AuthConfig
from ray_mlops.serve.guard import (
    ANONYMOUS,
    KeyStore,
    Principal,
    RateLimiter,
    RateLimitExceeded,
    generate_key,
    hash_key,
    new_key_entry,
)
from ray_mlops.serve.schema import RequestError

PREDICT_KEY = "rmk_predict-secret"
ADMIN_KEY = "rmk_admin-secret"


def _store() -> KeyStore:
    return KeyStore(
        [
            ApiKeyConfig(name="app", sha256=hash_key(PREDICT_KEY), role="predict"),
            ApiKeyConfig(name="ops", sha256=hash_key(ADMIN_KEY), role="admin"),
        ]
    )


def _refused(call: Callable[..., object], *args: object) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args)
    return caught.value


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- keys -------------------------------------------------------------------------------


def test_hash_is_stable_hex_sha256_and_entries_never_hold_the_key() -> None:
    assert hash_key("abc") == hash_key("abc")
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    key, entry = new_key_entry("ci-bot", "admin")
    assert key.startswith("rmk_") and len(key) > 40
    assert entry == {"name": "ci-bot", "sha256": hash_key(key), "role": "admin"}
    assert key not in yaml.safe_dump(entry)
    assert generate_key() != generate_key()


def test_new_key_entry_rejects_a_bad_role() -> None:
    with pytest.raises(ValueError):
        new_key_entry("ci", "root")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {PREDICT_KEY}"},
        {"authorization": f"bearer {PREDICT_KEY}"},
        {"AUTHORIZATION": f"BEARER  {PREDICT_KEY} "},
        {"X-API-Key": PREDICT_KEY},
        {"x-api-key": PREDICT_KEY},
        {"Authorization": "Basic dXNlcjpwdw==", "X-Api-Key": PREDICT_KEY},
    ],
)
def test_bearer_and_api_key_headers_are_accepted(headers: dict[str, str]) -> None:
    assert _store().authenticate(headers) == Principal("app", "predict", None)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"X-API-Key": " "}])
def test_missing_key_is_401_naming_the_headers(headers: dict[str, str]) -> None:
    error = _refused(_store().authenticate, headers)
    assert error.status == 401
    assert "Authorization: Bearer" in error.message and "X-API-Key" in error.message


def test_wrong_key_is_401() -> None:
    error = _refused(_store().authenticate, {"X-API-Key": "rmk_guess"})
    assert (error.status, error.message) == (401, "invalid API key")
    assert error.to_body() == {"error": "invalid API key", "details": []}


def test_roles_predict_below_admin() -> None:
    store = _store()
    app = store.authenticate({"X-API-Key": PREDICT_KEY})
    ops = store.authenticate({"X-API-Key": ADMIN_KEY})
    store.authorize(app, "predict")
    error = _refused(store.authorize, app, "admin")
    assert error.status == 403
    assert error.message == "the key 'app' has role 'predict'; this endpoint needs 'admin'"
    store.authorize(ops, "predict")
    store.authorize(ops, "admin")
    with pytest.raises(ValueError, match="unknown role"):
        store.authorize(ops, "root")


def test_disabled_auth_is_the_anonymous_admin(tmp_path: Path) -> None:
    for store in (
        KeyStore.disabled(),
        # A disabled store does not read its keys file, even a missing one.
        KeyStore.from_config(AuthConfig(enabled=False, keys_file="absent.yaml"), tmp_path),
    ):
        assert store.authenticate({}) == ANONYMOUS == Principal("anonymous", "admin", None)
        store.authorize(ANONYMOUS, "admin")


def test_keys_file_loads_with_inline_keys(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text(
        yaml.safe_dump(
            [{"name": "ops", "sha256": hash_key(ADMIN_KEY), "role": "admin", "requests_per_s": 5}]
        )
    )
    auth = AuthConfig(
        enabled=True,
        keys=[ApiKeyConfig(name="app", sha256=hash_key(PREDICT_KEY))],
        keys_file="keys.yaml",
    )
    store = KeyStore.from_config(auth, tmp_path)
    assert len(store) == 2
    assert store.authenticate({"X-API-Key": ADMIN_KEY}) == Principal("ops", "admin", 5.0)
    assert store.authenticate({"X-API-Key": PREDICT_KEY}).role == "predict"


def test_bad_keys_file_entry_names_file_index_and_field(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        yaml.safe_dump(
            [
                {"name": "ok", "sha256": hash_key("a")},
                {"name": "bad", "sha256": "not-a-hash", "role": "predict"},
            ]
        )
    )
    auth = AuthConfig(enabled=True, keys_file=str(path))
    with pytest.raises(ValueError) as caught:
        KeyStore.from_config(auth, tmp_path)
    message = str(caught.value)
    assert str(path) in message and "entry 1" in message and "'sha256'" in message


def test_missing_or_malformed_keys_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not found: .*absent\.yaml"):
        KeyStore.from_config(AuthConfig(enabled=True, keys_file="absent.yaml"), tmp_path)
    (tmp_path / "map.yaml").write_text("name: x\n")
    with pytest.raises(ValueError, match=r"map\.yaml: expected a list"):
        KeyStore.from_config(AuthConfig(enabled=True, keys_file="map.yaml"), tmp_path)


def test_enabled_without_keys_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no API key"):
        KeyStore.from_config(AuthConfig(enabled=True), tmp_path)


def test_duplicate_names_or_hashes_raise(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text(
        yaml.safe_dump([{"name": "app", "sha256": hash_key("other")}])
    )
    auth = AuthConfig(
        enabled=True,
        keys=[ApiKeyConfig(name="app", sha256=hash_key(PREDICT_KEY))],
        keys_file="keys.yaml",
    )
    with pytest.raises(ValueError, match=r"duplicate API key name 'app' \(auth\.keys\[0\] and"):
        KeyStore.from_config(auth, tmp_path)
    with pytest.raises(ValueError, match="same sha256"):
        KeyStore(
            [
                ApiKeyConfig(name="a", sha256=hash_key(PREDICT_KEY)),
                ApiKeyConfig(name="b", sha256=hash_key(PREDICT_KEY)),
            ]
        )


# --- rate limits --------------------------------------------------------------------------

APP = Principal("app", "predict", None)


def test_burst_passes_then_429_with_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_s=4.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.check(APP)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.check(APP)
    error = caught.value
    assert isinstance(error, RequestError) and error.status == 429
    assert error.message == "rate limit of 4 requests/s exceeded for key 'app'"
    assert error.retry_after_s == pytest.approx(0.25)
    assert error.headers == {"Retry-After": "1"}


def test_retry_after_header_rounds_up() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_s=0.4, burst=1, clock=clock)
    limiter.check(APP)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.check(APP)
    assert caught.value.retry_after_s == pytest.approx(2.5)
    assert caught.value.headers == {"Retry-After": "3"}


def test_bucket_refills_at_the_rate() -> None:
    clock = FakeClock(1000.0)
    limiter = RateLimiter(requests_per_s=10.0, burst=2, clock=clock)
    limiter.check(APP)
    limiter.check(APP)
    with pytest.raises(RateLimitExceeded):
        limiter.check(APP)
    clock.now += 0.1  # exactly one token, despite float rounding
    limiter.check(APP)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.check(APP)
    assert caught.value.retry_after_s == pytest.approx(0.1)
    clock.now += 60  # refills to the burst, never beyond
    limiter.check(APP)
    limiter.check(APP)
    with pytest.raises(RateLimitExceeded):
        limiter.check(APP)


def test_a_keys_own_rate_overrides_the_default() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_s=100.0, burst=1, clock=clock)
    slow = Principal("slow", "predict", 2.0)
    limiter.check(slow)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.check(slow)
    assert caught.value.retry_after_s == pytest.approx(0.5)
    assert "rate limit of 2 requests/s" in caught.value.message
    clock.now += 0.25
    with pytest.raises(RateLimitExceeded):
        limiter.check(slow)
    clock.now += 0.25
    limiter.check(slow)


def test_a_keys_own_burst_overrides_the_default() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_s=1.0, burst=100, clock=clock)
    tight = Principal("tight", "predict", None, 2)
    limiter.check(tight)
    limiter.check(tight)
    with pytest.raises(RateLimitExceeded):
        limiter.check(tight)
    loose = Principal("loose", "predict", None)
    for _ in range(100):
        limiter.check(loose)


def test_keys_have_independent_buckets() -> None:
    limiter = RateLimiter(requests_per_s=1.0, burst=1, clock=FakeClock())
    limiter.check(APP)
    with pytest.raises(RateLimitExceeded):
        limiter.check(APP)
    limiter.check(Principal("other", "predict", None))


def test_bucket_count_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_s=1.0, burst=5, clock=clock, max_buckets=3)
    for i in range(10):
        limiter.check(Principal(f"k{i}", "predict", None))
    assert len(limiter) == 3
    clock.now += 5.0  # every bucket is full again: all idle ones go
    limiter.check(APP)
    assert len(limiter) == 1


def test_idle_eviction_keeps_buckets_still_refilling() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_s=1.0, burst=2, clock=clock)
    for _ in range(2):
        limiter.check(APP)  # empty: needs 2 s to be full again
    clock.now += 1.0
    limiter.check(Principal("other", "predict", None))
    assert len(limiter) == 2
    limiter.check(APP)  # the one token refilled in 1 s, not a fresh burst
    with pytest.raises(RateLimitExceeded):
        limiter.check(APP)


def test_concurrent_checks_allow_exactly_the_burst() -> None:
    limiter = RateLimiter(requests_per_s=1.0, burst=200, clock=FakeClock())
    allowed = [0] * 8
    start = threading.Barrier(8)

    def worker(slot: int) -> None:
        start.wait()
        for _ in range(100):
            try:
                limiter.check(APP)
            except RateLimitExceeded:
                continue
            allowed[slot] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 200


def test_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        RateLimiter(requests_per_s=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(requests_per_s=1, burst=0)


def test_without_a_default_rate_only_keys_with_their_own_are_limited() -> None:
    limiter = RateLimiter(requests_per_s=None, burst=2, clock=FakeClock())
    for _ in range(1000):
        limiter.check(APP)
    slow = Principal("slow", "predict", 1.0, 1)
    limiter.check(slow)
    with pytest.raises(RateLimitExceeded):
        limiter.check(slow)
