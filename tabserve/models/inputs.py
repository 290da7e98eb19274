"""Typed records as the frame a model from elsewhere was fitted on.

Such a model was fitted in a notebook on a frame pandas read from a CSV, so it gets that frame back:
numbers as float64, text as Python strings, booleans as bool, coded categories as whole numbers, dates as
the text of the sample file (pandas does not parse dates unasked), missing values as NaN; and a column the
model knows as a pandas categorical (LightGBM, XGBoost) as a categorical with the model's own categories.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np

from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, FeatureSchema

if TYPE_CHECKING:
    import pandas as pd


class ModelInput:
    def __init__(
        self, schema: FeatureSchema, columns: list[str], categories: dict[str, list[Any]] | None = None
    ) -> None:
        self.columns = list(columns)  # the model's input columns, in its order: all of them features of the schema
        self.features = [schema[name] for name in self.columns]
        self.categories = dict(categories or {})

    def column(self, feature, values: list[Any]) -> Any:
        """One column of the frame, as pandas would have read it from the sample."""
        import pandas as pd

        missing = [v is None for v in values]
        if feature.name in self.categories:
            return pd.Categorical(values, categories=self.categories[feature.name])
        if feature.kind == CATEGORICAL:
            if feature.categories and not isinstance(feature.categories[0], str):  # coded: 1, 2, 3
                return np.array(
                    [np.nan if m else v for v, m in zip(values, missing, strict=True)],
                    dtype=float if any(missing) else np.int64,
                )
            return np.array([np.nan if m else v for v, m in zip(values, missing, strict=True)], dtype=object)
        if feature.kind == BOOLEAN:
            if any(missing):
                return np.array([np.nan if m else bool(v) for v, m in zip(values, missing, strict=True)], dtype=object)
            return np.array(values, dtype=bool)
        if feature.kind in (DATE, DATETIME):
            return np.array(
                [np.nan if m else date_text(v, feature.date_format) for v, m in zip(values, missing, strict=True)],
                dtype=object,
            )
        return np.array([np.nan if m else v for v, m in zip(values, missing, strict=True)], dtype=float)

    def frame(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {f.name: self.column(f, [r.get(f.name) for r in records]) for f in self.features}, columns=self.columns
        )


def date_text(value: Any, date_format: str | None) -> str:
    """A date as the sample file wrote it (its format), or ISO 8601 without one."""
    if isinstance(value, str):
        return value
    if date_format:
        return value.strftime(date_format)
    return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
