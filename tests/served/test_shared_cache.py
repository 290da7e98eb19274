"""One prediction cache for every worker and replica (REDIS_URL), on real `bentoml serve` processes and a
real redis-server (tests/engines.py): entry workers and servers share entries, and a Redis that dies
under load, or is dead from the start, costs the cache only: every request is still answered."""

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from tests.conftest import PENGUIN, Server, free_port
from tests.engines import Redis
from tests.served.metrics_text import metric

pytestmark = pytest.mark.served

DOWN, BACK = "prediction cache: Redis at", "answers again"


def post(server, record):
    return requests.post(f"{server.url}/predict", json=record, timeout=60)


def log_lines(server, text: str) -> list[str]:
    return [line for line in server.log_path.read_text().splitlines() if text in line]


def down_lines(server) -> list[str]:
    return [line for line in log_lines(server, DOWN) if "failed" in line]


def poll(check, what: str, timeout: float = 90):
    """Retry `check()` until it returns something true; the deadline only stops a hang (no timing is asserted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"not after {timeout}s: {what}")


@pytest.fixture(scope="module")
def redis_server():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`make engines`)")
    with Redis() as server:
        yield server


@pytest.fixture(scope="module")
def servers(penguins_model, redis_server):
    """Server A (two entry workers) and server B (one), both caching in the same Redis; started together."""
    # A generous timeout: two servers and Redis share two busy cores here (the timeout's effect is tested
    # in tests/serving/inference/test_cache.py and below, with Redis dead).
    env = {"MODEL_TAG": str(penguins_model.tag), "REDIS_URL": redis_server.url, "REDIS_TIMEOUT_MS": "2000"}
    first = Server(env={**env, "API_WORKERS": "2"}, name="shared-cache-a")
    try:
        second = Server(env=env, name="shared-cache-b")
    except BaseException:
        first.stop()
        raise
    try:
        first.wait_ready(180)
        second.wait_ready(180)
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_every_entry_worker_answers_from_one_cache(servers, redis_server):
    a, _ = servers
    record = {**PENGUIN, "bill_length_mm": 41.01}
    first = post(a, record)
    assert (first.status_code, first.headers["X-Cache"]) == (200, "miss")
    # New connections, several at once: the two workers share them out between them.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(a, record), range(40)))
    assert [(r.status_code, r.headers["X-Cache"]) for r in answers] == [(200, "hit")] * 40
    assert all(r.json() == first.json() for r in answers)
    direct = redis.Redis.from_url(redis_server.url)
    stored = direct.keys(f"tabserve:prediction:{first.json()['model']}:*")
    ttls = [direct.ttl(key) for key in stored]
    direct.close()
    assert stored and all(0 < ttl <= 3600 for ttl in ttls)  # the default CACHE_TTL_S


def test_a_second_server_answers_from_the_first_servers_entry(servers):
    a, b = servers
    record = {**PENGUIN, "bill_length_mm": 41.02}
    first = post(a, record)
    on_b = post(b, record)
    assert (first.headers["X-Cache"], on_b.status_code, on_b.headers["X-Cache"]) == ("miss", 200, "hit")
    assert on_b.json() == first.json()
    served = requests.get(f"{b.url}/v1/model", timeout=30).json()["serving"]
    assert served["prediction_cache"] == "redis"


def test_a_server_starts_ready_with_redis_dead_and_predicts_uncached(penguins_model):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    # One worker: each worker says so once (a second would log its own line, if the kernel gave it a request).
    env = {"MODEL_TAG": str(penguins_model.tag), "REDIS_URL": dead, "API_WORKERS": "1"}
    with Server(env=env, name="shared-cache-dead") as server:
        answers = [post(server, PENGUIN) for _ in range(5)]
        errors = metric(server.url, "tabserve_cache_errors_total")
        lines = down_lines(server)
    assert [(r.status_code, r.headers["X-Cache"]) for r in answers] == [(200, "miss")] * 5
    assert answers[0].json()["prediction"] == "Gentoo"
    assert errors >= 1
    assert len(lines) == 1, lines  # one line, not one per request


def test_redis_killed_under_load_costs_only_the_cache_and_hits_come_back(servers, redis_server):
    a, _ = servers
    errors_before = metric(a.url, "tabserve_cache_errors_total")
    stop = threading.Event()

    def client(i: int) -> list[tuple[float, object, object]]:
        """(when, status or the exception, X-Cache) of each request, until told to stop."""
        seen, n = [], 0
        while not stop.is_set():
            record = {**PENGUIN, "bill_length_mm": 43.0 + (n % 5) / 100, "year": 2007 + i % 3}
            try:
                response = post(a, record)
                seen.append((time.monotonic(), response.status_code, response.headers.get("X-Cache")))
            except requests.RequestException as exc:
                seen.append((time.monotonic(), repr(exc), None))
            n += 1
        return seen

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        time.sleep(2)
        killed_at = time.monotonic()
        redis_server.stop()
        time.sleep(3)
        stop.set()
        seen = [row for future in futures for row in future.result()]

    assert seen and all(status == 200 for _, status, _ in seen), [row for row in seen if row[1] != 200][:5]
    before = [cache for when, _, cache in seen if when < killed_at]
    after = [cache for when, _, cache in seen if when > killed_at]
    assert "hit" in before and after, (len(before), len(after))  # the load ran through the kill
    assert metric(a.url, "tabserve_cache_errors_total") > errors_before
    assert 1 <= len(down_lines(a)) <= 2, down_lines(a)  # once per entry worker that noticed, not per request

    redis_server.start()  # empty (--save ''): the next request stores, the one after hits
    record = {**PENGUIN, "bill_length_mm": 44.0}
    poll(lambda: post(a, record).headers["X-Cache"] == "hit", "a cache hit after Redis came back")
    # Each worker that logged the outage logs the recovery once, on its first call to Redis after it.
    poll(
        lambda: post(a, record).status_code == 200 and len(log_lines(a, BACK)) == len(down_lines(a)),
        "every worker that logged Redis down logs it back",
    )
    assert len(log_lines(a, BACK)) == len(down_lines(a))
