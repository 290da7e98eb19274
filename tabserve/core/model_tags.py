"""Is the model MODEL_TAG names in the BentoML store? One rule and one message for `make serve`,
`make build`, `make containerize` and service.py's start-up check. And the build file a Bento of the
models it packs needs.

    python -m tabserve.core.model_tags ensure [TAG]    (TAG defaults to config.MODEL_TAG)
    python -m tabserve.core.model_tags bentofile DIR   the build file for `bentoml build -f`: printed

ensure exits 0 when the store has TAG. When it lacks it, the default model (penguins / penguins:latest) is
trained with train.py; any other tag stops with exit code 2 and one line naming the models the store
has and the train.py command that makes one. A mistyped tag never trains penguins.

bentofile prints the build file `make build` and `make containerize` give `bentoml build -f`. The Bento packs
MODEL_TAG, CHALLENGER_TAG and EXTRA_MODEL_TAGS (service.py's HELD_MODELS) and the models bentofile.yaml lists;
a model imported from elsewhere (import_model.py), or trained as LightGBM or XGBoost, needs its library (its
card's `requirements`, e.g. lightgbm==4.7.0) and maybe a Debian package (`system_packages`, e.g. libgomp1).
When none of them needs anything, it prints "bentofile.yaml": the project's file, unchanged, so a Bento of
scikit-learn models installs exactly requirements.txt. Else it writes DIR/bentofile.yaml: bentofile.yaml with
python.packages = requirements.txt's lines plus those pins, and docker.system_packages plus those packages,
and prints its path. (BentoML reads python.requirements_txt or python.packages, not both, and only a
requirements file inside the build context: hence the list.) `bentoml build -f FILE` keeps the current
directory as the build context, so run it from the project directory. Exit 2 with one line when a packed model
is missing or two of them need different versions of one library.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bentoml
from bentoml.exceptions import BentoMLException

from tabserve.core import config

ROOT = Path(__file__).resolve().parents[2]


def is_default(tag: str) -> bool:
    return tag.strip() in ("penguins", config.DEFAULT_MODEL_TAG)


def missing(tag: str) -> str | None:
    """None when the store has `tag`; else the one-line error saying what it has and how to train or import one."""
    try:
        bentoml.models.get(tag)
        return None
    except (BentoMLException, ValueError):  # not found, or not a valid tag
        pass
    names = sorted({m.tag.name for m in bentoml.models.list()})
    name = tag.split(":", 1)[0]
    train = (
        ".venv/bin/python train.py"
        if name == "penguins"
        else f".venv/bin/python train.py --data your.csv --target COLUMN --name {name}"
    )
    bring = (
        ""
        if name == "penguins"
        else f", or import yours with: .venv/bin/python import_model.py --model FILE --sample your.csv --name {name}"
    )
    return (
        f"error: model {tag!r} is not in the BentoML model store (it has: {', '.join(names) or 'no models'}); "
        f"train one with: {train}{bring}"
    )


def ensure(tag: str) -> int:
    problem = missing(tag)
    if problem is None:
        return 0
    if not is_default(tag):
        print(problem, file=sys.stderr)
        return 2
    print(f"model {tag} is not in the BentoML model store; training the default model (train.py)", file=sys.stderr)
    return subprocess.run([sys.executable, str(ROOT / "train.py")], cwd=ROOT).returncode


BENTOFILE = "bentofile.yaml"


def packed_tags(bentofile: Path = ROOT / BENTOFILE) -> list[str]:
    """The models a Bento built now packs: the held versions service.py declares (config, as the build reads
    it) and bentofile.yaml's `models`; each once, in that order."""
    import yaml

    listed = (yaml.safe_load(bentofile.read_text()) or {}).get("models") or []
    tags = [config.MODEL_TAG, config.CHALLENGER_TAG, *config.EXTRA_MODEL_TAGS]
    tags += [str(m["tag"] if isinstance(m, dict) else m) for m in listed]
    return list(dict.fromkeys(t.strip() for t in tags if t and t.strip()))


