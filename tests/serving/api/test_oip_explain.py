"""Explanations over the Open Inference Protocol (/v2 infer): `parameters: {"explain": true}`, `explain_class`, or an
explanation output named in `outputs` add `contributions` ([N, F], the features in its parameters) and the per-row
`explanation_output`, `explanation_base`, `explanation_value`. They equal /predict?explain=true's; bad options are
400s in the protocol's error shape. The penguins model is served in process (tests.conftest.in_process_service); a
version without explanations is a stand-in service over a card without them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.serving.api import oip
from tabserve.serving.api.oip.messages import InferenceResponse, ModelMetadata
from tabserve.serving.rollout.versions import ModelVersions
from tests.conftest import PENGUIN, in_process_service

FEATURES = list(PENGUIN)  # the schema's order
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
EXPLANATION_OUTPUTS = ["contributions", "explanation_output", "explanation_base", "explanation_value"]
# Rows of data/penguins.csv: each species, a row missing every measurement and the sex (3), one without a sex (8).
ROWS = (0, 3, 8, 198, 298)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    frame = pd.read_csv(PENGUINS_CSV).iloc[list(ROWS)][FEATURES]
    records = [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.astype(object).to_dict("records")
    ]
    assert records[1]["bill_length_mm"] is None and records[1]["sex"] is None and records[2]["sex"] is None
    return records


@pytest.fixture(scope="module")
def served(penguins_model):
    """The penguins model served in process (one service at a time: this module's)."""
    with in_process_service(str(penguins_model.tag)) as client:
        yield client


@pytest.fixture(scope="module")
def model_name(penguins_model) -> str:
    return str(penguins_model.tag).split(":")[0]


def columns(records: list[dict]) -> list[dict]:
    kinds = {"island": "BYTES", "sex": "BYTES"}
    return [
        {"name": n, "shape": [len(records)], "datatype": kinds.get(n, "FP64"), "data": [r[n] for r in records]}
        for n in FEATURES
    ]


def infer(client, name: str, records: list[dict], **body):
    return client.post(f"/v2/models/{name}/infer", json={"inputs": columns(records), **body})


def explained(client, record: dict, explain_class: str | None = None) -> dict:
    """/predict?explain=true's explanation of one record."""
    query = "?explain=true" + (f"&explain_class={explain_class}" if explain_class else "")
    response = client.post(f"/predict{query}", json=record)
    assert response.status_code == 200, response.text
    return response.json()["explanation"]


def by_name(body: dict) -> dict[str, dict]:
    return {o["name"]: o for o in body["outputs"]}


def assert_refused(response, fragment: str) -> dict:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and fragment in body["error"], body
    return body


def test_contributions_equal_predict_explain_for_real_rows(served, model_name, rows):
    response = infer(served, model_name, rows, id="e1", parameters={"explain": True})
    assert response.status_code == 200, response.text
    body = InferenceResponse.model_validate(response.json()).model_dump(exclude_none=True)
    assert body["id"] == "e1"
    outputs = by_name(body)
    assert list(outputs) == ["predict", "predict_proba", *EXPLANATION_OUTPUTS]  # the usual outputs, then these
    contributions = outputs["contributions"]
    assert contributions["datatype"] == "FP64" and contributions["shape"] == [len(rows), len(FEATURES)]
    assert json.loads(contributions["parameters"]["features"]) == FEATURES
    assert len(contributions["data"]) == len(rows) * len(FEATURES)
    for name, datatype in [
        ("explanation_output", "BYTES"),
        ("explanation_base", "FP64"),
        ("explanation_value", "FP64"),
    ]:
        assert outputs[name]["datatype"] == datatype and outputs[name]["shape"] == [len(rows)], name
    predicted = outputs["predict"]["data"]
    assert set(predicted) == set(CLASSES)  # rows of each species: each row explains its own class
    for i, record in enumerate(rows):
        expected = explained(served, record)
        row = contributions["data"][i * len(FEATURES) : (i + 1) * len(FEATURES)]
        assert row == pytest.approx([expected["contributions"][f] for f in FEATURES], abs=1e-12, rel=0), i
        assert outputs["explanation_base"]["data"][i] == pytest.approx(expected["base"], abs=1e-12, rel=0)
        assert outputs["explanation_value"]["data"][i] == pytest.approx(expected["value"], abs=1e-12, rel=0)
        assert outputs["explanation_output"]["data"][i] == expected["output"] and predicted[i] in expected["output"]
        assert outputs["explanation_base"]["data"][i] + sum(row) == pytest.approx(
            outputs["explanation_value"]["data"][i], abs=1e-9
        )
        assert contributions["parameters"]["method"] == expected["method"]
    # the rows explain different classes: the parameter says so, explanation_output says which
    space = outputs["explanation_output"]["data"][0].split(" of ")[0]
    assert contributions["parameters"]["output"] == f"{space} of each row's predicted class (explanation_output)"


def test_one_row_through_the_cache_and_explain_class(served, model_name, rows):
    record = {**rows[1], "body_mass_g": 4321.0}  # missing values, not asked before (the first test's rows are cached)
    first = infer(served, model_name, [record], parameters={"explain": True})
    second = infer(served, model_name, [record], parameters={"explain": True})
    assert first.status_code == 200, first.text
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit") and first.json() == second.json()
    expected = explained(served, record)
    contributions = by_name(first.json())["contributions"]
    assert contributions["shape"] == [1, len(FEATURES)]
    assert contributions["data"] == pytest.approx([expected["contributions"][f] for f in FEATURES], abs=1e-12, rel=0)
    assert contributions["parameters"]["output"] == expected["output"]  # one row: its own output
    # an unexplained answer is cached apart
    plain = infer(served, model_name, [record])
    assert plain.headers["X-Cache"] == "miss"
    assert [o["name"] for o in plain.json()["outputs"]] == ["predict", "predict_proba"]
    # explain_class (implies explain) for every row
    response = infer(served, model_name, rows[:3], parameters={"explain_class": "Chinstrap"})
    assert response.status_code == 200, response.text
    outputs = by_name(response.json())
    assert set(outputs["explanation_output"]["data"]) == {outputs["contributions"]["parameters"]["output"]}
    assert "'Chinstrap'" in outputs["contributions"]["parameters"]["output"]
    for i, row in enumerate(rows[:3]):
        expected = explained(served, row, "Chinstrap")
        got = outputs["contributions"]["data"][i * len(FEATURES) : (i + 1) * len(FEATURES)]
        assert got == pytest.approx([expected["contributions"][f] for f in FEATURES], abs=1e-12, rel=0)
        assert outputs["explanation_value"]["data"][i] == pytest.approx(expected["value"], abs=1e-12, rel=0)


def test_naming_an_explanation_output_asks_for_it(served, model_name, rows):
    response = infer(served, model_name, rows[:2], outputs=[{"name": "contributions"}])
    assert response.status_code == 200, response.text
    [contributions] = response.json()["outputs"]
    assert contributions["name"] == "contributions" and contributions["shape"] == [2, len(FEATURES)]
    # the requested order is kept; explain: true with only predict requested adds every explanation output
    response = infer(
        served,
        model_name,
        rows[:2],
        outputs=[{"name": "explanation_value"}, {"name": "predict"}, {"name": "contributions"}],
    )
    assert [o["name"] for o in response.json()["outputs"]] == ["explanation_value", "predict", "contributions"]
    response = infer(served, model_name, rows[:2], parameters={"explain": True}, outputs=[{"name": "predict"}])
    assert [o["name"] for o in response.json()["outputs"]] == ["predict", *EXPLANATION_OUTPUTS]
    # explain: false is no explanation
    response = infer(served, model_name, rows[:2], parameters={"explain": False})
    assert [o["name"] for o in response.json()["outputs"]] == ["predict", "predict_proba"]


def test_tritonclient_reads_the_contributions(served, model_name, rows):
    from tritonclient.http import InferInput, InferRequestedOutput, InferResult
    from tritonclient.http._utils import _get_inference_request

    inputs = []
    for tensor in columns(rows):
        dtype = object if tensor["datatype"] == "BYTES" else float
        data = [
            ("" if v is None else v) if dtype is object else (float("nan") if v is None else v) for v in tensor["data"]
        ]
        infer_input = InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
        infer_input.set_data_from_numpy(np.array(data, dtype=dtype))
        inputs.append(infer_input)
    body, json_size = _get_inference_request(
        inputs, "", [InferRequestedOutput("contributions")], 0, False, False, 0, None, {"explain": True}
    )
    response = served.post(
        f"/v2/models/{model_name}/infer", content=body, headers={"Inference-Header-Content-Length": str(json_size)}
    )
    assert response.status_code == 200, response.text
    result = InferResult.from_response_body(response.content)
    contributions = result.as_numpy("contributions")
    assert contributions.shape == (len(rows), len(FEATURES))
    assert json.loads(result.get_output("contributions")["parameters"]["features"]) == FEATURES
    expected = explained(served, rows[2])
    assert contributions[2].tolist() == pytest.approx([expected["contributions"][f] for f in FEATURES], abs=1e-12)


def test_metadata_is_unchanged_and_validates(served, model_name):
    response = served.get(f"/v2/models/{model_name}")
    assert response.status_code == 200, response.text
    meta = ModelMetadata.model_validate(response.json())
    assert [o.name for o in meta.outputs] == ["predict", "predict_proba"]  # explanations are on request only
    assert [i.name for i in meta.inputs] == FEATURES


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"parameters": {"explain": "yes"}}, "parameter 'explain' must be true or false (a JSON boolean), not \"yes\""),
        ({"parameters": {"explain": 1}}, "parameter 'explain' must be true or false (a JSON boolean), not 1"),
        ({"parameters": {"explain": "true"}}, 'not "true"'),
        (
            {"parameters": {"explain_class": "Emperor"}},
            "explain_class must be one of the classes: Adelie, Chinstrap, Gentoo; not 'Emperor'",
        ),
        ({"parameters": {"explain_class": 2}}, "explain_class must be one of the classes: Adelie, Chinstrap, Gentoo"),
        ({"parameters": {"explain_class": ["Gentoo"]}}, "not '[\"Gentoo\"]'"),
        ({"parameters": {"explain": False, "explain_class": "Gentoo"}}, "explain_class asks for an explanation"),
        (
            {"parameters": {"explain": False}, "outputs": [{"name": "contributions"}]},
            "the output(s) contributions are explanations; leave out the parameter explain: false",
        ),
        (
            {"parameters": {"explain": True}, "outputs": [{"name": "shap"}]},
            "unknown output(s): shap; this model's outputs: predict, predict_proba; with explanations: contributions, "
            "explanation_output, explanation_base, explanation_value",
        ),
        ({"outputs": [{"name": "contribution"}]}, "unknown output(s): contribution"),
    ],
    ids=[
        "explain-text",
        "explain-number",
        "explain-true-as-text",
        "unknown-class",
        "number-class",
        "list-class",
        "class-with-explain-false",
        "output-with-explain-false",
        "unknown-output",
        "misspelt-output",
    ],
)
def test_bad_options_are_400_in_the_protocol_shape(served, model_name, body, fragment):
    assert_refused(infer(served, model_name, [PENGUIN], **body), fragment)


