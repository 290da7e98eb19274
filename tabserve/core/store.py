"""Model versions in the BentoML model store: the fitted pipeline file plus the model card
(tabserve/core/card.py) as the version's metadata. Saved atomically, verified at start."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import bentoml

from tabserve import bentoml_fixes
from tabserve.core.data import sha256_of
from tabserve.core.errors import ModelCorrupted, ModelNotFound
from tabserve.core.card import ModelCard

if TYPE_CHECKING:  # scikit-learn is imported when a pipeline is loaded, not by `bentoml serve`'s arbiter (~1.6 s of its cold start)
    from sklearn.pipeline import Pipeline

PIPELINE_FILE = "pipeline.joblib"

# Saving needs BentoML's internals (bentoml_fixes.atomic_model_version): stop at start, not after fitting.
bentoml_fixes.require_checked_bentoml()


def save(name: str, pipeline: Pipeline, labels: dict[str, str], card: ModelCard) -> bentoml.Model:
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
    return bentoml.models.get(model.tag)


def verify(model: bentoml.Model) -> None:
    """Raise ModelCorrupted unless the pipeline file is there and matches its recorded checksum."""
    path = Path(model.path_of(PIPELINE_FILE))
    expected = model.info.metadata.get("pipeline_sha256")
    if "feature_schema" not in model.info.metadata:
        raise ModelCorrupted(f"model {model.tag} was not saved by train.py (no feature schema in its metadata); retrain with `make train`")
    if not path.is_file():
        raise ModelCorrupted(f"model {model.tag} has no {PIPELINE_FILE}; retrain with `make train`")
    if expected and sha256_of(path) != expected:
        raise ModelCorrupted(f"model {model.tag} is damaged ({PIPELINE_FILE} does not match its checksum); retrain with `make train`")


def load_pipeline(model: bentoml.Model) -> Pipeline:
    import joblib  # here, not at import: `bentoml serve`'s arbiter never loads a pipeline

    return joblib.load(model.path_of(PIPELINE_FILE))


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
