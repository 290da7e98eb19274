"""The scikit-learn pipeline: built from the feature schema, fitted, evaluated, and called on records.

Categories are ordinal-encoded with the categories fixed by the schema (unknown or missing -> NaN),
then a HistGradientBoosting model handles missing values and categorical splits natively.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from tabserve.errors import DataError
from tabserve.schema import BOOLEAN, CATEGORICAL, DATE, DATE_PARTS, DATETIME, NUMERIC, FeatureSchema, label_text

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

TEST_FRACTION = 0.2
RANDOM_STATE = 42


def model_columns(schema: FeatureSchema) -> tuple[list[str], list[str]]:
    """The columns the model sees: (categorical, numeric). Booleans are 0/1; a date is its parts."""
    categorical = [f.name for f in schema.features if f.kind == CATEGORICAL]
    numeric: list[str] = []
    for f in schema.features:
        if f.kind in (NUMERIC, BOOLEAN):
            numeric.append(f.name)
        elif f.kind in (DATE, DATETIME):
            numeric.extend(f"{f.name}.{part}" for part in (*DATE_PARTS, *(("hour",) if f.kind == DATETIME else ())))
    return categorical, numeric


def build(schema: FeatureSchema, task: str) -> Pipeline:
    categorical, numeric = model_columns(schema)
    encoder = OrdinalEncoder(
        categories=[[str(c) for c in schema[name].categories or []] for name in categorical],
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
    )
    columns = ColumnTransformer(
        [("categorical", encoder, categorical), ("numeric", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    is_categorical = [True] * len(categorical) + [False] * len(numeric)
    model_class = HistGradientBoostingClassifier if task == CLASSIFICATION else HistGradientBoostingRegressor
    model = model_class(categorical_features=is_categorical, random_state=RANDOM_STATE)
    return Pipeline([("columns", columns), ("model", model)])


def to_frame(records: list[dict[str, Any]] | pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Typed records (validated dicts, missing: None) as the frame the pipeline was fitted on: once per batch.

    Training calls this too, on the parsed rows of the file, so both see exactly the same columns.
    """
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(records, columns=schema.names)
    out: dict[str, Any] = {}
    for feature in schema.features:
        column = frame[feature.name]
        if feature.kind == CATEGORICAL:  # the encoder's categories are text: coded categories too
            text = column.astype(str) if feature.categories and not isinstance(feature.categories[0], str) else column
            out[feature.name] = text.astype(object).where(column.notna(), np.nan)
        elif feature.kind == BOOLEAN:
            out[feature.name] = column.map({True: 1.0, False: 0.0}).astype(float)
        elif feature.kind in (DATE, DATETIME):
            moments = pd.to_datetime(column, errors="coerce")
            for part in (*DATE_PARTS, *(("hour",) if feature.kind == DATETIME else ())):
                out[f"{feature.name}.{part}"] = getattr(moments.dt, part).astype(float)
        else:
            out[feature.name] = pd.to_numeric(column, errors="coerce").astype(float)
    categorical, numeric = model_columns(schema)
    return pd.DataFrame(out, index=frame.index)[categorical + numeric]


def split(features: pd.DataFrame, target: pd.Series, task: str):
    stratify = None
    if task == CLASSIFICATION:
        counts = target.value_counts()
        if len(counts) < 2:
            raise DataError(f"target {target.name!r} has only one class ({counts.index[0]!r}); nothing to learn")
        if counts.min() >= 2:
            stratify = target
    if len(target) < 10:
        raise DataError(f"only {len(target)} labelled rows; at least 10 are needed to train and evaluate")
    return train_test_split(features, target, test_size=TEST_FRACTION, random_state=RANDOM_STATE, stratify=stratify)


def evaluate(pipeline: Pipeline, features: pd.DataFrame, target: pd.Series, task: str) -> dict[str, float]:
    predicted = pipeline.predict(features)
    if task == CLASSIFICATION:
        return {
            "accuracy": round(float(accuracy_score(target, predicted)), 4),
            "f1_macro": round(float(f1_score(target, predicted, average="macro")), 4),
        }
    return {
        "rmse": round(float(np.sqrt(mean_squared_error(target, predicted))), 4),
        "r2": round(float(r2_score(target, predicted)), 4),
    }


def predict_records(pipeline: Pipeline, schema: FeatureSchema, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per record, in order: {"prediction": label or number, "probabilities": {...} or None}.

    Labels keep the training labels' type (text, whole number, boolean); probability keys are the
    labels as JSON writes them (label_text), since JSON object keys are always text.
    """
    if not records:
        return []
    frame = to_frame(records, schema)
    model = pipeline[-1]
    if hasattr(model, "predict_proba"):
        probabilities = pipeline.predict_proba(frame)
        classes = [_to_python(c) for c in model.classes_]
        names = [label_text(c) for c in classes]
        best = probabilities.argmax(axis=1)
        return [
            {"prediction": classes[i], "probabilities": dict(zip(names, row.round(6).tolist()))}
            for i, row in zip(best, probabilities)
        ]
    return [{"prediction": float(value), "probabilities": None} for value in pipeline.predict(frame)]


def _to_python(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
