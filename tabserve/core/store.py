"""Model versions in the BentoML model store: the fitted pipeline file plus the model card
(tabserve/core/card.py) as the version's metadata. Saved atomically, verified at start."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bentoml
import joblib
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import ModelStore
from sklearn.pipeline import Pipeline

from tabserve.core.data import sha256_of
from tabserve.core.errors import ModelCorrupted, ModelNotFound
from tabserve.core.card import ModelCard

PIPELINE_FILE = "pipeline.joblib"


def save(name: str, pipeline: Pipeline, labels: dict[str, str], card: ModelCard) -> bentoml.Model:
    """Save one model version, atomically: the store holds all of it or none of it.

    BentoML copies a new version into the store file by file, so an interrupted save would leave
    a partial version behind. Here the version is written to a staging store beside the real one
    (same filesystem) and published with one rename; "latest" moves after that.
    """
    store = BentoMLContainer.model_store.get()
    root = Path(store._path)  # BentoML has no public accessor for the store folder
    staging_root = root.parent / ".tabserve-staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=staging_root))
    try:
        with bentoml.models.create(name, labels=labels, metadata=card.to_metadata(), _model_store=ModelStore(staging)) as model:
            joblib.dump(pipeline, model.path_of(PIPELINE_FILE))
            # A checksum in the card lets the service refuse a damaged file at start, with a clear line.
            model.info.metadata["pipeline_sha256"] = sha256_of(Path(model.path_of(PIPELINE_FILE)))
        tag = model.tag
        final = root / tag.name / tag.version
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging / tag.name / tag.version, final)  # the one step that publishes the version
        latest = final.parent / f".latest-{tag.version}"
        latest.write_text(tag.version)
        os.replace(latest, final.parent / "latest")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return bentoml.models.get(tag)


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
