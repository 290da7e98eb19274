"""One Bento packing a version of each family train.py's --model can choose beyond the default (XGBoost the
champion, LightGBM the challenger, a random forest and a linear model as extra versions): the build file
tabserve.core.model_tags writes adds the pins the LightGBM and XGBoost versions' cards name, and the Bento packs
all four versions and installs both libraries."""

import os
import re
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest
import yaml

from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.training import trainer
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ROLES = {"MODEL_TAG": "xgboost", "CHALLENGER_TAG": "lightgbm", "EXTRA_MODEL_TAGS": ("forest", "linear")}


def requirement_names(lines: list[str]) -> dict[str, str]:
    """{normalized name: version} of `name==version` requirements."""
    pinned = [line.split("#")[0].strip() for line in lines if "==" in line]
    return {re.sub(r"[-_.]+", "-", p.split("==")[0].split("[")[0]).lower(): p.split("==")[1].strip() for p in pinned}


def test_one_bento_packs_a_version_of_each_family_and_installs_their_libraries(bentoml_home, tmp_path):
    tags = {}
    for family in ("xgboost", "lightgbm", "forest", "linear"):
        result = trainer.train(PENGUINS_CSV, "species", name="bento-families", choices=trainer.Choices(model=family))
        tags[family] = str(result.model.tag)
    cards = {family: ModelCard.from_model(bentoml.models.get(tag)) for family, tag in tags.items()}
    assert {f: c.model_selection["model"] for f, c in cards.items()} == {f: f for f in tags}
    assert {f: c.requirements for f, c in cards.items()} == {
        "xgboost": ["xgboost==3.2.0"],
        "lightgbm": ["lightgbm==4.7.0"],
        "forest": [],
        "linear": [],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_TAG", "CHALLENGER_TAG", "EXTRA_MODEL_TAGS")}
    env.update(
        MODEL_TAG=tags[ROLES["MODEL_TAG"]],
        CHALLENGER_TAG=tags[ROLES["CHALLENGER_TAG"]],
        EXTRA_MODEL_TAGS=",".join(tags[f] for f in ROLES["EXTRA_MODEL_TAGS"]),
    )

    # The build file `make build` gives `bentoml build -f`: bentofile.yaml plus what the packed cards need.
    helper = subprocess.run(
        [sys.executable, "-m", "tabserve.core.model_tags", "bentofile", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert helper.returncode == 0, helper.stdout + helper.stderr
    bentofile = Path(helper.stdout.strip())
    assert bentofile == tmp_path / "out" / "bentofile.yaml", helper.stdout
    held = [tags[ROLES["MODEL_TAG"]], tags[ROLES["CHALLENGER_TAG"]], *(tags[f] for f in ROLES["EXTRA_MODEL_TAGS"])]
    need = "xgboost==3.2.0, lightgbm==4.7.0, libgomp1"  # in the held versions' order: the champion's library first
    assert helper.stderr.splitlines() == [
        f"the packed models ({', '.join(held)}) need {need}: building with {bentofile}"
    ]
    options = yaml.safe_load(bentofile.read_text())
    packages = options["python"]["packages"]
    assert "lightgbm==4.7.0" in packages and "xgboost==3.2.0" in packages, packages
    assert requirement_names(packages) == {
        **requirement_names((ROOT / "requirements.txt").read_text().splitlines()),
        "lightgbm": "4.7.0",
        "xgboost": "3.2.0",
    }
    assert options["docker"]["system_packages"] == ["libgomp1"]  # LightGBM's wheel links the system's OpenMP

    built = subprocess.run(
        [str(BIN / "bentoml"), "build", "-f", str(bentofile), "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    name, version = built.stdout.strip().splitlines()[-1].replace("__tag__:", "").split(":")
    bento_dir = bentoml_home / "bentos" / name / version
    manifest = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    packed = {s["name"]: [m["tag"] for m in s["models"]] for s in manifest["services"]}
    assert sorted(packed["PredictionService"]) == sorted(tags.values()), packed
    assert manifest["labels"]["model"] == tags["xgboost"]
    python = bento_dir / "env" / "python"
    wanted = requirement_names((python / "requirements.in").read_text().splitlines())
    locked = requirement_names((python / "requirements.txt").read_text().splitlines())
    assert {p: wanted.get(p) for p in ("lightgbm", "xgboost")} == {"lightgbm": "4.7.0", "xgboost": "3.2.0"}
    assert {p: locked.get(p) for p in ("lightgbm", "xgboost")} == {"lightgbm": "4.7.0", "xgboost": "3.2.0"}
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^RUN apt-get install .* libgomp1\b", dockerfile, re.M), dockerfile
