"""The one error shape (tabserve/serving/edge/error_shape.py): BentoML's and Starlette's error bodies
rewritten into {"error", "detail"}, UTF-8 JSON as is, and the pydantic-error cleaner they share."""

import json

from pydantic import BaseModel, ConfigDict, ValidationError

from tabserve.core.errors import pydantic_detail
from tabserve.serving.edge.error_shape import ErrorRewriter, json_bytes, rewrite
from tests.serving.asgi_driver import answering, drive, drive_json


def test_rewrites_bentoml_shapes_to_the_contract():
    pydantic_dump = {
        "error": "1 validation error for RecordIODescriptor",
        "detail": [{"type": "missing", "loc": ["year"], "msg": "Field required", "url": "https://errors.pydantic.dev"}],
    }
    assert rewrite(400, json.dumps(pydantic_dump).encode()) == (
        400,
        {
            "error": "invalid input: year: Field required",
            "detail": [{"loc": ["year"], "msg": "Field required", "type": "missing"}],
        },
    )
    assert rewrite(400, b'[{"error": "bad"}]') == (400, {"error": "bad", "detail": []})
    assert rewrite(404, b"Not Found") == (404, {"error": "Not Found", "detail": []})
    assert rewrite(500, b"") == (500, {"error": "Internal Server Error", "detail": []})
    assert rewrite(404, b'{"detail": "Not Found"}') == (404, {"error": "Not Found", "detail": []})
    already = {"error": "the key 'a' appears twice", "detail": [{"loc": ["a"], "msg": "m", "type": "t"}]}
    assert rewrite(400, json.dumps(already).encode()) == (400, already)  # the contract's own shape stays as it is


def rewritten(app, on_error=None, on_answered=None):
    """`app` answering one request through an ErrorRewriter: (status, headers, raw body)."""

    async def shaped(scope, receive, send):
        await app(scope, receive, ErrorRewriter(send, on_error=on_error, on_answered=on_answered))

    return drive(shaped)


def test_errors_are_rewritten_and_successes_pass():
    errors, answered = [], []
    status, headers, raw = rewritten(
        answering(405, b"Method Not Allowed"), on_error=errors.append, on_answered=lambda: answered.append(1)
    )
    assert (status, json.loads(raw)) == (405, {"error": "Method Not Allowed", "detail": []})
    assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(raw)
    assert errors == [405] and answered == [1]

    assert rewritten(answering(200, b"a,b\n", b"text/csv"), on_error=errors.append)[2] == b"a,b\n" and errors == [405]
    html = b"<p>Please fix</p>"  # the form answers people in HTML, even its 400
    assert rewritten(answering(400, html, b"text/html; charset=utf-8"), on_error=errors.append)[
        2
    ] == html and errors == [405]


def test_error_statuses_keep_their_headers():
    for status, header, value in [
        (401, b"www-authenticate", b"Bearer"),
        (429, b"retry-after", b"1"),
        (503, b"retry-after", b"1"),
    ]:
        assert rewritten(answering(status, b"no"))[1][header] == value


def test_non_ascii_is_written_as_is_in_rewritten_errors():
    pydantic_dump = {
        "error": "1 validation error for Input",
        "detail": [{"type": "literal_error", "loc": ["town"], "msg": "Input should be 'Añelo' or 'Zapala'"}],
    }
    status, headers, raw = rewritten(answering(400, json.dumps(pydantic_dump).encode(), b"application/json"))
    assert status == 400 and headers[b"content-type"] == b"application/json"
    assert "invalid input: town: Input should be 'Añelo' or 'Zapala'".encode() in raw and b"\\u" not in raw
    assert int(headers[b"content-length"]) == len(raw)


def test_a_lone_surrogate_stays_a_json_escape():
    """Valid in JSON input, not encodable as UTF-8: written back as the escape it came in as."""
    raw = json_bytes({"error": "A\u00f1elo \ud800"})
    assert raw == b'{"error": "A\xc3\xb1elo \\ud800"}' and json.loads(raw) == {"error": "A\u00f1elo \ud800"}


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    island: str
    year: int


def test_one_pydantic_error_cleaner():
    """The same cleaner for BentoML's dumps, the /v1 app's FastAPI errors, CSV rows and the log line."""
    try:
        Record.model_validate({"island": "Dream", "year": "x", "beak": 1})
    except ValidationError as exc:
        errors = exc.errors()
    assert pydantic_detail(errors) == [
        {
            "loc": ["year"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
        {"loc": ["beak"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
    ]
    assert pydantic_detail(errors, prefix=("row 3",))[0]["loc"] == ["row 3", "year"]
    # FastAPI says which part of the request a value came from first; the field alone is what users know.
    fastapi = [
        {"loc": ("query", "year"), "msg": "m", "type": "t", "input": "x"},
        {"loc": ("path", "name"), "msg": "m", "type": "t"},
        {"loc": ("body", "records", 0, "body"), "msg": "m", "type": "t"},
    ]
    assert [d["loc"] for d in pydantic_detail(fastapi, request=True)] == [["year"], ["name"], ["records", 0, "body"]]
    assert pydantic_detail(fastapi)[0] == {"loc": ["query", "year"], "msg": "m", "type": "t"}


def test_the_v1_apps_validation_errors_name_the_field_alone(penguins_model):
    """GET /v1/predict with bad query parameters: FastAPI's RequestValidationError, through the same cleaner."""
    from tabserve.core.card import ModelCard
    from tabserve.serving.api import v1 as v1_app
    from tabserve.serving.api.contract import ApiTypes

    card = ModelCard.from_model(penguins_model)
    types = ApiTypes.from_card(card, max_records=10)
    app = v1_app.create_app(card, types.record, types.prediction, {}, predictor=lambda: None)
    status, body = drive_json(app, path="/predict", method="GET", query=b"island=Dream&year=soon")
    assert status == 400
    assert body["error"].startswith("invalid input: year: ") and [d["loc"] for d in body["detail"]] == [["year"]]
    assert set(body["detail"][0]) == {"loc", "msg", "type"}
