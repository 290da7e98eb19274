"""BentoML's request metrics carry route templates, not raw paths (tabserve/bentoml_fixes.py, touchpoint 7):
an entity id, a feature name or a random path adds no series of its own, and a path with a control
character does not break the exposition Prometheus reads."""

from __future__ import annotations

import requests

from tests.served.metrics_text import parse


def test_endpoint_labels_are_route_templates(server):
    for path in (
        "/v1/entities/7/predict",
        "/v1/entities/8/predict",
        "/v1/entities/%01x/predict",
        "/v1/features/island",
        "/no/such/path-123",
        "/readyz",
    ):
        assert requests.get(f"{server.url}{path}", timeout=30).status_code in (200, 404), path
    assert (
        requests.get(f"{server.url}/v1/entities/9/predict", params={"island": "Atlantis"}, timeout=30).status_code
        == 400
    )
    samples = parse(requests.get(f"{server.url}/metrics", timeout=30).text)  # parses: nothing raw in a label
    refused = {s.labels["endpoint"] for s in samples if s.name == "tabserve_validation_errors_total"}
    assert "/v1/entities/{id}/predict" in refused and not [e for e in refused if "9" in e], refused
    endpoints = {s.labels["endpoint"] for s in samples if s.name == "bentoml_service_request_total"}
    assert {"/v1/entities/{id}/predict", "/v1/features/{name}", "other", "/readyz"} <= endpoints, endpoints
    assert not [e for e in endpoints if "7" in e or "8" in e or "island" in e or "such" in e], endpoints
