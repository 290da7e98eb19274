"""`bentoml build` packs the service, its package and exactly the model MODEL_TAG names; the built
Bento serves that model with no MODEL_TAG set, and an explicit MODEL_TAG still wins."""

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest
import requests
import yaml

from tests.conftest import PENGUIN, ROOT, Server

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def build(env: dict) -> Path:
    """`bentoml build` in the work tree (as `make build` does); the built Bento's directory."""
    env = {**os.environ, **env}
    result = subprocess.run([str(BIN / "bentoml"), "build", "--output", "tag"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    tag = result.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    name, version = tag.split(":")
    path = Path(env["BENTOML_HOME"]) / "bentos" / name / version
    assert (path / "bento.yaml").is_file(), path
    return path


def packed_models(bento_dir: Path) -> tuple[list[str], dict[str, list[str]]]:
    """bento.yaml's top-level models and each service's models."""
    manifest = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    return [m["tag"] for m in manifest["models"]], {s["name"]: [m["tag"] for m in s["models"]] for s in manifest["services"]}


def train(home: Path, *args: str) -> str:
    """The documented CLI, into the store at `home`; the saved model's tag."""
    result = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env={**os.environ, "BENTOML_HOME": str(home)},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    name = args[args.index("--name") + 1]
    return f"{name}:{(home / 'models' / name / 'latest').read_text().strip()}"


def example_record(url: str) -> dict:
    """A record built from each feature's example on the served model's card."""
    card = requests.get(f"{url}/v1/model", timeout=30).json()
    return {feature["name"]: feature["example"] for feature in card["features"]}


@pytest.fixture(scope="module")
def bento(penguins_model, bentoml_home):
    # Pinned to the session's version: other tests may train newer "penguins" versions meanwhile.
    path = build({"MODEL_TAG": str(penguins_model.tag)})
    return bentoml.get(f"{path.parent.name}:{path.name}")


def test_manifest_lists_model_services_and_labels(bento, penguins_model):
    manifest = yaml.safe_load((Path(bento.path) / "bento.yaml").read_text())
    assert manifest["service"] == "service:PredictionService" and manifest["entry_service"] == "PredictionService"
    # The default layout, monolith: one service, which packs the model (SERVICE_LAYOUT=services adds ModelService).
    assert {s["name"] for s in manifest["services"]} == {"PredictionService"}
    assert packed_models(Path(bento.path)) == ([], {"PredictionService": [str(penguins_model.tag)]})
    assert [str(m.tag) for m in bento.info.all_models] == [str(penguins_model.tag)]
    assert manifest["labels"]["project"] == "tabserve" and manifest["labels"]["model"] == str(penguins_model.tag)


def test_bento_holds_only_what_the_service_needs(bento):
    src = Path(bento.path) / "src"
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*.py"))
    assert "service.py" in files and "tabserve/core/schema.py" in files and "tabserve/serving/gate.py" in files
    assert not any(f.startswith(("tests/", "bench/", "tabserve/training/", "tabserve/scoring/", "tabserve/templates/"))
                   or f in ("train.py", "score.py", "tabserve/features.py", "tabserve/drift_report.py") for f in files)


def test_requirements_are_locked(bento):
    """The Bento's requirements are requirements.txt's runtime pins, and its lock keeps each at that version."""
    import re

    def name(requirement: str) -> str:  # psycopg[binary] -> psycopg: the lock names the extra's packages apart
        return re.sub(r"[-_.]+", "-", requirement.split("[")[0].strip()).lower()

    def pins(text: str) -> dict[str, str]:
        lines = [line.split("#")[0].strip() for line in text.splitlines()]
        return {name(line.split("==")[0]): line.split("==")[1].split(";")[0].strip() for line in lines if "==" in line}

    dependencies = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    runtime = pins("\n".join(dependencies))
    assert len(runtime) == len(dependencies) and {"bentoml", "scikit-learn", "numpy", "jinja2"} <= set(runtime)
    python = Path(bento.path) / "env" / "python"
    assert pins((python / "requirements.in").read_text()) == runtime  # what was locked: exactly the runtime pins
    locked = pins((python / "requirements.txt").read_text())  # the lock, which the image installs
    assert {package: locked.get(package) for package in runtime} == runtime
    assert len(locked) > 20  # transitive dependencies are pinned too


def test_dockerfile_uses_python_311(bento):
    dockerfile = (Path(bento.path) / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile


@pytest.mark.served
def test_built_bento_serves_predictions(bento, penguins_model, tmp_path):
    # Serve from an empty directory, with no MODEL_TAG: everything must come from the Bento, not the work tree.
    assert "MODEL_TAG" not in os.environ
    with Server(target=str(bento.tag), cwd=tmp_path, name="bento") as served:
        response = requests.post(f"{served.url}/predict", json=PENGUIN, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["prediction"] == "Gentoo" and response.json()["model"] == str(penguins_model.tag)
        assert requests.post(f"{served.url}/predict", json={"island": "Mars"}, timeout=30).status_code == 400


# A model that is not penguins, in a store of its own that never holds penguins: scikit-learn's bundled
# diabetes table (a regression) and wine table (a classification), written to CSV files.


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    """A BentoML home holding only the model "diabetes", and a Bento built from it with MODEL_TAG=diabetes."""
    from sklearn.datasets import load_diabetes

    root = tmp_path_factory.mktemp("diabetes")
    home = root / "bentoml"
    csv = root / "diabetes.csv"
    load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"}).to_csv(csv, index=False)
    tag = train(home, "--data", str(csv), "--target", "progression", "--task", "regression", "--name", "diabetes")
    assert sorted(p.name for p in (home / "models").iterdir()) == ["diabetes"]
    bento_dir = build({"BENTOML_HOME": str(home), "MODEL_TAG": "diabetes"})
    return {"home": home, "root": root, "tag": tag, "bento_dir": bento_dir, "bento": f"{bento_dir.parent.name}:{bento_dir.name}"}


def test_bento_packs_exactly_the_model_model_tag_names(diabetes):
    assert diabetes["tag"].startswith("diabetes:")
    assert packed_models(diabetes["bento_dir"]) == ([], {"PredictionService": [diabetes["tag"]]})
    manifest = yaml.safe_load((diabetes["bento_dir"] / "bento.yaml").read_text())
    assert manifest["labels"]["model"] == diabetes["tag"] and manifest["labels"]["task"] == "regression"
    # The build neither needed nor trained penguins.
    assert sorted(p.name for p in (diabetes["home"] / "models").iterdir()) == ["diabetes"]


@pytest.mark.served
def test_bento_serves_its_model_without_model_tag(diabetes, tmp_path):
    assert "MODEL_TAG" not in os.environ
    env = {"BENTOML_HOME": str(diabetes["home"]), "API_KEY": "probe-key"}
    with Server(target=diabetes["bento"], cwd=tmp_path, env=env, name="bento-diabetes") as served:
        headers = {"Authorization": "Bearer probe-key"}
        card = requests.get(f"{served.url}/v1/model", headers=headers, timeout=30).json()
        assert card["tag"] == diabetes["tag"] and card["task"] == "regression"
        record = {feature["name"]: feature["example"] for feature in card["features"]}
        response = requests.post(f"{served.url}/predict", json=record, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model"] == diabetes["tag"] and isinstance(answer["prediction"], float) and answer["probabilities"] is None
        # The container check (scripts/container/probe.py) passes against it too.
        probe = subprocess.run([sys.executable, "scripts/container/probe.py", "predict", served.url, diabetes["tag"]], cwd=ROOT,
                               env={**os.environ, "PROBE_API_KEY": "probe-key"}, capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert "model card ok" in probe.stdout and "prediction ok" in probe.stdout and "api key ok" in probe.stdout
        wrong = subprocess.run([sys.executable, "scripts/container/probe.py", "predict", served.url, "penguins:latest"], cwd=ROOT,
                               env={**os.environ, "PROBE_API_KEY": "probe-key"}, capture_output=True, text=True, timeout=120)
        assert wrong.returncode == 1 and f"serves {diabetes['tag']!r}, expected 'penguins:latest'" in wrong.stderr


@pytest.mark.served
def test_explicit_model_tag_wins_over_the_packed_model(diabetes, tmp_path):
    from sklearn.datasets import load_wine

    csv = diabetes["root"] / "wine.csv"
    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frame.rename(columns=lambda c: c.replace("/", "_")).to_csv(csv, index=False)  # od280/od315_...
    wine = train(diabetes["home"], "--data", str(csv), "--target", "cultivar", "--task", "classification", "--name", "wine")
    env = {"BENTOML_HOME": str(diabetes["home"]), "MODEL_TAG": "wine"}
    with Server(target=diabetes["bento"], cwd=tmp_path, env=env, name="bento-wine") as served:
        response = requests.post(f"{served.url}/predict", json=example_record(served.url), timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == wine and abs(sum(response.json()["probabilities"].values()) - 1) < 1e-6
    assert "penguins" not in {p.name for p in (diabetes["home"] / "models").iterdir()}


@pytest.mark.served
def test_bento_packs_every_held_version_and_serves_them_in_their_roles(diabetes, tmp_path):
    """Built with a challenger and an extra version, the Bento packs all three and serves them in the same
    roles with no environment variable."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    tags = []
    for n, rows in enumerate((frame.iloc[::2], frame.iloc[1::2])):
        csv = diabetes["root"] / f"diabetes-{n}.csv"
        rows.to_csv(csv, index=False)
        tags.append(train(diabetes["home"], "--data", str(csv), "--target", "progression", "--task", "regression", "--name", "diabetes"))
    champion, challenger, extra = tags[1], diabetes["tag"], tags[0]
    bento_dir = build({"BENTOML_HOME": str(diabetes["home"]), "MODEL_TAG": champion, "CHALLENGER_TAG": challenger, "EXTRA_MODEL_TAGS": extra})
    assert sorted(packed_models(bento_dir)[1]["PredictionService"]) == sorted([champion, challenger, extra])
    with Server(target=f"{bento_dir.parent.name}:{bento_dir.name}", cwd=tmp_path, env={"BENTOML_HOME": str(diabetes["home"])},
                name="bento-versions") as served:
        listing = requests.get(f"{served.url}/v1/models", timeout=30).json()
        assert [(v["tag"], v["role"]) for v in listing] == [(champion, "champion"), (challenger, "challenger"), (extra, "available")]
        record = example_record(served.url)
        for tag in (champion, challenger, extra):
            answer = requests.post(f"{served.url}/v1/models/{tag}/predict", json=record, timeout=30).json()
            assert answer["model"] == tag and isinstance(answer["prediction"], float)
