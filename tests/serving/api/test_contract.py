"""The contract's helpers that skip pydantic's slower paths must give what those paths give."""

import datetime as dt
import json

from tabserve.core.card import ModelCard
from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, NUMERIC, Feature, FeatureSchema
from tabserve.serving.api.contract import ApiTypes, batch_answer, record_values, shape

SCHEMA = FeatureSchema(
    (
        Feature("_score", NUMERIC, False, example=1.0),  # names pydantic reserves become aliases
        Feature("model_year", NUMERIC, True, example=2.0),
        Feature("origin", CATEGORICAL, True, categories=[1, 2, 3], example=2),
        Feature("day", DATE, True, example="2024-01-31", date_format="%Y-%m-%d"),
        Feature("flag", BOOLEAN, True, example=True),
    )
)
CARD = ModelCard(task="classification", target="label", schema=SCHEMA, classes=["no", "yes"], tag="m:1")


def test_record_values_are_model_dump():
    record = ApiTypes.from_card(CARD, max_records=10).record
    for body in ({"_score": 1.5, "model_year": 2.0, "origin": 3, "day": "2024-02-01", "flag": False}, {"_score": 0.0}):
        validated = record.model_validate(body)
        assert record_values(validated) == validated.model_dump()
    assert record_values(record.model_validate({"_score": 1.0, "day": "2024-02-01"}))["day"] == dt.date(2024, 2, 1)


def test_batch_answer_is_the_documented_batch_response():
    types = ApiTypes.from_card(CARD, max_records=10)
    results = [
        {"prediction": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
        {"prediction": "no", "probabilities": {"no": 1e-06, "yes": 0.999999}},
    ]
    answers = [
        shape(r, flagged, CARD.tag)
        for r, flagged in zip(results, [{}, {"_score": "_score=9 is outside the training range"}], strict=True)
    ]
    response = batch_answer(answers, CARD.tag)
    assert response.media_type == "application/json"
    written = json.loads(response.body)
    assert written == json.loads(types.batch_response(predictions=answers, model=CARD.tag).model_dump_json())
    assert types.batch_response.model_validate(written).predictions[1].warnings == [
        "_score=9 is outside the training range"
    ]
