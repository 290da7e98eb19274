"""deploy/monitoring/ checked offline with Prometheus' own promtool: the scrape config, the alert rules
(every rule the issue asks for, each with a `for` and a summary), and the Grafana dashboard's shape.
The queries themselves run against a real Prometheus in tests/served/test_prometheus.py."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

MONITORING = ROOT / "deploy" / "monitoring"
pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: `make engines` installs Debian's prometheus"
)


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_config_and_its_rules():
    result = promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(MONITORING / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path):
    """The check above can fail: a rule with a PromQL syntax error is refused."""
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    rules["groups"][0]["rules"][0]["expr"] = "max by (feature (tabserve_feature_drift_psi"
    broken = tmp_path / "alerts.yml"
    broken.write_text(yaml.safe_dump(rules))
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_the_alerts_cover_drift_errors_latency_and_unavailability():
    rules = {r["alert"]: r for r in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]}
    drift = rules["TabserveFeatureDrift"]
    assert "tabserve_feature_drift_psi" in drift["expr"] and ">= 0.25" in drift["expr"] and drift["for"] == "15m"
    assert "tabserve_prediction_drift_psi" in rules["TabservePredictionDrift"]["expr"]
    assert '=~"5.."' in rules["TabserveErrorRate"]["expr"]
    assert 'http_response_code="503"' in rules["TabserveUnavailable"]["expr"]
    assert "histogram_quantile(0.99" in rules["TabserveSlowP99"]["expr"]
    assert all(rule.get("for") and rule["annotations"].get("summary") for rule in rules.values())


def test_the_dashboard_has_the_panels_operators_look_at():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in (
        "requests per second by route",
        "latency by route",
        "records per pipeline call",
        "cache hit rate",
        "outside the training range",
        "drift per feature",
        "predictions per class",
    ):
        assert topic in titles
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"  # picked when the dashboard is imported
