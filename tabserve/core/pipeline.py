"""Calling the scikit-learn pipeline: typed records -> the frame it was fitted on -> predictions.

Training (tabserve/training/fit.py) fits it on frames made here too, so both see the same columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATE_PARTS, DATETIME, NUMERIC, FeatureSchema, label_text

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)



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
        classes = class_labels(pipeline)
        names = [label_text(c) for c in classes]
        best = probabilities.argmax(axis=1)
        return [
            {"prediction": classes[i], "probabilities": dict(zip(names, row.round(6).tolist()))}
            for i, row in zip(best, probabilities)
        ]
    return [{"prediction": float(value), "probabilities": None} for value in pipeline.predict(frame)]


def class_labels(pipeline: Pipeline) -> list[Any]:
    """The classifier's labels as plain Python values (numpy's int64/bool_ are not JSON)."""
    return [c.item() if hasattr(c, "item") else c for c in pipeline[-1].classes_]
