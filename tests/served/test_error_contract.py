"""The whole error matrix on one served instance with an API key and small limits: every error is
JSON {"error", "detail"} with the documented status, and the server still answers afterwards.
Also: non-ASCII text in errors as is, the probes' JSON bodies, and client.py with and without the key."""

import concurrent.futures
import json

import pytest
import requests

from tests.conftest import LAYOUTS, PENGUIN, Server
from tests.served.test_client import run_client

pytestmark = pytest.mark.served
KEY = "s3cret-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "https://dashboard.example"
LIMITS = {
    "API_WORKERS": "",  # the layout's default: limits hold per worker, in each
    "API_KEY": KEY,
    "MAX_BODY_BYTES": "3000000",
    "MAX_CSV_ROWS": "100",
    "MAX_CONCURRENCY": "1",
    "CORS_ORIGINS": ORIGIN,
}
HEADER = ",".join(PENGUIN)
ROW = ",".join(str(v) for v in PENGUIN.values())


@pytest.fixture(scope="module", params=LAYOUTS)
def keyed(request, penguins_model):
    """A server with a key and tight limits, in each layout."""
    with Server(env={**LIMITS, "SERVICE_LAYOUT": request.param}, name=f"keyed-{request.param}") as running:
        yield running


@pytest.fixture(scope="module")
def server(layout_server):
    """These tests run on both layouts (SERVICE_LAYOUT; tests/conftest.py, LAYOUTS)."""
    return layout_server


def call(server, method, path, headers=AUTH, **kwargs):
    return requests.request(method, f"{server.url}{path}", headers=headers, timeout=60, **kwargs)


def csv_upload(text: str, content_type: str = "text/csv"):
    return {"files": {"file": ("in.csv", text.encode(), content_type)}}


