"""From a CSV to a model version in the store: read, infer schema and task, fit, evaluate, save.

The feature schema comes from every row (a category or a missing value seen only in unlabelled
rows is still part of the API, so the file can be scored as it is); the model learns from the
rows that have a target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bentoml
import pandas as pd

from tabserve.core import data, pipeline, store
from tabserve.core.card import ModelCard, library_versions
from tabserve.core.columns import (  # noqa: F401  (infer_target, default_name: here too, as before)
    MAX_CLASSES_FOR_NUMERIC_TARGET,
    MODEL_NAME_PATTERN,
    NO_OVERRIDES,
    Overrides,
    check_name,
    default_name,
    infer_schema,
    infer_target,
)
from tabserve.core.errors import DataError
from tabserve.core.profile import Reference, build_reference
from tabserve.core.schema import MISSING_MARKERS, FeatureSchema, label_text
from tabserve.training import fit


@dataclass(frozen=True)
class TrainingResult:
    model: bentoml.Model
    task: str
    task_reason: str
    schema: FeatureSchema
    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    unlabelled_rows: int
    sep: str
    decimal: str
    columns: list[str]  # the file's feature-side columns, in file order (the target left out)
    rare_classes: dict = field(default_factory=dict)  # {label: rows} trained on but not measured (fit.Split.rare)
    encoding: str = "utf-8"  # the codec the file was read with (data.Table.encoding; "xlsx" for a workbook)
    sheet: str | None = None  # the worksheet read, for a workbook


def training_reference(schema: FeatureSchema, typed: pd.DataFrame, fitted, x_test: pd.DataFrame, classes) -> Reference:
    """The drift reference (tabserve/core/profile.py): every feature over the labelled rows (what the model
    was fitted and evaluated on), and the model's predictions on the held-out split."""
    return build_reference(schema, typed, fitted.predict(x_test), classes)


def train(
    path: Path,
    target: str,
    task: str | None = None,
    name: str | None = None,
    overrides: Overrides = NO_OVERRIDES,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> TrainingResult:
    """Fit and save a model. Raises DataError (and writes nothing) when the data can't be used."""
    path = Path(path)
    name = check_name(name or default_name(path))
    if task is not None and task not in pipeline.TASKS:
        raise DataError(f"task {task!r} is unknown; use one of: {', '.join(pipeline.TASKS)}")

    training = data.load_training_data(path, target, sep, decimal, encoding, sheet)
    table = training.table
    overrides.check(list(table.raw.columns), target)
    schema = infer_schema(table.raw.drop(columns=[target]), overrides, table.decimal, table.sep)
    labelled = ~table.raw[target].isin(MISSING_MARKERS)
    target_values, task, task_reason = infer_target(
        table.raw.loc[labelled, target].reset_index(drop=True), task, table.decimal
    )

    rows = table.raw[labelled].reset_index(drop=True)
    typed = pd.DataFrame(
        {f.name: rows[f.name].map(lambda cell, f=f: f.parse_cell(cell, table.decimal)) for f in schema.features}
    )
    features = pipeline.to_frame(typed, schema)
    held = fit.split(features, target_values, task)
    x_train, x_test, y_train, y_test = held.x_train, held.x_test, held.y_train, held.y_test
    fitted = fit.build(schema, task, held.few_rows_class).fit(x_train, y_train)
    metrics = fit.evaluate(fitted, x_test, y_test, task)
    classes = pipeline.class_labels(fitted) if task == pipeline.CLASSIFICATION else None
    if classes is not None and len(classes) != target_values.nunique():  # never silently: every class is a class
        raise DataError(f"the model learned {len(classes)} classes of {target_values.nunique()}; please report this")

    card = ModelCard(
        task=task,
        target=target,
        schema=schema,
        classes=classes,
        task_reason=task_reason,
        metrics=metrics,
        evaluation=f"held-out {int(fit.TEST_FRACTION * 100)}% split (random_state={fit.RANDOM_STATE}); "
        "the saved pipeline is the one evaluated"
        + (f"; rare classes (fewer than {fit.MIN_CLASS_ROWS} rows) all trained on, not measured" if held.rare else ""),
        training_data={
            "file": training.source,
            "sha256": training.sha256,
            "separator": table.sep,
            "decimal": table.decimal,
            "encoding": table.encoding,
            **({"sheet": table.sheet} if table.sheet is not None else {}),
            "rows": len(features),
            "train_rows": len(x_train),
            "test_rows": len(x_test),
            "unlabelled_rows": int((~labelled).sum()),
            **({"rare_classes": {label_text(c): n for c, n in held.rare.items()}} if held.rare else {}),
        },
        library_versions=library_versions(),
        reference=training_reference(schema, typed, fitted, x_test, classes),
    )
    labels = {"task": task, "dataset": default_name(path)}
    model = store.save(name, fitted, labels=labels, card=card)
    return TrainingResult(
        model,
        task,
        task_reason,
        schema,
        metrics,
        len(x_train),
        len(x_test),
        int((~labelled).sum()),
        table.sep,
        table.decimal,
        [name for name in table.raw.columns if name != target],
        held.rare,
        encoding=table.encoding,
        sheet=table.sheet,
    )
