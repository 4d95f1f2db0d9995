"""API keys, roles and per-key rate limits for the model server. Ray-free, pure Python.

Keys are stored only as their SHA-256; a request names its key in ``Authorization: Bearer
KEY`` or ``X-API-Key: KEY``. Refusals are :class:`~ray_mlops.serve.schema.RequestError`
(401 no or unknown key, 403 role too low, 429 rate limit), answered like any client mistake.

Example:
    >>> key, entry = new_key_entry("ci", "predict")
    >>> store = KeyStore([ApiKeyConfig.model_validate(entry)])
    >>> store.authenticate({"X-API-Key": key}).name
    'ci'
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ray_mlops.config import ApiKeyConfig, AuthConfig, RateLimitConfig
from ray_mlops.serve.schema import RequestError

KEY_PREFIX = "rmk_"
ROLES: tuple[str, ...] = ("predict", "admin")  # ordered: each role may do what those before it may
_ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
_MISSING_KEY = "missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
# Float sums of elapsed time drift by ~1e-15; a client that waits exactly Retry-After seconds
# must not be refused for it.
_TOKEN_EPSILON = 1e-9


def hash_key(key: str) -> str:
    """Hex SHA-256 of an API key, the only form in which keys are stored.

    Args:
        key: The plaintext key.

    Returns:
        64 lowercase hex digits.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A new random API key: ``rmk_`` and 256 random bits, URL-safe.

    Returns:
        The plaintext key; show it once and store only :func:`hash_key` of it.
    """
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_entry(name: str, role: str) -> tuple[str, dict[str, Any]]:
    """A new key and the entry that lists it in ``auth.keys`` or the keys file.

    Args:
        name: Who holds the key (letters, digits, ``_.@-``).
        role: ``predict`` or ``admin``.

    Returns:
        The plaintext key, and ``{"name", "sha256", "role"}`` ready to dump as YAML.

    Raises:
        ValueError: the name or role is not allowed (a pydantic ``ValidationError``).
    """
    key = generate_key()
    # Validate through the config model so a bad name fails here, not when the server loads it.
    entry = ApiKeyConfig.model_validate({"name": name, "sha256": hash_key(key), "role": role})
    return key, {"name": entry.name, "sha256": entry.sha256, "role": entry.role}


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's name, its role and its own rate limit (if any)."""

    name: str
    role: str
    requests_per_s: float | None
    burst: int | None = None


ANONYMOUS = Principal("anonymous", "admin", None)


