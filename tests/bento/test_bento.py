"""`bentoml build` packs the service, its package and exactly the model MODEL_TAG names; the built
Bento serves that model with no MODEL_TAG set, and an explicit MODEL_TAG still wins."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import bentoml
import pytest
import requests
import yaml

from tabserve.core import store
from tests.conftest import PENGUIN, ROOT, Server

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def build(env: dict) -> Path:
    """`bentoml build -f <the build file tabserve.core.model_tags prints>` in the work tree, as `make build` and
    `make containerize` do; the built Bento's directory."""
    env = {**os.environ, **env}
    with tempfile.TemporaryDirectory(prefix="tabserve-test-bentofile-") as out:
        helper = subprocess.run(
            [sys.executable, "-m", "tabserve.core.model_tags", "bentofile", out],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert helper.returncode == 0, helper.stdout + helper.stderr
        bentofile = helper.stdout.strip()
        result = subprocess.run(
            [str(BIN / "bentoml"), "build", "-f", bentofile, "--output", "tag"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    tag = result.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    name, version = tag.split(":")
    path = Path(env["BENTOML_HOME"]) / "bentos" / name / version
    assert (path / "bento.yaml").is_file(), path
    return path


def packed_models(bento_dir: Path) -> tuple[list[str], dict[str, list[str]]]:
    """bento.yaml's top-level models and each service's models."""
    manifest = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    return [m["tag"] for m in manifest["models"]], {
        s["name"]: [m["tag"] for m in s["models"]] for s in manifest["services"]
    }


def train(home: Path, *args: str) -> str:
    """The documented CLI, into the store at `home`; the saved model's tag."""
    result = subprocess.run(
        [sys.executable, "train.py", *args, *([] if "--model" in args else ["--model", "hgb"])],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    name = args[args.index("--name") + 1]
    return f"{name}:{(home / 'models' / name / 'latest').read_text().strip()}"


def runtime_pins() -> dict[str, str]:
    """requirements.txt's pins, {normalized name: version}."""
    return pins((ROOT / "requirements.txt").read_text())


def pins(text: str) -> dict[str, str]:
    """{name: version} of a requirements text's `name==version` lines (psycopg[binary] -> psycopg)."""
    import re

    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return {
        re.sub(r"[-_.]+", "-", line.split("==")[0].split("[")[0].strip()).lower(): line.split("==")[1]
        .split(";")[0]
        .strip()
        for line in lines
        if "==" in line
    }


def system_packages(bento_dir: Path) -> list[str]:
    """The Debian packages the Bento's Dockerfile installs beyond BentoML's own command (docker.system_packages)."""
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    prefix = "RUN apt-get install -q -y -o Dpkg::Options::=--force-confdef "
    return [p for line in dockerfile.splitlines() if line.startswith(prefix) for p in line.removeprefix(prefix).split()]


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
    assert "service.py" in files and "tabserve/core/schema.py" in files and "tabserve/serving/edge/gate.py" in files
    assert not any(
        f.startswith(
            ("tests/", "bench/", "tabserve/training/", "tabserve/scoring/", "tabserve/serving/observe/templates/")
        )
        or f
        in ("train.py", "score.py", "tabserve/serving/api/feature_table.py", "tabserve/serving/observe/drift_report.py")
        for f in files
    )


def test_requirements_are_locked(bento):
    """The Bento's requirements are requirements.txt's runtime pins, and its lock keeps each at that version."""
    dependencies = [
        line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")
    ]
    runtime = runtime_pins()
    assert len(runtime) == len(dependencies) and {"bentoml", "scikit-learn", "numpy", "jinja2"} <= set(runtime)
    python = Path(bento.path) / "env" / "python"
    assert pins((python / "requirements.in").read_text()) == runtime  # what was locked: exactly the runtime pins
    locked = pins((python / "requirements.txt").read_text())  # the lock, which the image installs
    assert {package: locked.get(package) for package in runtime} == runtime
    assert len(locked) > 20  # transitive dependencies are pinned too


def test_dockerfile_uses_python_311(bento):
    dockerfile = (Path(bento.path) / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert system_packages(Path(bento.path)) == []  # a model trained by train.py needs no Debian package


def test_trained_models_build_with_bentofile_yaml_unchanged(penguins_model, tmp_path):
    """No packed model needs anything beyond requirements.txt: the build file is the project's own."""
    result = subprocess.run(
        [sys.executable, "-m", "tabserve.core.model_tags", "bentofile", str(tmp_path / "out")],
        cwd=ROOT,
        env={**os.environ, "MODEL_TAG": str(penguins_model.tag)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout == "bentofile.yaml\n" and result.stderr == "", (
        result.stdout + result.stderr
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.served
def test_built_bento_serves_predictions(bento, penguins_model, tmp_path):
    # Serve from an empty directory, with no MODEL_TAG: everything must come from the Bento, not the work tree.
    assert "MODEL_TAG" not in os.environ
    with Server(target=str(bento.tag), cwd=tmp_path, name="bento") as served:
        response = requests.post(f"{served.url}/predict", json=PENGUIN, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["prediction"] == "Gentoo" and response.json()["model"] == str(penguins_model.tag)
        assert requests.post(f"{served.url}/predict", json={"island": "Mars"}, timeout=30).status_code == 400
        # Explanations are unchanged by the build: the Bento's answer is the stored version's own, to the last bit.
        explained = requests.post(f"{served.url}/predict?explain=true", json=PENGUIN, timeout=30)
        assert explained.status_code == 200, explained.text
        [offline] = store.load_runtime(bentoml.models.get(penguins_model.tag)).explain_records([PENGUIN], ["Gentoo"])
        assert explained.json()["explanation"] == offline


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
    return {
        "home": home,
        "root": root,
        "tag": tag,
        "bento_dir": bento_dir,
        "bento": f"{bento_dir.parent.name}:{bento_dir.name}",
    }


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
        assert (
            answer["model"] == diabetes["tag"]
            and isinstance(answer["prediction"], float)
            and answer["probabilities"] is None
        )
        # The container check (scripts/container/probe.py) passes against it too.
        probe = subprocess.run(
            [sys.executable, "scripts/container/probe.py", "predict", served.url, diabetes["tag"]],
            cwd=ROOT,
            env={**os.environ, "PROBE_API_KEY": "probe-key"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert "model card ok" in probe.stdout and "prediction ok" in probe.stdout and "api key ok" in probe.stdout
        wrong = subprocess.run(
            [sys.executable, "scripts/container/probe.py", "predict", served.url, "penguins:latest"],
            cwd=ROOT,
            env={**os.environ, "PROBE_API_KEY": "probe-key"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert wrong.returncode == 1 and f"serves {diabetes['tag']!r}, expected 'penguins:latest'" in wrong.stderr


@pytest.mark.served
def test_explicit_model_tag_wins_over_the_packed_model(diabetes, tmp_path):
    from sklearn.datasets import load_wine

    csv = diabetes["root"] / "wine.csv"
    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frame.rename(columns=lambda c: c.replace("/", "_")).to_csv(csv, index=False)  # od280/od315_...
    wine = train(
        diabetes["home"], "--data", str(csv), "--target", "cultivar", "--task", "classification", "--name", "wine"
    )
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
        tags.append(
            train(
                diabetes["home"],
                "--data",
                str(csv),
                "--target",
                "progression",
                "--task",
                "regression",
                "--name",
                "diabetes",
            )
        )
    champion, challenger, extra = tags[1], diabetes["tag"], tags[0]
    bento_dir = build(
        {
            "BENTOML_HOME": str(diabetes["home"]),
            "MODEL_TAG": champion,
            "CHALLENGER_TAG": challenger,
            "EXTRA_MODEL_TAGS": extra,
        }
    )
    assert sorted(packed_models(bento_dir)[1]["PredictionService"]) == sorted([champion, challenger, extra])
    with Server(
        target=f"{bento_dir.parent.name}:{bento_dir.name}",
        cwd=tmp_path,
        env={"BENTOML_HOME": str(diabetes["home"])},
        name="bento-versions",
    ) as served:
        listing = requests.get(f"{served.url}/v1/models", timeout=30).json()
        assert [(v["tag"], v["role"]) for v in listing] == [
            (champion, "champion"),
            (challenger, "challenger"),
            (extra, "available"),
        ]
        record = example_record(served.url)
        for tag in (champion, challenger, extra):
            answer = requests.post(f"{served.url}/v1/models/{tag}/predict", json=record, timeout=30).json()
            assert answer["model"] == tag and isinstance(answer["prediction"], float)


# A model from elsewhere: a LightGBM booster trained on Palmer Penguins and imported with import_model.py. Its
# card needs lightgbm==4.7.0 and Debian's libgomp1; `make build` gives the Bento both.


@pytest.fixture(scope="module")
def lightgbm_bento(tmp_path_factory):
    """A BentoML home holding only an imported LightGBM model, and the Bento `make build` made of it."""
    import lightgbm
    from palmerpenguins import load_penguins

    root = tmp_path_factory.mktemp("lightgbm")
    home = root / "bentoml"
    frame = load_penguins().dropna(subset=["species"])
    features = frame.drop(columns="species").astype({"island": "category", "sex": "category"})
    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1).fit(features, frame["species"])
    model.booster_.save_model(root / "penguins-lgbm.txt")  # a booster knows its classes as 0, 1, 2
    features.to_csv(root / "sample.csv", index=False)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MODEL_TAG", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")
    }
    env["BENTOML_HOME"] = str(home)
    imported = subprocess.run(
        [
            sys.executable,
            "import_model.py",
            "--model",
            str(root / "penguins-lgbm.txt"),
            "--sample",
            str(root / "sample.csv"),
            "--name",
            "penguins-lgbm",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    tag = f"penguins-lgbm:{(home / 'models' / 'penguins-lgbm' / 'latest').read_text().strip()}"
    # -o: never (re)install the venv here.
    made = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "build", "MODEL_TAG=penguins-lgbm"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    (bento_dir,) = (home / "bentos" / "prediction_service").glob("*/")
    return {
        "home": home,
        "tag": tag,
        "bento_dir": bento_dir,
        "bento": f"prediction_service:{bento_dir.name}",
        "make": made,
    }


def test_imported_model_bento_installs_its_library(lightgbm_bento):
    import lightgbm

    bento_dir = lightgbm_bento["bento_dir"]
    assert packed_models(bento_dir) == ([], {"PredictionService": [lightgbm_bento["tag"]]})
    python = bento_dir / "env" / "python"
    # requirements.txt's pins plus the library the card names, at its version; the lock keeps it.
    assert (
        pins((python / "requirements.in").read_text()) == {**runtime_pins(), "lightgbm": "4.7.0"}
        and lightgbm.__version__ == "4.7.0"
    )
    assert pins((python / "requirements.txt").read_text())["lightgbm"] == "4.7.0"
    assert system_packages(bento_dir) == ["libgomp1"]
    # make build said what it built with: a generated copy of bentofile.yaml, removed afterwards.
    made = lightgbm_bento["make"]
    assert "need lightgbm==4.7.0, libgomp1: building with " in made.stderr, made.stderr
    generated = next(line for line in made.stdout.splitlines() if "bentoml build -f " in line).split(" -f ")[1]
    assert generated.endswith("/bentofile.yaml") and not Path(generated).exists()


@pytest.mark.served
def test_imported_model_bento_serves_it(lightgbm_bento, tmp_path):
    env = {"BENTOML_HOME": str(lightgbm_bento["home"]), "API_KEY": "probe-key"}
    with Server(target=lightgbm_bento["bento"], cwd=tmp_path, env=env, name="bento-lightgbm") as served:
        headers = {"Authorization": "Bearer probe-key"}
        card = requests.get(f"{served.url}/v1/model", headers=headers, timeout=30).json()
        assert card["tag"] == lightgbm_bento["tag"] and card["source"]["requirements"] == ["lightgbm==4.7.0"]
        record = {feature["name"]: feature["example"] for feature in card["features"]}
        response = requests.post(f"{served.url}/predict", json=record, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model"] == lightgbm_bento["tag"] and answer["prediction"] in card["classes"]
        assert abs(sum(answer["probabilities"].values()) - 1) < 1e-6
        probe = subprocess.run(
            [sys.executable, "scripts/container/probe.py", "predict", served.url, lightgbm_bento["tag"]],
            cwd=ROOT,
            env={**os.environ, "PROBE_API_KEY": "probe-key"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr


@pytest.mark.served
def test_imported_model_bento_without_its_library_stops_with_one_line(lightgbm_bento, tmp_path):
    """What a Bento built with plain `bentoml build` (no lightgbm in its image) does at start: one line naming
    the library and `make build`. Here lightgbm is hidden from the server's Python instead."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['lightgbm'] = None  # find_spec: not installed\n")
    env = {"BENTOML_HOME": str(lightgbm_bento["home"]), "PYTHONPATH": str(hide)}
    code, log = Server(target=lightgbm_bento["bento"], cwd=tmp_path, env=env, name="bento-no-lightgbm").wait_exit()
    assert code != 0
    assert (
        f"error: model {lightgbm_bento['tag']} needs lightgbm==4.7.0, which is not installed here: "
        "pip install lightgbm==4.7.0 "
        "(a Bento built with `make build` installs it)"
    ) in log.splitlines(), log
