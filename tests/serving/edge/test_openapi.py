"""What /docs.json adds to BentoML's OpenAPI document (tabserve/serving/edge/openapi.py)."""

import json

from tabserve.serving.edge.gate import Gate, GateMiddleware
from tabserve.serving.edge.openapi import document_errors
from tests.serving.asgi_driver import answering, drive

GATE = Gate(
    json_routes=("/predict",),
    upload_routes=("/predict_csv",),
    form_routes=("/v1/form",),
    protected_prefixes=("/v1",),
    api_key="k",
)
ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def test_documents_errors_and_security_on_protected_operations_only():
    spec = {
        "paths": {
            "/predict": {"post": {"responses": {"200": {}}}},
            "/v1/predict": {"get": {"responses": {"200": {}, "422": {}}}},
            "/readyz": {"get": {"responses": {"200": {}}}},
        }
    }
    out = document_errors(spec, GATE)
    responses = out["paths"]["/predict"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "403", "413", "415", "429", "503", "504"}
    assert set(responses["429"]["headers"]) == {
        "Retry-After",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    }
    assert "X-RateLimit-Remaining" in responses["200"]["headers"]  # every answer to a consumer with a quota
    assert "422" not in out["paths"]["/v1/predict"]["get"]["responses"]
    assert out["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}]
    assert (
        set(out["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
        and "security" not in out["paths"]["/readyz"]["get"]
    )
    assert out["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_no_security_scheme_without_a_key():
    spec = document_errors({"paths": {"/predict": {"post": {"responses": {}}}}}, Gate(json_routes=("/predict",)))
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert "securitySchemes" not in spec["components"] and "401" not in responses and "403" not in responses
    assert set(responses["429"]["headers"]) == {"Retry-After"} and "headers" not in responses.get("200", {})


def bentoml_like_spec():
    form_schema = {"type": "object", "properties": {"island": {"type": "string"}}}
    return {
        "paths": {
            "/readyz": {"get": {"responses": {"200": {"description": "Successful Response"}}}},
            "/livez": {"get": {"responses": {"200": {"description": "Successful Response"}}}},
            "/predict": {"post": {"responses": {"200": {}}}},
            "/predict_csv": {"post": {"responses": {"200": {"content": {"text/csv": {"schema": {"type": "string"}}}}}}},
            "/v1/form": {
                "get": {"responses": {"200": {"content": {"text/html": {"schema": {"type": "string"}}}}}},
                "post": {
                    "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": form_schema}}},
                    "responses": {"200": {"content": {"text/html": {"schema": {"type": "string"}}}}, "422": {}},
                },
            },
        }
    }


def test_documents_the_form_400_as_html():
    """Invalid form input is the form again, as HTML; refusals before the form is read stay JSON."""
    form = document_errors(bentoml_like_spec(), GATE)["paths"]["/v1/form"]
    bad = form["post"]["responses"]["400"]["content"]
    assert (
        bad["text/html"] == {"schema": {"type": "string"}} and bad["application/json"] == ERROR_JSON["application/json"]
    )
    for status in ("401", "413", "415", "429", "503", "504"):
        assert form["post"]["responses"][status]["content"] == ERROR_JSON, status
    assert "422" not in form["post"]["responses"]
    assert form["get"]["responses"]["400"]["content"] == ERROR_JSON  # the GET page: only the gate's JSON refusals


def test_documents_the_on_error_choice_of_csv_scoring():
    spec = bentoml_like_spec()
    document_errors(spec, GATE)
    again = document_errors(spec, GATE)  # idempotent: one declaration each, however often documented
    parameters = {(p["in"], p["name"]): p for p in again["paths"]["/predict_csv"]["post"]["parameters"]}
    choice = {"type": "string", "enum": ["fail", "skip"], "default": "fail"}
    assert set(parameters) == {("query", "on_error"), ("header", "X-On-Error"), ("query", "explain")}
    assert parameters.pop(("query", "explain"))["schema"] == {"type": "integer", "minimum": 1}  # K reason columns
    for parameter in parameters.values():
        assert parameter["schema"] == choice and parameter["required"] is False
    assert (
        "skip" in parameters[("query", "on_error")]["description"]
        and "error` column" in parameters[("query", "on_error")]["description"]
    )
    explain = {p["name"]: p for p in again["paths"]["/predict"]["post"]["parameters"]}
    assert set(explain) == {"explain", "explain_class"}
    assert explain["explain"]["schema"] == {"type": "string", "enum": ["true", "false"], "default": "false"}


def test_documents_the_probes_json_answers():
    spec = document_errors(bentoml_like_spec(), GATE)
    ready = spec["paths"]["/readyz"]["get"]["responses"]
    assert ready["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Probe"}
    assert ready["503"]["content"] == ERROR_JSON
    assert spec["paths"]["/livez"]["get"]["responses"]["200"]["content"]["application/json"]["example"] == {
        "status": "alive"
    }
    assert (
        "503" not in spec["paths"]["/livez"]["get"]["responses"] and "security" not in spec["paths"]["/readyz"]["get"]
    )
    assert spec["components"]["schemas"]["Probe"]["required"] == ["status"]


def test_the_gate_serves_docs_json_documented():
    """GET /docs.json passes through the gate's DocsRewriter: BentoML's document, with the additions, as UTF-8 JSON."""
    generated = json.dumps({"info": {"title": "Añelo"}, **bentoml_like_spec()}).encode()
    status, headers, raw = drive(
        GateMiddleware(answering(200, generated, b"application/json"), GATE), path="/docs.json", method="GET"
    )
    assert (
        status == 200
        and headers[b"content-type"] == b"application/json"
        and int(headers[b"content-length"]) == len(raw)
    )
    assert json.loads(raw) == document_errors(json.loads(generated), GATE) and "Añelo".encode() in raw
