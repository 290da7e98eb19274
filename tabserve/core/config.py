"""Settings from the environment: the registry every setting is declared in, and the settings both stages need.

Each setting is declared once, with its default and meaning, through `integer`, `decimal`, `text` or
`external`; the declaration reads the environment and records itself in SETTINGS, from which the docs'
configuration page is generated (tabserve/serving/settings.py `settings_markdown`, docs/hooks.py). What only
the server reads lives in tabserve/serving/settings.py, so a bad serving setting (say REDIS_URL) never stops
train.py or score.py.
Values are read when a module imports this one, so set them before `bentoml serve`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    """One environment variable as the docs show it."""

    name: str
    default: str  # as a person reads it, e.g. "`60`" or "one per core"
    meaning: str
    section: str


SETTINGS: list[Setting] = []
SECTIONS = ("Models", "Layout and batching", "Limits", "Keys and CORS", "Cache", "Features by entity id",
            "Drift", "Payload log", "BentoML and the machine")  # fmt: skip


def declare(name: str, default: str, meaning: str, section: str) -> None:
    if section not in SECTIONS:
        raise ValueError(f"unknown settings section {section!r}")
    SETTINGS[:] = [s for s in SETTINGS if s.name != name]  # a module re-imported in a test declares again
    SETTINGS.append(Setting(name, default, meaning, section))


def raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def integer(name: str, default: int, meaning: str, section: str, minimum: int = 0, shown: str = "") -> int:
    """An integer setting; a bad value stops the process with one line naming the variable."""
    declare(name, shown or f"`{default}`", meaning, section)
    value_text = raw(name)
    if not value_text:
        return default
    try:
        value = int(value_text)
    except ValueError:
        raise SystemExit(f"error: {name}={value_text!r} is not an integer") from None
    if value < minimum:
        raise SystemExit(f"error: {name}={value} must be at least {minimum}")
    return value


def decimal(name: str, default: float, meaning: str, section: str, minimum: float = 0.0) -> float:
    """A decimal setting; a bad value stops the process with one line naming the variable."""
    declare(name, f"`{default:g}`", meaning, section)
    value_text = raw(name)
    if not value_text:
        return default
    try:
        value = float(value_text)
    except ValueError:
        raise SystemExit(f"error: {name}={value_text!r} is not a number") from None
    if not value >= minimum or value == float("inf"):
        raise SystemExit(f"error: {name}={value_text} must be a finite number of at least {minimum:g}")
    return value


def text(name: str, default: str, meaning: str, section: str, shown: str = "", strip: bool = True) -> str:
    declare(name, shown or (f"`{default}`" if default else "unset"), meaning, section)
    value = os.environ.get(name, "")
    return (value.strip() if strip else value) or default


def names(name: str, meaning: str, section: str, fallback: str = "", shown: str = "unset") -> list[str]:
    """A comma-separated list setting."""
    declare(name, shown, meaning, section)
    return [item.strip() for item in (raw(name) or fallback).split(",") if item.strip()]


def external(name: str, default: str, meaning: str, section: str = "BentoML and the machine") -> None:
    """A variable read by a library rather than by us, documented beside ours."""
    declare(name, default, meaning, section)


def escaped(cell: str) -> str:
    return cell.replace("|", "\\|")


# Where this file is: inside a built Bento, <bento>/src/tabserve/core/config.py.
THIS_FILE = Path(__file__).resolve()


def packed_model_tag(here: Path = THIS_FILE) -> str | None:
    """The model a built Bento packs for ModelService, when this code runs from one; else None.

    `bentoml build` imports service.py, whose ModelService declares `model = BentoModel(MODEL_TAG)`,
    and records that model, resolved to its version, in bento.yaml. A built Bento is laid out as
    <bento>/bento.yaml beside <bento>/src/tabserve/core/config.py (also inside its container image), so
    a Bento serves the model it was built with even where no MODEL_TAG is set.
    """
    src = next((p for p in here.parents if p.name == "src" and (p.parent / "bento.yaml").is_file()), None)
    if src is None:
        return None  # a work tree, not a Bento
    manifest = src.parent / "bento.yaml"
    import yaml  # PyYAML comes with bentoml

    info = yaml.safe_load(manifest.read_text()) or {}
    for service in info.get("services") or []:  # the model service's first model, or the monolith's
        if service.get("models"):
            return str(service["models"][0]["tag"])
    return None


def packed_role(role: str, here: Path = THIS_FILE) -> str:
    """A role's model tags ("model", "challenger", "extra_models") as a built Bento records them: the entry
    service's labels (service.py), which bento.yaml keeps in its top-level `labels`; "" in a work tree."""
    src = next((p for p in here.parents if p.name == "src" and (p.parent / "bento.yaml").is_file()), None)
    if src is None:
        return ""
    import yaml

    info = yaml.safe_load((src.parent / "bento.yaml").read_text()) or {}
    return str((info.get("labels") or {}).get(role) or "")


# Which model version is served: "name:version", or "name" / "name:latest" for the newest.
# An explicit MODEL_TAG wins; else a built Bento serves the model it packs; else the default.
DEFAULT_MODEL_TAG = "penguins:latest"
MODEL_TAG: str = text(
    "MODEL_TAG", "", shown="`penguins:latest`; in a built Bento or its image, the model it packs", section="Models",
    meaning="the model version served (`name`, `name:latest` or `name:version`); at `bentoml build` / `make build` /"
    " `make containerize`, the one model the Bento packs. A tag missing from the store stops with exit 2 and one"
    " line; only the default is trained by `make`",
) or packed_role("model") or packed_model_tag() or DEFAULT_MODEL_TAG  # fmt: skip

# Model versions held beside the champion (MODEL_TAG): a challenger, scored in the shadow of every champion
# prediction (off the answer's path) and compared on /metrics and GET /v1/models/{version}/comparison, and
# other versions only answered on /v1/models/{version}/predict. In a built Bento, the versions it packs, in
# the roles it was built with.
CHALLENGER_TAG: str = text(
    "CHALLENGER_TAG", "", shown="unset; in a built Bento, the one it packs", section="Models",
    meaning="a version scored in the champion's shadow and compared (`/v1/models/challenger/comparison`);"
    " it must have the champion's columns",
) or packed_role("challenger")  # fmt: skip
EXTRA_MODEL_TAGS: list[str] = names(
    "EXTRA_MODEL_TAGS", shown="unset; in a built Bento, those it packs", section="Models",
    meaning="more versions held (comma-separated), answered on `/v1/models/{version}/predict`",
    fallback=packed_role("extra_models"),
)  # fmt: skip
