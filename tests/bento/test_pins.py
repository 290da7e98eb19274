"""One source of pins: requirements.txt holds the runtime pins; pyproject.toml reads it for the
virtualenv (dynamic dependencies) and bentofile.yaml packs it into the Bento (python.requirements_txt).
These tests write the Bento's requirements with BentoML's own code, without building (no model, no network).
The built Bento's locked requirements are checked in test_bento.py (test_requirements_are_locked)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import attrs
from packaging.requirements import Requirement

from tests.conftest import ROOT


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines) -> dict[str, set[str]]:
    """{name: {versions}} of `name==version` requirement lines; anything else is refused."""
    found: dict[str, set[str]] = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not pinned: {line!r}"
        found.setdefault(normalize(requirement.name), set()).add(specifiers[0].version)
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def runtime_pins() -> dict[str, str]:
    found = pins((ROOT / "requirements.txt").read_text().splitlines())
    assert all(len(versions) == 1 for versions in found.values()), found
    return {name: versions.pop() for name, versions in found.items()}


def build_config():
    """The build options `bentoml build` uses in the project directory: the first build file it finds."""
    from bentoml._internal.bento.bento import DEFAULT_BENTO_BUILD_FILES
    from bentoml._internal.bento.build_config import BentoBuildConfig

    present = [name for name in DEFAULT_BENTO_BUILD_FILES if (ROOT / name).is_file()]
    assert present[0] == "bentofile.yaml", f"bentoml build would read {present[0]}"
    return BentoBuildConfig.from_file(str(ROOT / "bentofile.yaml")).with_defaults()


def test_runtime_dependencies_are_pinned_and_installed():
    runtime = runtime_pins()
    assert {"bentoml", "scikit-learn", "pandas", "numpy", "pydantic", "joblib", "fastapi", "jinja2"} <= set(runtime)
    installed = {name: importlib.metadata.version(name) for name in runtime}
    assert installed == runtime, "the virtualenv differs from pyproject.toml: .venv/bin/pip install -e '.[dev]'"


def test_pyproject_and_the_bento_read_the_same_file():
    project = pyproject()
    assert "dependencies" not in project["project"] and project["project"]["dynamic"] == ["dependencies"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    config = build_config()
    assert (
        config.service == "service:PredictionService"
        and config.name == "prediction_service"
        and config.python.lock_packages
    )
    assert config.python.requirements_txt == "./requirements.txt" and not config.python.packages
    assert config.include == ["service.py", "tabserve/"] and "tabserve/training/" in config.exclude
    assert config.docker.python_version == "3.11"


def test_the_bentos_requirements_are_pyprojects_runtime_pins(tmp_path):
    """What `bentoml build` does with the options (bento.py: populate_image_from_build_config, then
    Image.freeze), minus the lock, which needs uv and an index: the built lock is test_bento.py's."""
    from _bentoml_sdk.images import populate_image_from_build_config
    from bentoml._internal.bento.build_config import BentoBuildConfig

    build_config()  # bentofile.yaml is the build file
    options = BentoBuildConfig.from_file(str(ROOT / "bentofile.yaml"))
    image = attrs.evolve(populate_image_from_build_config(None, options, str(ROOT)), lock_python_packages=False)
    image.freeze(tmp_path, [], None)
    written = (tmp_path / "env" / "python" / "requirements.in").read_text().splitlines()
    # BentoML also adds its own running version, which must be the pinned one.
    assert pins(written) == {name: {version} for name, version in runtime_pins().items()}, written
    assert "FROM python:3.11-slim" in (tmp_path / "env" / "docker" / "Dockerfile").read_text()
