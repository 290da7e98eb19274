"""Model versions in the BentoML model store: the fitted pipeline file plus the model card
(tabserve/core/card.py) as the version's metadata. Saved atomically, verified at start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml

from tabserve import bentoml_fixes
from tabserve.core.card import ModelCard
from tabserve.core.data import sha256_of
from tabserve.core.errors import ModelCorrupted, ModelNotFound

if (
    TYPE_CHECKING
):  # scikit-learn is imported when a pipeline is loaded, not by `bentoml serve`'s arbiter (~1.6 s of its cold start)
    from sklearn.pipeline import Pipeline

PIPELINE_FILE = "pipeline.joblib"
REPORT_FILE = "report.html"  # train.py's training report, kept with the version (so a Bento carries it)
IMPORTED_DIR = "imported"  # an imported model's file (or MLflow directory), under its own name

# Saving needs BentoML's internals (bentoml_fixes.atomic_model_version): stop at start, not after fitting.
bentoml_fixes.require_checked_bentoml()


def save(
    name: str,
    pipeline: Pipeline,
    labels: dict[str, str],
    card: ModelCard,
    report: Callable[[str], str] | None = None,
) -> bentoml.Model:
    """Save one model version, atomically: the store holds all of it or none of it.

    `bentoml.models.create` alone is not enough: BentoML copies a new version into the store file by
    file, and a SIGINT/SIGTERM during that copy leaves a partial version that `bentoml.models.list()`
    shows (tabserve/bentoml_fixes.py, touchpoint 4).
    """
    with bentoml_fixes.atomic_model_version(name, labels=labels, metadata=card.to_metadata()) as model:
        import joblib

        joblib.dump(pipeline, model.path_of(PIPELINE_FILE))
        # A checksum in the card lets the service refuse a damaged file at start, with a clear line.
        model.info.metadata["pipeline_sha256"] = sha256_of(Path(model.path_of(PIPELINE_FILE)))
        if report is not None:  # the page names the version's tag, known only now
            Path(model.path_of(REPORT_FILE)).write_text(report(str(model.tag)), encoding="utf-8")
    return bentoml.models.get(model.tag)


def save_imported(name: str, artifact: Path, labels: dict[str, str], card: ModelCard) -> bentoml.Model:
    """Save a model from elsewhere (import_model.py) as a version, atomically: its file or MLflow directory as
    it came, and the card, whose source names the file and its checksum."""
    import shutil

    artifact = Path(artifact)
    relative = f"{IMPORTED_DIR}/{artifact.name}"
    with bentoml_fixes.atomic_model_version(name, labels=labels, metadata=card.to_metadata()) as model:
        target = Path(model.path_of(relative))
        target.parent.mkdir(parents=True, exist_ok=True)
        if artifact.is_dir():
            shutil.copytree(artifact, target)
        else:
            shutil.copyfile(artifact, target)
        model.info.metadata["source"] = {**card.source, "file": relative, "sha256": checksum(target)}
    return bentoml.models.get(model.tag)


def checksum(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (their relative paths and contents, in order)."""
    if not path.is_dir():
        return sha256_of(path)
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + sha256_of(file).encode())
    return digest.hexdigest()


def _artifact(model: bentoml.Model) -> tuple[Path, str | None, str]:
    """(the model's file in the store, its recorded checksum, what to retrain or re-import with)."""
    source = model.info.metadata.get("source")
    if source:
        return Path(model.path_of(source["file"])), source.get("sha256"), "import it again with import_model.py"
    return Path(model.path_of(PIPELINE_FILE)), model.info.metadata.get("pipeline_sha256"), "retrain with `make train`"


def verify(model: bentoml.Model) -> None:
    """Raise ModelCorrupted unless the model's file is there and matches its recorded checksum, and the
    library that loads it is installed."""
    if "feature_schema" not in model.info.metadata:
        raise ModelCorrupted(
            f"model {model.tag} has no feature schema yet; import it with: .venv/bin/python import_model.py "
            f"--model bentoml:{model.tag} --sample your.csv"
        )
    path, expected, fix = _artifact(model)
    name = path.name
    if not path.exists():
        raise ModelCorrupted(f"model {model.tag} has no {name}; {fix}")
    if expected and checksum(path) != expected:
        raise ModelCorrupted(f"model {model.tag} is damaged ({name} does not match its checksum); {fix}")
    missing = [r for r in (model.info.metadata.get("source") or {}).get("requirements", []) if not _installed(r)]
    if missing:
        raise ModelCorrupted(
            f"model {model.tag} needs {', '.join(missing)}, which is not installed here: "
            f"pip install {' '.join(missing)} (a Bento built with `make build` installs it)"
        )


def _installed(requirement: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(requirement.split("==")[0].replace("-", "_")) is not None


def load_pipeline(model: bentoml.Model) -> Pipeline:
    import joblib  # here, not at import: `bentoml serve`'s arbiter never loads a pipeline

    return joblib.load(model.path_of(PIPELINE_FILE))


_warned: set[str] = set()


def load_runtime(model: bentoml.Model) -> Any:
    """A stored version's runtime (tabserve/models/): train.py's pipeline, or a model imported from elsewhere.
    Warns once per version when its library's version differs from the one it was imported with."""
    card = ModelCard.from_model(model)
    if not card.source:
        from tabserve.models.trained import TrainedPipeline

        return TrainedPipeline(load_pipeline(model), card.schema, card.classes)
    import importlib.metadata
    import logging

    from tabserve.models import formats

    source = card.source
    library, saved = source.get("library", ""), source.get("library_version", "")
    try:
        installed = importlib.metadata.version(library) if library else ""
    except importlib.metadata.PackageNotFoundError:
        installed = ""
    if saved and installed and saved != installed and card.tag not in _warned:
        _warned.add(card.tag)
        logging.getLogger("tabserve").warning(
            "model %s was imported with %s %s and is loaded with %s %s; "
            "re-import it if its answers matter to the last digit",
            card.tag,
            library,
            saved,
            library,
            installed,
        )
    return formats.load(source, Path(model.path_of(source["file"])), card.schema, card.task, card.classes)


def served_model(tag: str) -> tuple[bentoml.models.BentoModel, ModelCard]:
    """The model version to serve (declared on the service class, so `bentoml build` packs it) and
    its card. ModelNotFound or ModelCorrupted, with one line naming the fix, when it can't be served."""
    from tabserve.core import model_tags

    problem = model_tags.missing(tag)
    if problem is not None:
        raise ModelNotFound(problem.removeprefix("error: "))
    model = bentoml.models.BentoModel(tag)
    verify(model.stored)
    return model, ModelCard.from_model(model.stored)
