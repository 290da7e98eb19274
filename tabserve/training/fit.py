"""Building, fitting and evaluating the scikit-learn pipeline from a feature schema.

Categories are ordinal-encoded with the categories fixed by the schema (unknown or missing -> NaN),
then a HistGradientBoosting model handles missing values and categorical splits natively.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from tabserve.core.errors import DataError
from tabserve.core.pipeline import CLASSIFICATION, model_columns
from tabserve.core.schema import FeatureSchema

TEST_FRACTION = 0.2
RANDOM_STATE = 42


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
