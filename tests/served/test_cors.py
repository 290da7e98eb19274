"""CORS on a real server (CORS_ORIGINS set): allowed preflights and requests carry the CORS headers,
and a refused preflight answers in the one error shape, counted on /metrics like every other answer."""

import pytest
import requests

from tests.conftest import PENGUIN, Server
from tests.served.metrics_text import metric

pytestmark = pytest.mark.served
KEY = "cors-test-key"
ORIGIN = "https://dashboard.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@pytest.fixture(scope="module")
def cors_server(penguins_model):
    with Server(
        env={"MODEL_TAG": str(penguins_model.tag), "API_KEY": KEY, "CORS_ORIGINS": ORIGIN}, name="cors"
    ) as running:
        yield running


def options(server, path, headers):
    return requests.options(f"{server.url}{path}", headers=headers, timeout=30)


def refused_preflights(server, path="/predict") -> float:
    return metric(server.url, "bentoml_service_request_total", endpoint=path, http_response_code="400")


@pytest.mark.parametrize(
    "asked, what",
    [
        ({"Origin": "https://evil.example"}, "origin"),
        ({"Access-Control-Request-Headers": "authorization,x-evil"}, "headers"),
        ({"Access-Control-Request-Method": "DELETE"}, "method"),
    ],
    ids=["origin", "header", "method"],
)
def test_a_refused_preflight_answers_in_the_error_shape_and_is_counted(cors_server, asked, what):
    before = refused_preflights(cors_server)
    response = options(cors_server, "/predict", {**PREFLIGHT, **asked})
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    assert response.json() == {"error": f"Disallowed CORS {what}", "detail": []}
    assert int(response.headers["content-length"]) == len(response.content)
    if what == "origin":
        assert "access-control-allow-origin" not in response.headers
    assert refused_preflights(cors_server) == before + 1


def test_a_refused_preflight_on_a_v1_route_too(cors_server):
    response = options(cors_server, "/v1/predict", {**PREFLIGHT, "Origin": "https://evil.example"})
    assert response.status_code == 400 and response.json() == {"error": "Disallowed CORS origin", "detail": []}


def test_allowed_preflights_and_requests_carry_the_cors_headers(cors_server):
    allowed = options(cors_server, "/predict", PREFLIGHT)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    answered = requests.post(
        f"{cors_server.url}/predict",
        headers={"Authorization": f"Bearer {KEY}", "Origin": ORIGIN},
        json=PENGUIN,
        timeout=30,
    )
    assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Cache" in answered.headers["access-control-expose-headers"]


def test_the_gates_refusals_stay_readable_by_the_browser(cors_server):
    """CORS sits in front of the gate: a 401 to an allowed origin carries the CORS headers, so the page can read it."""
    refused = requests.post(f"{cors_server.url}/predict", headers={"Origin": ORIGIN}, json=PENGUIN, timeout=30)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
    assert refused.json()["error"].startswith("missing API key")
