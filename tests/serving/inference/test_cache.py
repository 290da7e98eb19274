"""The prediction cache: keys that never cross model versions; the in-process LRU; the Redis cache
against a real redis-server (tests/engines.py): roundtrip, expiry, a Redis stopped, paused or silent
(misses and counted errors, never an exception, one log line each way) and its recovery."""

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import time

import pytest
import redis
from prometheus_client import REGISTRY

from tabserve.serving.inference.cache import MemoryCache, NoCache, PredictionCache, RedisCache, open_cache, redacted
from tests.engines import Redis

RECORD = {"island": "Dream", "year": 2008.0, "sex": None}
ANSWER = {"prediction": "Adelie", "probabilities": {"Adelie": 0.9, "Gentoo": 0.1}, "warnings": []}


def run(coroutine):
    return asyncio.run(coroutine)


def errors(operation: str) -> float:
    return REGISTRY.get_sample_value("tabserve_cache_errors_total", {"operation": operation}) or 0.0


# --- Keys and choosing a backend -------------------------------------------------------------------


def test_equal_records_share_a_key_and_model_versions_never_do():
    reordered = {"sex": None, "year": 2008.0, "island": "Dream"}
    assert PredictionCache.key("m:1", RECORD) == PredictionCache.key("m:1", reordered)
    assert PredictionCache.key("penguins:v1", RECORD) != PredictionCache.key("penguins:v2", RECORD)
    assert RedisCache.redis_key(PredictionCache.key("penguins:v1", RECORD)).startswith(
        "tabserve:prediction:penguins:v1:"
    )


def test_settings_choose_the_backend_and_size_zero_disables_both():
    assert type(open_cache(10)) is MemoryCache and open_cache(10).max_size == 10
    redis_cache = open_cache(10, "redis://127.0.0.1:1/0", ttl_s=60, timeout_ms=50)
    assert type(redis_cache) is RedisCache and (redis_cache.ttl_s, redis_cache.timeout_s) == (60, 0.05)
    assert type(open_cache(0)) is NoCache and type(open_cache(0, "redis://127.0.0.1:1/0")) is NoCache
    disabled = open_cache(0)

    async def scenario():
        await disabled.put("k", 1)
        return await disabled.get("k")

    assert not disabled.enabled and run(scenario()) is None


def test_log_lines_never_show_the_password():
    assert redacted("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redacted("redis://app:s3cret@cache:6379/0") == "redis://app:***@cache:6379/0"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"


# --- In-process LRU ----------------------------------------------------------------------------------


def test_memory_hit_after_put_and_other_versions_miss():
    cache = MemoryCache(10)

    async def scenario():
        await cache.put(PredictionCache.key("penguins:v1", RECORD), ANSWER)
        return await cache.get(PredictionCache.key("penguins:v1", dict(reversed(RECORD.items())))), await cache.get(
            PredictionCache.key("penguins:v2", RECORD)
        )

    assert run(scenario()) == (ANSWER, None)


def test_memory_least_recently_used_entry_is_evicted():
    cache = MemoryCache(2)
    keys = [PredictionCache.key("m:1", {**RECORD, "year": y}) for y in (1.0, 2.0, 3.0)]

    async def scenario():
        await cache.put(keys[0], 0)
        await cache.put(keys[1], 1)
        assert await cache.get(keys[0]) == 0  # now keys[1] is the least recently used
        await cache.put(keys[2], 2)
        return [await cache.get(k) for k in keys]

    assert run(scenario()) == [0, None, 2] and len(cache) == 2


# --- Redis -------------------------------------------------------------------------------------------


@pytest.fixture
def redis_server():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`make engines`)")
    with Redis() as server:
        yield server


