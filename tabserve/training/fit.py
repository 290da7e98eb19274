"""Building, fitting and evaluating the scikit-learn pipeline from a feature schema.

Categories are ordinal-encoded with the categories fixed by the schema (unknown or missing -> NaN),
then a HistGradientBoosting model handles missing values and categorical splits natively.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
# A class with fewer labelled rows than this holds less than one row out in expectation (1 / TEST_FRACTION):
# all its rows are trained on, and its held-out metrics are not measured.
MIN_CLASS_ROWS = 5


def build(schema: FeatureSchema, task: str, few_rows_class: bool = False) -> Pipeline:
    """The pipeline to fit. `few_rows_class`: a class has a single training row, so HistGradientBoosting's own
    stratified validation split (early stopping, on by itself above 10,000 rows) could not be drawn: off."""
    categorical, numeric = model_columns(schema)
    encoder = OrdinalEncoder(
        categories=[
            [str(c) for c in schema[name].categories or []] + ([schema[name].other] if schema[name].open else [])
            for name in categorical
        ],
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
    options = {"early_stopping": False} if few_rows_class else {}
    model = model_class(categorical_features=is_categorical, random_state=RANDOM_STATE, **options)
    return Pipeline([("columns", columns), ("model", model)])


@dataclass(frozen=True)
class Split:
    """Training and held-out rows. `rare`: classes with too few rows to hold any out ({label: rows}): all
    their rows are trained on, so the model knows every class, and they are not measured."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    rare: dict = field(default_factory=dict)

    @property
    def few_rows_class(self) -> bool:
        return bool(self.rare) and int(self.y_train.value_counts().min()) < 2


def split(features: pd.DataFrame, target: pd.Series, task: str) -> Split:
    if len(target) < 10:
        raise DataError(f"only {len(target)} labelled rows; at least 10 are needed to train and evaluate")
    if task != CLASSIFICATION:
        return Split(*_shuffled(features, target, None))
    counts = target.value_counts()
    if len(counts) < 2:
        raise DataError(f"target {target.name!r} has only one class ({counts.index[0]!r}); nothing to learn")
    rare = {_plain(label): int(n) for label, n in counts.items() if n < MIN_CLASS_ROWS}
    if len(rare) == len(counts):
        raise DataError(
            f"every class of {target.name!r} has fewer than {MIN_CLASS_ROWS} labelled rows, so no row can be held "
            "out to measure the model; more rows per class are needed"
        )
    common = ~target.isin(list(counts.index[counts < MIN_CLASS_ROWS]))
    x_train, x_test, y_train, y_test = _shuffled(features[common], target[common], target[common])
    if rare:  # the rare classes' rows: all of them trained on
        x_train = pd.concat([x_train, features[~common]])
        y_train = pd.concat([y_train, target[~common]])
    return Split(x_train, x_test, y_train, y_test, rare)


def _shuffled(features: pd.DataFrame, target: pd.Series, stratify: pd.Series | None):
    return train_test_split(features, target, test_size=TEST_FRACTION, random_state=RANDOM_STATE, stratify=stratify)


def _plain(label):
    return label.item() if hasattr(label, "item") else label


def evaluate(pipeline: Pipeline, features: pd.DataFrame, target: pd.Series, task: str) -> dict[str, float]:
    predicted = pipeline.predict(features)
    if task == CLASSIFICATION:  # macro-F1 over the classes held out (a rare class is not measured)
        measured = sorted(set(target.tolist()), key=str)
        return {
            "accuracy": round(float(accuracy_score(target, predicted)), 4),
            "f1_macro": round(float(f1_score(target, predicted, labels=measured, average="macro")), 4),
        }
    return {
        "rmse": round(float(np.sqrt(mean_squared_error(target, predicted))), 4),
        "r2": round(float(r2_score(target, predicted)), 4),
    }
