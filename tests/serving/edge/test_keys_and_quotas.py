"""Keys per consumer (tabserve/serving/edge/consumers.py, the gate's use of them, python -m tabserve.serving.edge.keys)
in-process: the keys file, matching in constant time, token buckets, reloading, 403/429/413 at the
gate with X-RateLimit-* headers, records counted per route, keys refused in URLs, the usage metrics,
and the consumer in BentoML's access log line."""

import asyncio
import json
import logging
import os

import pytest
from prometheus_client import REGISTRY

from tabserve import bentoml_fixes
from tabserve.serving.edge import consumers as c
from tabserve.serving.edge.gate import Gate, GateMiddleware
from tabserve.serving.edge.keys import main as keys_cli
from tabserve.serving.edge.limits import _csv_rows
from tests.serving.asgi_driver import answering, drive


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def entry(key, **limits):
    return {"key_sha256": c.hash_key(key), **limits}


def write(path, **consumers):
    import yaml

    path.write_text(yaml.safe_dump({"consumers": consumers}))
    os.utime(path, ns=(os.stat(path).st_mtime_ns + 10**9,) * 2)  # a change the mtime check sees, however fast the test


# --- the keys file ----------------------------------------------------------------------------


def test_a_keys_file_in_yaml_or_toml():
    yaml_text = (
        f"consumers:\n  fraud:\n    key_sha256: {c.hash_key('k1')}\n"
        "    rps: 5\n    burst: 10\n    records_per_minute: 600\n    routes: [/predict, /v1]\n"
    )
    toml_text = (
        f'[consumers.fraud]\nkey_sha256 = "{c.hash_key("k1")}"\n'
        'rps = 5\nburst = 10\nrecords_per_minute = 600\nroutes = ["/predict", "/v1"]\n'
    )
    expected = {"fraud": c.Consumer("fraud", c.hash_key("k1"), 5.0, 10, 600, ("/predict", "/v1"))}
    assert c.parse_keys(yaml_text) == c.parse_keys(toml_text, toml=True) == expected
    assert c.parse_keys("") == c.parse_keys("consumers: {}") == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("consumers: [a, b", "not valid YAML"),
        ("teams: {}", "one top-level key, 'consumers'"),
        ("consumers: {a: {key: x}}", "unknown field(s) key"),
        ("consumers: {a: {key_sha256: abc}}", "64 hex digits"),
        (f"consumers: {{a: {{key_sha256: {c.hash_key('k')}, rps: 0}}}}", "rps must be a positive number"),
        (
            f"consumers: {{a: {{key_sha256: {c.hash_key('k')}, rps: 1, burst: 2.5}}}}",
            "burst must be a positive whole number",
        ),
        (f"consumers: {{a: {{key_sha256: {c.hash_key('k')}, burst: 2}}}}", "burst needs rps"),
        (f"consumers: {{a: {{key_sha256: {c.hash_key('k')}, routes: [predict]}}}}", "routes must be"),
        (f"consumers: {{default: {{key_sha256: {c.hash_key('k')}}}}}", "reserved"),
        (f"consumers: {{'a b': {{key_sha256: {c.hash_key('k')}}}}}", "consumer name 'a b'"),
        (
            f"consumers: {{a: {{key_sha256: {c.hash_key('k')}}}, b: {{key_sha256: {c.hash_key('k')}}}}}",
            "'a' and 'b' have the same key",
        ),
    ],
)
def test_a_bad_keys_file_is_one_line_naming_the_problem(text, fragment):
    with pytest.raises(c.KeysFileError) as error:
        c.parse_keys(text)
    assert fragment in str(error.value) and "\n" not in str(error.value)


# --- matching -----------------------------------------------------------------------------------


def test_a_key_is_matched_against_every_consumer_in_constant_time(tmp_path, monkeypatch):
    """Right, wrong and unknown keys all make one compare_digest per consumer: no early exit says who exists."""
    path = tmp_path / "keys.yaml"
    write(path, a=entry("key-a"), b=entry("key-b"), z=entry("key-z"))
    keyring = c.Keyring(api_key="legacy", path=path)
    calls = []
    real = c.hmac.compare_digest
    monkeypatch.setattr(c.hmac, "compare_digest", lambda x, y: calls.append(1) or real(x, y))
    for key, who in [("key-a", "a"), ("key-z", "z"), ("legacy", "default"), ("nope", None), ("", None)]:
        calls.clear()
        found = keyring.identify(key)
        assert (found.name if found else None) == who and len(calls) == 4, key
    assert "key-a" not in path.read_text()  # the file holds hashes only


def test_api_key_alone_is_the_default_consumer():
    keyring = c.Keyring(api_key="k")
    assert keyring.required and keyring.identify("k").name == "default" and keyring.identify("x") is None
    assert not c.Keyring().required


