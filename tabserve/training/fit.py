"""Building a model family's scikit-learn pipeline from a feature schema, and the metrics it is measured by.

Categories are ordinal-encoded with the categories fixed by the schema (unknown or missing -> NaN), then
the family's estimator (tabserve/training/candidates.py) takes the matrix: HistGradientBoosting, LightGBM
and XGBoost split on the categories natively, the linear model one-hot encodes them, the forest reads codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from tabserve.core.pipeline import CLASSIFICATION, model_columns
from tabserve.core.schema import FeatureSchema
from tabserve.training.candidates import FAMILIES, Layout

SEED = 42  # the default --seed
FOLDS = 5
# A class with fewer labelled rows than folds cannot be in every fold's held-out rows: all its rows are
# trained on in every fold, and it is not measured.
MIN_CLASS_ROWS = FOLDS


def layout(schema: FeatureSchema, rows: int) -> Layout:
    categorical, numeric = model_columns(schema)
    return Layout(len(categorical), len(numeric), rows)


def build(
    schema: FeatureSchema,
    task: str,
    one_row_class: bool = False,
    family: str = "hgb",
    seed: int = SEED,
    class_weight: str | None = None,
    rows: int = 0,
) -> Pipeline:
    """The pipeline to fit: the schema's encoding, then the family's estimator."""
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
    model = FAMILIES[family].estimator(layout(schema, rows), task, seed, class_weight, one_row_class)
    return Pipeline([("columns", columns), ("model", model)])


# --- metrics --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    greater_is_better: bool
    # (true class indices or values, predicted class indices or values, class probabilities or None, the classes
    # measured) -> the score
    score: Callable[..., float]


def _log_loss(true, predicted, probabilities, measured):
    from sklearn.metrics import log_loss

    clipped = np.clip(probabilities, 1e-15, 1)
    return log_loss(true, clipped / clipped.sum(axis=1, keepdims=True), labels=list(range(probabilities.shape[1])))


def _roc_auc(true, predicted, probabilities, measured):
    """Binary: the AUC of the second class. Multi-class: the mean one-vs-rest AUC over the classes present
    in these rows (a class absent from them has no curve)."""
    from sklearn.metrics import roc_auc_score

    if probabilities.shape[1] == 2:
        return roc_auc_score(true == 1, probabilities[:, 1]) if len(set(true.tolist())) == 2 else float("nan")
    present = [k for k in sorted(set(true.tolist())) if 0 < (true == k).sum() < len(true)]
    return float(np.mean([roc_auc_score(true == k, probabilities[:, k]) for k in present])) if present else float("nan")


def _accuracy(true, predicted, probabilities, measured):
    return float(np.mean(true == predicted))


def _f1_macro(true, predicted, probabilities, measured):
    from sklearn.metrics import f1_score

    return f1_score(true, predicted, labels=measured, average="macro", zero_division=0)


def _rmse(true, predicted, probabilities, measured):
    return float(np.sqrt(np.mean((true - predicted) ** 2)))


def _mae(true, predicted, probabilities, measured):
    return float(np.mean(np.abs(true - predicted)))


def _r2(true, predicted, probabilities, measured):
    from sklearn.metrics import r2_score

    return r2_score(true, predicted)


CLASSIFICATION_METRICS = {
    m.name: m
    for m in (
        Metric("log_loss", "log loss", False, _log_loss),
        Metric("roc_auc", "ROC AUC", True, _roc_auc),
        Metric("accuracy", "accuracy", True, _accuracy),
        Metric("f1_macro", "F1 macro", True, _f1_macro),
    )
}
REGRESSION_METRICS = {
    m.name: m
    for m in (
        Metric("rmse", "RMSE", False, _rmse),
        Metric("mae", "MAE", False, _mae),
        Metric("r2", "R²", True, _r2),
    )
}
METRIC_CHOICES = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)


def task_metrics(task: str) -> dict[str, Metric]:
    """The task's metrics, the default (log loss; RMSE) first."""
    return CLASSIFICATION_METRICS if task == CLASSIFICATION else REGRESSION_METRICS


def measure(task: str, true: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray | None, measured) -> dict:
    """Every metric of the task on these rows (rounded as shown)."""
    return {
        name: round(float(metric.score(true, predicted, probabilities, measured)), 4)
        for name, metric in task_metrics(task).items()
    }
