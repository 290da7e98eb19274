"""The error gate's pure parts: which paths it protects, how it rewrites bodies, what it documents."""

import json

from tabserve.http import Gate, _rewrite, document_errors

GATE = Gate(json_routes=("/predict",), upload_routes=("/predict_csv",), protected_prefixes=("/v1",), api_key="k")


def test_protected_paths():
    assert GATE.is_protected("/predict") and GATE.is_protected("/v1/model") and GATE.is_protected("/v1")
    assert not any(GATE.is_protected(p) for p in ("/readyz", "/metrics", "/docs.json", "/", "/v1x"))


def test_rewrites_bentoml_shapes_to_the_contract():
    pydantic_dump = {"error": "1 validation error for RecordIODescriptor",
                     "detail": [{"type": "missing", "loc": ["year"], "msg": "Field required", "url": "https://errors.pydantic.dev"}]}
    assert _rewrite(400, json.dumps(pydantic_dump).encode()) == (
        400, {"error": "invalid input: year: Field required", "detail": [{"loc": ["year"], "msg": "Field required", "type": "missing"}]})
    assert _rewrite(400, b'[{"error": "bad"}]') == (400, {"error": "bad", "detail": []})
    assert _rewrite(404, b"Not Found") == (404, {"error": "Not Found", "detail": []})
    assert _rewrite(500, b"") == (500, {"error": "Internal Server Error", "detail": []})
    assert _rewrite(404, b'{"detail": "Not Found"}') == (404, {"error": "Not Found", "detail": []})


def test_documents_errors_and_security_on_protected_operations_only():
    spec = {"paths": {"/predict": {"post": {"responses": {"200": {}}}},
                      "/v1/predict": {"get": {"responses": {"200": {}, "422": {}}}},
                      "/readyz": {"get": {"responses": {"200": {}}}}}}
    out = document_errors(spec, GATE)
    assert set(out["paths"]["/predict"]["post"]["responses"]) == {"200", "400", "401", "413", "415", "429", "503"}
    assert "422" not in out["paths"]["/v1/predict"]["get"]["responses"]
    assert out["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}]
    assert set(out["paths"]["/readyz"]["get"]["responses"]) == {"200"} and "security" not in out["paths"]["/readyz"]["get"]
    assert out["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_no_security_scheme_without_a_key():
    spec = document_errors({"paths": {"/predict": {"post": {"responses": {}}}}}, Gate(json_routes=("/predict",)))
    assert "securitySchemes" not in spec["components"] and "401" not in spec["paths"]["/predict"]["post"]["responses"]
