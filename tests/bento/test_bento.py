"""`bentoml build` packs the service, its package and the model; the built Bento serves /predict."""

import subprocess
import sys
from pathlib import Path

import bentoml
import pytest
import requests
import yaml

from tests.conftest import PENGUIN, ROOT, Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bento(penguins_model):
    bentoml_cli = str(Path(sys.executable).parent / "bentoml")
    result = subprocess.run([bentoml_cli, "build", "--output", "tag"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    tag = result.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    return bentoml.get(tag)


def test_manifest_lists_model_services_and_labels(bento, penguins_model):
    manifest = yaml.safe_load((Path(bento.path) / "bento.yaml").read_text())
    assert manifest["service"] == "service:PredictionService" and manifest["entry_service"] == "PredictionService"
    assert {s["name"] for s in manifest["services"]} == {"PredictionService", "ModelService"}
    assert [m["tag"] for m in manifest["models"]] == [str(penguins_model.tag)]
    assert manifest["labels"]["project"] == "tabserve" and manifest["labels"]["model"] == str(penguins_model.tag)


def test_bento_holds_only_what_the_service_needs(bento):
    src = Path(bento.path) / "src"
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*.py"))
    assert "service.py" in files and "tabserve/schema.py" in files
    assert not any(f.startswith(("tests/", "bench/")) or f in ("train.py", "tabserve/training.py") for f in files)


def test_requirements_are_locked(bento):
    locked = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text()
    pins = {line.split("==")[0].lower(): line.split("==")[1].split()[0] for line in locked.splitlines() if "==" in line and not line.startswith("#")}
    assert pins["scikit-learn"] == "1.9.1" and pins["pandas"] == "3.1.1" and pins["numpy"] == "2.4.6"
    assert "bentoml" in pins and len(pins) > 20  # transitive dependencies are pinned too


def test_dockerfile_uses_python_311(bento):
    dockerfile = (Path(bento.path) / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile


def test_built_bento_serves_predictions(bento, tmp_path):
    # Serve from an empty directory: everything must come from the Bento, not the work tree.
    with Server(target=str(bento.tag), cwd=tmp_path, name="bento") as served:
        response = requests.post(f"{served.url}/predict", json=PENGUIN, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["prediction"] == "Gentoo"
        assert requests.post(f"{served.url}/predict", json={"island": "Mars"}, timeout=30).status_code == 400
