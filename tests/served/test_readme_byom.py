"""The docs' "Bringing your own model" (docs/bring-your-own-model.md) runs as printed: its notebook, its import
commands (with the summary and the refusal it quotes), and the served LightGBM model answering the docs' penguin
as it says."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests

from tests.conftest import PENGUIN, ROOT, Server
from tests.docs.pages import page

pytestmark = pytest.mark.served


def section() -> str:
    return page("bring-your-own-model.md")


def fenced() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the section, in order."""
    found, kind, lines = [], None, []
    for line in section().splitlines():
        if kind is None and line.startswith("```"):
            kind, lines = line[3:], []
        elif kind is not None and line == "```":
            found.append((kind, "\n".join(lines) + "\n"))
            kind = None
        elif kind is not None:
            lines.append(line)
    return found


def blocks(kind: str) -> list[str]:
    return [text for language, text in fenced() if language == kind]


def run(command: str, cwd) -> subprocess.CompletedProcess:
    """A README line as printed, from a work folder holding the repository's data/ (the venv's python)."""
    runnable = re.sub(
        r"\.venv/bin/python( import_model\.py)?",
        lambda m: sys.executable + (f" {ROOT / 'import_model.py'}" if m.group(1) else ""),
        command,
    )
    return subprocess.run(["bash", "-c", runnable], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def work(tmp_path_factory, bentoml_home):
    folder = tmp_path_factory.mktemp("byom")
    (folder / "data").symlink_to(ROOT / "data")
    [in_store, notebook] = blocks("python")
    (folder / "in_store.py").write_text(in_store)
    (folder / "notebook.py").write_text(notebook)
    return folder


def test_a_model_saved_the_bentoml_way_is_refused_then_imported_and_served_as_printed(work, bentoml_home):
    import bentoml

    done = run(".venv/bin/python in_store.py", work)  # the README's Python, as a user runs it in the project's venv
    assert done.returncode == 0, done.stderr
    original = bentoml.models.get("mylogreg:latest")
    said = re.search(
        r"stops with `(error: model mylogreg:<version> has no feature schema yet; [^`]*)`", section()
    ).group(1)
    code, output = Server(env={"MODEL_TAG": "mylogreg", "API_WORKERS": "1"}, name="readme-cardless").wait_exit(
        timeout=60
    )
    lines = [line for line in output.splitlines() if line.strip()]
    assert code != 0 and lines == [said.replace("<version>", original.tag.version)]
    [commands, *_] = blocks("bash")
    [import_line, serve_line] = [line for line in commands.splitlines() if line.strip()]
    assert serve_line == "MODEL_TAG=mylogreg make serve"
    imported = run(import_line, work)
    assert imported.returncode == 0 and "saved model mylogreg:" in imported.stdout, imported.stderr
    with Server(env={"MODEL_TAG": "mylogreg", "API_WORKERS": "1"}, name="readme-mylogreg") as server:
        answer = requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30).json()
    assert answer["prediction"] == "Gentoo" and answer["model"] != str(original.tag)
    assert {str(m.tag) for m in bentoml.models.list("mylogreg")} >= {str(original.tag), answer["model"]}  # both listed


def test_the_commands_run_as_printed_and_print_what_the_readme_quotes(work):
    [_, commands] = blocks("bash")
    lines = [line for line in commands.splitlines() if line.strip()]
    assert lines[0] == ".venv/bin/python notebook.py" and lines[-1] == "MODEL_TAG=penguins-lgbm make serve"
    outputs = []
    for line in lines[:-1]:  # make serve: the test below serves the same tag
        done = run(line, work)
        assert done.returncode == 0 and done.stderr.count("error") == 0, f"{line}\n{done.stderr}"
        outputs.append(done.stdout)
    [quoted] = [block for block in blocks("") if block.startswith("model ")]
    printed = outputs[-1].splitlines()
    for line in quoted.splitlines():
        if line == "...":
            continue
        if "<version>" in line:
            assert any(p.startswith(line.split("<version>")[0]) for p in printed), line
        elif "sha256" in line:  # the booster file's checksum: LightGBM writes the same file from the same data
            assert line.split("...")[0] in printed[0], (line, printed[0])
        else:
            assert line in printed, f"{line!r} not in:\n{outputs[-1]}"


def test_the_refusal_is_the_quoted_line(work):
    assert (work / "penguins.skops").exists(), "the notebook runs first"
    [refusal] = [block for block in blocks("") if block.startswith("error:")]
    command = (
        ".venv/bin/python import_model.py --model penguins.skops --sample data/penguins.csv --name penguins-logreg"
    )
    done = run(command, work)
    assert done.returncode == 2 and done.stderr == refusal


def test_the_served_booster_answers_the_readme_penguin_as_printed(work):
    assert (work / "penguins-lgbm.txt").exists(), "the commands ran first"
    said = re.search(r'answers `(\{"prediction": 2, "probabilities": \{.*?\})', section()).group(1)
    expected = {k: float(v) for k, v in re.findall(r'"(\d)": ([0-9.]+)', said)}
    with Server(env={"MODEL_TAG": "penguins-lgbm", "API_WORKERS": "1"}, name="readme-byom") as server:
        answer = requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30).json()
    assert answer["prediction"] == 2 and answer["model"].startswith("penguins-lgbm:")
    assert {k: round(v, 6) for k, v in answer["probabilities"].items()} == expected
