"""The Open Inference Protocol V2 at /v2 on a real server, with Triton's HTTP client and raw JSON.

The KServe SDK (kserve 0.21) is not installed: it would move the pinned pandas (3.1 -> 2.3) and psutil
(7.2 -> 5.9). Its REST wire format is sent here as raw JSON exactly as `InferRequest.to_rest()` builds
it (a uuid `id`, `model_name`, inputs without `parameters`, no content type) and the answer read as
`InferResponse.from_bytes` reads it; its client reads an error's `error` key, as tritonclient does.
"""

import json
import uuid

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import PENGUIN, ROOT
from tests.served.metrics_text import metric

pytestmark = pytest.mark.served
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


@pytest.fixture(scope="module")
def rows():
    """12 real rows of the training file, missing values included (row 4 has only island and year)."""
    frame = pd.read_csv(ROOT / "data" / "penguins.csv").head(12)[FEATURES]
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.url.removeprefix("http://")) as c:
        yield c


@pytest.fixture(scope="module")
def model(penguins_model):
    return str(penguins_model.tag).split(":")


def batch(server, records):
    response = requests.post(f"{server.url}/predict_batch", json={"records": records}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def triton_inputs(records, binary=True):
    """One InferInput per feature, from numpy columns as a tritonclient user builds them."""
    inputs = []
    for name in FEATURES:
        values = [r[name] for r in records]
        if name in ("island", "sex"):
            array, datatype = np.array(["" if v is None else v for v in values], dtype=object), "BYTES"
        else:
            array, datatype = np.array([np.nan if v is None else v for v in values], dtype=np.float64), "FP64"
        tensor = triton.InferInput(name, [len(records)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def raw_columns(records):
    datatypes = {"island": "BYTES", "sex": "BYTES"}
    return [
        {"name": n, "shape": [len(records)], "datatype": datatypes.get(n, "FP64"), "data": [r[n] for r in records]}
        for n in FEATURES
    ]


def post(server, path, body, **kwargs):
    return requests.post(
        f"{server.url}{path}", data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30, **kwargs
    )


def test_health_and_server_metadata(server, client, model):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model[0]) and client.is_model_ready(model[0], model_version=model[1])
    assert client.get_server_metadata() == {"name": "tabserve", "version": "0.1.0", "extensions": []}
    assert requests.get(f"{server.url}/v2/", timeout=10).json()["name"] == "tabserve"
    assert not client.is_model_ready("titanic")


def test_model_metadata(client, model):
    meta = client.get_model_metadata(model[0])
    assert meta == client.get_model_metadata(model[0], model_version=model[1])
    assert meta["name"] == model[0] and meta["versions"] == [model[1]] and meta["platform"] == "scikit-learn"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("island", "BYTES", [-1]),
        ("bill_length_mm", "FP64", [-1]),
        ("bill_depth_mm", "FP64", [-1]),
        ("flipper_length_mm", "FP64", [-1]),
        ("body_mass_g", "FP64", [-1]),
        ("sex", "BYTES", [-1]),
        ("year", "FP64", [-1]),
    ]
    predict, proba = meta["outputs"]
    assert predict == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    assert (
        proba["datatype"] == "FP64"
        and proba["shape"] == [-1, 3]
        and json.loads(proba["parameters"]["classes"]) == ["Adelie", "Chinstrap", "Gentoo"]
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary-inputs", "json-inputs"])
def test_triton_infer_equals_predict_batch(server, client, model, rows, binary):
    expected = batch(server, rows)
    result = client.infer(model[0], triton_inputs(rows, binary), request_id="batch-1")
    assert result.get_response()["id"] == "batch-1" and result.get_response()["model_version"] == model[1]
    labels = result.as_numpy("predict")
    assert labels.shape == (12,) and [label.decode() if isinstance(label, bytes) else label for label in labels] == [
        p["prediction"] for p in expected
    ]
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (12, 3)
    assert proba.tolist() == [[p["probabilities"][c] for c in ("Adelie", "Chinstrap", "Gentoo")] for p in expected]


def test_outputs_selection_with_a_version(client, model, rows):
    result = client.infer(
        model[0],
        triton_inputs(rows[:3]),
        model_version=model[1],
        outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict"] and result.as_numpy(
        "predict_proba"
    ) is None


def test_pandas_codec_request_as_mlserver_users_send_it(server, model, rows):
    frame = pd.DataFrame(rows[:5]).infer_objects()
    inputs = []
    for name in FEATURES:
        column = frame[name]
        data = [None if pd.isna(v) else v for v in column]  # MLServer's codec writes a missing value as null
        if pd.api.types.is_string_dtype(column):
            inputs.append(
                {
                    "name": name,
                    "shape": [5, 1],
                    "datatype": "BYTES",
                    "data": data,
                    "parameters": {"content_type": "str"},
                }
            )
        else:
            inputs.append(
                {
                    "name": name,
                    "shape": [5, 1],
                    "datatype": "INT64" if pd.api.types.is_integer_dtype(column) else "FP64",
                    "data": data,
                }
            )
    assert [t["datatype"] for t in inputs] == ["BYTES", "FP64", "FP64", "FP64", "FP64", "BYTES", "INT64"]
    response = post(server, f"/v2/models/{model[0]}/infer", {"parameters": {"content_type": "pd"}, "inputs": inputs})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [p["prediction"] for p in batch(server, rows[:5])]


def test_kserve_rest_wire_format(server, model, rows):
    """The body KServe's InferRequest.to_rest() builds, sent as InferenceRESTClient sends it: no content type."""
    request_id = str(uuid.uuid4())
    body = {"id": request_id, "model_name": model[0], "inputs": raw_columns(rows[:4]), "outputs": [{"name": "predict"}]}
    response = requests.post(f"{server.url}/v2/models/{model[0]}/infer", data=json.dumps(body).encode(), timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()  # what InferResponse.from_bytes needs: model_name, outputs with data
    assert answer["model_name"] == model[0] and answer["id"] == request_id
    assert answer["outputs"] == [
        {
            "name": "predict",
            "datatype": "BYTES",
            "shape": [4],
            "data": [p["prediction"] for p in batch(server, rows[:4])],
        }
    ]


def test_single_row_infer_goes_through_the_cache(server, model):
    record = {**PENGUIN, "body_mass_g": 5432.0}
    hits = metric(server.url, "tabserve_prediction_cache_total", result="hit")
    first = post(server, f"/v2/models/{model[0]}/infer", {"inputs": raw_columns([record])})
    second = post(server, f"/v2/models/{model[0]}/infer", {"inputs": raw_columns([record])})
    posted = requests.post(f"{server.url}/predict", json=record, timeout=30)  # the same record by another route
    assert (first.headers["X-Cache"], second.headers["X-Cache"], posted.headers["X-Cache"]) == ("miss", "hit", "hit")
    assert second.json() == first.json() and first.json()["outputs"][0]["data"] == [posted.json()["prediction"]]
    assert metric(server.url, "tabserve_prediction_cache_total", result="hit") == hits + 2


def break_column(name, **change):
    def edit(inputs):
        for tensor in inputs:
            if tensor["name"] == name:
                tensor.update(change)
        return inputs

    return edit


@pytest.mark.parametrize(
    "path, edit, status, fragment",
    [
        ("/v2/models/titanic/infer", lambda i: i, 404, "unknown model 'titanic'; this server serves 'penguins'"),
        ("/v2/models/penguins/versions/nope/infer", lambda i: i, 404, "unknown model version 'penguins:nope'"),
        (
            None,
            break_column("island", datatype="FP64", data=[1.0]),
            400,
            "datatype FP64 does not fit the category feature; send BYTES",
        ),
        (None, lambda i: [t for t in i if t["name"] != "year"], 400, "missing input(s): year"),
        (None, break_column("bill_length_mm", shape=[2], data=[40.0, 41.0]), 400, "the inputs have different lengths"),
        (
            None,
            break_column("island", data=["Atlantis"]),
            400,
            "invalid input: island: Input should be 'Biscoe', 'Dream' or 'Torgersen'",
        ),
    ],
    ids=["unknown-model", "unknown-version", "wrong-datatype", "missing-input", "lengths", "bad-value"],
)
def test_errors_in_the_protocol_shape(server, path, edit, status, fragment):
    response = post(server, path or "/v2/models/penguins/infer", {"inputs": edit(raw_columns([PENGUIN]))})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"  # KServe's client reads `error` only then
    body = response.json()
    assert fragment in body["error"] and set(body) == {"error", "detail"}, body


def test_tritonclient_raises_the_error_message(client, model):
    inputs = triton_inputs([PENGUIN])[:-1]  # no year
    with pytest.raises(InferenceServerException) as raised:
        client.infer(model[0], inputs)
    assert raised.value.status() == "400" and "missing input(s): year" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("titanic")
    assert raised.value.status() == "404" and "unknown model 'titanic'" in raised.value.message()


def test_docs_json_documents_v2(server):
    paths = requests.get(f"{server.url}/docs.json", timeout=30).json()["paths"]
    assert {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    } <= set(paths)
    infer = paths["/v2/models/{model_name}/infer"]["post"]
    assert {"400", "404", "415", "503"} <= set(infer["responses"]) and "example" in infer["requestBody"]["content"][
        "application/json"
    ]