CASES = [
    # (id, method, path, headers, request kwargs, status, fragment)
    ("wrong-type", "POST", "/predict", AUTH, {"json": {**PENGUIN, "year": "2008"}}, 400, "year"),
    ("unknown-category", "POST", "/predict", AUTH, {"json": {**PENGUIN, "sex": "unknown"}}, 400, "'female' or 'male'"),
    ("unknown-field", "POST", "/predict", AUTH, {"json": {**PENGUIN, "beak": 1}}, 400, "beak"),
    ("missing-field", "POST", "/predict", AUTH, {"json": {"island": "Dream"}}, 400, "year"),
    (
        "malformed-json",
        "POST",
        "/predict",
        {**AUTH, "Content-Type": "application/json"},
        {"data": b"{nope"},
        400,
        "Invalid JSON",
    ),
    (
        "bad-csv-rows",
        "POST",
        "/predict_csv",
        AUTH,
        csv_upload(f"{HEADER}\n{ROW}\nMars,1,1,1,1,male,2007\n"),
        400,
        "row 2",
    ),
    ("query-missing", "GET", "/v1/predict?island=Dream", AUTH, {}, 400, "year"),
    ("no-key", "POST", "/predict", {}, {"json": PENGUIN}, 401, "missing API key"),
    ("wrong-key", "POST", "/predict", {"Authorization": "Bearer nope"}, {"json": PENGUIN}, 401, "wrong API key"),
    ("no-key-batch", "POST", "/predict_batch", {}, {"json": {"records": [PENGUIN]}}, 401, "API key"),
    ("no-key-csv", "POST", "/predict_csv", {}, csv_upload(f"{HEADER}\n{ROW}\n"), 401, "API key"),
    ("no-key-v1", "GET", "/v1/model", {}, {}, 401, "API key"),
    ("no-key-form", "GET", "/v1/form", {}, {}, 401, "API key"),
    ("basic-auth", "GET", "/v1/features", {"Authorization": f"Basic {KEY}"}, {}, 401, "API key"),
    ("unknown-route", "GET", "/nope", AUTH, {}, 404, "Not Found"),
    ("unknown-v1-route", "GET", "/v1/nope", AUTH, {}, 404, "Not Found"),
    ("unknown-feature", "GET", "/v1/features/beak", AUTH, {}, 404, "unknown feature"),
    ("get-on-post-api", "GET", "/predict", AUTH, {}, 405, "Method Not Allowed"),
    ("delete-on-v1", "DELETE", "/v1/model", AUTH, {}, 405, "Method Not Allowed"),
    ("body-too-large", "POST", "/predict", AUTH, {"json": {**PENGUIN, "pad": "x" * 4_000_000}}, 413, "limit"),
    ("csv-too-large", "POST", "/predict_csv", AUTH, csv_upload(HEADER + "\n" + (ROW + "\n") * 40_000), 413, "limit"),
    (
        "csv-too-many-rows",
        "POST",
        "/predict_csv",
        AUTH,
        csv_upload(HEADER + "\n" + (ROW + "\n") * 101),
        413,
        "101 rows; the limit is 100",
    ),
    (
        "text-to-json-api",
        "POST",
        "/predict",
        {**AUTH, "Content-Type": "text/plain"},
        {"data": "hello"},
        415,
        "application/json",
    ),
    ("png-upload", "POST", "/predict_csv", AUTH, csv_upload("\x89PNG", "image/png"), 415, "must be CSV"),
    ("json-to-upload", "POST", "/predict_csv", AUTH, {"json": PENGUIN}, 415, "multipart/form-data"),
    ("json-to-form", "POST", "/v1/form", AUTH, {"json": PENGUIN}, 415, "x-www-form-urlencoded"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_matrix(keyed, case):
    _, method, path, headers, kwargs, status, fragment = case
    response = call(keyed, method, path, headers=headers, **kwargs)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str) and isinstance(body["detail"], list)
    assert fragment in json.dumps(body), body
    assert "Traceback" not in response.text and "errors.pydantic.dev" not in response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_right_key_opens_every_route(keyed):
    assert call(keyed, "POST", "/predict", json=PENGUIN).json()["prediction"] == "Gentoo"
    assert call(keyed, "GET", "/v1/predict", params=PENGUIN).json()["prediction"] == "Gentoo"
    assert call(keyed, "GET", "/v1/form").status_code == 200
    assert call(keyed, "POST", "/predict_csv", **csv_upload(f"{HEADER}\n{ROW}\n")).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/"])
def test_probes_metrics_and_docs_stay_open(keyed, path):
    assert call(keyed, "GET", path, headers={}).status_code == 200


@pytest.mark.parametrize(("path", "word"), [("/readyz", "ready"), ("/livez", "alive"), ("/healthz", "alive")])
def test_probes_answer_a_small_json_body(server, path, word):
    response = requests.get(f"{server.url}{path}", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {"status": word}
    assert requests.head(f"{server.url}{path}", timeout=10).status_code == 200


NON_ASCII = [
    # (id, method, path, request kwargs, status): each answers with "Añelo" in its error, from a different layer
    ("fastapi-404", "GET", "/v1/features/Añelo", {}, 404),  # the /v1 app's own error, rewritten by the gate
    (
        "bentoml-validation",
        "POST",
        "/predict",
        {"json": {**PENGUIN, "Añelo": 1}},
        400,
    ),  # BentoML's pydantic dump, rewritten
    (
        "gate-refusal",
        "POST",
        "/predict",
        {"data": '{"Añelo": 1, "Añelo": 2}'.encode(), "headers": {"Content-Type": "application/json"}},
        400,
    ),
    ("content-type", "POST", "/predict", {"data": b"{}", "headers": {"Content-Type": "text/añelo".encode()}}, 415),
    ("query", "POST", "/predict?a%C3%B1elo=1&a%C3%B1elo=2", {"json": PENGUIN}, 400),
]


@pytest.mark.parametrize("case", NON_ASCII, ids=[c[0] for c in NON_ASCII])
def test_non_ascii_is_written_as_is(server, case):
    """The raw bytes carry UTF-8 "Añelo", not the escape "A\\u00f1elo"."""
    _, method, path, kwargs, status = case
    response = requests.request(method, f"{server.url}{path}", timeout=30, **kwargs)
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    assert "Añelo".encode().lower() in response.content.lower() and b"\\u00" not in response.content, response.content
    assert set(json.loads(response.content.decode("utf-8"))) == {"error", "detail"}


def test_swagger_documents_the_key_and_the_errors(keyed):
    spec = call(keyed, "GET", "/docs.json", headers={}).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        **spec["components"]["securitySchemes"]["apiKey"],
        "type": "http",
        "scheme": "bearer",
    }
    for path, method in [("/predict", "post"), ("/predict_csv", "post"), ("/v1/predict", "get")]:
        operation = spec["paths"][path][method]
        assert operation["security"] == [{"apiKey": []}]
        assert {"400", "401", "413", "415", "429", "503", "504"} <= set(operation["responses"]), path
    assert "security" not in spec["paths"]["/readyz"]["get"]
    assert set(spec["paths"]["/v1/form"]["post"]["responses"]["400"]["content"]) == {"text/html", "application/json"}
    choice = {"type": "string", "enum": ["fail", "skip"], "default": "fail"}
    parameters = {(p["in"], p["name"]): p["schema"] for p in spec["paths"]["/predict_csv"]["post"]["parameters"]}
    explain = {"type": "integer", "minimum": 1}  # K reason columns (docs/explanations.md)
    assert parameters == {
        ("query", "on_error"): choice,
        ("header", "X-On-Error"): choice,
        ("query", "explain"): explain,
    }


def test_the_form_answers_invalid_input_in_html_as_documented(keyed):
    """POST /v1/form: a person reads the 400 (HTML); the gate's refusals before the form is read stay JSON."""
    invalid = call(keyed, "POST", "/v1/form", data={**PENGUIN, "island": "Mars"})
    assert (
        invalid.status_code == 400
        and invalid.headers["content-type"].startswith("text/html")
        and "Please fix" in invalid.text
    )
    refused = call(keyed, "POST", "/v1/form?x=1&x=2", data=PENGUIN)
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/json"
    spec = call(keyed, "GET", "/docs.json", headers={}).json()
    documented = spec["paths"]["/v1/form"]["post"]["responses"]["400"]["content"]
    assert {invalid.headers["content-type"].split(";")[0], refused.headers["content-type"]} == set(documented)
    for status in ("401", "413", "415", "429", "503"):  # answered by the gate or the /v1 app's handlers: JSON
        assert set(spec["paths"]["/v1/form"]["post"]["responses"][status]["content"]) == {"application/json"}, status


def test_the_client_sends_the_key(keyed, tmp_path):
    """client.py takes the key from API_KEY (or --api-key); a wrong or missing one is one line, exit 2."""
    result = run_client("--url", keyed.url, cwd=tmp_path, env={"API_KEY": KEY})
    assert result.returncode == 0 and result.stdout.startswith("one:"), result.stderr
    for args, env, message in [
        (["--api-key", "nope"], {"API_KEY": KEY}, "error: wrong API key"),
        ([], {}, "error: missing API key"),
    ]:
        refused = run_client("--url", keyed.url, *args, cwd=tmp_path, env=env)
        assert refused.returncode == 2 and refused.stdout == "", refused
        assert refused.stderr.startswith(message) and len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_429_over_the_concurrency_limit(keyed):
    """MAX_CONCURRENCY=1: of several large batches sent at once, some are refused with 429. Whether
    two overlap depends on the machine's timing, so bursts are sent until one does (at most 5); every
    answer of every burst must be 200 or 429. (The gate's count itself is tested in-process.)"""
    records = [PENGUIN] * 8000

    def send(_):
        return call(keyed, "POST", "/predict_batch", json={"records": records})

    bursts = []
    for _ in range(5):
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            bursts.append(list(pool.map(send, range(6))))
        if any(r.status_code == 429 for r in bursts[-1]):
            break
    statuses = sorted(r.status_code for burst in bursts for r in burst)
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
    refused = next(r for burst in bursts for r in burst if r.status_code == 429)
    assert (
        refused.json()["error"].startswith("more than 1 requests in flight") and refused.headers["retry-after"] == "1"
    )


def test_cors_allows_only_the_configured_origins(keyed, server):
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = call(keyed, "OPTIONS", "/predict", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = call(keyed, "OPTIONS", "/predict", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    answered = call(keyed, "POST", "/predict", headers={**AUTH, "Origin": ORIGIN}, json=PENGUIN)
    assert (
        answered.headers["access-control-allow-origin"] == ORIGIN
        and "X-Cache" in answered.headers["access-control-expose-headers"]
    )
    off = requests.post(
        f"{server.url}/predict", headers={"Origin": ORIGIN}, json=PENGUIN, timeout=30
    )  # default: CORS off
    assert off.status_code == 200 and "access-control-allow-origin" not in off.headers


def test_server_still_ready_after_the_matrix(keyed):
    assert call(keyed, "GET", "/readyz", headers={}).status_code == 200
    assert call(keyed, "POST", "/predict", json=PENGUIN).status_code == 200


def test_503_when_the_model_service_is_overloaded(penguins_model):
    """A max_latency_ms no batch can meet makes BentoML refuse work: answered 503 in the contract shape.

    BentoML's dispatcher first trains its latency model on about a dozen calls per model worker, refusing
    nothing while it does; and a burst only overlaps in the model service as the machine's timing allows.
    So bursts of 64 go until one is refused (at most 5); every answer of every burst must be 200 or 503."""
    with Server(
        env={"MAX_LATENCY_MS": "1", "PREDICTION_CACHE_SIZE": "0", "SERVICE_LAYOUT": "services"}, name="overloaded"
    ) as served:
        responses = []
        for burst in range(5):
            records = [{**PENGUIN, "body_mass_g": 4000 + 64 * burst + i} for i in range(64)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
                responses += pool.map(lambda r: requests.post(f"{served.url}/predict", json=r, timeout=60), records)
            if any(r.status_code == 503 for r in responses):
                break
        statuses = {r.status_code for r in responses}
        assert statuses <= {200, 503} and 503 in statuses, statuses
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.json() == {"error": "the model service is overloaded; retry shortly", "detail": []}
        assert refused.headers["retry-after"] == "1"
        assert requests.get(f"{served.url}/readyz", timeout=10).status_code == 200


def test_429_from_the_model_service_reaches_the_client(penguins_model):
    """The model service's own concurrency limit (BentoML's traffic.max_concurrency, set here through
    BentoML's config override; service.py sets none) refuses a second concurrent call with 429; the
    entry passes it on as 429, not retried and not 500, in the contract shape."""
    limit = {"services": {"ModelService": {"traffic": {"max_concurrency": 1}}}}
    env = {
        "BENTOML_CONFIG_OVERRIDES": json.dumps(limit),
        "PREDICTION_CACHE_SIZE": "0",
        "MODEL_TAG": str(penguins_model.tag),
        "SERVICE_LAYOUT": "services",
    }
    with Server(env=env, name="model-limited") as served:
        records = [PENGUIN] * 10_000  # each call keeps the one model worker busy while the others arrive

        def send(_):
            return requests.post(f"{served.url}/predict_batch", json={"records": records}, timeout=120)

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            responses = list(pool.map(send, range(6)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json() == {"error": "the model service is overloaded; retry shortly", "detail": []}
        assert refused.headers["retry-after"] == "1"
        assert "more than" not in refused.text  # not the entry's own MAX_CONCURRENCY refusal
