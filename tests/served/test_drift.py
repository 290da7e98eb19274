"""Drift on a real `bentoml serve` with two entry workers: every prediction path counted, the window read
across workers, /v1/drift behind the key, the counters and PSI gauges on /metrics."""

import glob
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import Server
from tests.served.metrics_text import samples
from tests.served.penguin_data import FEATURES, penguin_records, shifted

pytestmark = pytest.mark.served
KEY = "drift-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def send_batches(server: Server, records: list[dict], size: int = 8, headers: dict | None = None) -> None:
    """Several /predict_batch requests at once, each on its own connection, so both workers take some."""
    chunks = [records[i : i + size] for i in range(0, len(records), size)]

    def send(chunk):
        return requests.post(
            f"{server.url}/predict_batch", json={"records": chunk}, headers=headers or {}, timeout=60
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, chunks))
    assert statuses == [200] * len(chunks)


def drift(server: Server, headers: dict | None = None) -> dict:
    response = requests.get(f"{server.url}/v1/drift", headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def per_worker_counts(server: Server, feature: str = "island") -> list[float]:
    """The records each process counted, from its own counter file in BentoML's multiprocess directory."""
    found = []
    for path in glob.glob(str(server.home / "prometheus_multiproc_dir" / "counter_*.db")):
        total = sum(
            s.value
            for m in MultiProcessCollector.merge([path], accumulate=False)
            if m.name == "tabserve_feature_values"
            for s in m.samples
            if s.labels.get("feature") == feature
        )
        if total:
            found.append(total)
    return found


@pytest.fixture(scope="module")
def keyed(penguins_model):
    env = {
        "MODEL_TAG": str(penguins_model.tag),
        "API_WORKERS": "2",
        "API_KEY": KEY,
        "DRIFT_MIN_RECORDS": "300",
        "DRIFT_REFRESH_S": "0.5",
    }
    with Server(env=env, name="drift-keyed") as running:
        yield running


def test_drift_needs_the_key_and_starts_with_too_few(keyed):
    refused = requests.get(f"{keyed.url}/v1/drift", timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]
    body = drift(keyed, AUTH)
    assert body["status"] == "too few" and body["window"]["records"] == 0
    assert body["settings"] == {"window_s": 0, "warn_psi": 0.1, "alert_psi": 0.25, "min_records": 300}
    assert "fewer than DRIFT_MIN_RECORDS=300" in body["message"]


def test_replaying_the_training_data_is_ok_and_counted_once_over_two_workers(keyed):
    records = penguin_records()
    send_batches(keyed, records[::2], headers=AUTH)  # half of the rows: under the minimum
    half = drift(keyed, AUTH)
    assert half["status"] == "too few" and half["window"]["records"] == 172
    assert all(f["status"] == "too few" for f in half["features"])
    send_batches(keyed, records[1::2], headers=AUTH)
    sent = 344
    # Which worker takes a connection is the kernel's choice: replay the file again (the same distribution)
    # until both workers have counted some, at most 5 times.
    for _ in range(5):
        if len(per_worker_counts(keyed)) == 2:
            break
        send_batches(keyed, records, headers=AUTH)
        sent += 344
    spread = per_worker_counts(keyed)
    assert len(spread) == 2 and sum(spread) == sent, spread  # both workers counted some, nothing twice
    for _ in range(6):  # whichever worker answers, it reads the totals of both
        body = drift(keyed, AUTH)
        assert body["window"]["records"] == sent and body["status"] == "ok", json.dumps(body)[:2000]
    assert {f["name"] for f in body["features"]} == set(FEATURES)
    for feature in body["features"]:
        assert feature["psi"] < 0.1 and feature["status"] == "ok" and feature["records"] == sent, feature
        assert sum(b["count"] for b in feature["bins"]) == sent
        assert sum(b["reference"] for b in feature["bins"]) == pytest.approx(1, abs=1e-3)
    assert body["prediction"]["status"] == "ok" and body["prediction"]["psi"] < 0.1
    assert body["window"]["kind"] == "since the server started" and body["window"]["seconds"] > 0


def test_every_prediction_path_is_counted(keyed, penguins_model):
    before = drift(keyed, AUTH)["window"]["records"]
    one = {
        "island": "Dream",
        "bill_length_mm": 40.1,
        "bill_depth_mm": 18.9,
        "flipper_length_mm": 190,
        "body_mass_g": 3900,
        "sex": "female",
        "year": 2008,
    }
    for _ in range(2):  # a miss, then a cache hit
        assert requests.post(f"{keyed.url}/predict", json=one, headers=AUTH, timeout=30).status_code == 200
    query = {k: v for k, v in one.items()}
    assert requests.get(f"{keyed.url}/v1/predict", params=query, headers=AUTH, timeout=30).status_code == 200
    csv_text = ",".join(FEATURES) + "\n" + "\n".join(",".join(str(one[f]) for f in FEATURES) for _ in range(3)) + "\n"
    answer = requests.post(
        f"{keyed.url}/predict_csv", files={"file": ("p.csv", csv_text, "text/csv")}, headers=AUTH, timeout=30
    )
    assert answer.status_code == 200, answer.text
    name, version = str(penguins_model.tag).split(":")
    for rows in (1, 2):  # one row goes through the cache path, more through the bulk path
        inputs = [
            {
                "name": f,
                "shape": [rows],
                "datatype": "BYTES" if isinstance(one[f], str) else "FP64",
                "data": [one[f]] * rows,
            }
            for f in FEATURES
        ]
        answer = requests.post(f"{keyed.url}/v2/models/{name}/infer", json={"inputs": inputs}, headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
    assert drift(keyed, AUTH)["window"]["records"] == before + 2 + 1 + 3 + 1 + 2


def test_metrics_have_the_counters_and_the_psi_gauges(keyed):
    records = drift(keyed, AUTH)["window"]["records"]
    found = samples(keyed.url)
    counted = [s for s in found if s.name == "tabserve_feature_values_total"]
    assert {s.labels["feature"] for s in counted} == set(FEATURES)
    assert sum(s.value for s in counted if s.labels["feature"] == "body_mass_g") == records
    assert {"≤ 2007", "2008", "2009"} <= {s.labels["bin"] for s in counted if s.labels["feature"] == "year"}
    assert sum(s.value for s in found if s.name == "tabserve_predicted_values_total") == records
    gauges = {s.labels["feature"]: s.value for s in found if s.name == "tabserve_feature_drift_psi"}
    assert set(gauges) == set(FEATURES) and all(0 <= v < 0.1 for v in gauges.values()), gauges
    assert [s.value for s in found if s.name == "tabserve_prediction_drift_psi"][0] < 0.1


def test_docs_document_the_drift_route(keyed):
    spec = requests.get(f"{keyed.url}/docs.json", timeout=30).json()
    operation = spec["paths"]["/v1/drift"]["get"]
    assert {"200", "401"} <= set(operation["responses"]) and operation.get("security") == [{"apiKey": []}]


@pytest.fixture(scope="module")
def windowed(penguins_model):
    env = {
        "MODEL_TAG": str(penguins_model.tag),
        "API_WORKERS": "2",
        "DRIFT_MIN_RECORDS": "100",
        "DRIFT_WINDOW_S": "20",
        "DRIFT_REFRESH_S": "0.5",
    }
    with Server(env=env, name="drift-window") as running:
        yield running


def wait_for(check, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what}")


def test_gauges_refresh_without_anyone_asking_and_a_shift_alerts_in_a_window(windowed):
    records = penguin_records()
    send_batches(windowed, records)

    def window_records():  # set only by the workers' background samplers: /v1/drift is not called here
        values = [s.value for s in samples(windowed.url) if s.name == "tabserve_drift_window_records"]
        return values[0] if values and values[0] == 344 else None

    wait_for(window_records, "the sampler to publish 344 records on /metrics")
    gauges = {s.labels["feature"]: s.value for s in samples(windowed.url) if s.name == "tabserve_feature_drift_psi"}
    assert set(gauges) == set(FEATURES) and all(v < 0.1 for v in gauges.values()), gauges

    # The replay leaves the 20 s window; then only the shifted copy is in it.
    # Each worker samples its own ring every DRIFT_REFRESH_S, out of phase with the other: one worker reading
    # 0 does not mean the other's window start has passed the replay. Wait for 0 over 3 s of readings.
    readings: list[int] = []

    def left_the_window():
        readings.append(drift(windowed)["window"]["records"])
        return True if readings[-6:] == [0] * 6 else None

    wait_for(left_the_window, "the replay to leave the window")
    send_batches(windowed, shifted(records))
    body = drift(windowed)
    assert body["window"]["records"] == 344 and body["window"]["kind"] == "the last 20 s", body["window"]
    statuses = {f["name"]: f["status"] for f in body["features"]}
    assert {name for name, status in statuses.items() if status != "ok"} == {"body_mass_g", "island"}, statuses
    assert statuses["body_mass_g"] == statuses["island"] == "alert" and body["status"] == "alert"
    assert body["message"].startswith("drift in ")
    island = next(f for f in body["features"] if f["name"] == "island")
    torgersen = next(b for b in island["bins"] if b["bin"] == "Torgersen")
    assert torgersen["live"] == 0 and torgersen["reference"] > 0.1

    def alerting_gauge():
        values = {s.labels["feature"]: s.value for s in samples(windowed.url) if s.name == "tabserve_feature_drift_psi"}
        return values if values.get("island", 0) >= 0.25 and values.get("body_mass_g", 0) >= 0.25 else None

    gauges = wait_for(alerting_gauge, "the PSI gauges to show the shift")
    assert all(v < 0.1 for name, v in gauges.items() if name not in ("island", "body_mass_g") and not math.isnan(v)), (
        gauges
    )
