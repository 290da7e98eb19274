"""deploy/k8s/split: the services layout as two Deployments (entry and model), each with its own Service,
HPA and PodDisruptionBudget; valid against the Kubernetes schemas, and wired to each other."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_k8s_manifests import K8S_VERSION

SPLIT = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "split"


def objects() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(SPLIT.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] != "Kustomization":
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in found, key
                found[key] = doc
    return found


OBJECTS = objects()


@pytest.mark.parametrize("key", sorted(OBJECTS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_every_object_is_valid_against_the_kubernetes_schema(key):
    kubernetes_validate.validate(OBJECTS[key], K8S_VERSION, strict=True)


def test_two_deployments_each_with_its_service_hpa_and_budget():
    for part in ("entry", "model"):
        name = f"tabserve-{part}"
        deployment = OBJECTS[("Deployment", name)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert OBJECTS[("Service", name)]["spec"]["selector"].items() <= labels.items()
        assert OBJECTS[("PodDisruptionBudget", name)]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        target = OBJECTS[("HorizontalPodAutoscaler", name)]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
    kustomization = yaml.safe_load((SPLIT / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in SPLIT.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_the_entry_reaches_the_model_service_and_the_model_pods_run_only_it():
    [entry] = OBJECTS[("Deployment", "tabserve-entry")]["spec"]["template"]["spec"]["containers"]
    [model] = OBJECTS[("Deployment", "tabserve-model")]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in entry["env"]}
    service = OBJECTS[("Service", "tabserve-model")]
    assert (
        env["MODEL_SERVICE_URL"] == f"http://{service['metadata']['name']}"
        and service["spec"]["ports"][0]["port"] == 80
    )
    assert model["args"][:3] == ["start-http-server", "--service-name", "ModelService"]
    assert {e["name"]: e.get("value") for e in model["env"]}["SERVICE_LAYOUT"] == env["SERVICE_LAYOUT"] == "services"
    assert "API_KEY" not in {e["name"] for e in model["env"]}  # inside the cluster only; the entry checks keys
    for container in (entry, model):  # both roll out without dropping a request, as the single Deployment does
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and container["lifecycle"]["preStop"]
    for part in ("entry", "model"):
        assert OBJECTS[("Deployment", f"tabserve-{part}")]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
