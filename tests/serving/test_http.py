"""The error gate's pure parts: which paths it protects, how it rewrites bodies, what it documents."""

import json

from tabserve.serving.http_gate import Gate, _rewrite, document_errors

GATE = Gate(json_routes=("/predict",), upload_routes=("/predict_csv",), form_routes=("/v1/form",), protected_prefixes=("/v1",), api_key="k")
ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


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
    assert set(out["paths"]["/predict"]["post"]["responses"]) == {"200", "400", "401", "413", "415", "429", "503", "504"}
    assert "422" not in out["paths"]["/v1/predict"]["get"]["responses"]
    assert out["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}]
    assert set(out["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"} and "security" not in out["paths"]["/readyz"]["get"]
    assert out["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_no_security_scheme_without_a_key():
    spec = document_errors({"paths": {"/predict": {"post": {"responses": {}}}}}, Gate(json_routes=("/predict",)))
    assert "securitySchemes" not in spec["components"] and "401" not in spec["paths"]["/predict"]["post"]["responses"]


def run_gate_raw(app, gate, path="/predict", method="POST", body=b"{}", content_type=b"application/json", query=b""):
    """Drive ErrorContract directly with one request; return (status, headers, raw body bytes)."""
    import asyncio

    from tabserve.serving.http_gate import ErrorContract

    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(b"content-type", content_type)]}
    asyncio.run(ErrorContract(app, gate)(scope, receive, send))
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def run_gate(app, gate, path="/predict", method="POST", body=b"{}"):
    """Drive ErrorContract directly with one request; return (status, JSON body)."""
    status, _, raw = run_gate_raw(app, gate, path, method, body)
    return status, json.loads(raw)


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


def answering(status, body, content_type=b"text/plain; charset=utf-8"):
    """An ASGI app that answers every request with this status and body."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def test_non_ascii_is_written_as_is_in_error_bodies():
    """UTF-8 as is, not \\u escapes: in rewritten errors and in the gate's own refusals alike."""
    pydantic_dump = {"error": "1 validation error for Input",
                     "detail": [{"type": "literal_error", "loc": ["town"], "msg": "Input should be 'Añelo' or 'Zapala'"}]}
    status, headers, raw = run_gate_raw(answering(400, json.dumps(pydantic_dump).encode(), b"application/json"), Gate(json_routes=("/predict",)))
    assert status == 400 and headers[b"content-type"] == b"application/json"
    assert "invalid input: town: Input should be 'Añelo' or 'Zapala'".encode() in raw and b"\\u" not in raw
    assert int(headers[b"content-length"]) == len(raw)

    status, _, raw = run_gate_raw(answering(200, b"{}"), Gate(json_routes=("/predict",)), body='{"Añelo": 1, "Añelo": 2}'.encode())
    assert status == 400 and "the key 'Añelo' appears twice".encode() in raw and b"\\u" not in raw

    status, _, raw = run_gate_raw(answering(200, b"{}"), Gate(json_routes=("/predict",)), content_type="text/añelo".encode())
    assert status == 415 and "(got text/añelo)".encode() in raw

    status, _, raw = run_gate_raw(answering(200, b"{}"), Gate(json_routes=("/predict",)), query=b"a%C3%B1elo=1&a%C3%B1elo=2")
    assert status == 400 and "more than once: añelo".encode() in raw


def test_a_lone_surrogate_stays_a_json_escape():
    """Valid in JSON input, not encodable as UTF-8: written back as the escape it came in as."""
    from tabserve.serving.http_gate import _json_bytes

    raw = _json_bytes({"error": "A\u00f1elo \ud800"})
    assert raw == b'{"error": "A\xc3\xb1elo \\ud800"}' and json.loads(raw) == {"error": "A\u00f1elo \ud800"}


def test_probes_answer_a_json_body():
    empty_ok = answering(200, b"\n")
    for path, word in [("/readyz", "ready"), ("/livez", "alive"), ("/healthz", "alive")]:
        status, headers, raw = run_gate_raw(empty_ok, GATE, path=path, method="GET")
        assert (status, json.loads(raw)) == (200, {"status": word})
        assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(raw)
    assert run_gate_raw(empty_ok, GATE, path="/readyz", method="HEAD")[0] == 200
    not_ready = answering(503, b'{"detail": "Service is not ready because .__is_ready__() returns False."}', b"application/json")
    assert run_gate(not_ready, GATE, path="/readyz", method="GET") == (
        503, {"error": "Service is not ready because .__is_ready__() returns False.", "detail": []})
    assert run_gate_raw(empty_ok, GATE, path="/metrics", method="GET")[2] == b"\n"


def bentoml_like_spec():
    form_schema = {"type": "object", "properties": {"island": {"type": "string"}}}
    return {"paths": {
        "/readyz": {"get": {"responses": {"200": {"description": "Successful Response"}}}},
        "/livez": {"get": {"responses": {"200": {"description": "Successful Response"}}}},
        "/predict": {"post": {"responses": {"200": {}}}},
        "/predict_csv": {"post": {"responses": {"200": {"content": {"text/csv": {"schema": {"type": "string"}}}}}}},
        "/v1/form": {
            "get": {"responses": {"200": {"content": {"text/html": {"schema": {"type": "string"}}}}}},
            "post": {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": form_schema}}},
                     "responses": {"200": {"content": {"text/html": {"schema": {"type": "string"}}}}, "422": {}}},
        },
    }}


def test_documents_the_form_400_as_html():
    """Invalid form input is the form again, as HTML; refusals before the form is read stay JSON."""
    form = document_errors(bentoml_like_spec(), GATE)["paths"]["/v1/form"]
    bad = form["post"]["responses"]["400"]["content"]
    assert bad["text/html"] == {"schema": {"type": "string"}} and bad["application/json"] == ERROR_JSON["application/json"]
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
    assert set(parameters) == {("query", "on_error"), ("header", "X-On-Error")}
    for parameter in parameters.values():
        assert parameter["schema"] == choice and parameter["required"] is False
    assert "skip" in parameters[("query", "on_error")]["description"] and "error` column" in parameters[("query", "on_error")]["description"]
    assert "parameters" not in again["paths"]["/predict"]["post"]


def test_documents_the_probes_json_answers():
    spec = document_errors(bentoml_like_spec(), GATE)
    ready = spec["paths"]["/readyz"]["get"]["responses"]
    assert ready["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Probe"}
    assert ready["503"]["content"] == ERROR_JSON
    assert spec["paths"]["/livez"]["get"]["responses"]["200"]["content"]["application/json"]["example"] == {"status": "alive"}
    assert "503" not in spec["paths"]["/livez"]["get"]["responses"] and "security" not in spec["paths"]["/readyz"]["get"]
    assert spec["components"]["schemas"]["Probe"]["required"] == ["status"]
