"""Every model family train.py can choose (`--model hgb|linear|forest|lightgbm|xgboost`), trained on Palmer
Penguins (three classes, categories, missing values) and served in process (tests.conftest.in_process_service):
/predict, /predict_csv and /v2's infer answer what the stored pipeline predicts offline, the model card names the
family, and the version's training report is served. Regression is checked offline, without a service."""

from __future__ import annotations

import csv
import io
import math
import re

import bentoml
import pytest

from tabserve.core import data, store
from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.training import trainer
from tests.conftest import PENGUIN, in_process_service

FAMILIES = ["hgb", "linear", "forest", "lightgbm", "xgboost"]
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
FIGURES = ("confusion-matrix", "roc-curves", "calibration", "permutation-importance")
# The header and five rows of data/penguins.csv: each species, a row missing every measurement, one without a sex.
ROWS = (0, 3, 8, 198, 298)


def train(path, target: str, name: str, family: str, **options):
    return trainer.train(path, target, name=name, choices=trainer.Choices(model=family), **options)


@pytest.fixture(scope="module", params=FAMILIES)
def served(request, bentoml_home):
    """One family trained on the whole penguins file (344 rows: a few seconds each) and served in process; one
    service at a time, as a module fixture parametrized over the families gives them."""
    family = request.param
    result = train(PENGUINS_CSV, "species", f"family-{family}", family)
    tag = str(result.model.tag)
    runtime = store.load_runtime(bentoml.models.get(tag))
    with in_process_service(tag) as client:
        yield family, tag, runtime, client


def few_rows() -> bytes:
    lines = PENGUINS_CSV.read_text(encoding="utf-8").splitlines()
    return ("\n".join([lines[0], *(lines[1 + i] for i in ROWS)]) + "\n").encode()


def records_of(content: bytes, tag: str) -> list[dict]:
    """The file's rows as /predict takes them: typed by the model's schema (NA as null), the target left out."""
    table = data.parse_text(content.decode("utf-8"))
    schema = ModelCard.from_model(bentoml.models.get(tag)).schema
    return [schema.parse_row(row, table.decimal) for row in table.raw.to_dict("records")]


def oip_columns(records: list[dict]) -> list[dict]:
    """Open Inference Protocol inputs: one column per feature (as tests/serving/api/test_oip_columns.py)."""
    kinds = {"island": "BYTES", "sex": "BYTES"}
    return [
        {"name": name, "shape": [len(records)], "datatype": kinds.get(name, "FP64"), "data": [r[name] for r in records]}
        for name in PENGUIN
    ]


def assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str) and isinstance(body["detail"], list)
    return body


def test_predict_answers_what_the_stored_pipeline_predicts_offline(served):
    family, tag, runtime, client = served
    response = client.post("/predict", json=PENGUIN)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == tag and answer["prediction"] in CLASSES and answer["warnings"] == []
    assert set(answer["probabilities"]) == set(CLASSES)
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    (offline,) = runtime.predict_records([PENGUIN])
    assert answer["prediction"] == offline["prediction"] == "Gentoo", family
    assert answer["probabilities"] == pytest.approx(offline["probabilities"], abs=1e-6)


