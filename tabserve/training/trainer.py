"""From a CSV to a model version in the store: read, infer schema and task, choose and measure the model by
cross-validation, refit it on every labelled row, save it with its card and its training report.

The feature schema comes from every row (a category or a missing value seen only in unlabelled
rows is still part of the API, so the file can be scored as it is); the model learns from the
rows that have a target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd

from tabserve.core import data, pipeline, store
from tabserve.core.card import ModelCard, library_versions
from tabserve.core.cli import column_lines, how_read
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
from tabserve.training import candidates, fit
from tabserve.training import selection as selection_module


@dataclass(frozen=True)
class TrainingResult:
    model: bentoml.Model
    task: str
    task_reason: str
    schema: FeatureSchema
    metrics: dict[str, float]  # the chosen model's cross-validated means
    labelled_rows: int
    unlabelled_rows: int
    sep: str
    decimal: str
    columns: list[str]  # the file's feature-side columns, in file order (the target left out)
    selection: dict[str, Any]  # the card's model_selection: choice, metric, folds, seed, leaderboard
    data_lines: list[str]  # the data summary, as train.py prints it and the report shows it
    report: Path  # the training report in the store (the model version's report.html)
    rare_classes: dict = field(default_factory=dict)  # {label: rows} trained on in every fold, never scored
    encoding: str = "utf-8"  # the codec the file was read with (data.Table.encoding; "xlsx" for a workbook)
    sheet: str | None = None  # the worksheet read, for a workbook


def training_reference(schema: FeatureSchema, typed: pd.DataFrame, predictions, classes) -> Reference:
    """The drift reference (tabserve/core/profile.py): every feature over the labelled rows, and the chosen
    model's out-of-fold predictions (each row predicted by a fold model that never saw it)."""
    return build_reference(schema, typed, predictions, classes)


@dataclass(frozen=True)
class Choices:
    """How to choose the model (train.py's options)."""

    model: str = "auto"
    metric: str | None = None  # default: the task's first (log loss; RMSE)
    seed: int = fit.SEED
    time_budget: float = selection_module.DEFAULT_BUDGET_S
    cv_time: str | None = None
    class_weight: str | None = None

    def check(self, task: str) -> tuple[list, fit.Metric]:
        """The families to try and the metric, or DataError naming what does not fit."""
        families = candidates.chosen(self.model)
        metrics = fit.task_metrics(task)
        if self.metric is not None and self.metric not in metrics:
            if self.metric in fit.METRIC_CHOICES:
                raise DataError(f"--metric {self.metric} does not measure {task}; use one of: {', '.join(metrics)}")
            raise DataError(f"--metric {self.metric!r} is unknown; use one of: {', '.join(fit.METRIC_CHOICES)}")
        if self.class_weight not in (None, "balanced"):
            raise DataError(f"--class-weight {self.class_weight!r} is unknown; use: balanced")
        if self.class_weight and task != pipeline.CLASSIFICATION:
            raise DataError("--class-weight balanced weighs classes: it applies to classification, not regression")
        if not self.time_budget > 0:
            raise DataError(f"--time-budget {self.time_budget:g} must be more than 0 seconds")
        return families, metrics[self.metric or next(iter(metrics))]


