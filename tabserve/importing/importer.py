"""A model file from elsewhere + a sample CSV -> a checked model version in the store.

The sample is typed exactly as train.py types a training file (tabserve/core/columns.py), so the API,
/docs.json, the form, /v2 and score.py follow from it as for a trained model; what the model itself says
(its columns, categories, input types, task and classes) wins where it says something. Nothing is saved
unless every check passes: the model answers one prediction per sample row, no NaN, probabilities that
sum to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tabserve.core import data, store
from tabserve.core.card import ModelCard, library_versions
from tabserve.core.columns import BOOLEAN_PAIRS, NO_OVERRIDES, Overrides, check_name, infer_schema, infer_target
from tabserve.core.errors import DataError
from tabserve.core.profile import build_reference
from tabserve.core.schema import CATEGORICAL, MISSING_MARKERS, NUMERIC, FeatureSchema, label_text
from tabserve.models import formats
from tabserve.models.base import CLASSIFICATION, Expectation, Runtime
from tabserve.models.sklearn import SklearnRuntime

MIN_ROWS = 10
EXPLAINED_ROWS = 1000  # rows of the sample explained for the card's global picture
NOT_USED = "not used by the model: passed through when scoring a file"
FORMAT_NAMES = {
    "skops": "skops file",
    "pickle": "pickle (trusted with --trust-pickle)",
    "lightgbm": "LightGBM booster file",
    "xgboost": "XGBoost booster file",
    "onnx": "ONNX model",
    "mlflow": "MLflow model directory",
}


@dataclass(frozen=True)
class ImportResult:
    model: Any  # the saved bentoml.Model
    card: ModelCard
    opened: formats.Opened
    columns: list[str]  # the sample's columns (the target left out), in file order
    rows: int
    labelled: int
    notes: list[str]


def import_model(
    model_path: Path | str,
    sample: Path,
    name: str | None,
    target: str | None = None,
    task: str | None = None,
    trust_pickle: bool = False,
    trust: tuple[str, ...] = (),
    overrides: Overrides = NO_OVERRIDES,
    sep: str | None = None,
    decimal: str | None = None,
    classes: tuple[str, ...] = (),
    encoding: str | None = None,
    sheet: str | None = None,
) -> ImportResult:
    """Check and save. DataError (one line, nothing saved) when anything does not agree. `model_path` may be
    "bentoml:NAME[:VERSION]", a model saved with bentoml.<framework>.save_model; `name` then defaults to its name
    (a new version beside the original, which stays as it is)."""
    in_store = str(model_path).startswith(formats.STORE_PREFIX)
    if name is None and not in_store:
        raise DataError("--name is required, unless --model names a model in the BentoML store (bentoml:NAME)")
    if name is not None:
        check_name(name)
    sample = Path(sample)
    if not sample.is_file():
        raise DataError(f"sample file {sample} does not exist")
    if in_store:
        opened = formats.open_store_model(str(model_path), trust_pickle, trust)
        name = check_name(name or opened.store_tag.split(":")[0])
    else:
        opened = formats.open_file(Path(model_path), trust_pickle, trust)
    expected = opened.expectation
    if task is not None and task != expected.task:
        raise DataError(
            f"--task {task} contradicts the model, which is a {expected.task} model ({task_reason(expected)}); "
            "leave --task out"
        )
    if classes:
        name_classes(expected, list(classes))
    table = data.read_table(sample, sep, decimal, encoding, sheet)
    raw = table.raw
    if len(raw) < MIN_ROWS:
        raise DataError(f"the sample has {len(raw)} rows; at least {MIN_ROWS} are needed to check the model on it")
    if target is not None and target not in raw.columns:
        raise DataError(f"--target {target!r} is not a column of the sample; columns are: {', '.join(raw.columns)}")
    columns = [c for c in raw.columns if c != target]
    overrides.check(list(raw.columns), target or "")
    model_columns = model_columns_of(expected, columns)
    left_out = [c for c in model_columns if c in (*overrides.drop, *overrides.id)]
    if left_out:
        raise DataError(
            f"the model needs {', '.join(left_out)}, which --drop/--id leave out; leave those options off for them"
        )
    schema, notes = sample_schema(
        raw[[c for c in columns if c in model_columns]], expected, model_columns, overrides, table
    )
    schema = FeatureSchema(
        schema.features, {**schema.other_columns, **{c: NOT_USED for c in columns if c not in model_columns}}
    )

    records = [schema.parse_row(row, table.decimal) for row in raw.to_dict("records")]
    labels_from_predict = False
    runtime = formats.runtime(
        expected.family,
        opened.model,
        schema,
        expected.task,
        expected.classes,
        model_columns,
        categories_for(expected, schema),
        False,
    )
    if isinstance(runtime, SklearnRuntime) and runtime.has_proba:
        labels_from_predict = call(lambda: runtime.argmax_disagrees(runtime.input.frame(records)), runtime, records)
        if labels_from_predict:
            runtime.labels_from_predict = True
            notes.append("the model's label is not always its most probable class: labels come from its own predict")
    predictions = call(lambda: runtime.predict_records(records), runtime, records)
    check_answers(predictions, len(records), expected.task)
    if expected.task == CLASSIFICATION and predictions[0]["probabilities"] is None:
        notes.append(
            "the model answers labels only (no predict_proba): no probabilities in the answers, the CSV or /v2"
        )

    metrics, evaluation, labelled = {}, "no --target: no metrics", 0
    if target is not None:
        metrics, labelled = sample_metrics(raw[target], predictions, expected, table.decimal)
        evaluation = (
            f"on the import sample's {labelled} labelled rows ({sample.name}); the model may have been "
            f"fitted on some of them, so these are not held-out metrics unless the sample was held out"
        )
    explanation = explanation_summary(runtime, records, predictions, notes)
    import pandas as pd

    typed = pd.DataFrame(records, columns=schema.names)
    reference = build_reference(schema, typed, [p["prediction"] for p in predictions], expected.classes)
    source = {
        "format": opened.format,
        "family": expected.family,
        "serialization": opened.serialization,
        "original_file": f"{formats.STORE_PREFIX}{opened.store_tag}" if opened.store_tag else Path(model_path).name,
        "library": expected.library,
        "library_version": expected.library_version,
        "trusted_types": opened.trusted_types,
        "trusted_pickle": opened.serialization in ("pickle", "cloudpickle"),
        "columns": model_columns,
        "categories": categories_for(expected, schema),
        "labels_from_predict": labels_from_predict,
        "requirements": opened.requirements(),
        "system_packages": opened.system_packages(),
        "labels_only": expected.task == CLASSIFICATION and predictions[0]["probabilities"] is None,
        **({"mlflow_flavour": opened.flavour, "inner": opened.inner} if opened.format == "mlflow" else {}),
        **({"bentoml_model": opened.store_tag} if opened.store_tag else {}),
    }
    card = ModelCard(
        task=expected.task,
        target=target or name,
        schema=schema,
        classes=expected.classes,
        task_reason=task_reason(expected),
        metrics=metrics,
        evaluation=evaluation,
        training_data={
            "file": sample.name,
            "sha256": data.sha256_of(sample),
            "separator": table.sep,
            "decimal": table.decimal,
            "encoding": table.encoding,
            **({"sheet": table.sheet} if table.sheet is not None else {}),
            "rows": len(records),
            "labelled_rows": labelled,
            "role": "import sample",
        },
        library_versions={**library_versions(), expected.library: expected.library_version},
        reference=reference,
        source=source,
        explanation=explanation,
    )
    labels = {"task": expected.task, "dataset": sample.stem.lower()[:60] or "sample", "source": opened.format}
    model = store.save_imported(name, opened.artifact, labels, card)
    return ImportResult(model, ModelCard.from_model(model), opened, columns, len(records), labelled, notes)


def explanation_summary(runtime: Runtime, records: list[dict], predictions: list[dict], notes: list[str]) -> dict:
    """The card's explanation summary on the sample's first EXPLAINED_ROWS rows, or {} with a note saying why
    this family has none (the service answers explain=true with the same reason)."""
    from tabserve.explaining.explainers import NotExplainable, summary

    rows = records[:EXPLAINED_ROWS]
    targets = [p["prediction"] for p in predictions[: len(rows)]] if runtime.classes is not None else [None] * len(rows)
    try:
        found = runtime.explain_records(rows, targets)
    except NotExplainable as exc:
        notes.append(f"explain=true is answered with a 400: {exc.message}")
        return {}
    return summary(runtime.__dict__["_explainer"], found, "rows of the import sample", runtime.classes is not None)


def name_classes(expected: Expectation, names: list[str]) -> None:
    """--classes: names for a booster's class indices 0..K-1, in that order (a booster keeps no labels). Said by
    the user, not guessed; refused where the model has labels of its own or another number of classes."""
    indices = list(range(len(expected.classes or [])))
    if expected.task != CLASSIFICATION or expected.family not in ("lightgbm", "xgboost") or expected.classes != indices:
        raise DataError(
            "--classes names a booster's class indices; this model has labels of its own"
            + (
                f" ({', '.join(map(label_text, expected.classes or []))})"
                if expected.classes
                else " (it is a regressor)"
            )
        )
    if len(names) != len(indices) or len(set(names)) != len(names):
        raise DataError(
            f"--classes gives {len(names)} distinct names for the model's {len(indices)} classes "
            f"(0 to {len(indices) - 1}); give one per class, in index order"
        )
    expected.classes = list(names)


def model_columns_of(expected: Expectation, columns: list[str]) -> list[str]:
    """The model's input columns, each a column of the sample (one line naming those that are not)."""
    if expected.columns is None:
        if expected.family == "onnx":  # one matrix input: the sample's columns, checked numeric below
            return list(columns)
        raise DataError(
            "the model does not name its input columns (fitted on an array, not a DataFrame); "
            "fit it on a DataFrame with the sample's column names and save it again"
        )
    missing = [c for c in expected.columns if c not in columns]
    if missing:
        raise DataError(
            f"the sample lacks columns the model needs: {', '.join(missing)} "
            f"(the model takes: {', '.join(expected.columns)})"
        )
    return list(expected.columns)


