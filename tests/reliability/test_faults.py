"""Faults under load: workers killed, the server stopped, the model service gone.

Bounds here are generous limits on waiting (a test fails instead of hanging), not timings.
"""

import json
import shutil
import signal
import threading
import time

import psutil
import pytest
import requests

from tests.conftest import HGB_ONLY, LAYOUTS, PENGUIN, Server
from tests.served.metrics_text import metric

pytestmark = [pytest.mark.served, pytest.mark.slow]


def worker(server: Server, service_name: str) -> psutil.Process:
    for child in psutil.Process(server.process.pid).children(recursive=True):
        if f"--service-name {service_name}" in " ".join(child.cmdline()):
            return child
    raise AssertionError(f"no {service_name} worker under the server")


class Load:
    """Threads sending /predict (distinct records, so no cache hits) until stopped; every outcome kept."""

    def __init__(self, url: str, threads: int = 8):
        self.url, self.outcomes, self._stop = url, [], threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            record = {**PENGUIN, "body_mass_g": 3000 + index * 10_000 + n}
            try:
                response = requests.post(f"{self.url}/predict", json=record, timeout=60)
                self.outcomes.append((time.monotonic(), response.status_code, response.text[:200]))
            except Exception as exc:  # in a thread: kept for the test to assert on, never lost
                self.outcomes.append((time.monotonic(), type(exc).__name__, str(exc)[:200]))

    def answered(self, more: int = 20, timeout: float = 60) -> None:
        """Until `more` further requests were answered (the load is running), instead of a fixed sleep."""
        target, deadline = len(self.outcomes) + more, time.monotonic() + timeout
        while len(self.outcomes) < target:
            assert time.monotonic() < deadline, f"the load got {len(self.outcomes)} answers, not {target}"
            time.sleep(0.05)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)


def first_success_after(url: str, limit: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if requests.post(f"{url}/predict", json={**PENGUIN, "year": 2008}, timeout=10).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no successful prediction within {limit} s")


def test_model_worker_killed_with_sigkill_is_replaced(penguins_model):
    with Server(
        env={"PREDICTION_CACHE_SIZE": "0", "MODEL_TIMEOUT_S": "5", "SERVICE_LAYOUT": "services"}, name="kill-model"
    ) as served:
        with Load(served.url) as load:
            load.answered()
            worker(served, "ModelService").send_signal(signal.SIGKILL)
            first_success_after(served.url, limit=60)  # a new worker answers: no timing asserted (shared cores)
            load.answered()
        statuses = {status for _, status, _ in load.outcomes}
        assert statuses <= {200, 503}, load.outcomes[-20:]
        refused = [text for _, status, text in load.outcomes if status == 503]
        # The worker is gone for seconds (a new one loads the model): calls made meanwhile are refused, each
        # with the model service's message in the one error shape. None refused would leave that unchecked.
        assert refused, "no request was answered 503 while the model worker was down"
        assert all(text.startswith('{"error":') and "the model service" in text for text in refused), refused[:3]
        assert [requests.post(f"{served.url}/predict", json=PENGUIN, timeout=30).status_code for _ in range(20)] == [
            200
        ] * 20


@pytest.mark.parametrize("layout", LAYOUTS)
def test_entry_worker_killed_with_sigkill_is_replaced(penguins_model, layout):
    env = {"PREDICTION_CACHE_SIZE": "0", "SERVICE_LAYOUT": layout, "API_WORKERS": "2"}  # the other one serves on
    with Server(env=env, name=f"kill-entry-{layout}") as served:
        with Load(served.url) as load:
            load.answered()
            worker(served, "PredictionService").send_signal(signal.SIGKILL)
            first_success_after(served.url, limit=60)  # a new worker answers: no timing asserted (shared cores)
            load.answered()
        answered = {status for _, status, _ in load.outcomes if isinstance(status, int)}
        assert answered <= {200, 503}, load.outcomes[-20:]  # requests on the killed worker's connections drop
        assert [requests.post(f"{served.url}/predict", json=PENGUIN, timeout=30).status_code for _ in range(20)] == [
            200
        ] * 20


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sigterm_answers_every_accepted_request_then_exits_0(penguins_model, layout):
    """SIGTERM while six large batches are in flight and one is at the model: no connection is reset,
    every request is answered, and the server exits 0. What each answer is depends on where the
    request was when the signal came. BentoML stops the entry and the model service at once: a
    request the model had begun completes (200), so at least one 200; one still being validated by
    the entry may find the model gone and is answered 503 with the model service's message."""
    served = Server(
        env={
            "PREDICTION_CACHE_SIZE": "0",
            "MODEL_TAG": str(penguins_model.tag),
            "SERVICE_LAYOUT": layout,
            "API_WORKERS": "",  # the layout's default
        },
        name=f"sigterm-{layout}",
    ).wait_ready()
    outcomes, records = [], [PENGUIN] * 5000

    def send():  # runs in a thread: collects, the test asserts
        try:
            response = requests.post(f"{served.url}/predict_batch", json={"records": records}, timeout=60)
            outcomes.append((response.status_code, response.text[:300]))
        except Exception as exc:  # a reset connection, a timeout, anything: kept for the assertion
            outcomes.append((type(exc).__name__, str(exc)[:300]))

    threads = [threading.Thread(target=send) for _ in range(6)]
    try:
        before = model_calls(served.url)
        for thread in threads:
            thread.start()
        # All six are sent (their headers long since read), and the model has begun one of them.
        time.sleep(0.5)
        deadline = time.monotonic() + 60
        while model_calls(served.url) == before:
            assert time.monotonic() < deadline, "the model never began a batch"
            time.sleep(0.02)
        served.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=90)
        exit_code = served.process.wait(timeout=60)
    finally:
        served.stop()
    assert len(outcomes) == 6, outcomes
    for status, text in outcomes:
        assert status == 200 or (status == 503 and json.loads(text)["error"].startswith("the model service")), outcomes
    assert any(status == 200 for status, _ in outcomes), outcomes
    assert exit_code == 0, served.log()


def model_calls(url: str) -> float:
    """Pipeline calls the model service has begun for /predict_batch (counted as each starts)."""
    return metric(url, "tabserve_pipeline_batch_records_count", api="predict_bulk")


def test_model_service_down_answers_503_not_a_hang(penguins_model, bentoml_home):
    from tabserve.core.data import PENGUINS_CSV
    from tabserve.training import trainer as training

    model = training.train(PENGUINS_CSV, "species", name="doomed", choices=HGB_ONLY).model
    with Server(
        env={
            "MODEL_TAG": str(model.tag),
            "PREDICTION_CACHE_SIZE": "0",
            "MODEL_TIMEOUT_S": "5",
            "SERVICE_LAYOUT": "services",
        },
        name="model-down",
    ) as served:
        first_success_after(served.url)  # warm
        # Take the model away, then kill its worker: every restart now fails, so the model service stays down.
        shutil.move(str(bentoml_home / "models" / "doomed"), str(bentoml_home / "doomed-away"))
        try:
            worker(served, "ModelService").send_signal(signal.SIGKILL)
            time.sleep(1)
            for _ in range(3):
                response = requests.post(f"{served.url}/predict", json=PENGUIN, timeout=30)
                assert response.status_code == 503 and response.json()["error"].startswith("the model service")
            assert requests.get(f"{served.url}/readyz", timeout=30).status_code == 503
            assert requests.get(f"{served.url}/v1/model", timeout=30).status_code == 200  # the entry itself is up
        finally:
            shutil.move(str(bentoml_home / "doomed-away"), str(bentoml_home / "models" / "doomed"))
