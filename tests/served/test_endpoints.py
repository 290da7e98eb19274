"""Every endpoint of a real `bentoml serve` process, over real HTTP: raw requests and BentoML's client."""

import csv
import io
import json

import bentoml
import pytest
import requests

from tabserve.core import pipeline, store
from tabserve.core.card import ModelCard
from tabserve.serving.api.csv_upload import MAX_REPORTED_ROWS
from tests.conftest import HGB_ONLY, PENGUIN, Server

pytestmark = pytest.mark.served
EXAMPLE = {
    "island": "Torgersen",
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "sex": "male",
    "year": 2007,
}
HEADER = list(EXAMPLE)


@pytest.fixture(scope="module")
def server(layout_server):
    """These tests run on both layouts (SERVICE_LAYOUT; tests/conftest.py, LAYOUTS)."""
    return layout_server


@pytest.fixture(scope="module")
def client(server):
    with bentoml.SyncHTTPClient(server.url) as http_client:
        yield http_client


def post(server, path, body=None, **kwargs):
    return requests.post(f"{server.url}{path}", json=body, timeout=30, **kwargs)


def csv_bytes(rows, header=HEADER):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["detail"], list)
    text = json.dumps(body)
    assert "Traceback" not in text and "errors.pydantic.dev" not in text
    for fragment in fragments:
        assert fragment in text, text
    return body


# --- the happy paths -------------------------------------------------------------------------


def test_probes_metrics_and_docs(server):
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert requests.get(server.url + path, timeout=10).status_code == 200, path
    assert "swagger" in requests.get(server.url + "/", timeout=10).text.lower()
    spec = requests.get(server.url + "/docs.json", timeout=10).json()
    assert {"/predict", "/predict_batch", "/predict_csv"} <= set(spec["paths"])
    assert "Biscoe" in json.dumps(spec) and "training range 32.1 to 59.6" in json.dumps(spec)