def test_redis_roundtrip_stores_json_under_the_model_tag_with_a_ttl(redis_server):
    cache = RedisCache(redis_server.url, ttl_s=600, timeout_ms=1000)
    key = PredictionCache.key("penguins:v1", RECORD)

    async def scenario():
        missed = await cache.get(key)
        await cache.put(key, ANSWER)
        found = await cache.get(PredictionCache.key("penguins:v1", dict(reversed(RECORD.items()))))
        await cache.aclose()
        return missed, found

    assert run(scenario()) == (None, ANSWER)
    direct = redis.Redis.from_url(redis_server.url)
    [stored] = direct.keys("tabserve:prediction:penguins:v1:*")
    assert json.loads(direct.get(stored)) == ANSWER  # JSON any client can read
    assert 0 < direct.ttl(stored) <= 600
    direct.close()


def test_values_that_are_not_json_are_misses_not_exceptions(redis_server):
    cache = RedisCache(redis_server.url, ttl_s=600, timeout_ms=1000)
    key = PredictionCache.key("m:1", RECORD)
    direct = redis.Redis.from_url(redis_server.url)
    direct.set(RedisCache.redis_key(key), b"\x80 not json")
    direct.close()

    async def scenario():
        before = errors("get") + errors("put")
        got = await cache.get(key)
        await cache.put(PredictionCache.key("m:1", {}), {"prediction": object()})
        await cache.aclose()
        return got, errors("get") + errors("put") - before

    got, counted = run(scenario())
    assert got is None and counted == 2 and cache.up  # Redis itself answered: no pause


def test_redis_keys_never_cross_model_tags(redis_server):
    cache = RedisCache(redis_server.url, ttl_s=600, timeout_ms=1000)

    async def scenario():
        await cache.put(PredictionCache.key("penguins:v1", RECORD), ANSWER)
        await cache.put(PredictionCache.key("penguins:v3", RECORD), {**ANSWER, "prediction": "Gentoo"})
        answers = [
            await cache.get(PredictionCache.key(tag, RECORD)) for tag in ("penguins:v1", "penguins:v2", "penguins:v3")
        ]
        await cache.aclose()
        return answers

    v1, v2, v3 = run(scenario())
    assert v1 == ANSWER and v2 is None and v3["prediction"] == "Gentoo"


def test_redis_entries_expire_after_the_ttl(redis_server):
    cache = RedisCache(redis_server.url, ttl_s=1, timeout_ms=1000)
    key = PredictionCache.key("m:1", RECORD)

    async def scenario():
        before = errors("get") + errors("put")
        await cache.put(key, ANSWER)
        assert await cache.get(key) == ANSWER
        deadline = time.monotonic() + 30
        while await cache.get(key) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        expired = await cache.get(key)
        await cache.aclose()
        return expired, errors("get") + errors("put") - before

    expired, counted = run(scenario())
    assert expired is None and counted == 0 and cache.up  # expiry is a miss, not an error


def test_a_stopped_redis_gives_misses_and_counted_errors_and_the_cache_comes_back(redis_server, caplog):
    cache = RedisCache(redis_server.url, ttl_s=600, timeout_ms=500, retry_after_s=0.2)
    key, other = PredictionCache.key("m:1", RECORD), PredictionCache.key("m:1", {**RECORD, "year": 2009.0})
    caplog.set_level(logging.WARNING, logger="tabserve")

    async def scenario():
        await cache.put(key, ANSWER)
        assert await cache.get(key) == ANSWER
        get_errors, put_errors = errors("get"), errors("put")
        redis_server.stop()
        down = []
        for _ in range(30):  # several pauses long: a failure, skips, a probe, ...
            down.append(await cache.get(key))
            await cache.put(other, ANSWER)
            await asyncio.sleep(0.02)
        moved = (errors("get") - get_errors, errors("put") - put_errors)
        went_down = cache.up
        redis_server.start()  # empty: started with --save ''
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await cache.put(key, ANSWER)
            if await cache.get(key) == ANSWER:
                break
            await asyncio.sleep(0.05)
        back = await cache.get(key)
        await cache.aclose()
        return down, moved, went_down, back

    down, (get_errors, put_errors), went_down, back = run(scenario())
    assert down == [None] * 30 and not went_down
    assert get_errors >= 1 and put_errors + get_errors >= 2
    assert back == ANSWER and cache.up
    lines = [r.getMessage() for r in caplog.records if r.name == "tabserve"]
    assert len([line for line in lines if "failed" in line]) == 1, lines  # once down, not per call
    assert len([line for line in lines if "answers again" in line]) == 1, lines


