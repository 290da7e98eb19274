"""The two layouts (SERVICE_LAYOUT) as processes: a monolith runs no model service and shows its requests
per worker; the services layout split into two `bentoml serve` processes, the entry reaching the model
service at MODEL_SERVICE_URL, and what the entry answers when that server goes away."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tabserve.core import pipeline, store
from tabserve.core.card import ModelCard
from tests.conftest import PENGUIN, ROOT, Server
from tests.served.metrics_text import samples
from tests.served.penguin_data import penguin_records

pytestmark = pytest.mark.served


def expected(model, records):
    card = ModelCard.from_model(model)
    return [r["prediction"] for r in pipeline.predict_records(store.load_pipeline(model), card.schema, records)]


def service_names(server: Server) -> set[str]:
    names = set()
    for child in psutil.Process(server.process.pid).children(recursive=True):
        line = " ".join(child.cmdline())
        if "--service-name" in line:
            names.add(line.split("--service-name", 1)[1].split()[0])
    return names


@pytest.fixture(scope="module")
def monolith(penguins_model):
    """The default layout with its default workers (one per core)."""
    with Server(env={"MODEL_TAG": str(penguins_model.tag), "API_WORKERS": ""}, name="monolith-workers") as running:
        yield running


def test_a_monolith_runs_the_model_in_its_entry_workers(monolith, penguins_model):
    layout_server = monolith
    assert service_names(layout_server) == {"PredictionService"}
    records = [r for r in penguin_records() if None not in r.values()][:64]

    def send(record):  # a new connection each: the kernel spreads them over the workers
        return requests.post(f"{layout_server.url}/predict", json=record, timeout=30).json()["prediction"]

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(send, records)) == expected(penguins_model, records)
    per_worker = {
        s.labels["worker"]: s.value for s in samples(layout_server.url) if s.name == "tabserve_worker_requests_total"
    }
    workers = [
        c
        for c in psutil.Process(layout_server.process.pid).children(recursive=True)
        if "--service-name PredictionService" in " ".join(c.cmdline())
    ]
    assert len(workers) == 2  # one per core
    # Counted per worker: how the kernel spread the connections (unevenly, often: that is why it is shown).
    assert sum(per_worker.values()) >= len(records) and set(per_worker) <= {"1", "2"}
    assert requests.get(f"{layout_server.url}/v1/model", timeout=10).json()["serving"]["layout"] == "monolith"


def explained_offline(model, records):
    """Each record's explanation of its predicted class, by the stored version's runtime in this process."""
    runtime = store.load_runtime(model)
    return runtime.explain_records(records, [a["prediction"] for a in runtime.predict_records(records)])


def assert_same_explanations(served: list[dict], offline: list[dict]) -> None:
    """The same method, output and features, the same numbers (to float rounding: batches differ in size)."""
    assert len(served) == len(offline)
    for a, b in zip(served, offline, strict=True):
        assert (a["method"], a["output"], list(a["contributions"])) == (
            b["method"],
            b["output"],
            list(b["contributions"]),
        )
        numbers = [a["base"], a["value"], *a["contributions"].values()]
        assert numbers == pytest.approx([b["base"], b["value"], *b["contributions"].values()], rel=1e-12, abs=1e-12)


def send_mixed(url: str, records: list[dict]) -> list[dict]:
    """Every other record asks for an explanation; 16 at a time, so explained and plain ones share batches."""

    def send(indexed):
        i, record = indexed
        suffix = "?explain=true" if i % 2 else ""
        response = requests.post(f"{url}/predict{suffix}", json=record, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(send, enumerate(records)))


def test_explained_and_plain_records_share_batches_and_answer_as_alone(monolith, penguins_model):
    records = penguin_records()[:48]
    answers = send_mixed(monolith.url, records)
    offline = explained_offline(penguins_model, records)
    assert [a["prediction"] for a in answers] == expected(penguins_model, records)
    assert [a.get("explanation") is not None for a in answers] == [i % 2 == 1 for i in range(len(records))]
    assert_same_explanations([a["explanation"] for a in answers[1::2]], offline[1::2])


def test_keep_alive_clients_are_shared_between_the_workers(monolith):
    """Four clients that keep their connection (a pool, a load balancer) open one after another: the workers
    share one listening socket, and without touchpoint 8 (bentoml_fixes.accept_by_load) the same worker took
    all four in about 3 runs of 4, leaving the other idle. Now the worker holding fewer connections takes the next."""

    def per_worker():
        return {
            s.labels["worker"]: s.value for s in samples(monolith.url) if s.name == "tabserve_worker_requests_total"
        }

    deadline = time.monotonic() + 60  # /readyz answers once one worker is up: wait until the other listens too
    while len(per_worker()) < 2 and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as pool:  # new connections, which go to whichever worker is idle
            list(pool.map(lambda _: requests.post(f"{monolith.url}/predict", json=PENGUIN, timeout=30), range(16)))
    before = per_worker()
    assert len(before) == 2, before
    sessions = [requests.Session() for _ in range(4)]
    try:
        for session in sessions:  # one after another, each connection made and used before the next
            assert session.post(f"{monolith.url}/predict", json=PENGUIN, timeout=30).status_code == 200
        for session in sessions:
            for _ in range(5):
                assert session.post(f"{monolith.url}/predict", json=PENGUIN, timeout=30).status_code == 200
    finally:
        for session in sessions:
            session.close()
    after = per_worker()
    served = {worker: after.get(worker, 0) - before.get(worker, 0) for worker in ("1", "2")}
    assert sum(served.values()) >= 24 and min(served.values()) >= 6, (
        served
    )  # a session is 6 requests; a scrape of /metrics 1


def test_the_entry_reaches_a_model_service_running_as_its_own_server(penguins_model):
    tag = str(penguins_model.tag)
    with Server(target="service:ModelService", env={"MODEL_TAG": tag}, name="model-only") as model_server:
        env = {
            "MODEL_TAG": tag,
            "MODEL_SERVICE_URL": model_server.url,
            "PREDICTION_CACHE_SIZE": "0",
            "MODEL_TIMEOUT_S": "5",
        }
        with Server(env=env, name="entry-only") as entry:
            assert service_names(entry) == {"PredictionService"} and service_names(model_server) == {"ModelService"}
            records = [r for r in penguin_records() if None not in r.values()][:20]
            singles = [requests.post(f"{entry.url}/predict", json=r, timeout=30).json() for r in records]
            assert [a["prediction"] for a in singles] == expected(penguins_model, records) and {
                a["model"] for a in singles
            } == {tag}
            batch = requests.post(f"{entry.url}/predict_batch", json={"records": records}, timeout=30).json()
            assert [p["prediction"] for p in batch["predictions"]] == expected(penguins_model, records)
            # Explanations cross the hop: asked per item, batched by the model service with plain items.
            offline = explained_offline(penguins_model, records)
            mixed = send_mixed(entry.url, records)
            assert [a.get("explanation") is not None for a in mixed] == [i % 2 == 1 for i in range(len(records))]
            assert_same_explanations([a["explanation"] for a in mixed[1::2]], offline[1::2])
            url = f"{entry.url}/predict_batch?explain=true"
            explained = requests.post(url, json={"records": records}, timeout=30).json()
            assert_same_explanations([p["explanation"] for p in explained["predictions"]], offline)
            serving = requests.get(f"{entry.url}/v1/model", timeout=10).json()["serving"]
            assert (serving["layout"], serving["model_service_url"]) == (
                "services",
                model_server.url,
            )  # the URL implies services

            model_server.stop()  # the model service goes away: a clear 503, fast, never a hang
            started = time.monotonic()
            down = requests.post(f"{entry.url}/predict", json={**PENGUIN, "body_mass_g": 4321}, timeout=30)
            assert down.status_code == 503 and down.json()["error"].startswith("the model service"), down.text
            assert time.monotonic() - started < 20
            assert requests.get(f"{entry.url}/readyz", timeout=30).status_code == 503


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SERVICE_LAYOUT": "microservices"}, "error: SERVICE_LAYOUT='microservices' must be 'services' or 'monolith'"),
        (
            {"SERVICE_LAYOUT": "monolith", "MODEL_SERVICE_URL": "http://model:3000"},
            "error: MODEL_SERVICE_URL needs SERVICE_LAYOUT=services",
        ),
        (
            {"MODEL_SERVICE_URL": "model:3000"},
            "error: MODEL_SERVICE_URL='model:3000' must start with http:// or https://",
        ),
    ],
)
def test_a_bad_layout_setting_stops_with_one_line(env, message):
    result = subprocess.run(
        [sys.executable, "-c", "import tabserve.serving.settings"],
        cwd=ROOT,
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