# --- a version without explanations, behind a stand-in service ----------------------------------------------


class Unexplained:
    """The request path's interface over a card without explanations; it must not be called."""

    def __init__(self, card):
        self.versions, self.calls = ModelVersions(card), []

    async def predict_one(self, record, card=None, **options):
        self.calls.append(options)
        return {
            "prediction": "Adelie",
            "probabilities": {c: 1.0 / 3 for c in CLASSES},
            "model": self.versions.champion.tag,
        }, False

    async def predict_many(self, records, card=None, **options):
        self.calls.append(options)
        return [(await self.predict_one(r, card))[0] for r in records]

    async def is_ready(self):
        return True


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({}, "explanations are not available for this model family"),
        ({"task": "regression", "classes": None}, "explain_class is for classifiers; this model is a regression"),
    ],
    ids=["no-explanations", "regression"],
)
def test_a_version_without_explanations_says_why(penguins_model, change, fragment):
    card = dataclasses.replace(ModelCard.from_model(penguins_model), explanation={}, **change)
    service = Unexplained(card)
    app = Starlette(routes=[Mount("/v2", oip.create_app(card, card.schema.record_model("Record"), lambda: service))])
    client = TestClient(app)
    name = card.tag.split(":")[0]
    if change:
        assert_refused(infer(client, name, [PENGUIN], parameters={"explain_class": "Gentoo"}), fragment)
    else:
        assert (
            "train it again"
            in assert_refused(infer(client, name, [PENGUIN], parameters={"explain": True}), fragment)["error"]
        )
        assert_refused(infer(client, name, [PENGUIN, PENGUIN], outputs=[{"name": "contributions"}]), fragment)
        refused = assert_refused(infer(client, name, [PENGUIN], outputs=[{"name": "shap"}]), "unknown output(s): shap")
        assert "with explanations" not in refused["error"]  # not offered where there are none
    assert service.calls == []
    answered = infer(client, name, [PENGUIN], parameters={"explain": False})
    assert answered.status_code == 200 and service.calls == [{}]  # no explain option passed when none is asked
