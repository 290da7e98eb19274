"""GET /v1/entities/{id}/predict on a real `bentoml serve`, with the feature table in SQLite and in a real
PostgreSQL: the same answer as POST /predict with the row's record, 404, overrides, /metrics, /docs.json;
PostgreSQL down at start and stopped under load: 503s (never 500s or hangs), then 200s again."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tabserve.core.data import PENGUINS_CSV, read_table
from tabserve.serving.api import feature_table as features
from tests.conftest import Server
from tests.engines import Postgres
from tests.served.metrics_text import metric

pytestmark = pytest.mark.served


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request, penguins_model, tmp_path_factory):
    """(server, postgres or None, the first answer: given before the database was there)."""
    env = {
        "MODEL_TAG": str(penguins_model.tag),
        "FEATURE_DB_TIMEOUT_MS": "2000",
        "API_WORKERS": "1",
    }  # one worker: one in-process cache
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('features') / 'features.db'}"
        with Server(env={**env, "FEATURE_DB_URL": url}, name="entities-sqlite") as server:
            early = requests.get(f"{server.url}/v1/entities/1/predict", timeout=30)
            features.load(PENGUINS_CSV, "penguin_id", "features", url, number_rows=True)
            yield server, None, early
        return
    postgres = Postgres()  # made, not started: the server starts without its database
    try:
        with Server(env={**env, "FEATURE_DB_URL": postgres.url}, name="entities-postgres") as server:
            early = requests.get(f"{server.url}/v1/entities/1/predict", timeout=30)
            postgres.start()
            features.load(PENGUINS_CSV, "penguin_id", "features", postgres.url, number_rows=True)
            yield server, postgres, early
    finally:
        postgres.__exit__()


def row_record(number: int) -> dict:
    """Row `number` (from 1) of the penguins CSV as a JSON body for POST /predict (missing: null)."""
    from tabserve.core.schema import MISSING_MARKERS

    cells = read_table(PENGUINS_CSV).raw.drop(columns="species").iloc[number - 1].to_dict()
    return {k: None if v in MISSING_MARKERS else (v if k in ("island", "sex") else float(v)) for k, v in cells.items()}


def test_ready_and_503_while_the_database_is_not_there(served):
    server, postgres, early = served
    assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200
    assert early.status_code == 503 and early.headers["Retry-After"].startswith("1")
    message = early.json()["error"]
    if postgres is None:
        assert (
            "does not exist or cannot be opened; fill it with: "
            "python -m tabserve.serving.api.feature_table load data.csv --id-column ID" in message
        )
    else:
        assert message.startswith("the feature database is unreachable (postgresql+psycopg://tabserve@127.0.0.1:")


def test_the_same_answer_as_post_predict_with_the_rows_record(served):
    server = served[0]
    for number in (1, 4, 200, 344):
        posted = requests.post(f"{server.url}/predict", json=row_record(number), timeout=30)
        by_id = requests.get(f"{server.url}/v1/entities/{number}/predict", timeout=30)
        assert by_id.status_code == 200 and posted.status_code == 200, by_id.text
        assert by_id.json() == {**posted.json(), "entity_id": str(number)}
        assert by_id.headers["X-Cache"] == "hit"  # the record POST /predict cached: the same path, the same key


def test_unknown_id_is_404(served):
    response = requests.get(f"{served[0].url}/v1/entities/100000/predict", timeout=30)
    assert response.status_code == 404
    assert response.json() == {
        "error": "no entity '100000' in table 'features'",
        "detail": [{"loc": ["id"], "msg": "no entity '100000' in table 'features'", "type": "not_found"}],
    }


def test_query_parameters_override_the_row(served):
    url = f"{served[0].url}/v1/entities/1/predict"
    assert requests.get(url, timeout=30).json()["prediction"] == "Adelie"
    changed = requests.get(url, params={"island": "Dream", "bill_length_mm": 50}, timeout=30)
    assert changed.status_code == 200 and changed.json()["prediction"] == "Chinstrap"
    posted = requests.post(
        f"{served[0].url}/predict", json={**row_record(1), "island": "Dream", "bill_length_mm": 50}, timeout=30
    )
    assert changed.json() == {**posted.json(), "entity_id": "1"}
    refused = requests.get(url, params={"wings": 2}, timeout=30)
    assert refused.status_code == 400 and "wings" in refused.json()["error"]


def test_metrics_have_the_lookup_time_beside_the_model_time(served):
    server = served[0]
    requests.get(f"{server.url}/v1/entities/2/predict", params={"year": 2008}, timeout=30)  # a record not cached yet
    assert metric(server.url, "tabserve_feature_lookup_seconds_count", result="found") >= 1
    assert metric(server.url, "tabserve_feature_lookup_seconds_count", result="not_found") >= 1
    assert metric(server.url, "tabserve_model_call_seconds_count", api="predict") >= 1
    assert metric(server.url, "tabserve_requests_total", route="/v1/entities/{id}/predict", status="200") >= 1


def test_documented_in_docs_json(served):
    spec = requests.get(f"{served[0].url}/docs.json", timeout=30).json()
    responses = spec["paths"]["/v1/entities/{id}/predict"]["get"]["responses"]
    assert {"200", "400", "404", "422", "503"} <= set(responses)
    assert (
        "feature table" in responses["404"]["description"]
        and "python -m tabserve.serving.api.feature_table load" in responses["503"]["description"]
    )
    assert "Retry-After" in responses["503"]["headers"]


@pytest.mark.timeout(400)
def test_postgres_stopped_under_load_is_503_then_200_after_restart(served):
    server, postgres, _ = served
    if postgres is None:
        pytest.skip("PostgreSQL only: SQLite has no server to stop")
    results: list[tuple[int, str] | BaseException] = []
    done = threading.Event()

    def caller(offset: int) -> None:
        number = offset
        while not done.is_set():
            number = number % 344 + 1
            try:
                response = requests.get(f"{server.url}/v1/entities/{number}/predict", timeout=60)
                results.append((response.status_code, response.json().get("error", "")))
            except (
                BaseException
            ) as exc:  # a hang (the 60 s timeout) or a dropped connection: the main thread fails on it
                results.append(exc)

    def wait_for(status: int, after: int) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(r[0] == status for r in results[after:] if isinstance(r, tuple)):
            time.sleep(0.05)
        return len(results)

    threads = [threading.Thread(target=caller, args=(n * 50,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        seen = wait_for(200, 0)
        postgres.stop()
        try:
            down = wait_for(503, seen)
        finally:
            postgres.start()
        back = wait_for(200, down + 8)  # a few answers after the restart, then a success
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    failures = [r for r in results if not isinstance(r, tuple)]
    assert failures == []
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert 503 in statuses[seen:down]  # while it was down
    assert 200 in statuses[down + 8 : back]  # after it came back
    assert all(message.startswith("the feature database") for status, message in results if status == 503)
    assert (
        metric(server.url, "tabserve_feature_lookup_seconds_count", result="error")
        + metric(server.url, "tabserve_feature_lookup_seconds_count", result="timeout")
        >= 1
    )
