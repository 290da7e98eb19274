"""The API's consumers (teams): whose key a request carries, what it may call, and how fast.

A keys file (API_KEYS_FILE; YAML, or TOML when its name ends in .toml) maps each consumer to the
SHA-256 of its key, never the key, with optional limits:

    consumers:
      fraud-team:
        key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        rps: 5                    # requests per second, refilled continuously ...
        burst: 10                 # ... into a bucket this big (default: rps rounded up)
        records_per_minute: 6000  # records scored: /predict 1, /predict_batch its records, /predict_csv its rows
        routes: [/predict, /v1]   # path prefixes it may call (default: every protected route)

`python -m tabserve.serving.edge.keys add TEAM` makes a key and writes its hash (tabserve/serving/edge/keys.py).
A fast hash is enough: the keys are random 32-byte tokens, so there is nothing to guess from a hash (no salt
or slow hash needed, unlike passwords). API_KEY, when set, is one more consumer called `default`.

`Keyring` matches a presented key against every consumer's hash with `hmac.compare_digest`, always
all of them, so the time taken says nothing about which consumers exist; an unknown key and a wrong
one take the same path to the same 401. It re-reads the file when its mtime, size or inode change
(checked at most once a second, on a request); a file broken after a change keeps the last good one
and logs one line, a file broken at start stops the server (`KeysFileError`, one line).

Quotas are token buckets kept per entry worker: with W workers and R replicas a consumer can get up to
W × R times its limits in all, so size a team's limits as its share divided by W × R.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT = "default"  # the consumer API_KEY is
ANONYMOUS = "anonymous"  # requests no key identified (an open server, or refused before the key was read)
RESERVED = (DEFAULT, ANONYMOUS)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HEX64 = re.compile(r"[0-9a-f]{64}")
FIELDS = ("key_sha256", "rps", "burst", "records_per_minute", "routes")
RELOAD_EVERY_S = 1.0

# The consumer of the request being handled, for the access log line (tabserve/bentoml_fixes.py).
CURRENT: ContextVar[str] = ContextVar("tabserve_consumer")
logger = logging.getLogger("tabserve")


class KeysFileError(ValueError):
    """A keys file that cannot be used; the message is one line naming the file and the problem."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Consumer:
    name: str
    key_sha256: str
    rps: float | None = None
    burst: int | None = None
    records_per_minute: int | None = None
    routes: tuple[str, ...] | None = None  # None: every protected route

    def allows(self, path: str) -> bool:
        if self.routes is None:
            return True
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in self.routes)

    @property
    def bucket_size(self) -> int | None:
        """Requests the bucket holds: `burst`, else the rate rounded up (None: no request rate)."""
        return None if self.rps is None else self.burst or max(1, math.ceil(self.rps))

    def limits(self) -> tuple:
        return self.rps, self.burst, self.records_per_minute

    def for_file(self) -> dict[str, Any]:
        """The consumer's entry in the keys file (None fields left out)."""
        entry = {k: v for k, v in asdict(self).items() if k != "name" and v is not None}
        if self.rps is not None and float(self.rps).is_integer():
            entry["rps"] = int(self.rps)
        if "routes" in entry:
            entry["routes"] = list(entry["routes"])
        return entry


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise KeysFileError(
            f"consumer name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if name in RESERVED:
        raise KeysFileError(
            f"consumer name {name!r} is reserved "
            f"({DEFAULT!r} is API_KEY's consumer, {ANONYMOUS!r} a request without a key)"
        )
    return name


def consumer_from(name: str, entry: Any) -> Consumer:
    """A consumer from its keys-file entry; KeysFileError naming the consumer and the field if invalid."""
    check_name(name)
    if not isinstance(entry, dict):
        raise KeysFileError(f"consumer {name!r}: expected a table of {', '.join(FIELDS)}")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise KeysFileError(f"consumer {name!r}: unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    digest = entry.get("key_sha256")
    if not isinstance(digest, str) or not HEX64.fullmatch(digest.lower()):
        raise KeysFileError(
            f"consumer {name!r}: key_sha256 must be the 64 hex digits of the key's SHA-256 "
            "(python -m tabserve.serving.edge.keys add writes it)"
        )
    rps = _number(name, "rps", entry.get("rps"), float)
    burst = _number(name, "burst", entry.get("burst"), int)
    per_minute = _number(name, "records_per_minute", entry.get("records_per_minute"), int)
    if burst is not None and rps is None:
        raise KeysFileError(f"consumer {name!r}: burst needs rps")
    if burst is not None and burst < 1:
        raise KeysFileError(f"consumer {name!r}: burst must be at least 1")
    routes = entry.get("routes")
    if routes is not None:
        if isinstance(routes, str):
            routes = [r for r in routes.split(",") if r.strip()]
        if (
            not isinstance(routes, list)
            or not routes
            or not all(isinstance(r, str) and r.strip().startswith("/") for r in routes)
        ):
            raise KeysFileError(
                f"consumer {name!r}: routes must be a non-empty list of path prefixes starting with '/'"
            )
        routes = tuple(r.strip() for r in routes)
    return Consumer(name, digest.lower(), rps, burst, per_minute, routes)


def _number(name: str, field: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and value != int(value))
        or not value > 0
        or math.isinf(value)
    ):
        raise KeysFileError(
            f"consumer {name!r}: {field} must be a positive {'whole ' if kind is int else ''}number, not {value!r}"
        )
    return kind(value)


def parse_keys(text: str, toml: bool = False) -> dict[str, Consumer]:
    """The consumers of a keys file's text (YAML, or TOML); KeysFileError if it cannot be used."""
    try:
        if toml:
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml  # PyYAML comes with bentoml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError
        raise KeysFileError(f"not valid {'TOML' if toml else 'YAML'}: {' '.join(str(exc).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"consumers"}:
        raise KeysFileError(
            "expected one top-level key, 'consumers', mapping each consumer's name to its key_sha256 and limits"
        )
    entries = data.get("consumers") or {}
    if not isinstance(entries, dict):
        raise KeysFileError("'consumers' must map each consumer's name to its key_sha256 and limits")
    consumers = {str(name): consumer_from(name, entry) for name, entry in entries.items()}
    seen: dict[str, str] = {}
    for consumer in consumers.values():
        if consumer.key_sha256 in seen:
            raise KeysFileError(f"consumers {seen[consumer.key_sha256]!r} and {consumer.name!r} have the same key")
        seen[consumer.key_sha256] = consumer.name
    return consumers


def is_toml(path: Path) -> bool:
    return Path(path).suffix.lower() == ".toml"


def read_keys_file(path: Path) -> dict[str, Consumer]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"{path}: cannot be read ({exc.strerror if isinstance(exc, OSError) else exc})") from None
    try:
        return parse_keys(text, toml=is_toml(path))
    except KeysFileError as exc:
        raise KeysFileError(f"{path}: {exc}") from None


HEADER = (
    "# API keys of tabserve's consumers (python -m tabserve.serving.edge.keys). "
    "Only SHA-256 hashes of the keys are kept here.\n"
)


def write_keys_file(path: Path, consumers: dict[str, Consumer]) -> None:
    """Write the file whole and swap it in with one rename: a server re-reading it sees old or new, never half."""
    path = Path(path)
    entries = {name: consumers[name].for_file() for name in sorted(consumers)}
    text = HEADER + (_toml(entries) if is_toml(path) else _yaml(entries))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o600 if not path.exists() else path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _yaml(entries: dict[str, dict]) -> str:
    import yaml

    return yaml.safe_dump({"consumers": entries}, sort_keys=False, default_flow_style=False)


def _toml(entries: dict[str, dict]) -> str:
    """The keys file as TOML (names, hex, numbers and paths only: no escaping beyond JSON's is needed)."""
    import json

    lines = []
    for name, entry in entries.items():
        lines.append(f"\n[consumers.{json.dumps(name)}]")
        lines.extend(f"{field} = {json.dumps(value)}" for field, value in entry.items())
    return "\n".join(lines).lstrip("\n") + "\n"


@dataclass
class Decision:
    """A bucket's answer: allowed or not, and the X-RateLimit-* / Retry-After values."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int = 0  # seconds until the refused request would fit
    fits: bool = True  # False: the request is larger than the bucket ever holds

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset_s).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after_s).encode()))
        return headers


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; a request takes `cost` tokens or is refused."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.capacity, self.clock = rate, capacity, clock
        self.tokens, self.updated = capacity, clock()

    def take(self, cost: float = 1) -> Decision:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        allowed = cost <= self.tokens
        if allowed:
            self.tokens -= cost
        missing = 0 if allowed else min(cost, self.capacity) - self.tokens
        return Decision(
            allowed=allowed,
            limit=int(self.capacity),
            remaining=int(self.tokens),
            reset_s=math.ceil((self.capacity - self.tokens) / self.rate),
            retry_after_s=0 if allowed else max(1, math.ceil(missing / self.rate)),
            fits=cost <= self.capacity,
        )


class _Buckets:
    """One consumer's buckets in this worker: requests per second (with burst) and records per minute."""

    def __init__(self, consumer: Consumer, clock: Callable[[], float]):
        self.limits = consumer.limits()
        self.requests = TokenBucket(consumer.rps, consumer.bucket_size, clock) if consumer.rps else None
        self.records = (
            TokenBucket(consumer.records_per_minute / 60, consumer.records_per_minute, clock)
            if consumer.records_per_minute
            else None
        )


class Keyring:
    """The consumers this worker knows (API_KEY's `default` and the keys file's), and their buckets."""

    def __init__(
        self,
        api_key: str = "",
        path: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        reload_every_s: float = RELOAD_EVERY_S,
    ):
        self.api_key_consumer = Consumer(DEFAULT, hash_key(api_key)) if api_key else None
        self.path = Path(path) if path else None
        self.clock, self.reload_every_s = clock, reload_every_s
        self.consumers: dict[str, Consumer] = {}
        self.buckets: dict[str, _Buckets] = {}
        self._seen: tuple | None = None  # (mtime_ns, size, inode) of the file last read, good or not
        self._checked = clock()
        self._use({})
        if self.path is not None:
            self._seen = self._signature()
            self._use(read_keys_file(self.path))  # KeysFileError at start: the caller stops with one line

    @property
    def required(self) -> bool:
        """Whether protected routes need a key at all."""
        return self.api_key_consumer is not None or self.path is not None

    def _signature(self) -> tuple | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _use(self, consumers: dict[str, Consumer]) -> None:
        everyone = dict(consumers)
        if self.api_key_consumer is not None:
            everyone[DEFAULT] = self.api_key_consumer
        self.consumers = everyone
        self._hashes = [(bytes.fromhex(c.key_sha256), c) for c in everyone.values()]
        # A consumer whose limits are unchanged keeps its bucket (a reload is no free refill).
        self.buckets = {
            name: bucket
            for name, bucket in self.buckets.items()
            if name in everyone and bucket.limits == everyone[name].limits()
        }

    def reload_if_changed(self) -> None:
        """Re-read the file if it changed since last read (looked at once per `reload_every_s`)."""
        if self.path is None:
            return
        now = self.clock()
        if now - self._checked < self.reload_every_s:
            return
        self._checked = now
        signature = self._signature()
        if signature == self._seen:
            return
        self._seen = signature
        try:
            consumers = read_keys_file(self.path)
        except KeysFileError as exc:
            logger.error(
                "API_KEYS_FILE changed but cannot be used; still using the last good one (%d consumers): %s",
                len(self.consumers),
                exc,
            )
            return
        self._use(consumers)
        logger.info("API_KEYS_FILE re-read: %d consumer(s): %s", len(consumers), ", ".join(sorted(consumers)) or "none")

    def identify(self, key: str) -> Consumer | None:
        """The consumer whose key this is, or None. Compares the key's hash with every consumer's hash,
        all of them every time, in constant time each."""
        self.reload_if_changed()
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for known, consumer in self._hashes:
            if hmac.compare_digest(digest, known):
                found = consumer
        return found

    def _buckets(self, consumer: Consumer) -> _Buckets:
        bucket = self.buckets.get(consumer.name)
        if bucket is None:
            bucket = self.buckets[consumer.name] = _Buckets(consumer, self.clock)
        return bucket

    def take_request(self, consumer: Consumer) -> Decision | None:
        """One request against the consumer's requests-per-second bucket (None: no such limit)."""
        bucket = self._buckets(consumer).requests
        return bucket.take(1) if bucket else None

    def take_records(self, consumer: Consumer, records: int) -> Decision | None:
        """`records` against the consumer's records-per-minute bucket (None: no such limit)."""
        bucket = self._buckets(consumer).records
        return bucket.take(records) if bucket else None
