"""The feature schema: inferred from training data, stored as JSON in the model's metadata,
and turned back into the pydantic types of the HTTP API.

A feature is either numeric (a finite number; min/max observed in training) or categorical
(one of the categories seen in training). It is nullable only if training data had missing
values in that column.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from tabserve.errors import DataError

NUMERIC = "numeric"
CATEGORICAL = "categorical"

# A text column with more distinct values than this is an identifier or free text, not a
# category: it would make a useless feature and an unreadable API type.
MAX_CATEGORIES = 200


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # NUMERIC or CATEGORICAL
    nullable: bool
    categories: list[str] | None = None  # categorical only, sorted
    min: float | None = None  # numeric only, observed in training
    max: float | None = None
    integer: bool = False  # numeric with only whole numbers in training (documentation only)
    example: Any = None  # a realistic value, from a training row

    @property
    def description(self) -> str:
        if self.kind == CATEGORICAL:
            text = f"One of {len(self.categories or [])} categories seen in training."
        else:
            kind = "Whole number" if self.integer else "Number"
            text = f"{kind}; training range {_fmt(self.min)} to {_fmt(self.max)}."
        return text + (" May be null." if self.nullable else " Required.")


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def __getitem__(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        # BentoML metadata can't hold None: absent keys fall back to the dataclass defaults.
        return {"features": [{k: v for k, v in asdict(f).items() if v is not None} for f in self.features]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(tuple(Feature(**f) for f in data["features"]))

    @classmethod
    def infer(cls, frame: pd.DataFrame) -> FeatureSchema:
        """Derive the schema of the feature columns of `frame` (target already removed)."""
        if frame.shape[1] == 0:
            raise DataError("no feature columns left: the CSV needs at least one column besides the target")
        example_row = _example_row(frame)
        return cls(tuple(_infer_feature(frame[name], example_row) for name in frame.columns))

    def example(self) -> dict[str, Any]:
        return {f.name: f.example for f in self.features}

    def out_of_range(self, record: dict[str, Any]) -> dict[str, str]:
        """{feature: warning} for numeric values outside the range seen in training."""
        warnings = {}
        for f in self.features:
            value = record.get(f.name)
            if f.kind != NUMERIC or value is None or f.min is None or f.max is None:
                continue
            if value < f.min or value > f.max:
                warnings[f.name] = f"{f.name}={_fmt(value)} is outside the training range [{_fmt(f.min)}, {_fmt(f.max)}]"
        return warnings

    def record_model(self, name: str = "Record", strict: bool = True) -> type[BaseModel]:
        """A pydantic model of one input record: the API's request type.

        Strict for JSON ("39.1" is not a number, true is not 1); lax for query strings and
        form fields, where every value arrives as text.
        """
        fields: dict[str, Any] = {}
        for f in self.features:
            base: Any = Literal[tuple(f.categories or [])] if f.kind == CATEGORICAL else float
            info = dict(description=f.description, examples=[f.example])
            if f.kind != CATEGORICAL:
                info["allow_inf_nan"] = False
            if f.nullable:  # may be null or left out
                fields[f.name] = (Optional[base], Field(None, **info))
            else:
                fields[f.name] = (base, Field(..., **info))
        config = ConfigDict(
            extra="forbid",
            strict=strict,
            json_schema_extra={"example": self.example()},  # OpenAPI 3.0 wants "example"
        )
        return create_model(name, __config__=config, **fields)


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _example_row(frame: pd.DataFrame) -> pd.Series:
    """The first complete row (no missing values), else the first row."""
    complete = frame.dropna()
    return complete.iloc[0] if len(complete) else frame.iloc[0]


def _to_python(value: Any) -> Any:
    if value is None or pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def is_numeric(values: pd.Series) -> bool:
    """Numbers, not booleans (pandas counts bool as numeric)."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _infer_feature(column: pd.Series, example_row: pd.Series) -> Feature:
    name = str(column.name)
    values = column.dropna()
    if values.empty:
        raise DataError(f"column {name!r} has no values at all; drop it with --drop {name}")
    nullable = bool(column.isna().any())
    example = _to_python(example_row[name])
    if is_numeric(column):
        numbers = values.astype(float)
        if not numbers.map(math.isfinite).all():
            raise DataError(f"column {name!r} contains infinite values")
        integer = bool((numbers == numbers.round()).all())
        return Feature(
            name=name,
            kind=NUMERIC,
            nullable=nullable,
            min=float(numbers.min()),
            max=float(numbers.max()),
            integer=integer,
            example=None if example is None else (int(example) if integer else float(example)),
        )
    categories = sorted(values.astype(str).unique().tolist())
    if len(categories) > MAX_CATEGORIES:
        raise DataError(
            f"column {name!r} has {len(categories)} distinct text values (more than {MAX_CATEGORIES}):"
            f" it looks like an identifier; drop it with --drop {name}"
        )
    return Feature(
        name=name,
        kind=CATEGORICAL,
        nullable=nullable,
        categories=categories,
        example=None if example is None else str(example),
    )
