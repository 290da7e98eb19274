"""No silent penguins: a MODEL_TAG the store lacks stops `make serve`, `make build`, `make containerize`
and service.py with exit code 2 and the same one line (the store's models and the train.py command);
only the default tag trains the default model. And where a Bento's model comes from (tabserve/core/config.py)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

TRAIN = (
    ".venv/bin/python train.py --data your.csv --target COLUMN --name titanik, or import yours with: "
    ".venv/bin/python import_model.py --model FILE --sample your.csv --name titanik"
)


def store(home: Path) -> list[str]:
    """name:version of every model in the store at `home`."""
    models = home / "models"
    return (
        sorted(f"{n.name}:{v.name}" for n in models.iterdir() if n.is_dir() for v in n.iterdir() if v.is_dir())
        if models.exists()
        else []
    )


def run(cmd: list[str], home: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    # Not MODEL_TAG, nor the make variables of a `make test` this runs under (make[1] trailers, -j...).
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MODEL_TAG", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")
    }
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env={**environment, "BENTOML_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def churn_home(tmp_path_factory, regression_csv):
    """A store holding only a model named "churn", trained with the documented CLI."""
    home = tmp_path_factory.mktemp("churn") / "bentoml"
    result = run(
        [
            sys.executable,
            "train.py",
            "--data",
            str(regression_csv),
            "--target",
            "price",
            "--name",
            "churn",
            "--drop",
            "id",
            "--model",
            "hgb",
        ],
        home,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [tag.split(":")[0] for tag in store(home)] == ["churn"]
    return home


def expected_line(tag: str = "titanik") -> str:
    return f"error: model {tag!r} is not in the BentoML model store (it has: churn); train one with: {TRAIN}"


def test_helper_refuses_a_missing_tag_and_trains_nothing(churn_home):
    before = store(churn_home)
    result = run([sys.executable, "-m", "tabserve.core.model_tags", "ensure", "titanik"], churn_home)
    assert result.returncode == 2 and result.stdout == ""
    assert lines(result.stderr) == [expected_line()]
    assert store(churn_home) == before  # no penguins, nothing new


def test_helper_passes_a_present_tag(churn_home):
    result = run([sys.executable, "-m", "tabserve.core.model_tags", "ensure", "churn"], churn_home)
    assert result.returncode == 0 and result.stdout == result.stderr == ""


@pytest.mark.parametrize("target", [pytest.param("serve", marks=pytest.mark.served), "build", "containerize"])
def test_make_stops_on_a_missing_tag(churn_home, tmp_path, target):
    before = store(churn_home)
    # -o: never (re)install the venv here; CONTAINER_ROOT: keep the container scripts' storage out of the tree.
    result = run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", target, "MODEL_TAG=titanik"],
        churn_home,
        CONTAINER_ROOT=str(tmp_path / "containers"),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [
        line for line in lines(result.stderr) if not re.match(r"make(\[\d+\])?: \*\*\*", line)
    ]  # make's own trailer
    assert errors == [expected_line()]
    assert "bentoml serve" not in result.stdout and "bentoml build" not in result.stdout
    assert store(churn_home) == before
    assert not list((churn_home / "bentos").glob("*/*"))  # no Bento built


@pytest.mark.served
def test_service_start_gives_the_same_line(churn_home):
    result = run(
        [str(Path(sys.executable).parent / "bentoml"), "serve", "--port", "0"], churn_home, MODEL_TAG="titanik"
    )
    assert result.returncode != 0
    assert lines(result.stdout + result.stderr) == [expected_line()]


def test_default_tag_missing_trains_the_default_model(tmp_path):
    home = tmp_path / "bentoml"
    result = run([sys.executable, "-m", "tabserve.core.model_tags", "ensure", "penguins:latest"], home, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [tag.split(":")[0] for tag in store(home)] == ["penguins"]
    again = run([sys.executable, "-m", "tabserve.core.model_tags", "ensure", "penguins"], home)
    assert again.returncode == 0 and len(store(home)) == 1  # present: not trained again


def bento_layout(root: Path, manifest: dict | None) -> Path:
    """<root>/src/tabserve/core/ with this project's config.py, and <root>/bento.yaml if given."""
    package = root / "src" / "tabserve" / "core"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    shutil.copy(ROOT / "tabserve" / "core" / "config.py", package / "config.py")
    if manifest is not None:
        (root / "bento.yaml").write_text(yaml.safe_dump(manifest))
    return root / "src"


def model_tag_in(src: Path, **env: str) -> str:
    # Not MODEL_TAG, nor the make variables of a `make test` this runs under (make[1] trailers, -j...).
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MODEL_TAG", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")
    }
    result = subprocess.run(
        [sys.executable, "-c", "from tabserve.core import config; print(config.MODEL_TAG)"],
        cwd=src,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_model_tag_resolution(tmp_path):
    services = [{"name": "PredictionService", "models": []}, {"name": "ModelService", "models": [{"tag": "churn:v2"}]}]
    in_bento = bento_layout(tmp_path / "bento", {"models": [{"tag": "churn:v1"}], "services": services})
    assert model_tag_in(in_bento) == "churn:v2"  # the model ModelService packs, not an extra one
    assert model_tag_in(in_bento, MODEL_TAG="churn:v1") == "churn:v1"  # an explicit MODEL_TAG wins
    assert model_tag_in(bento_layout(tmp_path / "tree", None)) == "penguins:latest"  # no bento.yaml: the default
    assert model_tag_in(ROOT) == "penguins:latest"  # the work tree
