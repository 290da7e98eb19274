"""Model versions in the BentoML model store: the fitted pipeline plus a model card in metadata.

The card is everything the service needs besides the pipeline itself (feature schema, task,
classes), so the service builds its API types from metadata without unpickling anything.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import bentoml
import joblib
from sklearn.pipeline import Pipeline

from tabserve.errors import ModelNotFoundError
from tabserve.schema import FeatureSchema

PIPELINE_FILE = "pipeline.joblib"


@dataclass(frozen=True)
class ModelCard:
    tag: str
    task: str
    target: str
    classes: list[Any] | None
    schema: FeatureSchema
    metrics: dict[str, float]
    metadata: dict[str, Any]  # everything stored, for the model card endpoint
    creation_time: str

    @classmethod
    def from_model(cls, model: bentoml.Model) -> ModelCard:
        meta = model.info.metadata
        return cls(
            tag=str(model.tag),
            task=meta["task"],
            target=meta["target"],
            classes=meta.get("classes"),
            schema=FeatureSchema.from_dict(meta["feature_schema"]),
            metrics=meta.get("metrics", {}),
            metadata=meta,
            creation_time=model.info.creation_time.isoformat(),
        )


def library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import pydantic
    import sklearn

    return {
        "python": platform.python_version(),
        "bentoml": bentoml.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
        "pydantic": pydantic.__version__,
    }


def save(name: str, pipeline: Pipeline, labels: dict[str, str], metadata: dict[str, Any]) -> bentoml.Model:
    """Save one model version. The store only sees it once the block exits cleanly."""
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        joblib.dump(pipeline, model.path_of(PIPELINE_FILE))
    return model


def get(tag: str) -> bentoml.Model:
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ModelNotFoundError(tag) from None


def load_pipeline(model: bentoml.Model) -> Pipeline:
    return joblib.load(model.path_of(PIPELINE_FILE))