# --- token buckets ------------------------------------------------------------------------------


def test_a_token_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = c.TokenBucket(rate=2, capacity=4, clock=clock)
    decisions = [bucket.take() for _ in range(5)]
    assert [d.allowed for d in decisions] == [True] * 4 + [False]
    assert (decisions[0].limit, decisions[0].remaining, decisions[0].reset_s) == (4, 3, 1)
    assert (decisions[4].remaining, decisions[4].retry_after_s) == (0, 1)
    clock.now += 0.5  # one token back
    assert bucket.take().allowed and not bucket.take().allowed
    clock.now += 60
    assert bucket.take().remaining == 3  # full again, not more than full
    big = bucket.take(10)
    assert not big.allowed and not big.fits


# --- reloading ----------------------------------------------------------------------------------


def test_the_file_is_reread_when_it_changes_at_most_once_a_second(tmp_path, caplog):
    path, clock = tmp_path / "keys.yaml", Clock()
    write(path, a=entry("key-a", rps=0.01))
    keyring = c.Keyring(path=path, clock=clock)
    a = keyring.identify("key-a")
    assert keyring.take_request(a).allowed and not keyring.take_request(a).allowed

    write(path, a=entry("key-a", rps=0.01), b=entry("key-b"))
    assert keyring.identify("key-b") is None  # not looked at yet: less than a second since the last look
    clock.now += 1.0
    assert keyring.identify("key-b").name == "b"
    assert not keyring.take_request(
        keyring.identify("key-a")
    ).allowed  # unchanged limits keep their bucket: no free refill

    caplog.set_level(logging.INFO, logger="tabserve")
    caplog.clear()
    path.write_text("consumers: [broken")
    os.utime(path, ns=(os.stat(path).st_mtime_ns + 2 * 10**9,) * 2)
    for _ in range(3):
        clock.now += 1.0
        assert keyring.identify("key-b").name == "b"  # the last good file still serves
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (
        len(errors) == 1
        and "still using the last good one" in errors[0].getMessage()
        and "\n" not in errors[0].getMessage()
    )

    write(path, b=entry("key-b"))
    clock.now += 1.0
    assert keyring.identify("key-a") is None and keyring.identify("key-b").name == "b"


