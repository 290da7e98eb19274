"""The request gate (tabserve/serving/edge/gate.py) driven in-process: which paths it protects, its refusals,
the timeout, the in-flight count (also when a client goes away), the probes, and CORS preflights."""

import asyncio
import json

from tabserve.serving.edge.gate import CORS, Gate, GateMiddleware
from tests.serving.asgi_driver import answering, drive, drive_json

GATE = Gate(
    json_routes=("/predict",),
    upload_routes=("/predict_csv",),
    form_routes=("/v1/form",),
    protected_prefixes=("/v1",),
    api_key="k",
)


def through_gate(app, gate, **request):
    return drive(GateMiddleware(app, gate), **request)


def test_protected_paths():
    assert GATE.is_protected("/predict") and GATE.is_protected("/v1/model") and GATE.is_protected("/v1")
    assert not any(GATE.is_protected(p) for p in ("/readyz", "/metrics", "/docs.json", "/", "/v1x"))


def test_a_request_past_the_timeout_is_answered_504():
    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    status, body = drive_json(GateMiddleware(slow_app, Gate(json_routes=("/predict",), timeout_s=0.05)))
    assert (status, body) == (504, {"error": "no answer within 0.05 s", "detail": []})


def test_an_app_error_is_rewritten_to_the_contract():
    assert drive_json(GateMiddleware(answering(400, b"bad thing"), Gate(json_routes=("/predict",)))) == (
        400,
        {"error": "bad thing", "detail": []},
    )


def test_a_request_stops_counting_against_the_limit_once_answered():
    """BentoML runs clean-up after the answer is sent; the next request must not see a 429 meanwhile."""
    gate = Gate(json_routes=("/predict",), max_concurrency=1)
    seen = []

    async def app_with_after_work(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})
        seen.append(gate.in_flight)  # after the answer, still inside the app
        await asyncio.sleep(0)

    assert through_gate(app_with_after_work, gate)[0] == 200
    assert seen == [0] and gate.in_flight == 0


def test_a_client_gone_while_the_gate_reads_its_body_is_given_up_cleanly():
    """Half a body, then the client disconnects: the app never sees the request, the gate answers
    (into the void) 400, and the in-flight count is as before: the next request is not refused 429."""
    gate = Gate(json_routes=("/predict",), max_concurrency=1)
    called = []

    async def app(scope, receive, send):
        called.append(scope["path"])
        await answering(200, b"{}")(scope, receive, send)

    messages = iter(
        [{"type": "http.request", "body": b'{"island": "Bis', "more_body": True}, {"type": "http.disconnect"}]
    )

    async def half_then_gone():
        return next(messages)

    status, _, raw = through_gate(app, gate, receive=half_then_gone)
    assert status == 400 and json.loads(raw)["error"] == "the client disconnected before the body was complete"
    assert called == [] and gate.in_flight == 0
    assert through_gate(app, gate)[0] == 200 and gate.in_flight == 0


def test_a_client_gone_while_the_app_runs_frees_its_place():
    """The whole body, then the client disconnects while the app works: the app sees the disconnect
    through the gate and gives up without answering; the gate sends nothing and its count goes back down."""
    gate = Gate(json_routes=("/predict",), max_concurrency=1)
    during, sent = [], []

    async def app(scope, receive, send):
        assert (await receive())["body"] == b"{}"  # the body the gate read, replayed
        during.append(gate.in_flight)
        assert (await receive())["type"] == "http.disconnect"  # the real receive: the client is gone

    messages = iter([{"type": "http.request", "body": b"{}", "more_body": False}, {"type": "http.disconnect"}])

    async def body_then_gone():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    asyncio.run(GateMiddleware(app, gate)(scope, body_then_gone, send))
    assert during == [1] and sent == [] and gate.in_flight == 0
    assert through_gate(answering(200, b"{}"), gate)[0] == 200