def sample_schema(
    raw: Any, expected: Expectation, model_columns: list[str], overrides: Overrides, table: data.Table
) -> tuple[FeatureSchema, list[str]]:
    """The sample typed as train.py types a file, then made to agree with what the model says it takes."""
    notes: list[str] = []
    categorical = set(overrides.categorical) | {
        c for c, k in expected.kinds.items() if k == "categorical" and c in raw.columns
    }
    for name in raw.columns:  # yes/no, y/n, t/f: pandas reads them as text, so the model saw text
        values = set(raw[name][~raw[name].isin(MISSING_MARKERS)].str.lower())
        if (
            values
            and any(values <= pair for pair in BOOLEAN_PAIRS)
            and not values <= {"true", "false"}
            and name not in overrides.numeric
        ):
            categorical.add(name)
            notes.append(
                f"{name}: {'/'.join(sorted(values))} kept as text categories "
                "(pandas reads them as text, so the model saw text)"
            )
    merged = replace(
        overrides,
        categorical=tuple(sorted(categorical - set(overrides.numeric) - set(overrides.date))),
        keep=tuple(sorted(set(overrides.keep) | set(model_columns))),
        as_pandas_reads=True,  # the model saw the sample as pandas reads it: "$28,000" as text, 02134 as 2134
    )
    schema = infer_schema(raw, merged, table.decimal, table.sep)
    empty = [c for c in model_columns if c not in schema.names]
    if empty:
        raise DataError(
            f"the sample has no values in {', '.join(empty)}, which the model needs; give a sample with values there"
        )
    features = []
    problems = []
    for feature in schema.features:
        kind = expected.kinds.get(feature.name)
        if (
            kind == "numeric"
            and feature.kind == CATEGORICAL
            and feature.categories
            and isinstance(feature.categories[0], str)
        ):
            problems.append(
                f"{feature.name} (the model takes numbers; the sample has text like {feature.categories[0]!r})"
            )
        if expected.family == "onnx" and expected.columns is None and feature.kind != NUMERIC:
            problems.append(
                f"{feature.name} (the model's one input is a matrix of numbers; this column is {feature.type_name})"
            )
        if feature.name in expected.categories:
            known = expected.categories[feature.name]
            unknown = [c for c in feature.categories or [] if c not in known]
            if unknown:
                problems.append(
                    f"{feature.name} (categories the model does not know: {', '.join(map(str, unknown[:5]))}; "
                    f"it knows {', '.join(map(str, known[:10]))})"
                )
            feature = replace(
                feature,
                categories=list(known),
                reason=f"category: the model's own {len(known)} categories"
                + (f" ({', '.join(map(str, known[:4]))}{', ...' if len(known) > 4 else ''})" if known else ""),
            )
        features.append(feature)
    if problems:
        raise DataError(f"the sample's columns do not fit the model: {'; '.join(problems)}")
    return FeatureSchema(tuple(features), schema.other_columns), notes


