"""The core contract on stock BentoML: one real `bentoml serve` started with TABSERVE_BENTOML_SPEEDUPS=0, so that
none of the speed-only touchpoints of tabserve/bentoml_fixes.py (1: the request timer, 2: per-message tracing
spans, 8: accept by load) is applied and the server runs on BentoML's and asyncio's own code there. Proof that
the product does not depend on them: the endpoints, the one error shape, batching, and versions (MODEL_WATCH_S:
a version saved while it runs becomes the champion). The correctness touchpoints stay, as they always do.

All the tests of this module share that one server; the version swap runs last."""

from __future__ import annotations

import concurrent.futures
import json
import time

import bentoml
import pytest
import requests

from tabserve import bentoml_fixes
from tabserve.core import pipeline, store
from tabserve.core.card import ModelCard
from tests.conftest import PENGUIN, Server
from tests.served.metrics_text import histogram
from tests.served.penguin_data import penguin_records

pytestmark = pytest.mark.served
NAME = "stock_bentoml"  # a model name of this module's own: other tests save newer "penguins" versions meanwhile
WATCH_S = 1  # MODEL_WATCH_S: how often the server looks for a new version of NAME
COMPLETE = [r for r in penguin_records() if None not in r.values()]


def save_version(model: bentoml.Model) -> bentoml.Model:
    """A new version of NAME holding `model`'s pipeline and card: a version without training one."""
    return store.save(NAME, store.load_pipeline(model), dict(model.info.labels), ModelCard.from_model(model))


def expected(model: bentoml.Model, records: list[dict]) -> list[dict]:
    """What the version answers for the records, called in-process."""
    return pipeline.predict_records(store.load_pipeline(model), ModelCard.from_model(model).schema, records)


@pytest.fixture(scope="module")
def first(penguins_model) -> bentoml.Model:
    """The version the server starts with: the session's penguins model, saved as NAME."""
    return save_version(penguins_model)


@pytest.fixture(scope="module")
def stock(first):
    """The project as shipped (default layout and workers), with every speed-only touchpoint off."""
    env = {"MODEL_TAG": NAME, "MODEL_WATCH_S": str(WATCH_S), bentoml_fixes.SPEEDUPS_SETTING: "0", "API_WORKERS": ""}
    with Server(env=env, name="stock-bentoml") as running:
        yield running


def post(server: Server, path: str, body) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, timeout=30)


def assert_error_shape(response: requests.Response, *fragments: str) -> None:
    """400 with the one error shape: {"error": str, "detail": [...]}, no traceback."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str) and isinstance(body["detail"], list)
    text = json.dumps(body)
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, text


def test_the_server_runs_with_the_speed_only_touchpoints_off(stock):
    assert f"{bentoml_fixes.SPEEDUPS_SETTING}=0: " in stock.log_path.read_text()


def test_predict_answers_a_prediction(stock, first):
    response = post(stock, "/predict", PENGUIN)
    assert response.status_code == 200, response.text
    body = response.json()
    want = expected(first, [PENGUIN])[0]
    assert body["model"] == str(first.tag) and body["prediction"] == want["prediction"] == "Gentoo"
    assert body["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


def test_predict_batch_keeps_the_order_of_the_records(stock, first):
    records = COMPLETE[::5] + [{"island": "Dream", "year": 2008}]  # all three species, and a sparse record
    response = post(stock, "/predict_batch", {"records": records})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == str(first.tag)
    assert [p["prediction"] for p in body["predictions"]] == [e["prediction"] for e in expected(first, records)]


@pytest.mark.parametrize(
    "path, body, fragments",
    [
        ("/predict", {**PENGUIN, "bill_length_mm": "long"}, ["bill_length_mm", "valid number"]),
        ("/predict", {**PENGUIN, "island": "Atlantis"}, ["island"]),
        ("/predict", {**PENGUIN, "wingspan": 3}, ["wingspan", "Extra inputs are not permitted"]),
        ("/predict_batch", {"records": [PENGUIN, {**PENGUIN, "sex": "x"}]}, ['"records", 1, "sex"']),
    ],
    ids=["wrong-type", "unknown-category", "unknown-field", "batch-record"],
)
def test_a_bad_record_answers_400_with_the_one_error_shape(stock, path, body, fragments):
    assert_error_shape(post(stock, path, body), *fragments)


def test_malformed_json_answers_400_with_the_one_error_shape(stock):
    response = requests.post(
        f"{stock.url}/predict", data=b'{"island": "Dream",', headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_error_shape(response, "Invalid JSON")


def test_concurrent_predict_calls_are_batched(stock, first):
    """As tests/served/test_adaptive_batching.py proves it: fewer pipeline calls than records, some with more
    than one record (the histogram of records per pipeline call on /metrics). Each record is distinct, so no
    answer comes from the prediction cache."""
    records = [{**r, "body_mass_g": r["body_mass_g"] + i / 1000} for i, r in enumerate((COMPLETE * 2)[:128])]
    before = histogram(stock.url, "tabserve_pipeline_batch_records", api="predict")
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(lambda record: post(stock, "/predict", record), records))
    assert [r.status_code for r in responses] == [200] * len(records)
    assert [r.json()["prediction"] for r in responses] == [e["prediction"] for e in expected(first, records)]
    after = histogram(stock.url, "tabserve_pipeline_batch_records", api="predict")
    calls = after[float("inf")] - before.get(float("inf"), 0)
    single = after[1.0] - before.get(1.0, 0)
    assert 0 < calls < len(records), "every record ran as its own pipeline call: nothing was batched"
    assert calls - single > 0, "no batch with more than one record was observed"


def test_the_model_route_names_the_version_and_follows_a_new_one(stock, first, penguins_model):
    """GET /v1/model names the served version; a version saved while the server runs (MODEL_WATCH_S) becomes the
    champion, named there and in every answer. Last in this module: it changes the champion."""
    card = requests.get(f"{stock.url}/v1/model", timeout=10).json()
    assert card["tag"] == str(first.tag)

    second = save_version(penguins_model)
    assert second.tag != first.tag
    deadline = time.monotonic() + WATCH_S + 60  # the watcher's period, the new version's check and warm-up
    answered: list[str] = []
    while time.monotonic() < deadline:
        # New connections, so each worker is asked (each one watches the store on its own).
        answered = [post(stock, "/predict", PENGUIN).json()["model"] for _ in range(8)]
        named = requests.get(f"{stock.url}/v1/model", timeout=10).json()["tag"]
        if set(answered) == {str(second.tag)} and named == str(second.tag):
            break
        time.sleep(0.5)
    assert set(answered) == {str(second.tag)}, answered