def test_repeated_names_are_refused():
    app = answering(200, b"{}")
    status, body = drive_json(GateMiddleware(app, Gate(json_routes=("/predict",))), body=b'{"b": 1, "a": 2, "b": 3}')
    assert (status, body["error"]) == (400, "invalid input: the key 'b' appears twice in one JSON object")
    status, body = drive_json(
        GateMiddleware(app, Gate(json_routes=("/predict",))), body=b'{"records": [{"a": 1}, {"a": 1, "a": 2}]}'
    )
    assert (status, body["error"]) == (400, "invalid input: the key 'a' appears twice in one JSON object")
    status, body = drive_json(GateMiddleware(app, Gate(json_routes=("/predict",))), query=b"z=1&y=2&z=3&y=4&x=5")
    assert (status, body["error"]) == (400, "invalid input: query parameter(s) given more than once: y, z")
    assert (
        through_gate(app, Gate(json_routes=("/predict",)), body=b'{"a": 1, "b": {"a": 2}}', query=b"a=1&b=2")[0] == 200
    )


def test_the_gates_refusals_write_non_ascii_as_is():
    """UTF-8 as is, not \\u escapes (rewritten errors: tests/serving/edge/test_error_shape.py)."""
    app, gate = answering(200, b"{}"), Gate(json_routes=("/predict",))
    status, _, raw = through_gate(app, gate, body='{"Añelo": 1, "Añelo": 2}'.encode())
    assert status == 400 and "the key 'Añelo' appears twice".encode() in raw and b"\\u" not in raw

    status, _, raw = through_gate(app, gate, content_type="text/añelo".encode())
    assert status == 415 and "(got text/añelo)".encode() in raw

    status, _, raw = through_gate(app, gate, query=b"a%C3%B1elo=1&a%C3%B1elo=2")
    assert status == 400 and "more than once: añelo".encode() in raw


def test_probes_answer_a_json_body():
    empty_ok = answering(200, b"\n")
    for path, word in [("/readyz", "ready"), ("/livez", "alive"), ("/healthz", "alive")]:
        status, headers, raw = through_gate(empty_ok, GATE, path=path, method="GET")
        assert (status, json.loads(raw)) == (200, {"status": word})
        assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(raw)
    assert through_gate(empty_ok, GATE, path="/readyz", method="HEAD")[0] == 200
    not_ready = answering(
        503, b'{"detail": "Service is not ready because .__is_ready__() returns False."}', b"application/json"
    )
    assert drive_json(GateMiddleware(not_ready, GATE), path="/readyz", method="GET") == (
        503,
        {"error": "Service is not ready because .__is_ready__() returns False.", "detail": []},
    )
    assert through_gate(empty_ok, GATE, path="/metrics", method="GET")[2] == b"\n"


ORIGIN = "https://dashboard.example"


def cors_in_front_of(app):
    return CORS(
        app, allow_origins=[ORIGIN], allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"]
    )


def preflight(origin=ORIGIN, method="POST", asked="authorization,content-type"):
    return {
        "method": "OPTIONS",
        "headers": [
            (b"origin", origin.encode()),
            (b"access-control-request-method", method.encode()),
            (b"access-control-request-headers", asked.encode()),
        ],
    }


def test_a_refused_cors_preflight_answers_in_the_error_shape():
    app = cors_in_front_of(answering(200, b"{}", b"application/json"))
    for request, what in [
        (preflight(origin="https://evil.example"), "origin"),
        (preflight(asked="x-evil"), "headers"),
        (preflight(method="DELETE"), "method"),
    ]:
        status, headers, raw = drive(app, **request)
        assert (status, json.loads(raw)) == (400, {"error": f"Disallowed CORS {what}", "detail": []}), what
        assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(raw)


def test_cors_still_allows_what_it_allows():
    app = cors_in_front_of(answering(200, b"{}", b"application/json"))
    status, headers, raw = drive(app, **preflight())
    assert (status, raw) == (200, b"OK") and headers[b"access-control-allow-origin"] == ORIGIN.encode()
    status, headers, raw = drive(app, headers=[(b"origin", ORIGIN.encode())])
    assert (status, raw) == (200, b"{}") and headers[b"access-control-allow-origin"] == ORIGIN.encode()
    # An error of the app behind CORS is the gate's to rewrite, not CORS's: it passes as it is.
    assert (
        drive(cors_in_front_of(answering(404, b"Not Found")), headers=[(b"origin", ORIGIN.encode())])[2] == b"Not Found"
    )


