"""The documentation site (mkdocs.yml, docs/) builds strictly, its configuration page is the code's settings,
its navigation is every page, and every shell command the README and the pages print is run by a test.

No server starts here: the tests that run the commands are named below (tests/served/test_readme.py and
the others select the lines they run by prefix), and a command they do not pick up must be listed with the
test or CI step that runs it, or with the reason none does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.docs.pages import DOCS, ROOT, page, page_names
from tests.served.test_consumers import README_EXAMPLE


def build(config: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(out)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strictly(site):
    built = {str(p.relative_to(site)) for p in site.rglob("index.html")}
    assert built == {"index.html"} | {f"{name[:-3]}/index.html" for name in page_names() if name != "index.md"}
    assert not (site / "hooks.py").exists()  # the hook is not published


def test_strict_mode_refuses_a_broken_link_a_broken_anchor_and_a_page_left_out(tmp_path):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    with (tmp_path / "docs" / "api.md").open("a") as api:
        api.write("\n[gone](no-such-page.md) and [nowhere](errors.md#no-such-heading)\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the navigation\n")
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "no-such-page.md" in output and "no-such-heading" in output and "orphan.md" in output, output


def test_make_docs_builds_the_site(tmp_path):
    # -o: never (re)install the venv here.
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "docs", f"SITE_DIR={tmp_path / 'site'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def test_the_configuration_page_is_every_setting_the_code_declares(site):
    from tabserve.core.config import SETTINGS
    from tabserve.serving.settings import settings_markdown

    settings_markdown()  # imports every module that declares settings
    names = [setting.name for setting in SETTINGS]
    html = (site / "configuration" / "index.html").read_text()
    assert len(names) >= 40 and "MODEL_TAG" in names
    assert [name for name in names if f"<code>{name}</code>" not in html] == []
    assert "settings --" not in html  # the marker was replaced
    # No hand-written table of variables beside the generated one.
    assert [line for line in page("configuration.md").splitlines() if line.startswith("|")] == []


def nav_pages(nav) -> list[str]:
    """The pages a mkdocs.yml `nav` names, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return [p for item in nav for p in nav_pages(item)]


def test_the_navigation_is_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page listed twice"
    assert sorted(listed) == page_names()
    assert [name for name in listed if not (DOCS / name).is_file()] == []


def test_the_readme_is_a_short_front_door_whose_links_work():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 200 and max(len(line) for line in lines) <= 400
    for command in ("make serve", "make test", "make docs", "make lint"):
        assert f"\n{command} " in text, command
    links = re.findall(r"\]\((docs/[^)#\s]*)", text)
    assert len(links) >= 15 and [link for link in links if not (ROOT / link).exists()] == []


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def test_no_page_has_a_wall_of_text():
    """Prose lines (commands and their output aside) stay under 400 characters: split, listed or tabled."""
    long = {name: [line[:60] for line in prose_lines(page(name)) if len(line) > 400] for name in page_names()}
    assert {name: lines for name, lines in long.items() if lines} == {}


