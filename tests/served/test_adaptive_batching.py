"""Adaptive batching, observed: concurrent single-record calls are merged into larger pipeline calls."""

import concurrent.futures

import bentoml
import pytest
import requests

from tabserve.core import data, pipeline, store
from tabserve.core.card import ModelCard
from tabserve.core.columns import read_csv
from tests.served.metrics_text import histogram

pytestmark = pytest.mark.served


@pytest.fixture(scope="module")
def server(layout_server):
    """These tests run on both layouts (SERVICE_LAYOUT; tests/conftest.py, LAYOUTS)."""
    return layout_server


def batch_histogram(url):
    """{upper bound: cumulative count} of records per batched pipeline call, summed over workers."""
    return histogram(url, "tabserve_pipeline_batch_records", api="predict")


def test_concurrent_single_record_calls_are_batched_and_answered_in_order(server, penguins_model):
    frame = read_csv(data.PENGUINS_CSV).drop(columns=["species"])
    records = [
        {k: (None if v != v else v) for k, v in row.items()}  # NaN -> null
        for row in frame.sample(32 * 4, random_state=1, replace=True).to_dict("records")
    ]
    model = bentoml.models.get(server_model_tag(server))
    expected = pipeline.predict_records(store.load_pipeline(model), ModelCard.from_model(model).schema, records)
    before = batch_histogram(server.url)

    def call(record):
        return requests.post(f"{server.url}/predict", json=record, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(call, records))

    assert [r.status_code for r in responses] == [200] * len(records)
    answers = [r.json() for r in responses]
    assert [a["prediction"] for a in answers] == [e["prediction"] for e in expected]
    for answer, want in zip(answers, expected, strict=True):
        assert answer["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)

    after = batch_histogram(server.url)
    calls = after[float("inf")] - before.get(float("inf"), 0)
    single = after[1.0] - before.get(1.0, 0)
    assert 0 < calls < len(records), "every record ran as its own pipeline call: nothing was batched"
    assert calls - single > 0, "no batch with more than one record was observed"


def server_model_tag(server):
    return requests.post(f"{server.url}/predict", json={"island": "Dream", "year": 2008}, timeout=30).json()["model"]
