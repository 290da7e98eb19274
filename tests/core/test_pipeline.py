"""Model behaviour: the pipeline's predictions on records, as the service calls it."""

import bentoml
import pytest

from tabserve.core.card import ModelCard
from tabserve.core import pipeline
from tabserve.core import store
from tests.conftest import PENGUIN


@pytest.fixture(scope="module")
def loaded(penguins_model):
    model = bentoml.models.get(penguins_model.tag)
    return store.load_pipeline(model), ModelCard.from_model(model).schema


def test_predict_records_keeps_order_and_sums_probabilities(loaded):
    fitted, schema = loaded
    adelie = {**schema.example()}
    records = [PENGUIN, adelie, PENGUIN]
    results = pipeline.predict_records(fitted, schema, records)
    assert [r["prediction"] for r in results] == ["Gentoo", "Adelie", "Gentoo"]
    for result in results:
        assert set(result["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
        assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert max(result["probabilities"], key=result["probabilities"].get) == result["prediction"]


def test_batch_and_single_calls_agree(loaded):
    fitted, schema = loaded
    records = [PENGUIN, schema.example(), {"island": "Dream", "year": 2008}]
    batched = pipeline.predict_records(fitted, schema, records)
    singles = [pipeline.predict_records(fitted, schema, [r])[0] for r in records]
    assert batched == singles


def test_missing_values_and_unseen_categories_do_not_break_prediction(loaded):
    fitted, schema = loaded
    [result] = pipeline.predict_records(fitted, schema, [{"island": "Dream", "year": 2008, "sex": None}])
    assert result["prediction"] in {"Adelie", "Chinstrap", "Gentoo"}


def test_empty_batch(loaded):
    assert pipeline.predict_records(*loaded, []) == []
