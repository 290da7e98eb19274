"""The service classes called directly, in-process (no server): BentoML allows instantiating them."""

import asyncio
import csv
import importlib
import io
import json
from types import SimpleNamespace

import pytest
from starlette.responses import JSONResponse

from tabserve.serving.inference.path import tagged
from tests.conftest import PENGUIN


@pytest.fixture(scope="module")
def service_module(penguins_model):
    import service

    return importlib.reload(service)  # types are built at import from the store's latest model


@pytest.fixture(scope="module")
def entry(service_module):
    return service_module.PredictionService()


def test_model_service_batches_records_in_order(service_module):
    model_service = service_module.ModelService()
    example = service_module.HELD.card.schema.example()
    results = model_service.predict(tagged(service_module.HELD.card, [PENGUIN, example]))
    assert [r["prediction"] for r in results] == ["Gentoo", "Adelie"]


def test_types_come_from_the_stored_schema(service_module):
    assert service_module.HELD.card.tag.startswith("penguins:")
    fields = service_module.Record.model_fields
    assert list(fields) == [
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    assert fields["year"].is_required() and not fields["sex"].is_required()


def request_context(query=None, headers=None):
    """Stands in for BentoML's per-request context, which only exists inside a server."""
    request = SimpleNamespace(query_params=query or {}, headers=headers or {})
    return SimpleNamespace(request=request, response=SimpleNamespace(headers={}, status_code=200))


def test_predict_shapes_the_answer_and_caches_it(service_module, entry):
    record = service_module.Record.model_validate({**PENGUIN, "bill_length_mm": 70.0})
    first, second = request_context(), request_context()
    answer = asyncio.run(entry.predict(record, ctx=first))
    assert answer.prediction == "Gentoo" and answer.model == service_module.HELD.card.tag
    assert answer.warnings == ["bill_length_mm=70 is outside the training range [32.1, 59.6]"]
    assert asyncio.run(entry.predict(record, ctx=second)) == answer
    assert (first.response.headers["X-Cache"], second.response.headers["X-Cache"]) == ("miss", "hit")


def test_predict_batch_in_input_order(service_module, entry):
    example = service_module.HELD.card.schema.example()
    request = service_module.BatchRequest.model_validate({"records": [example, PENGUIN, example]})
    answer = asyncio.run(
        entry.predict_batch(request.records, ctx=request_context())
    )  # JSON written straight from the answers (api_types.batch_answer)
    body = service_module.BatchResponse.model_validate_json(answer.body)  # ... in the documented shape
    assert [p.prediction for p in body.predictions] == [
        "Adelie",
        "Gentoo",
        "Adelie",
    ] and body.model == service_module.HELD.card.tag
    assert all(p.explanation is None for p in body.predictions)
    explained = asyncio.run(entry.predict_batch(request.records, ctx=request_context(query={"explain": "true"})))
    body = service_module.BatchResponse.model_validate_json(explained.body)  # explanations in the documented shape
    assert [p.explanation.output for p in body.predictions] == [
        "softmax logit of 'Adelie'",
        "softmax logit of 'Gentoo'",
        "softmax logit of 'Adelie'",
    ]


def test_predict_csv_reports_bad_rows_by_number(service_module, entry, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(
        "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
        "Dream,40,18,190,3700,male,2007\nMars,40,18,190,3700,male,2007\nDream,abc,18,190,3700,,2007\n"
    )
    answer = asyncio.run(entry.predict_csv(path, ctx=request_context()))
    assert isinstance(answer, JSONResponse) and answer.status_code == 400
    body = json.loads(answer.body)
    assert body["error"].startswith("2 of 3 CSV rows failed validation")
    assert [d["loc"] for d in body["detail"]] == [["row 2", "island"], ["row 3", "bill_length_mm"]]
    # On request, the good rows are predicted and the bad ones say why, in an `error` column.
    for ctx in (request_context(query={"on_error": "skip"}), request_context(headers={"x-on-error": "skip"})):
        table = asyncio.run(entry.predict_csv(path, ctx=ctx))
        rows = list(csv.DictReader(io.StringIO(table)))
        assert [r["prediction"] for r in rows] == [rows[0]["prediction"], "", ""] and rows[0]["prediction"] in (
            "Adelie",
            "Chinstrap",
            "Gentoo",
        )
        assert (
            rows[0]["error"] == ""
            and rows[1]["error"].startswith("island: Input should be")
            and rows[2]["error"].startswith("bill_length_mm:")
        )
        assert ctx.response.headers["X-Failed-Rows"] == "2"
    wrong = asyncio.run(entry.predict_csv(path, ctx=request_context(query={"on_error": "ignore"})))
    assert wrong.status_code == 400 and "on_error must be 'fail' or 'skip'" in json.loads(wrong.body)["error"]
