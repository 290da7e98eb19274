"""The /v1 routes (path and query parameters, the model card), the prediction cache and the metrics."""

import json

import pytest
import requests

from tests.conftest import PENGUIN
from tests.served.metrics_text import metric, model_batches

pytestmark = pytest.mark.served


def get(server, path, **kwargs):
    return requests.get(f"{server.url}{path}", timeout=30, **kwargs)


def test_model_card(server, penguins_model):
    card = get(server, "/v1/model").json()
    assert card["tag"] == str(penguins_model.tag) and card["task"] == "classification" and card["target"] == "species"
    assert card["classes"] == ["Adelie", "Chinstrap", "Gentoo"] and card["metrics"]["accuracy"] > 0.9
    assert card["training_data"]["rows"] == 344 and len(card["training_data"]["sha256"]) == 64
    assert "scikit-learn" in card["library_versions"] and card["created"].startswith("20")
    assert [f["name"] for f in card["features"]][0] == "island"
    assert card["serving"]["max_batch_size"] >= 2 and card["serving"]["adaptive_batching"] is True


def test_features_and_one_feature_by_path_parameter(server):
    names = [f["name"] for f in get(server, "/v1/features").json()]
    assert names == list(PENGUIN)
    bill = get(server, "/v1/features/bill_length_mm").json()
    assert bill == {**bill, "type": "number", "nullable": True, "min": 32.1, "max": 59.6}
    assert get(server, "/v1/features/island").json()["categories"] == ["Biscoe", "Dream", "Torgersen"]


def test_unknown_feature_is_404_listing_known_names(server):
    response = get(server, "/v1/features/wingspan")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "unknown feature 'wingspan'" and "island, bill_length_mm" in body["detail"][0]["msg"]


def test_get_predict_with_query_parameters_equals_post(server):
    posted = requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30).json()
    queried = get(server, "/v1/predict", params=PENGUIN)
    assert queried.status_code == 200
    assert queried.json() == posted


def test_get_predict_nullable_parameters_may_be_omitted(server):
    response = get(server, "/v1/predict", params={"island": "Dream", "year": 2008})
    assert response.status_code == 200 and response.json()["prediction"] in ("Adelie", "Chinstrap", "Gentoo")


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"island": "Dream"}, '"year"'),
        ({"island": "Mars", "year": 2008}, "'Biscoe', 'Dream' or 'Torgersen'"),
        ({"island": "Dream", "year": "soon"}, "year"),
        ({"island": "Dream", "year": "nan"}, "finite number"),
        ({"island": "Dream", "year": 2008, "wings": 2}, "wings"),
    ],
    ids=["missing", "unknown-category", "not-a-number", "nan", "unknown-parameter"],
)
def test_get_predict_bad_parameters_are_400_naming_the_parameter(server, params, fragment):
    response = get(server, "/v1/predict", params=params)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "detail"} and fragment in json.dumps(body)


def test_get_predict_goes_through_the_batched_model_service(server):
    before = model_batches(server.url)
    response = get(server, "/v1/predict", params={"island": "Torgersen", "year": 2009, "bill_length_mm": 41.3})
    assert response.status_code == 200 and response.headers["X-Cache"] == "miss"
    assert model_batches(server.url) == before + 1


def test_cache_hits_skip_the_model(server):
    record = {**PENGUIN, "body_mass_g": 5123}
    first = requests.post(f"{server.url}/predict", json=record, timeout=30)
    batches = model_batches(server.url)
    hits = metric(server.url, "tabserve_prediction_cache_total", result="hit")
    second = requests.post(f"{server.url}/predict", json=record, timeout=30)
    query = get(server, "/v1/predict", params=record)  # the same record by another route: same cache
    assert (first.headers["X-Cache"], second.headers["X-Cache"], query.headers["X-Cache"]) == ("miss", "hit", "hit")
    assert second.json() == first.json()
    assert model_batches(server.url) == batches, "a cache hit reached the model"
    assert metric(server.url, "tabserve_prediction_cache_total", result="hit") == hits + 2


def test_metrics_move(server):
    url = server.url
    gentoo = metric(url, "tabserve_predictions_total", label="Gentoo")
    refused = metric(url, "tabserve_validation_errors_total", endpoint="/predict", status="400")
    drift = metric(url, "tabserve_out_of_range_inputs_total", feature="bill_length_mm")
    requests.post(f"{url}/predict_batch", json={"records": [PENGUIN, PENGUIN]}, timeout=30)
    requests.post(f"{url}/predict", json={**PENGUIN, "island": "Mars"}, timeout=30)
    requests.post(f"{url}/predict", json={**PENGUIN, "bill_length_mm": 99.5}, timeout=30)
    assert metric(url, "tabserve_predictions_total", label="Gentoo") >= gentoo + 2
    assert metric(url, "tabserve_validation_errors_total", endpoint="/predict", status="400") == refused + 1
    assert metric(url, "tabserve_out_of_range_inputs_total", feature="bill_length_mm") == drift + 1


def test_open_server_says_so_in_its_log(server):
    assert "neither API_KEY nor API_KEYS_FILE is set" in server.log_path.read_text()
    assert requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30).status_code == 200