# Which test runs each command the docs print. tests/served/test_readme.py reads the README and every page but
# bring-your-own-model.md, which tests/served/test_readme_byom.py runs block by block (its notebook, both import
# blocks, the two `make serve` lines it serves as servers of the same tag: any other line there breaks it).
BYOM = "bring-your-own-model.md"
SELECTED = {  # what the runner tests select from the docs and run as printed (a regex matching the whole line)
    r"curl .*": "tests/served/test_readme.py",  # each with the status and answer check() expects
    r"\.venv/bin/python train\.py --data tests/data/.*": "tests/served/test_readme.py",
    r"\.venv/bin/python train\.py": "tests/served/test_readme.py",  # the versions walk-through
    r"ADMIN_KEY=\S+ MODEL_WATCH_S=\S+ make serve": "tests/served/test_readme.py",  # a server with these settings
    r"\.venv/bin/python -m tabserve\.serving\.api\.feature_table load .*": "tests/served/test_readme.py",
    r"PAYLOAD_LOG=1 .* make serve": "tests/served/test_readme.py",  # a server with these settings
    r"\.venv/bin/python -m tabserve\.serving\.observe\.drift_report .*": "tests/served/test_readme.py",
    r"\.venv/bin/python score\.py .*": "tests/scoring/test_score_readme.py",
}
EXAMPLE = {line: "tests/served/test_consumers.py" for line in README_EXAMPLE.splitlines()}  # run as one script
# Commands no runner test selects, with the test or CI step that runs them (or the same thing in another form).
ELSEWHERE = {
    "make serve": "tests/conftest.py (the `server` fixture runs its recipe's `bentoml serve "
    "service:PredictionService`); tests/bento/test_model_tags.py runs `make serve` itself",
    "make test": ".ci/run",
    "make lint": ".ci/run (before make test)",
    "make docs": "tests/docs/test_docs_site.py (test_make_docs_builds_the_site)",
    "make train": "tests/served/test_readme.py (its recipe, `.venv/bin/python train.py`)",
    "bentoml serve": "tests/bento/test_model_tags.py (plain `bentoml serve` in the project directory)",
    "bentoml build": "tests/bento/test_bento.py (`bentoml build -f` with the build file: bentofile.yaml itself for a "
    "trained model)",
    "bentoml serve prediction_service:latest": "tests/bento/test_bento.py (a built Bento served by its tag from an "
    "empty directory)",
    "MODEL_TAG=sales make serve": "tests/served/test_any_csv.py (a model trained on tests/data/european.csv, served)",
    "API_KEY=change-me make serve": "tests/served/test_readme.py (the server its keyed curl runs against)",
    ".venv/bin/python -m tabserve.serving.edge.keys add ops-team --file keys.yaml": "tests/serving/edge/"
    "test_keys_and_quotas.py (`keys add ops --file PATH`)",
    "API_KEYS_FILE=keys.yaml make serve": "tests/served/test_consumers.py (the `teams` server reads API_KEYS_FILE)",
    "make containerize": ".ci/run (`make container-test` builds with it); tests/bento/test_model_tags.py",
    "make container-test": ".ci/run",
    "MODEL_TAG=churn make container-test": ".ci/run (`MODEL_TAG=diabetes-lgbm CONTAINER_BASE=offline make "
    "container-test`)",
    "make container-deps": ".ci/run",
}
# Commands shown that no test runs, and why.
NOT_RUN = {
    ". .venv/bin/activate": "puts .venv/bin on PATH for the bentoml commands after it",
    "make container-test KEEP_IMAGES=1": ".ci/run runs `make container-test`, which removes the image afterwards",
    "make container-push PUSH_TO=registry.example.com/ml-platform/tabserve:1.0": "no registry is reachable here",
    'kubectl create secret generic tabserve-api-key --from-literal=api-key="$(openssl rand -hex 32)"': "no cluster "
    "here; tests/deploy/ validates the manifests offline",
    "kubectl apply -k deploy/k8s": "no cluster here; tests/deploy/ validates the manifests offline",
    "kubectl rollout status deployment/tabserve": "no cluster here",
}


def shell_commands() -> list[tuple[str, str]]:
    """(source, command) for every line of a ```bash, ```sh or ```console block of the README and the pages,
    comments dropped."""
    found = []
    for name in ["README.md", *page_names()]:
        text = (ROOT / name).read_text() if name == "README.md" else page(name)
        language = None
        for line in text.splitlines():
            if language is None and line.startswith("```"):
                language = line[3:].strip()
            elif language is not None and line.strip() == "```":
                language = None
            elif language in ("bash", "sh", "shell", "console"):
                command = re.sub(r"\s+#\s.*$", "", line.strip().removeprefix("$ "))
                if command and not command.startswith("#"):
                    found.append((name, command))
    return found


def runner(source: str, command: str) -> str | None:
    if source == BYOM:
        return "tests/served/test_readme_byom.py"
    selected = [test for pattern, test in SELECTED.items() if re.fullmatch(pattern, command)]
    return next(iter(selected), None) or EXAMPLE.get(command) or ELSEWHERE.get(command)


def test_every_command_in_the_docs_is_run_by_a_test():
    commands = shell_commands()
    assert len(commands) >= 50
    unrun = sorted({f"{source}: {command}" for source, command in commands if runner(source, command) is None})
    assert [line for line in unrun if line.split(": ", 1)[1] not in NOT_RUN] == [], (
        "a command no test runs: run it in a test, or name the test in ELSEWHERE (or why none can in NOT_RUN)"
    )
    shown = {command for _, command in commands}
    assert sorted((ELSEWHERE.keys() | NOT_RUN.keys() | EXAMPLE.keys()) - shown) == [], "listed here, no longer shown"
    named = {re.split(r"[ (;]", where, maxsplit=1)[0] for where in [*SELECTED.values(), *ELSEWHERE.values()]}
    assert sorted(path for path in named if not (ROOT / path).is_file()) == []
