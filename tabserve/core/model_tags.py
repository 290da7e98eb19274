"""Is the model MODEL_TAG names in the BentoML store? One rule and one message for `make serve`,
`make build`, `make containerize` and service.py's start-up check.

    python -m tabserve.core.model_tags ensure [TAG]    (TAG defaults to config.MODEL_TAG)

exits 0 when the store has TAG. When it lacks it, the default model (penguins / penguins:latest) is
trained with train.py; any other tag stops with exit code 2 and one line naming the models the store
has and the train.py command that makes one. A mistyped tag never trains penguins.
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
    """None when the store has `tag`; else the one-line error saying what it has and how to train one."""
    try:
        bentoml.models.get(tag)
        return None
    except (BentoMLException, ValueError):  # not found, or not a valid tag
        pass
    names = sorted({m.tag.name for m in bentoml.models.list()})
    name = tag.split(":", 1)[0]
    train = ".venv/bin/python train.py" if name == "penguins" else f".venv/bin/python train.py --data your.csv --target COLUMN --name {name}"
    return (f"error: model {tag!r} is not in the BentoML model store (it has: {', '.join(names) or 'no models'}); "
            f"train one with: {train}")


def ensure(tag: str) -> int:
    problem = missing(tag)
    if problem is None:
        return 0
    if not is_default(tag):
        print(problem, file=sys.stderr)
        return 2
    print(f"model {tag} is not in the BentoML model store; training the default model (train.py)", file=sys.stderr)
    return subprocess.run([sys.executable, str(ROOT / "train.py")], cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "ensure" or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    tag = (argv[1] if len(argv) == 2 else "").strip() or config.MODEL_TAG
    return ensure(tag)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