def test_predict_raw_http(server, penguins_model):
    response = post(server, "/predict", PENGUIN)
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == "Gentoo" and body["warnings"] == []
    assert body["model"].startswith("penguins:")
    assert set(body["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_predict_with_bentoml_client(client):
    assert client.predict(EXAMPLE)["prediction"] == "Adelie"
    batch = client.predict_batch(records=[EXAMPLE, PENGUIN])
    assert [p["prediction"] for p in batch["predictions"]] == ["Adelie", "Gentoo"]


def test_nullable_fields_may_be_omitted_and_out_of_range_is_flagged(server):
    response = post(server, "/predict", {"island": "Dream", "year": 2008, "bill_length_mm": 80})
    assert response.status_code == 200
    assert response.json()["warnings"] == ["bill_length_mm=80 is outside the training range [32.1, 59.6]"]


def test_predict_batch_keeps_input_order(server):
    records = [EXAMPLE, PENGUIN] * 50 + [{"island": "Dream", "year": 2008}]
    response = post(server, "/predict_batch", {"records": records})
    assert response.status_code == 200
    predictions = [p["prediction"] for p in response.json()["predictions"]]
    assert predictions[:100] == ["Adelie", "Gentoo"] * 50 and len(predictions) == 101


def test_predict_batch_answers_each_record_as_predict_does(server):
    """The batch answer is written without a BatchResponse object (api_types.batch_answer): each item must
    still be /predict's answer without the tag, the tag named once, the JSON answer."""
    records = [EXAMPLE, PENGUIN, {"island": "Dream", "year": 2008, "bill_length_mm": 80}]
    response = post(server, "/predict_batch", {"records": records})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    singles = [post(server, "/predict", record).json() for record in records]
    assert body == {
        "predictions": [{k: v for k, v in one.items() if k != "model"} for one in singles],
        "model": singles[0]["model"],
    }


def test_predict_csv_returns_the_table_with_predictions(server, client, penguins_model, tmp_path):
    sparse = {name: None for name in HEADER} | {"island": "Dream", "year": 2008}  # empty cells are missing values
    content = csv_bytes([list(EXAMPLE.values()), list(PENGUIN.values()), ["Dream", "", "", "", "", "", "2008"]])
    response = requests.post(f"{server.url}/predict_csv", files={"file": ("in.csv", content, "text/csv")}, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == HEADER + ["prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    # Each row as the pipeline itself answers its record, called directly on the served model version.
    model = bentoml.models.get(penguins_model.tag)
    expected = pipeline.predict_records(
        store.load_pipeline(model), ModelCard.from_model(model).schema, [EXAMPLE, PENGUIN, sparse]
    )
    assert [r["prediction"] for r in rows] == [e["prediction"] for e in expected] and len(rows) == 3
    assert [e["prediction"] for e in expected[:2]] == ["Adelie", "Gentoo"]
    for row, want in zip(rows, expected, strict=True):
        assert {k: float(row[f"proba_{k}"]) for k in want["probabilities"]} == pytest.approx(
            want["probabilities"], abs=1e-9
        )
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    assert "proba_Gentoo" in client.predict_csv(file=path)


def test_predict_csv_echoes_the_target_column(server):
    content = csv_bytes([["Adelie", *EXAMPLE.values()]], header=["species", *HEADER])
    response = requests.post(f"{server.url}/predict_csv", files={"file": ("in.csv", content, "text/csv")}, timeout=30)
    assert response.status_code == 200 and response.text.startswith("species,island")


# --- bad input: a specific 4xx naming what was wrong, never a 500 ---------------------------


@pytest.mark.parametrize(
    "body, fragments",
    [
        ({**EXAMPLE, "bill_length_mm": "long"}, ["bill_length_mm", "valid number"]),
        ({**EXAMPLE, "island": "Atlantis"}, ["island", "'Biscoe', 'Dream' or 'Torgersen'"]),
        ({k: v for k, v in EXAMPLE.items() if k != "year"}, ["year", "Field required"]),
        ({**EXAMPLE, "wingspan": 3}, ["wingspan", "Extra inputs are not permitted"]),
        ({**EXAMPLE, "year": True}, ["year"]),
        ([EXAMPLE], ["Input should be an object"]),
    ],
    ids=["wrong-type", "unknown-category", "missing-field", "unknown-field", "bool-for-number", "array"],
)
def test_predict_bad_records(server, body, fragments):
    assert_error(post(server, "/predict", body), 400, *fragments)


def test_malformed_json(server):
    response = requests.post(
        f"{server.url}/predict", data=b'{"island": "Dream",', headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_error(response, 400, "Invalid JSON")


def test_non_json_content_type(server):
    assert_error(requests.post(f"{server.url}/predict", data={"island": "Dream"}, timeout=10), 415, "application/json")


def test_batch_bad_input(server):
    assert_error(post(server, "/predict_batch", {"records": []}), 400, "records", "at least 1 item")
    assert_error(
        post(server, "/predict_batch", {"records": [EXAMPLE, {**EXAMPLE, "sex": "x"}]}), 400, '"records", 1, "sex"'
    )
    assert_error(post(server, "/predict_batch", {"records": [EXAMPLE] * 10_001}), 400, "at most 10000 items")
    assert_error(post(server, "/predict_batch", {"rows": [EXAMPLE]}), 400, "records")


def test_csv_bad_rows_are_reported_by_row_number(server):
    content = csv_bytes(
        [list(EXAMPLE.values()), ["Mars", *list(EXAMPLE.values())[1:]], ["Dream", "x", "", "", "", "", "2008"]]
    )
    response = requests.post(f"{server.url}/predict_csv", files={"file": ("in.csv", content, "text/csv")}, timeout=30)
    body = assert_error(response, 400, "2 of 3 CSV rows failed validation")
    assert [d["loc"][:2] for d in body["detail"]] == [["row 2", "island"], ["row 3", "bill_length_mm"]]


def test_csv_errors_listed_are_capped_and_all_counted(server):
    """More than MAX_REPORTED_ROWS bad rows: the 400 lists the first MAX_REPORTED_ROWS, its message counts all."""
    bad = ["Mars", *list(EXAMPLE.values())[1:]]
    rows = [list(EXAMPLE.values())] + [bad] * (MAX_REPORTED_ROWS + 20)
    response = requests.post(
        f"{server.url}/predict_csv", files={"file": ("in.csv", csv_bytes(rows), "text/csv")}, timeout=30
    )
    body = assert_error(response, 400)
    assert body["error"].startswith(
        f"{MAX_REPORTED_ROWS + 20} of {len(rows)} CSV rows failed validation (first: row 2)"
    )
    assert [d["loc"] for d in body["detail"]] == [[f"row {n}", "island"] for n in range(2, MAX_REPORTED_ROWS + 2)]


@pytest.mark.parametrize(
    "files, status, fragment",
    [
        ({"file": ("in.csv", b"", "text/csv")}, 400, "empty"),
        ({"file": ("in.csv", b"island,year\nDream,2007\n", "text/csv")}, 400, "lacks column"),
        ({"file": ("in.png", b"\x89PNG\r\n", "image/png")}, 415, "must be CSV"),
        ({"other": ("in.csv", b"a\n1\n", "text/csv")}, 400, "no file field named 'file'"),
    ],
    ids=["empty", "missing-columns", "not-csv", "wrong-field"],
)
def test_csv_bad_uploads(server, files, status, fragment):
    response = requests.post(f"{server.url}/predict_csv", files=files, timeout=30)
    assert_error(response, status, fragment)


def test_multipart_without_boundary(server):
    response = requests.post(
        f"{server.url}/predict_csv", data=b"x", headers={"Content-Type": "multipart/form-data"}, timeout=10
    )
    assert_error(response, 400, "boundary")


def test_unknown_route_and_wrong_method(server):
    assert_error(requests.get(f"{server.url}/nope", timeout=10), 404, "Not Found")
    assert_error(requests.get(f"{server.url}/predict", timeout=10), 405, "Method Not Allowed")


def test_server_still_ready_after_bad_input(server):
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
    assert "Traceback" not in "".join(r.text for r in [post(server, "/predict", {"island": 1})])


# --- any CSV: a regression model served by the same service.py ------------------------------


def test_regression_model_serves_numbers(regression_csv):
    from tabserve.training import trainer as training

    result = training.train(
        regression_csv, "price", name="house_prices", choices=HGB_ONLY
    )  # the id column is inferred as one
    with Server(env={"MODEL_TAG": str(result.model.tag)}, name="regression") as served:
        response = post(served, "/predict", {"a": 10.0, "b": 2.0, "colour": "red"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body["prediction"], float) and body["probabilities"] is None
        assert body["prediction"] == pytest.approx(3 * 10 - 2 * 2 + 5, abs=3)
        assert body["model"] == str(result.model.tag)
        assert post(served, "/predict", {"a": 10.0, "colour": "red"}).status_code == 200  # b had nulls: optional
        assert_error(post(served, "/predict", {"b": 1.0, "colour": "red"}), 400, '"a"', "Field required")
        spec = requests.get(served.url + "/docs.json", timeout=10).json()
        assert "colour" in json.dumps(spec) and "island" not in json.dumps(spec)
