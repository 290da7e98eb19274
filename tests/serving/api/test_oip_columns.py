"""The /v2 app (Open Inference Protocol) in-process: columns <-> records, datatypes, shapes, errors,
binary tensor data as tritonclient builds it. The entry service is a stand-in that records its calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
from starlette.testclient import TestClient

from tabserve.core.card import ModelCard
from tabserve.core.schema import Feature, FeatureSchema
from tabserve.serving.api import oip
from tabserve.serving.rollout.versions import ModelVersions
from tests.conftest import PENGUIN

OTHER = {
    "island": "Dream",
    "bill_length_mm": None,
    "bill_depth_mm": 18.9,
    "flipper_length_mm": None,
    "body_mass_g": None,
    "sex": None,
    "year": 2008,
}


class FakeService:
    """predict_one / predict_many / is_ready like the request path (serving/inference/path.py), answering from the
    record."""

    def __init__(self, card, classes=("Adelie", "Chinstrap", "Gentoo"), ready=True):
        self.classes, self.ready, self.calls = list(classes), ready, []
        self.versions = ModelVersions(card)

    def answer(self, record, card):
        label = self.classes[len(str(record)) % len(self.classes)]
        tag = (card or self.versions.champion).tag
        return {
            "prediction": label,
            "probabilities": {str(c): float(c == label) for c in self.classes},
            "warnings": [],
            "model": tag,
        }

    async def predict_one(self, record, card=None):
        self.calls.append(("one", [record]))
        return self.answer(record, card), False

    async def predict_many(self, records, card=None):
        self.calls.append(("many", records))
        return [self.answer(r, card) for r in records]

    async def is_ready(self):
        return self.ready


@pytest.fixture(scope="module")
def card(penguins_model):
    return ModelCard.from_model(penguins_model)


@pytest.fixture()
def fake(card):
    return FakeService(card)


@pytest.fixture()
def client(card, fake):
    app = oip.create_app(card, card.schema.record_model("Record"), predictor=lambda: fake, max_records=50)
    return TestClient(app)


def columns(*records):
    return [
        {"name": k, "shape": [len(records)], "datatype": dt, "data": [r[k] for r in records]}
        for k, dt in [
            ("island", "BYTES"),
            ("bill_length_mm", "FP64"),
            ("bill_depth_mm", "FP64"),
            ("flipper_length_mm", "FP64"),
            ("body_mass_g", "FP64"),
            ("sex", "BYTES"),
            ("year", "FP64"),
        ]
    ]


def test_metadata_declares_one_input_per_feature_and_the_outputs(client, card):
    name, version = card.tag.split(":")
    meta = client.get(f"/models/{name}").json()
    assert meta == client.get(f"/models/{name}/versions/{version}").json()
    assert meta["name"] == name and meta["versions"] == [version] and meta["platform"] == "scikit-learn"
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "island": "BYTES",
        "bill_length_mm": "FP64",
        "bill_depth_mm": "FP64",
        "flipper_length_mm": "FP64",
        "body_mass_g": "FP64",
        "sex": "BYTES",
        "year": "FP64",
    }
    assert all(i["shape"] == [-1] for i in meta["inputs"])
    predict, proba = meta["outputs"]
    assert predict == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    assert proba["shape"] == [-1, 3] and json.loads(proba["parameters"]["classes"]) == ["Adelie", "Chinstrap", "Gentoo"]


def test_server_routes(client, fake):
    assert client.get("/health/live").json() == {"live": True}
    assert client.get("/health/ready").json() == {"ready": True}
    assert client.get("/").json()["extensions"] == []
    fake.ready = False
    response = client.get("/health/ready")
    assert response.status_code == 503 and "model service" in response.json()["error"]
    assert client.get("/models/penguins/ready").status_code == 503


def test_unknown_model_or_version_is_404_naming_the_served_one(client, card):
    name, version = card.tag.split(":")
    for path in (
        "/models/titanic",
        "/models/titanic/ready",
        f"/models/{name}/versions/v9",
        f"/models/{name}/versions/v9/ready",
    ):
        response = client.get(path)
        assert response.status_code == 404 and name in response.json()["error"], path
    response = client.post("/models/titanic/infer", json={"inputs": columns(PENGUIN)})
    assert response.status_code == 404 and f"'{name}'" in response.json()["error"]
    assert client.post(f"/models/{name}/versions/v9/infer", json={"inputs": columns(PENGUIN)}).status_code == 404


def test_one_row_goes_through_predict_one(client, fake):
    response = client.post("/models/penguins/infer", json={"id": "7", "inputs": columns(PENGUIN)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert fake.calls == [("one", [PENGUIN])]
    assert response.headers["X-Cache"] == "miss" and body["id"] == "7" and body["model_name"] == "penguins"
    predict, proba = body["outputs"]
    assert predict == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [1],
        "data": [fake.answer(PENGUIN, None)["prediction"]],
    }
    assert proba["shape"] == [1, 3] and sum(proba["data"]) == 1


def test_many_rows_go_through_predict_many_in_order(client, fake):
    response = client.post(
        "/models/penguins/infer",
        json={"inputs": columns(PENGUIN, OTHER, PENGUIN), "outputs": [{"name": "predict_proba"}]},
    )
    assert response.status_code == 200, response.text
    assert fake.calls == [("many", [PENGUIN, OTHER, PENGUIN])]
    [proba] = response.json()["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [3, 3] and len(proba["data"]) == 9
    assert "id" not in response.json()


def test_pandas_codec_and_n_by_1_columns(client, fake):
    inputs = columns(PENGUIN, OTHER)
    for tensor in inputs:
        tensor["shape"] = [2, 1]
        tensor["data"] = [[v] for v in tensor["data"]]
        if tensor["datatype"] == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
    inputs[-1] = {"name": "year", "shape": [2, 1], "datatype": "INT64", "data": [2009, 2008]}  # pandas' int64 column
    response = client.post("/models/penguins/infer", json={"parameters": {"content_type": "pd"}, "inputs": inputs})
    assert response.status_code == 200, response.text
    assert fake.calls == [("many", [PENGUIN, OTHER])]


def test_nan_in_a_float_column_is_missing(client, fake):
    inputs = columns(PENGUIN)
    inputs[1]["data"] = [float("nan")]
    body = json.dumps({"inputs": inputs})  # NaN: what json writes for a float NaN
    assert client.post("/models/penguins/infer", content=body).status_code == 200
    assert fake.calls[0][1][0]["bill_length_mm"] is None


@pytest.mark.parametrize(
    "change, status, fragment",
    [
        (
            lambda i: i[0].update(datatype="FP64"),
            400,
            "input 'island': datatype FP64 does not fit the category feature; send BYTES",
        ),
        (lambda i: i[6].update(datatype="BYTES", data=["2009"]), 400, "input 'year': datatype BYTES"),
        (lambda i: i.pop(6), 400, "missing input(s): year"),
        (
            lambda i: i.append({"name": "wings", "shape": [1], "datatype": "FP64", "data": [2.0]}),
            400,
            "unknown input(s): wings",
        ),
        (lambda i: i.append(dict(i[0])), 400, "more than once: island"),
        (lambda i: i[1].update(shape=[2], data=[1.0, 2.0]), 400, "different lengths"),
        (lambda i: i[1].update(shape=[2]), 400, "input 'bill_length_mm': shape [2] says 2 values but data has 1"),
        (lambda i: i[1].update(shape=[1, 2]), 400, "is not a column"),
        (
            lambda i: i[0].update(data=["Atlantis"]),
            400,
            "invalid input: island: Input should be 'Biscoe', 'Dream' or 'Torgersen'",
        ),
        (lambda i: i[6].update(data=[None]), 400, "invalid input: year:"),
        (lambda i: i[1].update(data=[float("inf")]), 400, "finite number"),
    ],
    ids=[
        "fp64-for-category",
        "bytes-for-number",
        "missing",
        "unknown",
        "twice",
        "lengths",
        "shape-vs-data",
        "not-a-column",
        "unknown-category",
        "null-for-required",
        "infinity",
    ],
)
def test_bad_columns_are_400_in_the_error_shape(client, fake, change, status, fragment):
    inputs = columns(PENGUIN)
    change(inputs)
    response = client.post("/models/penguins/infer", content=json.dumps({"inputs": inputs}))
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and fragment in body["error"], body
    assert fake.calls == []


def test_a_bad_value_in_row_2_is_named_with_its_row(client):
    response = client.post(
        "/models/penguins/infer",
        json={"inputs": columns(PENGUIN, {**OTHER, "island": "Mars"}, {**PENGUIN, "sex": "x"})},
    )
    assert response.status_code == 400
    body = response.json()
    assert (
        body["error"].startswith("invalid input: row 2.island: Input should be 'Biscoe'")
        and "2 problems in 2 of 3 rows" in body["error"]
    )
    assert [d["loc"] for d in body["detail"]] == [["row 2", "island"], ["row 3", "sex"]]


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"", "empty"),
        (b"[1]", "JSON object"),
        (b"{", "not JSON"),
        (b'{"inputs": []}', "inputs"),
        (b'{"inputs": [{"name": "island"}]}', "inputs.0.shape"),
        (b'{"id": 1, "inputs": []}', "id"),
        (b'{"inputs": [], "inputs": []}', "appears twice"),
    ],
)
def test_malformed_requests_are_400(client, body, fragment):
    response = client.post("/models/penguins/infer", content=body)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text


def test_rows_over_the_limit_unknown_outputs_content_type_and_request_content_type(client):
    many = [PENGUIN] * 51
    assert "at most 50" in client.post("/models/penguins/infer", json={"inputs": columns(*many)}).json()["error"]
    response = client.post(
        "/models/penguins/infer", json={"inputs": columns(PENGUIN), "outputs": [{"name": "explain"}]}
    )
    assert response.status_code == 400 and "unknown output(s): explain" in response.json()["error"]
    response = client.post(
        "/models/penguins/infer", content=json.dumps({"inputs": columns(PENGUIN)}), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 415
    response = client.post(
        "/models/penguins/infer", json={"parameters": {"content_type": "np"}, "inputs": columns(PENGUIN)}
    )
    assert response.status_code == 400 and "content_type 'np'" in response.json()["error"]


def test_binary_tensor_data_as_tritonclient_sends_it(client, fake):
    from tritonclient.http import InferInput, InferRequestedOutput
    from tritonclient.http._utils import _get_inference_request

    rows = [PENGUIN, {**PENGUIN, "island": "Dream", "sex": "female", "year": 2007}]
    inputs = []
    for name, datatype in [
        ("island", "BYTES"),
        ("bill_length_mm", "FP64"),
        ("bill_depth_mm", "FP32"),
        ("flipper_length_mm", "INT64"),
        ("body_mass_g", "FP64"),
        ("sex", "BYTES"),
        ("year", "INT32"),
    ]:
        dtype = {"BYTES": object, "FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}[
            datatype
        ]
        tensor = InferInput(name, [2], datatype)
        tensor.set_data_from_numpy(np.array([r[name] for r in rows], dtype=dtype), binary_data=name != "sex")
        inputs.append(tensor)
    body, json_size = _get_inference_request(
        inputs, "", [InferRequestedOutput("predict")], 0, False, False, 0, None, None
    )
    response = client.post(
        "/models/penguins/infer", content=body, headers={"Inference-Header-Content-Length": str(json_size)}
    )
    assert response.status_code == 200, response.text
    assert fake.calls == [("many", rows)]
    assert [o["name"] for o in response.json()["outputs"]] == ["predict"]
    truncated = client.post(
        "/models/penguins/infer", content=body[:-3], headers={"Inference-Header-Content-Length": str(json_size)}
    )
    assert truncated.status_code == 400 and "runs past the end" in truncated.json()["error"]


def test_output_datatypes_follow_the_labels():
    def card(task, classes, kind="numeric"):
        feature = Feature("x", kind, nullable=False, categories=[1, 2] if kind == "categorical" else None)
        return ModelCard(task=task, target="y", schema=FeatureSchema((feature,)), classes=classes, tag="m:1")

    assert oip.output_datatype(card("classification", [1, 2, 3])) == "INT64"
    assert oip.output_datatype(card("classification", [False, True])) == "BOOL"
    assert oip.output_datatype(card("regression", None)) == "FP64"
    assert oip.output_names(card("regression", None)) == ["predict"]
    assert oip.model_metadata(card("classification", [1, 2], kind="categorical"))["inputs"] == [
        {"name": "x", "datatype": "INT64", "shape": [-1]}
    ]
    bools = oip.outputs(
        card("classification", [False, True]),
        [{"prediction": True, "probabilities": {"false": 0.25, "true": 0.75}}],
        None,
    )
    assert bools[1]["data"] == [0.25, 0.75] and json.loads(bools[1]["parameters"]["classes"]) == [False, True]
