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


def run_gate(app, gate, path="/predict", method="POST", body=b"{}"):
    """Drive ErrorContract directly with one request; return (status, JSON body)."""
    import asyncio

    from tabserve.http import ErrorContract

    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(b"content-type", b"application/json")]}
    asyncio.run(ErrorContract(app, gate)(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def test_a_request_past_the_timeout_is_answered_504():
    import asyncio

    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    status, body = run_gate(slow_app, Gate(json_routes=("/predict",), timeout_s=0.05))
    assert (status, body) == (504, {"error": "no answer within 0.05 s", "detail": []})


def test_an_app_error_is_rewritten_to_the_contract():
    async def failing_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"bad thing"})

    assert run_gate(failing_app, Gate(json_routes=("/predict",))) == (400, {"error": "bad thing", "detail": []})


def test_a_request_stops_counting_against_the_limit_once_answered():
    """BentoML runs clean-up after the answer is sent; the next request must not see a 429 meanwhile."""
    import asyncio

    gate = Gate(json_routes=("/predict",), max_concurrency=1)
    seen = []

    async def app_with_after_work(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})
        seen.append(gate.in_flight)  # after the answer, still inside the app
        await asyncio.sleep(0)

    assert run_gate(app_with_after_work, gate)[0] == 200
    assert seen == [0] and gate.in_flight == 0