def test_a_pause_skips_redis_instead_of_paying_a_timeout_per_call(redis_server):
    """After one failure, calls within the pause do not reach Redis at all: only the probe does."""
    cache = RedisCache(redis_server.url, ttl_s=600, timeout_ms=500, retry_after_s=3600)
    key = PredictionCache.key("m:1", RECORD)
    redis_server.stop()

    async def scenario():
        before = errors("get")
        results = [await cache.get(key) for _ in range(20)]
        return results, errors("get") - before

    results, counted = run(scenario())
    assert results == [None] * 20 and counted == 1


def test_a_frozen_redis_is_bounded_by_the_timeout(redis_server):
    """redis-server stopped with SIGSTOP (a stuck or swapped-out Redis): connections open, nothing answers."""
    cache = RedisCache(redis_server.url, ttl_s=600, timeout_ms=200, retry_after_s=0.2)
    key = PredictionCache.key("m:1", RECORD)

    async def scenario():
        await cache.put(key, ANSWER)
        assert await cache.get(key) == ANSWER
        before = errors("get")
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            frozen = await asyncio.wait_for(cache.get(key), 60)  # (only a backstop against a hang)
            counted = errors("get") - before
            went_down = not cache.up
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while await cache.get(key) != ANSWER and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        back = await cache.get(key)
        await cache.aclose()
        return frozen, counted, went_down, back

    frozen, counted, went_down, back = run(scenario())
    # Unbounded, `get` would have waited for Redis to wake up and answered the hit.
    assert frozen is None and counted == 1 and went_down
    assert back == ANSWER and cache.up


def test_after_the_pause_one_call_probes_a_frozen_redis_while_the_others_skip_it(redis_server):
    """Twenty requests arriving together after the pause: one of them pays the timeout, not twenty."""
    cache = RedisCache(redis_server.url, ttl_s=600, timeout_ms=300, retry_after_s=0.1)
    key = PredictionCache.key("m:1", RECORD)
    os.kill(redis_server.process.pid, signal.SIGSTOP)

    async def scenario():
        assert await cache.get(key) is None and not cache.up  # the failure that starts the pause
        while time.monotonic() < cache._retry_at:
            await asyncio.sleep(0.02)
        before = errors("get")
        results = await asyncio.wait_for(asyncio.gather(*(cache.get(key) for _ in range(20))), 60)
        return results, errors("get") - before

    try:
        results, counted = run(scenario())
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert results == [None] * 20 and counted == 1


def test_a_server_that_accepts_but_never_answers_is_bounded_by_the_timeout():
    """A listening socket nobody reads: the kernel completes the connection, no Redis ever answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        cache = RedisCache(url, ttl_s=600, timeout_ms=200, retry_after_s=3600)
        key = PredictionCache.key("m:1", RECORD)

        async def scenario():
            before_get, before_put = errors("get"), errors("put")
            got = await asyncio.wait_for(cache.get(key), 60)  # (only a backstop against a hang)
            await asyncio.wait_for(cache.put(key, ANSWER), 60)  # paused: skipped, not counted
            return got, errors("get") - before_get, errors("put") - before_put

        got, get_errors, put_errors = run(scenario())
    assert got is None and get_errors == 1 and put_errors == 0 and not cache.up


def test_a_dead_redis_at_start_costs_nothing_until_asked():
    """Building the cache connects to nothing: a server starts (and is ready) with Redis down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        cache = open_cache(10, f"redis://127.0.0.1:{port}/0", timeout_ms=200)
        assert cache.up and cache._client is None
        before = errors("get")
        assert run(cache.get(PredictionCache.key("m:1", RECORD))) is None
        assert errors("get") == before + 1 and not cache.up