class KeyStore:
    """The accepted API keys; turns request headers into a :class:`Principal`.

    Args:
        keys: The accepted keys.
        enabled: False accepts every request as :data:`ANONYMOUS`.
        origins: Where each key came from, for error messages (default ``keys[i]``).

    Raises:
        ValueError: two keys share a name or a hash.
    """

    def __init__(
        self,
        keys: Sequence[ApiKeyConfig],
        *,
        enabled: bool = True,
        origins: Sequence[str] | None = None,
    ) -> None:
        labels = list(origins) if origins is not None else [f"keys[{i}]" for i in range(len(keys))]
        if len(labels) != len(keys):
            raise ValueError(f"{len(labels)} origins for {len(keys)} keys")
        _check_unique(keys, labels)
        self.enabled = enabled
        self._keys = [
            (key.sha256, Principal(key.name, key.role, key.requests_per_s, key.burst))
            for key in keys
        ]

    @classmethod
    def disabled(cls) -> KeyStore:
        """A store that lets every request in as the anonymous admin."""
        return cls([], enabled=False)

    @classmethod
    def from_config(cls, auth: AuthConfig, base_dir: Path) -> KeyStore:
        """The keys of ``serve.auth``: ``keys`` and those of ``keys_file``.

        Args:
            auth: The auth section of the config.
            base_dir: Folder a relative ``keys_file`` is taken from (the config file's).

        Returns:
            The store; a disabled one when ``auth.enabled`` is false (the keys file is then
            not read, so a server without auth does not need it).

        Raises:
            ValueError: the keys file is missing, not YAML, or has a bad entry (the message
                names the file, the entry index and the field); two keys share a name or
                hash; or auth is enabled with no key at all.
        """
        if not auth.enabled:
            return cls.disabled()
        keys = list(auth.keys)
        origins = [f"auth.keys[{i}]" for i in range(len(keys))]
        if auth.keys_file:
            path = Path(auth.keys_file).expanduser()
            path = path if path.is_absolute() else base_dir / path
            from_file = read_keys_file(path)
            keys += from_file
            origins += [f"{path} entry {i}" for i in range(len(from_file))]
        if not keys:
            # Every request would be a 401: a misconfiguration better caught at startup.
            raise ValueError("serve.auth.enabled is true but no API key is configured")
        return cls(keys, enabled=True, origins=origins)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal whose key the request carries.

        Args:
            headers: Request headers; names are matched case-insensitively.

        Returns:
            The key's principal, or :data:`ANONYMOUS` when auth is disabled.

        Raises:
            RequestError: 401 when no key is sent or the key is unknown.
        """
        if not self.enabled:
            return ANONYMOUS
        key = presented_key(headers)
        if key is None:
            raise RequestError(401, _MISSING_KEY)
        digest = hash_key(key)
        found: Principal | None = None
        # Compare against every key without stopping early, so timing says nothing about
        # which stored hash (if any) shares a prefix with the one sent.
        for stored, principal in self._keys:
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise RequestError(401, "invalid API key")
        return found

    def authorize(self, principal: Principal, needed: str) -> None:
        """Refuse a principal whose role is below what the endpoint needs.

        Args:
            principal: From :meth:`authenticate`.
            needed: The endpoint's role, one of :data:`ROLES`.

        Raises:
            RequestError: 403 when the principal's role is lower.
            ValueError: ``needed`` is not a known role (a server bug, not a client's).
        """
        if needed not in _ROLE_RANK:
            raise ValueError(f"unknown role {needed!r}; roles are {', '.join(ROLES)}")
        if _ROLE_RANK.get(principal.role, -1) < _ROLE_RANK[needed]:
            raise RequestError(
                403,
                f"the key {principal.name!r} has role {principal.role!r}; "
                f"this endpoint needs {needed!r}",
            )


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key in ``Authorization: Bearer KEY`` or else ``X-API-Key: KEY``, if any.

    Args:
        headers: Request headers; names are matched case-insensitively.

    Returns:
        The key, or None when neither header carries a non-empty one.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    scheme, _, credentials = lowered.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = lowered.get("x-api-key", "").strip()
    return api_key or None


def read_keys_file(path: Path) -> list[ApiKeyConfig]:
    """The keys listed in a YAML file: a list of mappings with the fields of ``auth.keys``.

    Args:
        path: The file.

    Returns:
        The validated keys (an empty file gives none).

    Raises:
        ValueError: the file is missing, not YAML, not a list, or has bad entries; one line
            per problem names the file, the entry index and the field.
    """
    if not path.is_file():
        raise ValueError(f"API keys file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of keys, got {type(raw).__name__}")
    keys: list[ApiKeyConfig] = []
    problems: list[str] = []
    for index, item in enumerate(raw):
        try:
            keys.append(ApiKeyConfig.model_validate(item))
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "(entry)"
                problems.append(f"  - entry {index}, field {field!r}: {error['msg']}")
    if problems:
        raise ValueError(f"{path}: invalid API keys\n" + "\n".join(problems))
    return keys


def _check_unique(keys: Sequence[ApiKeyConfig], origins: Sequence[str]) -> None:
    """Raise ValueError when two keys share a name or a hash."""
    by_name: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    for key, origin in zip(keys, origins, strict=True):
        if key.name in by_name:
            raise ValueError(
                f"duplicate API key name {key.name!r} ({by_name[key.name]} and {origin})"
            )
        if key.sha256 in by_hash:
            raise ValueError(
                f"the keys of {by_hash[key.sha256]} and {origin} are the same key "
                "(same sha256); give each holder its own key"
            )
        by_name[key.name] = origin
        by_hash[key.sha256] = origin


class RateLimitExceeded(RequestError):
    """A 429: the key used up its burst; ``retry_after_s`` until one more request is allowed."""

    def __init__(self, name: str, requests_per_s: float, retry_after_s: float) -> None:
        super().__init__(
            429,
            f"rate limit of {requests_per_s:g} requests/s exceeded for key {name!r}",
            headers={"Retry-After": str(math.ceil(retry_after_s))},
        )
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    tokens: float
    updated: float
    rate: float
    size: float


class RateLimiter:
    """One token bucket per principal name: ``burst`` at once, then ``requests_per_s``.

    A principal's own ``requests_per_s`` and ``burst`` override the defaults.
    Buckets live in least-recently-used order: one idle long enough to be full again is
    dropped (a fresh bucket is the same), and past ``max_buckets`` the least recently used
    goes, so memory stays bounded whatever the number of names.

    Args:
        requests_per_s: Default sustained rate per name; None leaves names without a rate
            of their own unlimited.
        burst: Requests a name may make at once (the bucket's size).
        clock: Seconds, monotonic; injectable for tests.
        max_buckets: Most buckets held.

    Raises:
        ValueError: a rate or burst that is not positive.
    """

    def __init__(
        self,
        requests_per_s: float | None,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_buckets: int = 10_000,
    ) -> None:
        if (requests_per_s is not None and requests_per_s <= 0) or burst < 1 or max_buckets < 1:
            raise ValueError(
                "requests_per_s must be > 0, burst and max_buckets >= 1; got "
                f"{requests_per_s}, {burst}, {max_buckets}"
            )
        self.requests_per_s = requests_per_s
        self.burst = burst
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic
    ) -> RateLimiter:
        """The limiter of ``serve.rate_limit``."""
        return cls(config.requests_per_s, config.burst, clock)

    def __len__(self) -> int:
        """Buckets held now."""
        return len(self._buckets)

    def check(self, principal: Principal) -> None:
        """Spend one token of the principal's bucket, or refuse the request.

        Args:
            principal: Who makes the request.

        Raises:
            RateLimitExceeded: a 429 :class:`RequestError` with ``retry_after_s`` and a
                ``Retry-After`` header, when the bucket is empty.
        """
        rate = principal.requests_per_s or self.requests_per_s
        if rate is None:  # no default rate, and none of its own: not limited
            return
        size = float(principal.burst or self.burst)
        with self._lock:
            now = self._clock()
            self._evict_idle(now)
            bucket = self._buckets.get(principal.name)
            if bucket is None:
                bucket = _Bucket(tokens=size, updated=now, rate=rate, size=size)
                self._buckets[principal.name] = bucket
                if len(self._buckets) > self.max_buckets:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(principal.name)
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(size, bucket.tokens + elapsed * bucket.rate)
                bucket.updated = now
                bucket.rate = rate
                bucket.size = size
            if bucket.tokens >= 1.0 - _TOKEN_EPSILON:
                bucket.tokens -= 1.0
                return
            retry_after_s = (1.0 - bucket.tokens) / rate
        raise RateLimitExceeded(principal.name, rate, retry_after_s)

    def _evict_idle(self, now: float) -> None:
        """Drop least recently used buckets that have refilled completely."""
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if oldest.tokens + (now - oldest.updated) * oldest.rate < oldest.size:
                break
            self._buckets.popitem(last=False)
