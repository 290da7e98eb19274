"""From a CSV to a model version in the store: load, infer schema and task, fit, evaluate, save."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import bentoml

from tabserve import data, pipeline, store
from tabserve.errors import DataError
from tabserve.schema import FeatureSchema, is_numeric

MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


@dataclass(frozen=True)
class TrainingResult:
    model: bentoml.Model
    task: str
    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    dropped_rows: int


def default_name(path: Path) -> str:
    """A valid BentoML model name from a file name: "My Data.csv" -> "my_data"."""
    name = re.sub(r"[^a-z0-9._-]+", "_", Path(path).stem.lower()).strip("._-")
    return name or "model"


def train(path: Path, target: str, task: str | None = None, name: str | None = None, drop: list[str] | None = None) -> TrainingResult:
    """Fit and save a model. Raises DataError (and writes nothing) when the data can't be used."""
    path = Path(path)
    name = name or default_name(path)
    if not MODEL_NAME_PATTERN.match(name):
        raise DataError(f"model name {name!r} is invalid: use lowercase letters, digits, '.', '_' and '-'")
    if task is not None and task not in pipeline.TASKS:
        raise DataError(f"task {task!r} is unknown; use one of: {', '.join(pipeline.TASKS)}")

    training = data.load_training_data(path, target, drop)
    task = task or pipeline.infer_task(training.target)
    target_values = training.target
    if task == pipeline.REGRESSION:
        if not is_numeric(target_values):
            raise DataError(f"target {target!r} is not numeric, so it can't be a regression target")
        target_values = target_values.astype(float)
    elif is_numeric(target_values) and (target_values == target_values.round()).all():
        target_values = target_values.astype(int)  # 0/1 labels stay integers, not 0.0/1.0

    schema = FeatureSchema.infer(training.features)
    features = pipeline.prepare_features(training.features, schema)
    x_train, x_test, y_train, y_test = pipeline.split(features, target_values, task)
    fitted = pipeline.build(schema, task).fit(x_train, y_train)
    metrics = pipeline.evaluate(fitted, x_test, y_test, task)

    classes = None
    if task == pipeline.CLASSIFICATION:
        classes = [c.item() if hasattr(c, "item") else c for c in fitted[-1].classes_]
    metadata = {
        "task": task,
        "target": target,
        "feature_schema": schema.to_dict(),
        "metrics": metrics,
        "evaluation": f"held-out {int(pipeline.TEST_FRACTION * 100)}% split (random_state={pipeline.RANDOM_STATE}); the saved pipeline is the one evaluated",
        "training_data": {
            "file": training.source,
            "sha256": training.sha256,
            "rows": len(features),
            "train_rows": len(x_train),
            "test_rows": len(x_test),
            "rows_without_target_dropped": training.dropped_rows,
        },
        "library_versions": store.library_versions(),
    }
    if classes is not None:
        metadata["classes"] = classes
    labels = {"task": task, "dataset": default_name(path)}
    model = store.save(name, fitted, labels=labels, metadata=metadata)
    return TrainingResult(model, task, metrics, len(x_train), len(x_test), training.dropped_rows)