def categories_for(expected: Expectation, schema: FeatureSchema) -> dict[str, list[Any]]:
    return {name: list(values) for name, values in expected.categories.items() if name in schema.names}


def call(work, runtime: Runtime, records: list[dict[str, Any]]):
    """The model's answer, or one line with its complaint and the first sample row it fails on."""
    try:
        return work()
    except Exception as exc:
        first = None
        for position, record in enumerate(records[:2000]):
            try:
                runtime.predict_records([record])
            except Exception:
                first = position
                break
        where = f" (first failing row: {first + 1} of the sample)" if first is not None else ""
        message = " ".join(str(exc).split())[:300] or exc.__class__.__name__
        raise DataError(f"the model raised on the sample: {exc.__class__.__name__}: {message}{where}") from None


def check_answers(predictions: list[dict[str, Any]], rows: int, task: str) -> None:
    if len(predictions) != rows:
        raise DataError(
            f"the model answered {len(predictions)} predictions for the sample's {rows} rows; "
            "it must answer one per row"
        )
    for row, answer in enumerate(predictions, start=1):
        value = answer["prediction"]
        if isinstance(value, float) and math.isnan(value):
            raise DataError(f"the model answered NaN for row {row} of the sample")
        probabilities = answer.get("probabilities")
        if task == CLASSIFICATION and probabilities:
            values = list(probabilities.values())
            if any(math.isnan(p) for p in values):
                raise DataError(f"the model answered NaN probabilities for row {row} of the sample")
            total = sum(values)
            if abs(total - 1) > 1e-4:
                raise DataError(f"the model's probabilities for row {row} of the sample sum to {total:.6g}, not 1")


