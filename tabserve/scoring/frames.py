"""The work on one chunk of rows, the same on every engine (a Spark partition's batch, a local chunk):
cells as text, each row checked as /predict_csv checks it (tabserve/core/rows.py), the good rows
through the service's model call (the version's runtime, tabserve/models/), results as /predict_csv spells them.

Kept light (no Spark, no BentoML): Spark's Python workers import this module and unpickle a ScoringModel.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from tabserve.core import rows
from tabserve.core.card import ModelCard

ERROR = "error"


@dataclass
class ScoringModel:
    """A stored model version as batch scoring needs it: its card and its runtime (tabserve/models/); `reasons`:
    how many reason columns each scored row gets (score.py --explain K; 0: none)."""

    card: ModelCard
    runtime: Any
    reasons: int = 0
    _record_type: type[BaseModel] | None = field(default=None, repr=False)

    @property
    def tag(self) -> str:
        return self.card.tag

    @property
    def record_type(self) -> type[BaseModel]:
        """The service's record type (strict, like JSON and /predict_csv), made once per process."""
        if self._record_type is None:
            self._record_type = self.card.schema.record_model("Record")
        return self._record_type

    @property
    def result_columns(self) -> list[str]:
        """`prediction` and `proba_<class>`: the numbers and labels of a scored row."""
        return rows.result_columns(self.card)

    @property
    def reason_columns(self) -> list[str]:
        """`reason_1` … `reason_K` (none without --explain): text, after the result columns."""
        return rows.reason_columns(self.reasons)

    @property
    def added_columns(self) -> list[str]:
        """Every column scoring adds to the input's: the result columns, the reason columns, `error`."""
        return [*self.result_columns, *self.reason_columns, ERROR]

    def __getstate__(self) -> dict[str, Any]:  # pydantic's generated class is not picklable: made again
        return {"card": self.card, "runtime": self.runtime, "reasons": self.reasons, "_record_type": None}


def text_cell(value: Any) -> str:
    """A cell of any type (from Parquet, or from Spark's pandas batches) as the CSV text /predict_csv
    would read: missing (None, NaN, pd.NA, NaT) is "", booleans true/false, numbers as Python writes
    them, dates in ISO 8601 (a time-zone-aware moment in UTC, without the zone)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, dt.datetime):  # pd.Timestamp too
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return str(value).strip()


def as_text(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The columns as text cells, as text_cell writes them (object columns of str); the common column
    types without a call per cell."""
    out = {}
    for name in columns if columns is not None else list(frame.columns):
        out[name] = pd.Series(_column_text(frame[name]), index=frame.index, dtype=object)
    return pd.DataFrame(out, index=frame.index)


def _column_text(column: pd.Series) -> list[str]:
    kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else ""  # not pandas' nullable Int64, boolean: pd.NA
    if kind == "f":  # float64 and float32, NaN for missing
        return ["" if v != v else repr(v) for v in column.tolist()]
    if kind in ("i", "u"):  # no missing values in a numpy integer column
        return [str(v) for v in column.tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in column.tolist()]
    values = column.tolist()
    if all(type(v) is str for v in values):  # CSV text: the common case
        return [v.strip() for v in values]
    return [text_cell(v) for v in values]


def drop_blank(text: pd.DataFrame) -> pd.DataFrame:
    """Rows whose cells are all empty are not rows (blank lines, ",,,,"): /predict_csv drops them too."""
    return text[(text != "").any(axis=1)] if len(text.columns) else text


def score_frame(model: ScoringModel, frame: pd.DataFrame, decimal: str = ".") -> pd.DataFrame:
    """The result columns for a chunk of rows (same index): `prediction`, `proba_<class>` (classification),
    `reason_1` … `reason_K` (model.reasons: each good row's K largest contributions to its predicted class or
    value, as /predict_csv?explain=K writes them) and `error`, which names a bad row's problems (its other
    result cells empty) and is None for a good one.

    `frame` holds at least the schema's features, as text or typed values; numbers in text use `decimal`, and
    so do the reasons' numbers.
    """
    schema = model.card.schema
    text = as_text(frame, schema.names)
    records, good, errors = [], [], [None] * len(text)
    for position, row in enumerate(text.to_dict("records")):
        try:
            records.append(rows.validate(model.record_type, schema, row, decimal))
            good.append(position)
        except ValidationError as exc:
            errors[position] = rows.error_line(rows.problems(exc, position))
    columns = model.result_columns
    labels = rows.class_texts(model.card)
    values: list[list[Any]] = [[None] * len(text) for _ in columns]
    reasons: list[list[Any]] = [[None] * len(text) for _ in model.reason_columns]
    if records:
        results = model.runtime.predict_records(records)
        for position, result in zip(good, results, strict=True):  # one result per record
            for column, value in zip(values, rows.result_values(result, labels), strict=True):
                column[position] = value
        if model.reasons:
            # Each row's predicted class explained (None: a regression's value), as /predict_csv?explain=K does.
            classified = model.runtime.classes is not None
            targets = [result["prediction"] if classified else None for result in results]
            explanations = model.runtime.explain_records(records, targets)
            for position, record, explanation in zip(good, records, explanations, strict=True):
                for column, reason in zip(
                    reasons, rows.reasons(explanation, record, model.reasons, decimal), strict=True
                ):
                    column[position] = reason
    out = {
        name: pd.Series(column, index=frame.index, dtype=object if name == rows.PREDICTION and labels else float)
        for name, column in zip(columns, values, strict=True)
    }
    for name, column in zip(model.reason_columns, reasons, strict=True):
        out[name] = pd.Series(column, index=frame.index, dtype=object)
    out[ERROR] = pd.Series(errors, index=frame.index, dtype=object)
    return pd.DataFrame(out, index=frame.index)
