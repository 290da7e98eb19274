"""What both peers (MLServer, LitServe) do with the project's fitted pipeline: records -> the typed frame it
was fitted on -> one predict_proba per batch -> the label and the class probabilities.

Runs inside the peers' own virtualenvs (numpy, pandas, scikit-learn and joblib only; nothing of tabserve):
the pipeline file is loaded with joblib, and everything the frame needs is read from the fitted pipeline
itself: the column order (`feature_names_in_`) and which columns are categories (the ones its
OrdinalEncoder takes). The same conversion as tabserve/core/pipeline.py's `to_frame` for this model:
categories as Python objects with NaN for missing, every other column as float.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.preprocessing import OrdinalEncoder


class FittedPipeline:
    def __init__(self, path: str):
        self.pipeline = joblib.load(path)
        self.features = [str(name) for name in self.pipeline.feature_names_in_]
        columns = self.pipeline[0]  # the ColumnTransformer
        self.categorical = [
            name
            for _, transformer, names in columns.transformers_
            if isinstance(transformer, OrdinalEncoder)
            for name in names
        ]
        self.numeric = [name for name in self.features if name not in self.categorical]
        # Labels as plain Python values, probability keys as the project's JSON spells them (label_text).
        self.classes = [c.item() if hasattr(c, "item") else c for c in self.pipeline[-1].classes_]
        self.keys = ["true" if c is True else "false" if c is False else str(c) for c in self.classes]

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Any frame with the feature columns (any order, missing values as None or NaN) as the fitted one."""
        out = {}
        for name in self.features:
            column = frame[name]
            if name in self.categorical:
                out[name] = column.astype(object).where(column.notna(), np.nan)
            else:
                out[name] = pd.to_numeric(column, errors="coerce").astype(float)
        return pd.DataFrame(out, index=frame.index)

    def frame_of_records(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        return self.frame(pd.DataFrame.from_records(records, columns=self.features))

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """One predict_proba call for the whole frame: (index of the best class, probabilities rounded as the
        project rounds them), the best class taken before rounding as tabserve/core/pipeline.py does."""
        probabilities = self.pipeline.predict_proba(frame)
        return probabilities.argmax(axis=1), probabilities.round(6)

    def answers(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """The project's /predict answer per row: {"prediction": label, "probabilities": {label: p}}."""
        best, probabilities = self.predict(frame)
        return [
            {"prediction": self.classes[i], "probabilities": dict(zip(self.keys, row.tolist(), strict=False))}
            for i, row in zip(best, probabilities, strict=False)
        ]
