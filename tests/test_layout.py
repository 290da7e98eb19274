"""The architecture page (docs/architecture.md) is the real one: every module it lists exists, every module is listed,
and imports run one way (core <- training, core <- serving; serving never imports scikit-learn;
bentoml_fixes, the one home of BentoML's internals, imports neither stage)."""

import ast
import re

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "tabserve"


def architecture_block() -> str:
    """The first fenced block after the "# Architecture" heading of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("# Architecture", 1)[1]
    return section.split("```", 2)[1]


def listed_modules() -> set[str]:
    """tabserve/... paths named in the architecture tree, from its indentation."""
    paths, stack = set(), []
    for line in architecture_block().splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or not line.strip():
            continue
        depth = len(match.group(1)) // 2
        names = [n.strip().rstrip(",") for n in re.split(r",\s*", line.strip().split("  ")[0])]
        stack = stack[:depth]
        for name in names:
            if name.endswith("/"):
                stack.append(name.rstrip("/"))
            elif name.endswith(".py") and stack and stack[0] == "tabserve":
                paths.add("/".join([*stack, name]))
    return paths


def test_every_module_is_listed_and_every_listed_module_exists():
    actual = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    listed = listed_modules()
    assert listed, "no tabserve/ modules found in the architecture block of docs/architecture.md"
    assert sorted(listed - actual) == [], "listed in docs/architecture.md but missing"
    assert sorted(actual - listed) == [], "in tabserve/ but not in docs/architecture.md"


def imports_of(path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # from tabserve import serving
    return found


@pytest.mark.parametrize(
    "stage, forbidden",
    [
        # bentoml_fixes is the one home of BentoML's internals: core's store uses it for the atomic save.
        ("core", ("tabserve.training", "tabserve.serving", "tabserve.scoring", "tabserve.importing")),
        # models/ is below the stages: core's store loads runtimes through it, every stage may use it.
        ("models", ("tabserve.training", "tabserve.serving", "tabserve.scoring", "tabserve.importing")),
        ("importing", ("tabserve.training", "tabserve.serving", "tabserve.scoring")),
        ("training", ("tabserve.serving", "tabserve.scoring", "tabserve.importing")),
        ("scoring", ("tabserve.training", "tabserve.serving", "tabserve.importing")),
        ("serving", ("tabserve.training", "tabserve.scoring", "tabserve.importing", "sklearn")),
        ("bentoml_fixes", ("tabserve.training", "tabserve.serving")),
    ],
)
def test_imports_run_one_way(stage, forbidden):
    files = [PACKAGE / "bentoml_fixes.py"] if stage == "bentoml_fixes" else (PACKAGE / stage).rglob("*.py")
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imports_of(path) if m.startswith(forbidden)) for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles_in_the_package():
    """Modules import each other one way, so each can be read (and tested) after what it uses."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {m for m in imports_of(path) if m in modules and m != name and not name.startswith(m + ".")}
        for name, path in modules.items()
    }
    cycles, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    assert cycles == []