def _name(requirement: str) -> str:
    """The normalized project name of a requirement line: "psycopg[binary]==3.3.9" -> "psycopg"."""
    import re

    return re.sub(r"[-_.]+", "-", re.split(r"[\[=<>!~;@ ]", requirement.strip(), maxsplit=1)[0]).lower()


def _requirement_lines(path: Path) -> list[str]:
    """requirements.txt's requirements, without comments and blank lines."""
    return [line.split(" #")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


class Conflict(Exception):
    pass


def model_needs(tags: list[str]) -> tuple[list[str], list[str]]:
    """(pip requirements, Debian packages) the models need beyond requirements.txt: the union of their cards'.
    Conflict when two of them, or one of them and requirements.txt, pin one library at different versions."""
    from tabserve.core.card import ModelCard

    base = {_name(line): line for line in _requirement_lines(ROOT / "requirements.txt")}
    wanted: dict[str, tuple[str, str]] = {}  # name -> (requirement, the model that needs it)
    system: list[str] = []
    for tag in tags:
        model = bentoml.models.get(tag)
        card = ModelCard.from_model(model)
        for requirement in card.requirements:
            name = _name(requirement)
            if name in base:
                if base[name].replace(" ", "") != requirement.replace(" ", ""):
                    raise Conflict(f"model {model.tag} needs {requirement}, but requirements.txt pins {base[name]}")
                continue
            if name in wanted and wanted[name][0] != requirement:
                raise Conflict(
                    f"model {model.tag} needs {requirement} and model {wanted[name][1]} needs {wanted[name][0]}: "
                    f"one Bento installs one version; import them with the same {name}"
                )
            wanted.setdefault(name, (requirement, str(model.tag)))
        system += [p for p in card.system_packages if p not in system]
    return [requirement for requirement, _ in wanted.values()], system


def write_bentofile(
    out_dir: Path, requirements: list[str], system_packages: list[str], bentofile: Path = ROOT / BENTOFILE
) -> Path:
    """bentofile.yaml with the models' requirements and system packages added, written into out_dir."""
    import yaml

    options = yaml.safe_load(bentofile.read_text()) or {}
    python = dict(options.get("python") or {})
    listed = list(python.pop("packages", None) or [])
    if python.get("requirements_txt"):  # BentoML reads one or the other: requirements.txt's lines become the list
        listed = _requirement_lines(ROOT / python.pop("requirements_txt")) + listed
    python["packages"] = listed + [r for r in requirements if _name(r) not in {_name(p) for p in listed}]
    docker = dict(options.get("docker") or {})
    docker["system_packages"] = list(dict.fromkeys([*(docker.get("system_packages") or []), *system_packages]))
    options.update(python=python, docker=docker)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / BENTOFILE
    header = (
        f"# Generated by `python -m tabserve.core.model_tags bentofile` from {bentofile.name}: "
        "requirements.txt plus what the\n"
        f"# packed models need ({', '.join(requirements + system_packages)}). Build from the project directory.\n"
    )
    path.write_text(header + yaml.safe_dump(options, sort_keys=False))
    return path


def bentofile(out_dir: Path) -> int:
    tags = packed_tags()
    for tag in tags:
        if (problem := missing(tag)) is not None:
            print(problem, file=sys.stderr)
            return 2
    try:
        requirements, system_packages = model_needs(tags)
    except Conflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not requirements and not system_packages:
        print(BENTOFILE)  # nothing beyond requirements.txt: the project's own file, unchanged
        return 0
    path = write_bentofile(out_dir, requirements, system_packages)
    print(
        f"the packed models ({', '.join(tags)}) need {', '.join(requirements + system_packages)}: building with {path}",
        file=sys.stderr,
    )
    print(path)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["bentofile"] and len(argv) == 2:
        return bentofile(Path(argv[1]).resolve())
    if not argv or argv[0] != "ensure" or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    tag = (argv[1] if len(argv) == 2 else "").strip() or config.MODEL_TAG
    return ensure(tag)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