DEFAULT_CHOICES = Choices()


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
    choices: Choices = DEFAULT_CHOICES,
    progress_stream=None,
) -> TrainingResult:
    """Choose, fit and save a model. Raises DataError (and writes nothing) when the data can't be used."""
    path = Path(path)
    name = check_name(name or default_name(path))
    if task is not None and task not in pipeline.TASKS:
        raise DataError(f"task {task!r} is unknown; use one of: {', '.join(pipeline.TASKS)}")
    if choices.model not in candidates.CHOICES:  # before reading the file: a typo costs nothing
        candidates.chosen(choices.model)

    training = data.load_training_data(path, target, sep, decimal, encoding, sheet)
    table = training.table
    overrides.check(list(table.raw.columns), target)
    schema = infer_schema(table.raw.drop(columns=[target]), overrides, table.decimal, table.sep)
    labelled_mask = ~table.raw[target].isin(MISSING_MARKERS)
    target_values, task, task_reason = infer_target(
        table.raw.loc[labelled_mask, target].reset_index(drop=True), task, table.decimal
    )
    families, metric = choices.check(task)

    rows = table.raw[labelled_mask].reset_index(drop=True)
    typed = pd.DataFrame(
        {f.name: rows[f.name].map(lambda cell, f=f: f.parse_cell(cell, table.decimal)) for f in schema.features}
    )
    labelled = selection_module.Labelled.of(typed, pipeline.to_frame(typed, schema), target_values, task)
    moments = selection_module.moments_of(schema, typed, choices.cv_time) if choices.cv_time else None
    folds = selection_module.make_folds(labelled, choices.seed, choices.cv_time, moments)
    progress = selection_module.Progress(len(labelled.codes), progress_stream)
    chosen = selection_module.select(
        labelled, folds, families, metric, choices.seed, choices.class_weight, choices.time_budget, schema, progress
    )
    best = chosen.best
    progress.line(f"refitting {best.family.name} on all {len(labelled.codes)} labelled rows")
    fitted = refit(best.family, labelled, schema, choices)
    classes = labelled.classes
    if classes is not None and not best.family.encodes_labels and pipeline.class_labels(fitted) != classes:
        raise DataError(
            f"the model learned the classes {pipeline.class_labels(fitted)} of {classes}; please report this"
        )

    scored = folds.scored
    out_of_fold = best.predicted[scored]
    predictions = [classes[int(i)] for i in out_of_fold] if classes is not None else out_of_fold
    progress.line("measuring permutation importance on held-out rows")
    importance, importance_note = selection_module.permutation_importance(chosen, labelled, schema, choices.seed)
    explanation = selection_module.contribution_importance(chosen, labelled, schema, choices.seed)
    metrics = {name: value for name, value in best.entry(metric.name)["metrics"].items() if value is not None}
    evaluation = (
        f"{folds.description}: the metrics are the means over the folds' held-out rows; the saved model is "
        f"{best.family.name} refit on all {len(labelled.codes)} labelled rows"
        + (
            f"; rare classes (fewer than {fit.MIN_CLASS_ROWS} rows) trained on in every fold, not measured"
            if folds.rare
            else ""
        )
        + (
            f"; {folds.unscored} rows without a {choices.cv_time!r} date trained on, not measured"
            if choices.cv_time and folds.unscored
            else ""
        )
    )
    model_selection = {
        "model": best.family.name,
        "asked": choices.model,
        "metric": metric.name,
        "greater_is_better": metric.greater_is_better,
        "cross_validation": folds.description,
        "folds": len(folds.splits),
        "cv_time": choices.cv_time,
        "seed": choices.seed,
        "class_weight": choices.class_weight,
        "time_budget_s": choices.time_budget,
        "seconds": round(chosen.seconds, 1),
        "tie_tolerance": selection_module.TIE_TOLERANCE,
        "leaderboard": chosen.leaderboard(),
        "importance": {feature: mean for feature, (mean, _) in importance.items()},
        "importance_measured": importance_note,
        "requirements": best.family.requirements,
        "system_packages": best.family.system_packages,
        "encodes_labels": best.family.encodes_labels,
    }
    data_lines = summary_lines(
        table,
        training.source,
        target,
        task,
        task_reason,
        schema,
        encoding is not None,
        path.name,
        len(labelled.codes),
        int((~labelled_mask).sum()),
        folds.rare,
    )
    card = ModelCard(
        task=task,
        target=target,
        schema=schema,
        classes=classes,
        task_reason=task_reason,
        metrics=metrics,
        evaluation=evaluation,
        training_data={
            "file": training.source,
            "sha256": training.sha256,
            "separator": table.sep,
            "decimal": table.decimal,
            "encoding": table.encoding,
            **({"sheet": table.sheet} if table.sheet is not None else {}),
            "rows": len(labelled.codes),
            "scored_rows": len(scored),
            "unlabelled_rows": int((~labelled_mask).sum()),
            **({"rare_classes": {label_text(c): n for c, n in folds.rare.items()}} if folds.rare else {}),
        },
        library_versions=library_versions(best.family.library),
        reference=training_reference(schema, typed, predictions, classes),
        model_selection=model_selection,
        explanation=explanation,
    )

    def page(tag: str) -> str:
        from tabserve.training import report

        return report.render(
            report.ReportInputs(
                title=tag,
                task=task,
                target=target,
                classes=[label_text(c) for c in classes] if classes is not None else None,
                data_lines=data_lines,
                leaderboard=model_selection["leaderboard"],
                metric=metric.name,
                greater_is_better=metric.greater_is_better,
                evaluation=evaluation,
                y_true=labelled.codes[scored],
                predicted=out_of_fold.astype(int) if classes is not None else out_of_fold,
                probabilities=best.probabilities[scored] if classes is not None else None,
                importance=importance,
                importance_note=importance_note,
            )
        )

    progress.line("writing the training report and saving the model version")
    labels = {"task": task, "dataset": default_name(path), "family": best.family.name}
    model = store.save(name, fitted, labels=labels, card=card, report=page)
    return TrainingResult(
        model,
        task,
        task_reason,
        schema,
        metrics,
        len(labelled.codes),
        int((~labelled_mask).sum()),
        table.sep,
        table.decimal,
        [name for name in table.raw.columns if name != target],
        model_selection,
        data_lines,
        Path(model.path_of(store.REPORT_FILE)),
        folds.rare,
        encoding=table.encoding,
        sheet=table.sheet,
    )