def test_a_broken_file_at_start_is_an_error(tmp_path):
    with pytest.raises(c.KeysFileError, match="cannot be read"):
        c.Keyring(path=tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("consumers: {a: {key_sha256: 1}}")
    with pytest.raises(c.KeysFileError, match="bad.yaml: consumer 'a': key_sha256"):
        c.Keyring(path=tmp_path / "bad.yaml")


# --- the gate -----------------------------------------------------------------------------------


def keyed_gate(tmp_path, **consumers):
    path = tmp_path / "keys.yaml"
    write(path, **consumers)
    return Gate(
        json_routes=("/predict", "/predict_batch"),
        upload_routes=("/predict_csv",),
        protected_prefixes=("/v1",),
        keyring=c.Keyring(api_key="legacy", path=path),
    )


def call(gate, key=None, path="/predict", app=None, **request):
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    status, response_headers, raw = drive(
        GateMiddleware(app or answering(200, b"{}", b"application/json"), gate), path=path, headers=headers, **request
    )
    return status, response_headers, json.loads(raw) if raw else None


def test_unknown_and_wrong_keys_get_the_same_answer(tmp_path):
    gate = keyed_gate(tmp_path, a=entry("key-a"))
    assert call(gate, "key-a")[0] == 200 and call(gate, "legacy")[0] == 200
    unknown, wrong = call(gate, "no-such-team-key"), call(gate, "key-a-but-wrong")
    assert unknown == wrong
    assert (
        unknown[0] == 401
        and unknown[2] == {"error": "wrong API key", "detail": []}
        and unknown[1][b"www-authenticate"] == b"Bearer"
    )


def test_a_route_the_consumer_may_not_call_is_403(tmp_path):
    gate = keyed_gate(tmp_path, narrow=entry("key-n", routes=["/predict", "/v1/model"]))
    assert call(gate, "key-n")[0] == 200 and call(gate, "key-n", path="/v1/model", method="GET")[0] == 200
    status, _, body = call(gate, "key-n", path="/predict_batch", body=b'{"records": [{}]}')
    assert (
        status == 403
        and body["error"]
        == "the key of consumer 'narrow' may not call /predict_batch; it may call: /predict, /v1/model"
    )
    assert call(gate, "key-n", path="/v1/modelx", method="GET")[0] == 403  # a prefix of the path, not of the text


def test_over_its_request_quota_a_consumer_is_429_and_the_others_are_not(tmp_path):
    gate = keyed_gate(tmp_path, flood=entry("key-f", rps=0.01, burst=2), calm=entry("key-c"))
    first = call(gate, "key-f")
    assert first[0] == 200
    assert {k: first[1][k] for k in (b"x-ratelimit-limit", b"x-ratelimit-remaining")} == {
        b"x-ratelimit-limit": b"2",
        b"x-ratelimit-remaining": b"1",
    }
    assert call(gate, "key-f")[0] == 200
    status, headers, body = call(gate, "key-f")
    assert status == 429 and body["error"].startswith(
        "consumer 'flood' is over its quota of 0.01 requests per second (burst 2)"
    )
    assert (
        headers[b"x-ratelimit-remaining"] == b"0"
        and int(headers[b"retry-after"]) >= 99
        and int(headers[b"x-ratelimit-reset"]) >= 99
    )
    assert list(headers).count(b"retry-after") == 1
    assert all(call(gate, "key-c")[0] == 200 for _ in range(20))
    assert b"x-ratelimit-limit" not in call(gate, "key-c")[1]  # no quota, nothing to report


def test_records_are_counted_per_route_against_the_records_quota(tmp_path):
    gate = keyed_gate(tmp_path, bulk=entry("key-b", records_per_minute=5))
    batch = json.dumps({"records": [{}, {}, {}]}).encode()
    status, headers, _ = call(gate, "key-b", path="/predict_batch", body=batch)
    assert status == 200 and (headers[b"x-ratelimit-limit"], headers[b"x-ratelimit-remaining"]) == (b"5", b"2")
    status, headers, body = call(gate, "key-b", path="/predict_batch", body=batch)
    assert (
        status == 429
        and "over its quota of 5 records per minute (2 left now, 3 asked)" in body["error"]
        and int(headers[b"retry-after"]) == 12
    )
    assert call(gate, "key-b")[0] == 200  # /predict: one record
    status, _, body = call(gate, "key-b", path="/predict_batch", body=json.dumps({"records": [{}] * 6}).encode())
    assert (
        status == 413
        and body["error"] == "6 records are more than consumer 'bulk' may send in a minute (5); send smaller requests"
    )


def test_csv_rows_are_counted_cheaply():
    assert _csv_rows(b"a,b\n1,2\n\n3,4\n") == 2
    assert _csv_rows(b"a,b\r\n1,2\r\n3,4") == 2 and _csv_rows(b"a,b\r\n\r\n1,2\r\n") == 1
    assert _csv_rows(b"a,b\n") == 0 and _csv_rows(b"") == 0


def test_a_csv_upload_counts_its_rows(tmp_path):
    gate = keyed_gate(tmp_path, bulk=entry("key-b", records_per_minute=3))
    upload = (
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\nContent-Type: text/csv\r\n\r\n'
        b"a,b\n1,2\n3,4\n5,6\n7,8\n\r\n--XX--\r\n"
    )
    status, _, body = call(
        gate, "key-b", path="/predict_csv", body=upload, content_type=b"multipart/form-data; boundary=XX"
    )
    assert status == 413 and body["error"].startswith("4 records are more than")


def test_a_key_in_the_query_string_is_refused(tmp_path):
    gate = keyed_gate(tmp_path, a=entry("key-a"))
    for query in (b"api_key=key-a", b"token=whatever", b"KEY=x", b"x=1&access_token=y"):
        status, _, body = call(gate, "key-a", query=query)
        assert status == 400 and body["error"].startswith(
            "send the API key only in the header 'Authorization: Bearer <key>'"
        ), query
    assert call(Gate(json_routes=("/predict",)), query=b"token=x")[0] == 200  # an open server has no keys to leak


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_usage_is_counted_per_consumer_route_and_status(tmp_path):
    gate = keyed_gate(tmp_path, usage=entry("key-u", rps=1000, routes=["/predict", "/predict_batch", "/v1/features"]))
    before = {
        "ok": sample("tabserve_requests_total", consumer="usage", route="/predict_batch", status="200"),
        "feature": sample("tabserve_requests_total", consumer="usage", route="/v1/features/{name}", status="200"),
        "forbidden": sample("tabserve_requests_total", consumer="usage", route="/v1/model", status="403"),
        "anonymous": sample("tabserve_requests_total", consumer="anonymous", route="/predict", status="401"),
        "records": sample("tabserve_records_total", consumer="usage"),
    }
    call(gate, "key-u", path="/predict_batch", body=json.dumps({"records": [{}] * 7}).encode())
    call(
        gate, "key-u", path="/predict_batch", body=b'{"records": [{}]}', app=answering(400, b"bad")
    )  # refused: no records
    call(gate, "key-u", path="/v1/features/island", method="GET")
    call(gate, "key-u", path="/v1/model", method="GET")
    call(gate, "nope")
    assert sample("tabserve_requests_total", consumer="usage", route="/predict_batch", status="200") == before["ok"] + 1
    assert (
        sample("tabserve_requests_total", consumer="usage", route="/v1/features/{name}", status="200")
        == before["feature"] + 1
    )
    assert (
        sample("tabserve_requests_total", consumer="usage", route="/v1/model", status="403") == before["forbidden"] + 1
    )
    assert (
        sample("tabserve_requests_total", consumer="anonymous", route="/predict", status="401")
        == before["anonymous"] + 1
    )
    assert sample("tabserve_records_total", consumer="usage") == before["records"] + 7


# --- the access log (tabserve/bentoml_fixes.py, touchpoint 5) ------------------------------------


def test_the_access_log_line_names_the_consumer(tmp_path, caplog):
    """BentoML's own AccessLogMiddleware around the gate, as under `bentoml serve`: its one line per
    request ends with the consumer. Fails when BentoML's access log changes (its logger or format)."""
    from bentoml._internal.server.http.access import AccessLogMiddleware

    bentoml_fixes.consumer_in_access_log(c.CURRENT)
    bentoml_fixes.consumer_in_access_log(c.CURRENT)  # idempotent
    gate = keyed_gate(tmp_path, fraud=entry("key-f"))
    app = AccessLogMiddleware(GateMiddleware(answering(200, b"{}", b"application/json"), gate))
    caplog.set_level(logging.INFO, logger="bentoml.access")

    async def request(path, key):
        scope = {
            "type": "http",
            "scheme": "http",
            "method": "POST",
            "path": path,
            "query_string": b"",
            "client": ("127.0.0.1", 1),
            "headers": [
                (b"content-type", b"application/json"),
                *([(b"authorization", f"Bearer {key}".encode())] if key else []),
            ],
        }

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message):
            pass

        # Each request in its own task, as BentoML's timeout middleware runs it.
        await asyncio.ensure_future(app(scope, receive, send))

    async def scenario():
        await request("/predict", "key-f")
        await request("/predict", "wrong")
        await request("/readyz", None)

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "bentoml.access"]
    assert len(lines) == 3
    assert "path=/predict" in lines[0] and "status=200" in lines[0] and lines[0].endswith("ms (consumer=fraud)")
    assert "status=401" in lines[1] and lines[1].endswith("ms (consumer=anonymous)")
    assert "consumer=" not in lines[2]


