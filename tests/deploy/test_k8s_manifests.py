"""The Kubernetes manifests in deploy/k8s: valid against the Kubernetes API schemas (offline, the
schemas ship inside the kubernetes-validate package) and saying what the scale-out path needs:
2 replicas, probes on /readyz and /livez, non-root, resources, the API key from a Secret, an HPA
on CPU aimed at the Deployment, a Service that selects the pods.
"""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# The oldest Kubernetes minor still commonly run that has every API used here (autoscaling/v2: 1.23+).
K8S_VERSION = "1.29"
BENTOML_UID = 1034  # the non-root user BentoML's generated Dockerfile creates (bentoml, uid/gid 1034)


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> dict[str, dict]:
    """Kubernetes objects by kind (the kustomization is not an API object)."""
    by_kind: dict[str, dict] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in _docs(path):
            if doc["kind"] == "Kustomization":
                continue
            assert doc["kind"] not in by_kind, f"two {doc['kind']} objects"
            by_kind[doc["kind"]] = doc
    return by_kind


M = _manifests()


def _validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _container(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("path", sorted(K8S_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path):
    docs = _docs(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        if doc["kind"] == "Kustomization":
            for resource in doc["resources"]:
                assert (K8S_DIR / resource).is_file(), f"kustomization lists missing {resource}"
            continue
        _validate(doc)  # raises kubernetes_validate.ValidationError with the offending path


def test_all_expected_objects_are_shipped():
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Secret"} <= set(M)


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: d["spec"].__setitem__("replicas", "two"), "'two' is not of type 'integer'"),
        (lambda d: d["spec"].__setitem__("replica", 2), "Additional properties are not allowed"),
        (lambda d: _container(d).pop("name"), "'name' is a required property"),
        (lambda d: _container(d)["readinessProbe"]["httpGet"].pop("port"), "'port' is a required property"),
        (lambda d: d["spec"].pop("selector"), "'selector' is a required property"),
    ],
    ids=["replicas-not-int", "misspelt-field", "container-without-name", "probe-without-port", "no-selector"],
)
def test_the_validator_rejects_a_broken_deployment(breakage, expected):
    broken = copy.deepcopy(M["Deployment"])
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        _validate(broken)
    assert expected in caught.value.message


def test_the_validator_rejects_an_hpa_with_a_bad_metric_type():
    broken = copy.deepcopy(M["HorizontalPodAutoscaler"])
    broken["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = "seventy"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)


def test_deployment_runs_two_replicas_with_probes_on_readyz_and_livez():
    deployment = M["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000}  # BentoML serves on 3000 in the image
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    # The startup probe gives a slow start time before liveness may restart the pod.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_a_rolling_update_never_drops_a_request():
    """Promotion on Kubernetes is a rolling update: a new pod must be ready (on /readyz) before an old one
    goes, and a stopping pod keeps serving until the load balancers have dropped it, within its grace period."""
    deployment = M["Deployment"]
    strategy = deployment["spec"]["strategy"]
    assert (
        strategy["type"] == "RollingUpdate"
        and strategy["rollingUpdate"]["maxUnavailable"] == 0
        and strategy["rollingUpdate"]["maxSurge"] >= 1
    )
    container = _container(deployment)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert (
        command[0] == "sleep"
        and 5 <= int(command[1]) < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] - 10
    )


def test_deployment_is_non_root_and_locked_down():
    pod = M["Deployment"]["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == BENTOML_UID and security["runAsGroup"] == BENTOML_UID
    container_security = _container(M["Deployment"])["securityContext"]
    assert container_security["allowPrivilegeEscalation"] is False
    assert container_security["capabilities"]["drop"] == ["ALL"]
    if container_security.get("readOnlyRootFilesystem"):
        # BentoML writes its home at start: it must point at a writable volume.
        env = {e["name"]: e.get("value") for e in _container(M["Deployment"])["env"]}
        mounts = {m["mountPath"] for m in _container(M["Deployment"])["volumeMounts"]}
        assert any(env["BENTOML_HOME"].startswith(m) for m in mounts)


def test_the_bentoml_uid_is_the_one_bentoml_builds_into_the_image():
    from bentoml._internal.container import generate

    assert generate.BENTO_UID_GID == BENTOML_UID


def test_deployment_sets_cpu_and_memory_requests_and_limits():
    resources = _container(M["Deployment"])["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, kind


def test_api_key_comes_from_the_secret():
    env = {e["name"]: e for e in _container(M["Deployment"])["env"]}
    ref = env["API_KEY"]["valueFrom"]["secretKeyRef"]
    secret = M["Secret"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    assert "value" not in env["API_KEY"]  # never inline


def test_hpa_scales_the_deployment_on_cpu():
    hpa, deployment = M["HorizontalPodAutoscaler"], M["Deployment"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"] == 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilization is relative to the CPU request, so there must be one.
    assert "cpu" in _container(deployment)["resources"]["requests"]


def test_service_selects_the_pods_and_targets_the_http_port():
    service, deployment = M["Service"], M["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_kustomization_applies_everything_but_the_example_secret():
    [kustomization] = _docs(K8S_DIR / "kustomization.yaml")
    assert "secret.example.yaml" not in kustomization["resources"]
    assert {"deployment.yaml", "service.yaml", "hpa.yaml"} <= set(kustomization["resources"])
    [image] = kustomization["images"]
    assert image["name"] == _container(M["Deployment"])["image"].split(":")[0]
