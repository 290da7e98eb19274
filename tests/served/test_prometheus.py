"""A real Prometheus (Debian's package, `make engines`) scraping a real server with the shipped
deploy/monitoring/ config: the service's own series, drift included, arrive over Prometheus' HTTP API;
the alert rules load and evaluate without error; and every query of the Grafana dashboard runs,
naming only metrics the service exports."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest
import requests
import yaml

from tests.conftest import PENGUIN, ROOT, Server
from tests.engines import Prometheus
from tests.served.metrics_text import parse

MONITORING = ROOT / "deploy" / "monitoring"
METRIC_NAME = re.compile(r"\b((?:tabserve|bentoml)_[a-z_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


@pytest.fixture(scope="module")
def server(penguins_model):
    server = Server(
        env={"MODEL_TAG": str(penguins_model.tag), "DRIFT_MIN_RECORDS": "50", "DRIFT_REFRESH_S": "0.5"},
        name="prometheus",
    ).wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(server):
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{server.port}"]}]
    with Prometheus(yaml.safe_dump(config)) as prometheus:
        yield prometheus


def query(prometheus: Prometheus, expr: str) -> dict:
    answer = requests.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]


def wait_for_series(prometheus: Prometheus, expr: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(prometheus, expr)["result"]
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"Prometheus has no series for {expr} after {timeout}s")


@pytest.fixture(scope="module")
def traffic(server, prometheus):
    """The training file through /predict_batch, plus single records: enough for the drift window."""
    rows = pd.read_csv(ROOT / "data" / "penguins.csv").drop(columns=["species"])
    records = [{k: v for k, v in row.items() if pd.notna(v)} for row in rows.to_dict("records")]
    answer = requests.post(f"{server.url}/predict_batch", json={"records": records}, timeout=60)
    assert answer.status_code == 200, answer.text
    for _ in range(5):
        assert requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30).status_code == 200
    return len(records) + 5


def test_prometheus_scrapes_the_service(prometheus, traffic):
    [up] = wait_for_series(prometheus, 'up{job="tabserve"} == 1')
    assert up["value"][1] == "1"
    predictions = wait_for_series(prometheus, f"sum(tabserve_predictions_total) >= {traffic}")
    assert float(predictions[0]["value"][1]) >= traffic


def test_drift_series_reach_prometheus(prometheus, traffic):
    psi = wait_for_series(prometheus, "tabserve_feature_drift_psi >= 0")
    features = {series["metric"]["feature"] for series in psi}
    assert {"island", "bill_length_mm", "body_mass_g"} <= features
    assert all(float(series["value"][1]) < 0.1 for series in psi), psi  # the training data itself: no drift
    bins = wait_for_series(prometheus, 'sum by (bin) (tabserve_feature_values_total{feature="island"})')
    assert sum(float(series["value"][1]) for series in bins) == traffic


def test_the_alert_rules_load_and_evaluate(prometheus, traffic):
    deadline = time.monotonic() + 60
    while True:
        groups = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule["health"] == "ok" for rule in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {rule["name"] for rule in rules} >= {
        "TabserveFeatureDrift",
        "TabservePredictionDrift",
        "TabserveErrorRate",
        "TabserveUnavailable",
        "TabserveSlowP99",
    }
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []
    firing = requests.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert [a["labels"]["alertname"] for a in firing if a["labels"]["alertname"].endswith("Drift")] == []


def family(name: str) -> str:
    """A sample's metric family: tabserve_requests_total -> tabserve_requests."""
    return next((name[: -len(suffix)] for suffix in SUFFIXES if name.endswith(suffix)), name)


def exported_names(server) -> set[str]:
    """Metric families the service exports now, plus those tabserve defines but has not used yet
    (a labelled metric appears on /metrics only once a label set is used)."""
    from tabserve.serving.observe import metrics

    names = {family(sample.name) for sample in parse(requests.get(f"{server.url}/metrics", timeout=10).text)}
    return names | {m._name for m in (*metrics._metrics().values(), *metrics.drift_metrics().values())}


def test_every_dashboard_query_runs_on_exported_metrics(server, prometheus, traffic):
    wait_for_series(prometheus, "tabserve_feature_drift_psi")
    wait_for_series(prometheus, 'bentoml_service_request_total{service_name="PredictionService"}')
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exported = exported_names(server)
    exprs = {target["expr"]: panel["title"] for panel in dashboard["panels"] for target in panel["targets"]}
    for expr, title in exprs.items():
        names = {family(name) for name in METRIC_NAME.findall(expr)}
        assert names and names <= exported, f"{title}: {sorted(names - exported)} not exported by the service"
        query(prometheus, expr)  # parses and runs (status "success")
    # rate() needs two scrapes inside its range: poll until the panels fed by the traffic above have data
    # (requests, latency, statuses, batch size, cache, drift, classes; not Redis, lookups or consumers).
    deadline, with_data = time.monotonic() + 60, set()
    while len(with_data) < 10 and time.monotonic() < deadline:
        with_data |= {expr for expr in exprs if query(prometheus, expr)["result"]}
        time.sleep(1)
    assert len(with_data) >= 10, sorted(set(exprs) - with_data)