# --- python -m tabserve.serving.edge.keys ---------------------------------------------------------------------


def test_the_keys_cli_adds_lists_and_removes(tmp_path, capsys):
    path = tmp_path / "keys.yaml"
    assert (
        keys_cli(
            [
                "add",
                "fraud",
                "--rps",
                "5",
                "--burst",
                "10",
                "--records-per-minute",
                "600",
                "--routes",
                "/predict,/v1",
                "--file",
                str(path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    key = out[-1]
    assert len(key) >= 43 and " " not in key and key not in path.read_text()
    consumer = c.Keyring(path=path).identify(key)
    assert consumer == c.Consumer("fraud", c.hash_key(key), 5.0, 10, 600, ("/predict", "/v1"))
    assert keys_cli(["add", "ops", "--file", str(path)]) == 0
    capsys.readouterr()

    assert keys_cli(["list", "--file", str(path)]) == 0
    listing = capsys.readouterr().out
    assert (
        "fraud" in listing and "rps 5, burst 10; 600 records/min; routes /predict,/v1" in listing and "ops" in listing
    )
    assert c.hash_key(key) not in listing and c.hash_key(key)[:8] in listing

    assert keys_cli(["remove", "fraud", "--file", str(path)]) == 0
    assert set(c.read_keys_file(path)) == {"ops"}


@pytest.mark.parametrize(
    "argv",
    [
        ["add", "ops"],  # already there
        ["add", "default"],
        ["add", "new", "--rps", "-1"],
        ["add", "new", "--rps", "many"],
        ["add", "new", "--burst", "3"],
        ["add", "new", "--routes", "predict"],
        ["remove", "nobody"],
        ["frobnicate"],
        ["add"],
    ],
)
def test_bad_input_to_the_keys_cli_is_one_line_and_exit_2(tmp_path, capsys, argv):
    path = tmp_path / "keys.yaml"
    assert keys_cli(["add", "ops", "--file", str(path)]) == 0
    before = path.read_text()
    capsys.readouterr()
    try:
        code = keys_cli([*argv, "--file", str(path)] if argv[0] in ("add", "remove") and len(argv) > 1 else argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("error: ")
    assert path.read_text() == before
