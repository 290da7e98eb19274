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
from tabserve.schema import CATEGORICAL, FeatureSchema, is_numeric

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

TEST_FRACTION = 0.2
RANDOM_STATE = 42
# A numeric target with at most this many distinct whole-number values is taken as class labels.
MAX_CLASSES_FOR_NUMERIC_TARGET = 20


def infer_task(target: pd.Series) -> str:
    if not is_numeric(target):
        return CLASSIFICATION
    values = target.dropna().astype(float)
    if (values == values.round()).all() and values.nunique() <= MAX_CLASSES_FOR_NUMERIC_TARGET:
        return CLASSIFICATION
    return REGRESSION


def build(schema: FeatureSchema, task: str) -> Pipeline:
    categorical = [f for f in schema.features if f.kind == CATEGORICAL]
    numeric = [f.name for f in schema.features if f.kind != CATEGORICAL]
    encoder = OrdinalEncoder(
        categories=[f.categories for f in categorical],
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
    )
    columns = ColumnTransformer(
        [("categorical", encoder, [f.name for f in categorical]), ("numeric", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    is_categorical = [True] * len(categorical) + [False] * len(numeric)
    model_class = HistGradientBoostingClassifier if task == CLASSIFICATION else HistGradientBoostingRegressor
    model = model_class(categorical_features=is_categorical, random_state=RANDOM_STATE)
    return Pipeline([("columns", columns), ("model", model)])


def to_frame(records: list[dict[str, Any]], schema: FeatureSchema) -> pd.DataFrame:
    """Records (validated dicts) as the DataFrame the pipeline was fitted on: once per batch."""
    return _model_input(pd.DataFrame.from_records(records, columns=schema.names), schema)


def prepare_features(features: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Training features in the same shape as served records (categories as strings)."""
    return _model_input(features[schema.names].copy(), schema, categories_as_text=True)


def _model_input(frame: pd.DataFrame, schema: FeatureSchema, categories_as_text: bool = False) -> pd.DataFrame:
    """Categories as Python objects (missing: NaN), numbers as floats."""
    for feature in schema.features:
        column = frame[feature.name]
        if feature.kind == CATEGORICAL:
            values = column.astype(str) if categories_as_text else column
            frame[feature.name] = values.astype(object).where(column.notna(), np.nan)
        else:
            frame[feature.name] = pd.to_numeric(column, errors="coerce").astype(float)
    return frame


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
    """One result per record, in order: {"prediction": label or number, "probabilities": {...} or None}."""
    if not records:
        return []
    frame = to_frame(records, schema)
    model = pipeline[-1]
    if hasattr(model, "predict_proba"):
        probabilities = pipeline.predict_proba(frame)
        classes = [_to_python(c) for c in model.classes_]
        names = [str(c) for c in classes]
        best = probabilities.argmax(axis=1)
        return [
            {"prediction": classes[i], "probabilities": dict(zip(names, row.round(6).tolist()))}
            for i, row in zip(best, probabilities)
        ]
    return [{"prediction": float(value), "probabilities": None} for value in pipeline.predict(frame)]


def _to_python(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