def test_a_single_api_key_works_as_before_as_the_consumer_default():
    """API_KEY alone (no keys file): the same 401s as ever, no rate-limit headers, no 403."""
    app = answering(200, b"{}", b"application/json")
    assert GATE.requires_key and not Gate().requires_key
    status, headers, _ = through_gate(app, GATE, headers=[(b"authorization", b"Bearer k")])
    assert status == 200 and not any(h.startswith(b"x-ratelimit") for h in headers)
    assert drive_json(GateMiddleware(app, GATE), headers=[(b"authorization", b"Bearer nope")]) == (
        401,
        {"error": "wrong API key", "detail": []},
    )
    assert drive_json(GateMiddleware(app, GATE))[1]["error"] == "missing API key: send 'Authorization: Bearer <key>'"
    assert through_gate(app, GATE, path="/v1/model", method="GET", headers=[(b"authorization", b"Bearer k")])[0] == 200


def test_a_key_in_the_query_string_is_refused_before_the_key_is_checked():
    """Same answer whatever the key in the URL: valid, wrong or none in the header."""
    app = answering(200, b"{}", b"application/json")
    answers = [
        drive_json(GateMiddleware(app, GATE), query=query, headers=headers)
        for query in (b"api_key=k", b"api_key=wrong")
        for headers in ([], [(b"authorization", b"Bearer k")])
    ]
    assert all(answer == answers[0] for answer in answers)
    assert answers[0][0] == 400 and "never in the URL" in answers[0][1]["error"]


def test_a_file_to_score_over_the_body_limit_is_told_the_way_out():
    """A 31 MB CSV to /predict_csv: the 413 names the limit's setting and how to score the file instead
    (score.py's real options); a JSON body over the limit is told the limit only."""
    gate = Gate(json_routes=("/predict",), upload_routes=("/predict_csv",), max_body_bytes=10 << 20)
    upload = {"path": "/predict_csv", "content_type": b"multipart/form-data; boundary=x"}
    status, body = drive_json(
        GateMiddleware(answering(200, b"{}"), gate), **upload, headers=[(b"content-length", b"32505856")]
    )
    assert (status, body["error"]) == (
        413,
        "the body is 32,505,856 bytes; the limit is 10,485,760 bytes (MAX_BODY_BYTES); score a file this size with"
        " score.py (python score.py --data FILE --out OUT.csv --model TAG) or raise MAX_BODY_BYTES",
    )
    small = Gate(upload_routes=("/predict_csv",), json_routes=("/predict",), max_body_bytes=1024)
    status, body = drive_json(GateMiddleware(answering(200, b"{}"), small), **upload, body=b"x" * 2000)  # undeclared
    assert status == 413 and body["error"].startswith("the body is over 1,024 bytes (MAX_BODY_BYTES); score a file")
    status, body = drive_json(GateMiddleware(answering(200, b"{}"), small), body=b"{" + b" " * 2000 + b"}")
    assert (status, body["error"]) == (413, "the body is over 1,024 bytes (MAX_BODY_BYTES)")


def test_an_upload_may_be_a_workbook_and_its_rows_are_counted_whatever_the_encoding(tmp_path):
    """The quota counts the records of a UTF-16 CSV (its bytes split at each CR and each LF would count a CRLF
    line twice) and of an .xlsx (its first sheet, from its XML) as it counts a UTF-8 CSV's."""
    from tabserve.serving.edge.limits import CSV_PART_TYPES, XLSX_TYPE, _csv_rows
    from tests.spreadsheets import metro, unicode_text, workbook

    frame = metro()
    assert XLSX_TYPE in CSV_PART_TYPES
    assert _csv_rows(frame.to_csv(index=False).encode()) == 308
    assert _csv_rows(unicode_text(frame, tmp_path / "m.txt").read_bytes()) == 308
    assert _csv_rows(workbook(tmp_path / "m.xlsx", notes=frame.head(3), metro=frame).read_bytes()) == 3  # the first
    assert _csv_rows(workbook(tmp_path / "n.xlsx", metro=frame).read_bytes()) == 308