def test_missing_values_are_answered_and_unknown_categories_and_garbage_are_400(served):
    family, tag, runtime, client = served
    missing = {**PENGUIN, "bill_length_mm": None, "body_mass_g": None, "sex": None}
    response = client.post("/predict", json=missing)
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == runtime.predict_records([missing])[0]["prediction"]
    assert sum(response.json()["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    # Penguins' islands are a closed set: an unseen one is refused (docs/errors.md: "an unknown category").
    unseen = assert_error_shape(client.post("/predict", json={**missing, "island": "Atlantis"}), 400)
    assert unseen["detail"][0]["loc"] == ["island"], unseen
    for garbage in ({**PENGUIN, "bill_length_mm": "long"}, {**PENGUIN, "body_mass_g": "5800"}):
        refused = assert_error_shape(client.post("/predict", json=garbage), 400)
        assert refused["detail"][0]["loc"][-1] in ("bill_length_mm", "body_mass_g"), refused


def test_predict_csv_gives_the_file_back_with_the_predictions_of_predict(served):
    family, tag, runtime, client = served
    content = few_rows()
    response = client.post("/predict_csv", files={"file": ("penguins.csv", content, "text/csv")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv") and response.headers["x-failed-rows"] == "0"
    scored = list(csv.DictReader(io.StringIO(response.text)))
    given = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(scored) == len(ROWS) and [r["species"] for r in scored] == [r["species"] for r in given]
    assert {f"proba_{c}" for c in CLASSES} <= set(scored[0])
    records = records_of(content, tag)
    offline = runtime.predict_records(records)
    for row, record, expected in zip(scored, records, offline, strict=True):
        answer = client.post("/predict", json=record)
        assert answer.status_code == 200, (record, answer.text)
        assert row["prediction"] == answer.json()["prediction"] == expected["prediction"], (family, record)
        for label, probability in answer.json()["probabilities"].items():
            assert float(row[f"proba_{label}"]) == pytest.approx(probability, abs=1e-5)
    # The measured rows are the species they were labelled with (the all-missing row aside).
    assert [r["prediction"] == r["species"] for i, r in zip(ROWS, scored, strict=True) if i != 3] == [True] * 4


def test_open_inference_protocol_answers_the_same_labels(served):
    family, tag, runtime, client = served
    records = [PENGUIN, *records_of(few_rows(), tag)]
    name = tag.split(":")[0]
    response = client.post(f"/v2/models/{name}/infer", json={"id": family, "inputs": oip_columns(records)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == name and body["id"] == family
    outputs = {o["name"]: o for o in body["outputs"]}
    expected = runtime.predict_records(records)
    assert outputs["predict"]["data"] == [e["prediction"] for e in expected]
    (probabilities,) = (o for n, o in outputs.items() if n != "predict")
    assert probabilities["shape"] == [len(records), len(CLASSES)]
    rows = [probabilities["data"][i : i + len(CLASSES)] for i in range(0, len(probabilities["data"]), len(CLASSES))]
    assert all(sum(row) == pytest.approx(1, abs=1e-5) for row in rows)


def test_explained_answers_add_up_on_every_route_and_agree(served):
    """?explain=true on /predict, /predict_batch, GET /v1/predict and the versioned route: the same explanation of
    each record (batched or alone), adding up to the explained output, whose softmax gives the probabilities;
    /predict_csv?explain=2 writes each row's top two contributions of that explanation."""
    family, tag, runtime, client = served
    records = [PENGUIN, *records_of(few_rows(), tag)]
    batch = client.post("/predict_batch?explain=true", json={"records": records})
    assert batch.status_code == 200, batch.text
    for record, together in zip(records, batch.json()["predictions"], strict=True):
        answer = client.post("/predict?explain=true", json=record)
        assert answer.status_code == 200 and answer.headers["x-cache"] == "miss", answer.text
        alone = answer.json()["explanation"]
        assert alone == together["explanation"] and list(alone["contributions"]) == list(PENGUIN)
        assert alone["output"].endswith(f"of '{answer.json()['prediction']}'")
        assert abs(alone["base"] + sum(alone["contributions"].values()) - alone["value"]) <= 1e-6
        logits = {c: client.post(f"/predict?explain_class={c}", json=record).json()["explanation"] for c in CLASSES}
        if family == "forest":  # a forest explains the probability itself
            implied = [logits[c]["value"] for c in CLASSES]
        else:
            exp = [math.exp(logits[c]["value"] - max(e["value"] for e in logits.values())) for c in CLASSES]
            implied = [e / sum(exp) for e in exp]
        assert implied == pytest.approx([answer.json()["probabilities"][c] for c in CLASSES], abs=2e-6)
    query = "&".join(f"{k}={v}" for k, v in PENGUIN.items())
    for path in (f"/v1/predict?{query}&explain=true", f"/v1/models/{tag}/predict?{query}&explain=true"):
        assert client.get(path).json()["explanation"] == batch.json()["predictions"][0]["explanation"], path
    scored = client.post("/predict_csv?explain=2", files={"file": ("penguins.csv", few_rows(), "text/csv")})
    assert scored.status_code == 200, scored.text
    for row, explained in zip(csv.DictReader(io.StringIO(scored.text)), batch.json()["predictions"][1:], strict=True):
        top = sorted(explained["explanation"]["contributions"].items(), key=lambda kv: -abs(kv[1]))[:2]
        written = [row[name] if row[name] not in ("", "NA") else "(missing)" for name, _ in top]
        assert [row["reason_1"], row["reason_2"]] == [
            f"{n}={v} ({c:+.3g})" for (n, c), v in zip(top, written, strict=True)
        ]


def test_the_model_card_names_the_family_and_its_one_candidate(served):
    family, tag, runtime, client = served
    card = client.get("/v1/model").json()
    assert card["tag"] == tag and card["classes"] == CLASSES
    selection = card["model_selection"]
    assert selection["model"] == family and selection["asked"] == family
    assert [(c["model"], c["status"]) for c in selection["leaderboard"]] == [(family, "chosen")]
    assert selection["leaderboard"][0]["score_mean"] is not None
    assert selection.get("requirements", []) == {"lightgbm": ["lightgbm==4.7.0"], "xgboost": ["xgboost==3.2.0"]}.get(
        family, []
    )


def test_the_version_serves_its_training_report(served):
    family, tag, runtime, client = served
    for version in (tag.split(":")[1], tag):
        response = client.get(f"/v1/models/{version}/report")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        for figure in FIGURES:
            drawn = re.search(rf'<figure class="([^"]*)" id="{figure}">', page)
            assert drawn is not None and "missing" not in drawn.group(1), (family, figure)
        assert f'id="chosen-model">{family}<' in page and f'data-model="{family}" data-status="chosen"' in page
        assert f"Training report: {tag}" in page
    body = assert_error_shape(client.get("/v1/models/nosuch/report"), 404)
    assert "nosuch" in body["error"], body


@pytest.mark.parametrize("family", ["linear", "xgboost"])
def test_regression_families_predict_offline_as_their_pipeline(family, bentoml_home, tmp_path):
    """scikit-learn's diabetes table (442 rows, a regression): the runtime the service loads (records, no pandas)
    answers what the stored scikit-learn pipeline predicts from a DataFrame."""
    from sklearn.datasets import load_diabetes

    from tabserve.core import pipeline

    path = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"}).to_csv(path, index=False)
    result = train(path, "progression", f"family-{family}-diabetes", family, task="regression")
    model = bentoml.models.get(result.model.tag)
    card = ModelCard.from_model(model)
    assert card.task == "regression" and card.model_selection["model"] == family and card.classes is None
    records = records_of(path.read_bytes(), str(model.tag))[:25]
    answers = store.load_runtime(model).predict_records(records)
    direct = store.load_pipeline(model).predict(pipeline.to_frame(records, card.schema))
    assert [a["probabilities"] for a in answers] == [None] * len(records)
    assert [a["prediction"] for a in answers] == pytest.approx([float(v) for v in direct], rel=1e-5)
    assert 25 < min(a["prediction"] for a in answers) and max(a["prediction"] for a in answers) < 350
