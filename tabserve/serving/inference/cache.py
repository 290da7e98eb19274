"""The prediction cache, keyed by the model tag and the validated record: a new model version never
answers from an old version's entries. One async get/put, two backends, chosen by `open_cache`:

- MemoryCache (the default): an LRU in each entry worker's memory, PREDICTION_CACHE_SIZE entries.
  With N workers or replicas each keeps its own, so the hit rate falls N-fold.
- RedisCache (REDIS_URL set): one cache in Redis for every worker and replica. Values are JSON;
  entries expire after CACHE_TTL_S; Redis's own `maxmemory` bounds its size.

PREDICTION_CACHE_SIZE=0 disables caching in both modes (NoCache); with REDIS_URL any other value only
switches the cache on. The two never stack: no in-process layer sits in front of Redis, so every
worker sees the same entries and an entry expires everywhere at once.

The cache never fails a prediction. Every Redis call, connecting included, is bounded by
REDIS_TIMEOUT_MS; a failed or slow call answers a miss (or stores nothing), is counted on /metrics
(`tabserve_cache_errors_total{operation}`), and Redis is then left alone for `retry_after_s`; after that
one call (the probe) tries again while the others still skip it, so a dead Redis costs at most one
timeout per pause, not one per request. One log line when Redis goes away, one when it answers again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tabserve.serving.observe import metrics

logger = logging.getLogger("tabserve")


class PredictionCache:
    """What every backend offers. `enabled` says whether lookups are worth counting as hits and misses."""

    name = "none"
    enabled = False

    @staticmethod
    def key(model_tag: str, record: dict[str, Any], explain: Any = None) -> str:
        # Validated records hold str/float/int/bool/None and dates (as ISO text here); sorted keys
        # make equal records equal keys. An explained answer is another entry (and which class it explains).
        key = model_tag + "\x00" + json.dumps(record, sort_keys=True, default=str)
        return key if explain is None else key + "\x00explain=" + json.dumps(explain)

    async def get(self, key: str) -> Any | None:
        """The cached answer, or None (a miss, also when the backend failed)."""
        return None

    async def put(self, key: str, value: Any) -> None:
        """Keep an answer; never raises."""

    async def aclose(self) -> None:
        """Release connections, if any."""


class NoCache(PredictionCache):
    """PREDICTION_CACHE_SIZE=0: nothing is cached, in either mode."""


class MemoryCache(PredictionCache):
    """An LRU of at most `max_size` answers in this process."""

    name = "memory"
    enabled = True

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._entries: OrderedDict[str, Any] = OrderedDict()

    async def get(self, key: str) -> Any | None:
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    async def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisCache(PredictionCache):
    """Answers in Redis, shared by every worker and replica, as JSON under
    `tabserve:prediction:<model tag>:<sha256 of the record>`, expiring after `ttl_s`."""

    name = "redis"
    enabled = True
    PREFIX = "tabserve:prediction:"

    def __init__(self, url: str, ttl_s: int, timeout_ms: int, retry_after_s: float = 1.0, max_connections: int = 64):
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_ms / 1000
        self.retry_after_s = retry_after_s
        self.max_connections = max_connections
        self.up = True  # until a call fails: a server starts without asking Redis anything
        self._retry_at = 0.0
        self._probing = False
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        import redis.asyncio  # noqa: F401  (here, not inside the first call's timeout: importing takes ~0.2 s)

    @classmethod
    def redis_key(cls, key: str) -> str:
        tag, _, record = key.partition("\x00")
        return cls.PREFIX + tag + ":" + hashlib.sha256(record.encode()).hexdigest()

    async def get(self, key: str) -> Any | None:
        raw = await self._call("get", lambda client: client.get(self.redis_key(key)))
        try:
            return None if raw is None else json.loads(raw)
        except ValueError:  # not ours (another writer under our prefix): a miss, counted, Redis itself is fine
            metrics.observe_cache_error("get")
            return None

    async def put(self, key: str, value: Any) -> None:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):  # not JSON: not cached, counted
            metrics.observe_cache_error("put")
            return
        await self._call("put", lambda client: client.set(self.redis_key(key), text, ex=self.ttl_s))

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._loop = None

    def _connection(self) -> Any:
        """A client for the running event loop (redis.asyncio connections belong to the loop that made them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # No retries inside redis-py (its default retries 3 times): one attempt per call, and the
            # pause below decides when to try again. A bounded pool waits for a free connection
            # (within the same timeout) instead of opening one per request in flight.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            self._client = aioredis.Redis(connection_pool=pool)
            self._loop = loop
        return self._client

    async def _call(self, operation: str, command: Callable[[Any], Awaitable[Any]]) -> Any:
        """The command's result, or None when Redis is paused, fails or is slower than the timeout."""
        probe = not self.up
        if probe:
            if self._probing or time.monotonic() < self._retry_at:
                return None  # paused after a failure: predict uncached, at no cost
            self._probing = True  # this call tries Redis again; concurrent ones keep skipping it
        try:
            async with asyncio.timeout(self.timeout_s):  # connect, pool wait and answer together
                result = await command(self._connection())
        except Exception as exc:  # any failure of the cache only costs the cache
            self._failed(operation, exc)
            return None
        finally:
            if probe:
                self._probing = False
        if probe:  # only the probe says Redis is back: calls still in flight from before cannot flap it
            self.up = True
            logger.warning("prediction cache: Redis at %s answers again; caching resumed", redacted(self.url))
        return result

    def _failed(self, operation: str, exc: Exception) -> None:
        metrics.observe_cache_error(operation)
        self._retry_at = time.monotonic() + self.retry_after_s
        if self.up:
            self.up = False
            timed_out = isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError"  # asyncio's or redis-py's
            reason = f"no answer within {self.timeout_s * 1000:g} ms" if timed_out else f"{type(exc).__name__}: {exc}"
            logger.warning(
                "prediction cache: Redis at %s failed (%s); predicting uncached, retrying every %g s",
                redacted(self.url),
                reason,
                self.retry_after_s,
            )


def open_cache(size: int, redis_url: str = "", ttl_s: int = 3600, timeout_ms: int = 100) -> PredictionCache:
    """The cache the settings ask for: PREDICTION_CACHE_SIZE, REDIS_URL, CACHE_TTL_S, REDIS_TIMEOUT_MS."""
    if size <= 0:
        return NoCache()
    if redis_url:
        return RedisCache(redis_url, ttl_s, timeout_ms)
    return MemoryCache(size)
