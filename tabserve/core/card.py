"""The model card: everything known about a model version besides its pipeline, kept as the
version's metadata in the BentoML store. This class is the one owner of that format: training
writes it with `to_metadata`, serving reads it with `from_model`, /v1/model shows `to_dict`.

The service builds its API types from the card alone, without unpickling anything.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field
from typing import Any

from tabserve.core.profile import Reference
from tabserve.core.schema import FeatureSchema


@dataclass(frozen=True)
class ModelCard:
    task: str
    target: str
    schema: FeatureSchema
    classes: list[Any] | None = None  # classification: the labels, in the model's order
    task_reason: str | None = None  # why this task (inferred, or --task)
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: str | None = None  # how the metrics were measured
    training_data: dict[str, Any] = field(default_factory=dict)  # file, SHA-256, rows, separator, ...
    library_versions: dict[str, str] = field(default_factory=dict)
    pipeline_sha256: str | None = None  # of the pipeline file, so a damaged one is refused at start
    # The training data's profile for drift (tabserve/core/profile.py); None for models trained before it.
    reference: Reference | None = None
    # Where a model from elsewhere came from (import_model.py): format, family, file and its SHA-256, library and
    # version, trusted types, the model's own columns and categories, what a Bento must install. Empty: train.py's.
    source: dict[str, Any] = field(default_factory=dict)
    # How train.py chose the model: the family, metric, folds, seed, the leaderboard, feature importance, and
    # what a Bento must install for it. Empty: imported, or trained before models were chosen.
    model_selection: dict[str, Any] = field(default_factory=dict)
    # Explanations (tabserve/explaining/): the method, and the mean absolute contribution per feature on held-out
    # rows (imported: the sample). Empty: this version answers explain=true with a 400 saying why.
    explanation: dict[str, Any] = field(default_factory=dict)
    tag: str = ""  # given by the store, not stored in the metadata
    creation_time: str = ""

    def to_metadata(self) -> dict[str, Any]:
        """JSON-safe metadata for the BentoML store (which can't hold None: absent keys are defaults)."""
        meta = {
            "task": self.task,
            "task_reason": self.task_reason,
            "target": self.target,
            "classes": self.classes,
            "feature_schema": self.schema.to_dict(),
            "metrics": self.metrics,
            "evaluation": self.evaluation,
            "training_data": self.training_data,
            "library_versions": self.library_versions,
            "pipeline_sha256": self.pipeline_sha256,
            "reference": self.reference.to_dict() if self.reference is not None else None,
            "source": self.source or None,
            "model_selection": _without_none(self.model_selection) or None,
            "explanation": _without_none(self.explanation) or None,
        }
        return {key: value for key, value in meta.items() if value is not None}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], tag: str = "", creation_time: str = "") -> ModelCard:
        return cls(
            task=meta["task"],
            target=meta["target"],
            schema=FeatureSchema.from_dict(meta["feature_schema"]),
            classes=meta.get("classes"),
            task_reason=meta.get("task_reason"),
            metrics=dict(meta.get("metrics", {})),
            evaluation=meta.get("evaluation"),
            training_data=dict(meta.get("training_data", {})),
            library_versions=dict(meta.get("library_versions", {})),
            pipeline_sha256=meta.get("pipeline_sha256"),
            reference=Reference.from_dict(meta["reference"]) if meta.get("reference") else None,
            source=dict(meta.get("source") or {}),
            model_selection=dict(meta.get("model_selection") or {}),
            explanation=dict(meta.get("explanation") or {}),
            tag=tag,
            creation_time=creation_time,
        )

    @classmethod
    def from_model(cls, model: Any) -> ModelCard:
        """The card of a stored model version (a bentoml.Model)."""
        return cls.from_metadata(model.info.metadata, str(model.tag), model.info.creation_time.isoformat())

    def incompatibility(self, other: ModelCard) -> str | None:
        """Why `other` cannot answer behind this version's API types (the request and answer types are built
        from a card at start), or None when it can. Columns, their kinds and the classes must match; a
        categorical feature may gain categories (the API keeps accepting this version's until a restart) but
        not lose one the API accepts. Ranges, examples and metrics may differ."""
        if other.task != self.task:
            return f"the task changed from {self.task} to {other.task}"
        if other.schema.names != self.schema.names:
            added = [n for n in other.schema.names if n not in self.schema.names]
            removed = [n for n in self.schema.names if n not in other.schema.names]
            changes = [f"added {', '.join(added)}"] * bool(added) + [f"removed {', '.join(removed)}"] * bool(removed)
            return f"the feature columns changed ({'; '.join(changes) or 'reordered'})"
        for old, new in zip(self.schema.features, other.schema.features, strict=True):  # same names, checked above
            if old.kind != new.kind:
                return f"feature {old.name!r} changed from {old.type_name} to {new.type_name}"
            lost = [c for c in old.categories or [] if c not in (new.categories or [])]
            if lost:
                return f"feature {old.name!r} lost categories the API accepts: {', '.join(map(str, lost))}"
        if sorted(map(str, self.classes or [])) != sorted(map(str, other.classes or [])):
            return f"the classes changed from {self.classes} to {other.classes}"
        return None

    def to_dict(self, serving: dict[str, Any] | None = None) -> dict[str, Any]:
        """The card as /v1/model shows it."""
        return {
            "tag": self.tag,
            "created": self.creation_time,
            "task": self.task,
            "task_reason": self.task_reason,
            "target": self.target,
            "classes": self.classes,
            "metrics": self.metrics,
            "evaluation": self.evaluation,
            "training_data": self.training_data,
            "library_versions": self.library_versions,
            **(
                {"source": {k: v for k, v in self.source.items() if k not in ("columns", "categories")}}
                if self.source
                else {}
            ),
            **({"model_selection": self.model_selection} if self.model_selection else {}),
            "explanation": self.explanation or None,
            "features": [feature_dict(f) for f in self.schema.features],
            "other_columns": self.schema.other_columns,
            "drift_reference": self.reference_summary(),
            **({"serving": serving} if serving is not None else {}),
        }

    @property
    def has_probabilities(self) -> bool:
        """A classifier that answers class probabilities (an imported one may answer labels only)."""
        return self.task == "classification" and bool(self.classes) and not self.source.get("labels_only")

    @property
    def imported(self) -> bool:
        return bool(self.source)

    @property
    def family(self) -> str:
        """The model family: train.py's choice, or an imported model's."""
        return str(self.model_selection.get("model") or self.source.get("family") or "hgb")

    @property
    def requirements(self) -> list[str]:
        """The pip requirements its runtime needs beyond requirements.txt (a Bento packing it installs them)."""
        return list(self.source.get("requirements", [])) + list(self.model_selection.get("requirements", []))

    @property
    def system_packages(self) -> list[str]:
        return list(self.source.get("system_packages", [])) + list(self.model_selection.get("system_packages", []))

    def reference_summary(self) -> dict[str, Any] | None:
        """What the drift reference covers (GET /v1/drift compares live traffic with it); None without one."""
        if self.reference is None:
            return None
        return {
            "rows": self.reference.rows,
            "prediction_rows": self.reference.prediction_rows,
            "features": list(self.reference.features),
            "not_profiled": dict(self.reference.not_profiled),
            "predictions": (
                "on the import sample"
                if self.source
                else "out-of-fold, from cross-validation"
                if self.model_selection
                else "on the held-out split"
            )
            if self.reference.prediction is not None
            else None,
        }


def _without_none(value: Any) -> Any:
    """The store's metadata holds no None: such keys are left out (and read back as absent)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def feature_dict(feature: Any) -> dict[str, Any]:
    """One feature as the API shows it (/v1/model, /v1/features)."""
    return {
        "name": feature.name,
        "type": feature.type_name,
        "categories": feature.categories,
        "nullable": feature.nullable,
        "min": feature.min if feature.min is not None else feature.first,
        "max": feature.max if feature.max is not None else feature.last,
        "integer": feature.integer,
        "description": feature.description,
        "example": feature.example,
        "inferred_because": feature.reason,
        **({"other": feature.other} if feature.open else {}),  # any other value is answered as this level
        **({"written_as": feature.number_text["example"]} if (feature.number_text or {}).get("example") else {}),
    }


def library_versions(extra: str | None = None) -> dict[str, str]:
    """The versions of the libraries a model was made with (and `extra`'s, e.g. lightgbm)."""
    import bentoml
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
        **({extra: importlib.metadata.version(extra)} if extra else {}),
    }