def sample_metrics(
    raw_target: Any, predictions: list[dict[str, Any]], expected: Expectation, decimal: str
) -> tuple[dict[str, float], int]:
    """The metrics train.py reports, on the sample's labelled rows."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score

    labelled = ~raw_target.isin(MISSING_MARKERS)
    if not labelled.any():
        raise DataError(f"--target {raw_target.name!r} has no values in the sample")
    values, _, _ = infer_target(raw_target[labelled].reset_index(drop=True), expected.task, decimal)
    predicted = [p["prediction"] for p, keep in zip(predictions, labelled, strict=True) if keep]  # one per row
    if expected.task == CLASSIFICATION:
        actual = [label_text(v.item() if hasattr(v, "item") else v) for v in values]
        guessed = [label_text(v) for v in predicted]
        unknown = sorted(set(actual) - {label_text(c) for c in expected.classes or []})
        if unknown and len(unknown) == len(set(actual)):
            raise DataError(
                f"--target {raw_target.name!r} holds labels the model does not answer ({', '.join(unknown[:5])}; "
                f"its classes are {', '.join(map(label_text, expected.classes or []))})"
            )
        return {
            "accuracy": round(float(accuracy_score(actual, guessed)), 4),
            "f1_macro": round(float(f1_score(actual, guessed, average="macro")), 4),
        }, int(labelled.sum())
    actual = np.asarray(values, dtype=float)
    guessed = np.asarray(predicted, dtype=float)
    return {
        "rmse": round(float(np.sqrt(mean_squared_error(actual, guessed))), 4),
        "r2": round(float(r2_score(actual, guessed)), 4),
    }, int(labelled.sum())


def task_reason(expected: Expectation) -> str:
    if expected.task == CLASSIFICATION:
        shown = ", ".join(map(label_text, (expected.classes or [])[:6])) + (
            ", ..." if len(expected.classes or []) > 6 else ""
        )
        return f"from the model: a {expected.family} classifier with {len(expected.classes or [])} classes ({shown})"
    return f"from the model: a {expected.family} regressor"