def refit(family, labelled: selection_module.Labelled, schema: FeatureSchema, choices: Choices):
    """The chosen family fitted on every labelled row: on the labels (its classes_ are the labels), or on
    their indices for a family that takes only those (the card's classes name them)."""
    task = labelled.task
    if task == pipeline.CLASSIFICATION and not family.encodes_labels:
        target = labelled.target
    else:
        target = labelled.codes
    one_row_class = task == pipeline.CLASSIFICATION and int(np.bincount(labelled.codes).min()) < 2
    fitted = fit.build(schema, task, one_row_class, family.name, choices.seed, choices.class_weight, len(target))
    layout = fit.layout(schema, len(target))
    fitted.fit(labelled.features, target, **family.fit_params(layout, labelled.codes, choices.class_weight))
    family.for_serving(fitted[-1])
    family.remember_training(fitted, labelled.features)
    return fitted


def summary_lines(
    table, source, target, task, task_reason, schema, encoding_given, file_name, labelled, unlabelled, rare
) -> list[str]:
    """The data summary: how the file was read, the target, each column's type and why, the rows."""
    lines = [how_read(table.encoding, table.sheet, encoding_given, file_name)]
    if table.sheet is None:  # a workbook's cells have no separator, and its numbers no decimal mark
        sep = {"\t": "tab"}.get(table.sep, table.sep)
        lines.append(f"read with separator {sep!r} and decimal mark {table.decimal!r}")
    lines.append(f"target {target!r}: {task} ({task_reason})")
    lines += column_lines(schema, [name for name in table.raw.columns if name != target])
    lines.append(
        f"rows: {labelled} labelled (cross-validated, then all trained on), {unlabelled} without a target "
        "(not trained on; they can be scored)"
    )
    if rare:
        listed = ", ".join(f"{label_text(c)} ({n} row{'s' if n > 1 else ''})" for c, n in rare.items())
        lines.append(
            f"rare classes, trained on in every fold but too few rows to hold any out (not measured): {listed}"
        )
    return lines
