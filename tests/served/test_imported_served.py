"""Models from elsewhere, served: every family imported with the CLI (tests/importing/models.py builds them
from real data), served by a real `bentoml serve`, and the sample file scored through /predict_csv, records
through /predict and /v2, every answer equal to the model's own predict/predict_proba on the same rows.
And an imported challenger beside a trained champion with the same columns."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math

import bentoml
import numpy as np
import pandas as pd
import pytest

from tabserve.core.card import ModelCard
from tabserve.core.schema import BOOLEAN, NUMERIC, label_text
from tests.conftest import Client, Server, in_process_service
from tests.importing.models import assert_same
from tests.importing.test_import_model import records_of

pytestmark = pytest.mark.served
# One service per family and loader: the joblib Pipeline and the RandomForest share the skops Pipeline's runtime
# and are checked in process (tests/importing/); regression is served through XGBoost. Two of them run in a real
# `bentoml serve` (a booster checked in a child process first, an ONNX session); the others run the same service
# in process (tests.conftest.in_process_service: its ASGI app under a test client), a server start each saved.
SERVED = ["pipe-skops", "lgb-booster", "lgb-sklearn", "xgb-json", "xgb-ubj", "mlflow", "onnx"]
REALLY_SERVED = ("lgb-booster", "onnx")


@pytest.fixture(scope="module", params=SERVED)
def served(request, built_models, imported_models):
    """(case, a client of its service, the built model, its card), one after the other."""
    case = request.param
    card = ModelCard.from_model(bentoml.models.get(imported_models[case]))
    if case in REALLY_SERVED:
        env = {"MODEL_TAG": imported_models[case], "API_WORKERS": "1"}
        with Server(env=env, name=f"imported-{case}") as running:
            yield case, Client.of(running), built_models[case], card
        return
    with in_process_service(imported_models[case]) as client:
        yield case, client, built_models[case], card


def json_record(record: dict) -> dict:
    """A typed record as a JSON body: missing values left out (they are nullable), no NaN."""
    return {k: v for k, v in record.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def test_predict_csv_scores_the_sample_as_the_model_itself(served):
    case, server, built, card = served
    with open(built.sample, "rb") as handle:
        answer = server.post("/predict_csv", files={"file": (built.sample.name, handle, "text/csv")}, timeout=60)
    assert answer.status_code == 200, answer.text
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    original = pd.read_csv(built.sample, dtype=str, keep_default_na=False)
    assert len(rows) == len(original) and list(rows[0])[: len(original.columns)] == list(
        original.columns
    )  # every column passed through
    own = built.own(built.frame())
    if "values" in own:
        got = np.array([float(r["prediction"]) for r in rows])
        assert np.abs(got - own["values"]).max() <= 1e-9
    else:
        assert [r["prediction"] for r in rows] == [label_text(v) for v in own["labels"]]
        got = np.array([[float(r[f"proba_{label_text(c)}"]) for c in own["classes"]] for r in rows])
        assert np.abs(got - own["probabilities"]).max() <= 1e-9


def test_predict_answers_records_as_the_model_itself(served):
    case, server, built, card = served
    records = records_of(card, built.sample)[:12]
    answers = []
    for record in records:
        response = server.post("/predict", json=json_record(record), timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == card.tag
        answers.append(response.json())
    frame = built.frame().head(12)
    # One record, one model call: float32 models (ONNX) differ by batch size in the last bits.
    for answer, row in zip(answers, range(12), strict=True):
        assert_same([answer], built.own(frame.iloc[[row]]))
    own = built.own(frame)
    batch = server.post("/predict_batch", json={"records": [json_record(r) for r in records]}, timeout=30)
    assert batch.status_code == 200
    assert_same(
        batch.json()["predictions"], own
    )  # a batch may differ from single rows in the last bits (BLAS), not beyond 1e-9


EXPLAINED = {"lgb-booster", "lgb-sklearn", "xgb-json", "xgb-ubj"}  # tree boosters; the forest: tests/importing/


def test_boosters_explain_their_answers_and_other_families_say_why_not(served):
    """LightGBM and XGBoost explain exactly: the contributions add up, and the explained outputs give the model's
    own probabilities (or its prediction). A scikit-learn Pipeline, an MLflow pyfunc and ONNX answer a 400."""
    case, server, built, card = served
    records = [json_record(r) for r in records_of(card, built.sample)[:4]]
    if case not in EXPLAINED:
        refused = server.post("/predict?explain=true", json=records[0], timeout=30)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"].startswith("explanations are not available for this model family ("), (
            refused.text
        )
        assert card.explanation == {}
        return
    assert card.explanation["importance"] and "import sample" in card.explanation["measured"]
    for record in records:
        answer = server.post("/predict?explain=true", json=record, timeout=30).json()
        explanation = answer["explanation"]
        assert list(explanation["contributions"]) == card.source["columns"]
        assert abs(explanation["base"] + sum(explanation["contributions"].values()) - explanation["value"]) <= 1e-6
        if card.classes is None:
            assert explanation["value"] == pytest.approx(answer["prediction"], rel=2e-6)  # XGBoost sums in float32
            continue
        labels = [label_text(c) for c in card.classes]
        values = [
            server.post(f"/predict?explain_class={label}", json=record, timeout=30).json()["explanation"]["value"]
            for label in labels
        ]
        if len(labels) == 2:
            implied = [1 / (1 + math.exp(values[1])), 1 / (1 + math.exp(-values[1]))]
            assert values[0] == pytest.approx(-values[1], abs=1e-12)
        else:
            exp = [math.exp(v - max(values)) for v in values]
            implied = [e / sum(exp) for e in exp]
        assert implied == pytest.approx([answer["probabilities"][label] for label in labels], abs=2e-6)


def test_open_inference_protocol_answers_as_the_model_itself(served):
    case, server, built, card = served
    records = records_of(card, built.sample)[:8]
    inputs = []
    for feature in card.schema.features:
        values = [r.get(feature.name) for r in records]
        datatype = (
            "FP64"
            if feature.kind == NUMERIC
            else "BOOL"
            if feature.kind == BOOLEAN
            else "INT64"
            if feature.categories and isinstance(feature.categories[0], int)
            else "BYTES"
        )
        inputs.append({"name": feature.name, "shape": [len(values)], "datatype": datatype, "data": values})
    response = server.post(
        f"/v2/models/{card.tag.split(':')[0]}/infer", json={"id": "x1", "inputs": inputs}, timeout=30
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    own = built.own(built.frame().head(8))
    if "values" in own:
        assert np.abs(np.array(outputs["predict"]["data"], dtype=float) - own["values"]).max() <= 1e-9
    else:
        assert outputs["predict"]["data"] == own["labels"]
        probabilities = np.array(outputs["predict_proba"]["data"], dtype=float).reshape(8, -1)
        assert json.loads(outputs["predict_proba"]["parameters"]["classes"]) == own["classes"]
        assert np.abs(probabilities - own["probabilities"]).max() <= 1e-9


def test_the_card_and_the_api_come_from_the_sample(served):
    case, server, built, card = served
    model = server.get("/v1/model", timeout=10).json()
    assert model["source"]["format"] == built.fmt and model["source"]["sha256"] == card.source["sha256"]
    assert [f["name"] for f in model["features"]] == card.schema.names
    docs = server.get("/docs.json", timeout=10).json()
    assert set(card.schema.names) <= set(json.dumps(docs).replace('"', " ").split())
    bad = server.post("/predict", json={"no_such_column": 1}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"].startswith("invalid input")
    form = server.get("/v1/form", timeout=10)
    assert form.status_code == 200 and all(f'name="{name}"' in form.text for name in card.schema.names)
    drift = server.get("/v1/drift", timeout=10)
    assert drift.status_code == 200 and {f["name"] for f in drift.json()["features"]} <= set(card.schema.names)


def test_an_imported_challenger_beside_a_trained_champion(penguins_model, built_models, imported_models):
    """The LightGBM wrapper was fitted on the penguins' columns: it can stand in the trained model's shadow."""
    challenger = imported_models["lgb-sklearn"]
    built = built_models["lgb-sklearn"]
    env = {"MODEL_TAG": str(penguins_model.tag), "CHALLENGER_TAG": challenger, "API_WORKERS": "1"}
    with Server(env=env, name="imported-challenger") as running:
        server = Client.of(running)
        versions = server.get("/v1/models", timeout=10).json()
        roles = (
            {v["tag"]: v["role"] for v in versions["versions"]}
            if isinstance(versions, dict)
            else {v["tag"]: v["role"] for v in versions}
        )
        assert roles[challenger] == "challenger" and roles[str(penguins_model.tag)] == "champion"
        card = ModelCard.from_model(bentoml.models.get(challenger))
        records = records_of(card, built.sample)[:5]
        answers = []
        for record in records:
            response = server.post("/v1/models/challenger/predict", json=json_record(record), timeout=30)
            assert response.status_code == 200, response.text
            answers.append(response.json())
            champion = server.post("/predict", json=json_record(record), timeout=30)
            assert champion.status_code == 200 and champion.json()["model"] == str(penguins_model.tag)
        assert {a["model"] for a in answers} == {challenger}
        assert_same(answers, built.own(built.frame().head(5)))


# --- Models already in the BentoML store (issue 27), served -------------------------------------

from tests.importing.test_store_models import saved  # noqa: E402,F401  (the fixture: each framework's save_model)

# Served by three services: the four store models of the penguins pipeline share the champion's columns and
# classes, so they answer beside it on /v1/models/{tag}/predict (a real server); LightGBM's and XGBoost's have
# their own (each in process: tests.conftest.in_process_service).
STORE_SERVERS = [("sklearn", ["onnx", "mlflow", "picklable_model"]), ("lightgbm", []), ("xgboost", [])]


@pytest.fixture(scope="module")
def store_imported(saved):  # noqa: F811  (the imported fixture)
    import import_model

    tags = {}
    for framework, (original, built, args) in saved.items():
        name = f"{original.name}-served"
        assert (
            import_model.main(["--model", f"bentoml:{original}", "--sample", str(built.sample), "--name", name, *args])
            == 0
        )
        tags[framework] = str(bentoml.models.get(f"{name}:latest").tag)
    return tags


@pytest.mark.parametrize("champion, beside", STORE_SERVERS)
def test_store_models_imported_where_they_are_are_served_as_themselves(champion, beside, saved, store_imported):  # noqa: F811
    env = {
        "MODEL_TAG": store_imported[champion],
        "EXTRA_MODEL_TAGS": ",".join(store_imported[f] for f in beside),
        "API_WORKERS": "1",
    }
    with contextlib.ExitStack() as stack:
        if beside:
            server = Client.of(stack.enter_context(Server(env=env, name=f"store-{champion}")))
        else:
            server = stack.enter_context(in_process_service(store_imported[champion]))
        for framework in [champion, *beside]:
            built = saved[framework][1]
            card = ModelCard.from_model(bentoml.models.get(store_imported[framework]))
            route = "/predict" if framework == champion else f"/v1/models/{store_imported[framework]}/predict"
            frame = built.frame().head(4)
            for row, record in enumerate(records_of(card, built.sample)[:4]):
                response = server.post(route, json=json_record(record), timeout=30)
                assert response.status_code == 200, (framework, response.text)
                assert response.json()["model"] == store_imported[framework]
                assert_same([response.json()], built.own(frame.iloc[[row]]))
