"""The feature schema: stored as JSON in the model's metadata, parsed from CSV text, turned into
the pydantic types of the HTTP API. (How a schema is inferred from a file: tabserve/inference.py.)

A feature is one of five kinds:
- numeric: a finite number (min/max observed in training);
- categorical: one of the categories seen in training (text, or whole numbers for coded categories);
- boolean: true/false (CSV cells also yes/no, 1/0, t/f, y/n, any case);
- date / datetime: an ISO date or date-time in JSON; CSV cells also in the training file's format.
  The model sees year, month, day, day of week and day of year (and hour), so a new date is never refused.
A feature is nullable only if its column had missing values in the training file.
Columns that are not features (identifiers, empty columns, columns dropped with --drop) are
remembered too: file scoring passes them through to the output unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from tabserve.core.numbers import NumberText

NUMERIC = "numeric"
CATEGORICAL = "categorical"
BOOLEAN = "boolean"
DATE = "date"
DATETIME = "datetime"
KINDS = (NUMERIC, CATEGORICAL, BOOLEAN, DATE, DATETIME)

# Cells read as missing in every column, in training files and uploads alike. Spreadsheet and
# statistics exports write all of these; "?" and "-" are common in public data sets.
MISSING_MARKERS = frozenset(
    ["", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "Null", "None", "none", "?", "-", "--", ".", "#N/A"]
)
TRUE_WORDS = frozenset(["true", "yes", "t", "y", "1"])
FALSE_WORDS = frozenset(["false", "no", "f", "n", "0"])
# What the model sees of a date (and of a date-time, plus the hour).
DATE_PARTS = ("year", "month", "day", "day_of_week", "day_of_year")


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # one of KINDS
    nullable: bool
    categories: list[Any] | None = None  # categorical only: sorted text, or sorted whole numbers
    min: float | None = None  # numeric only, observed in training
    max: float | None = None
    integer: bool = False  # numeric with only whole numbers in training (documentation only)
    example: Any = None  # a realistic value, from a training row (dates as ISO text)
    date_format: str | None = None  # dates: the training file's strptime format
    first: str | None = None  # dates: the training range, ISO
    last: str | None = None
    missing_markers: list[str] | None = None  # extra cells read as missing in this column (--numeric)
    reason: str | None = None  # why this kind was chosen, for the training summary
    number_text: dict[str, str] | None = None  # numeric written with a sign or unit: NumberText (core/numbers.py)
    other: str | None = None  # categorical with rare values pooled: the level any other value is answered as

    @property
    def open(self) -> bool:
        """A category that takes any value: the kept categories, and everything else answered as `other`."""
        return self.other is not None

    @property
    def description(self) -> str:
        if self.kind == CATEGORICAL and self.open:
            text = (
                f"One of the {len(self.categories or [])} categories the model tells apart, or any other value: "
                f"those are answered as {self.other!r} and named in the answer's warnings."
            )
        elif self.kind == CATEGORICAL:
            text = f"One of {len(self.categories or [])} categories seen in training."
        elif self.kind == BOOLEAN:
            text = "true or false."
        elif self.kind in (DATE, DATETIME):
            text = (
                f"{'Date' if self.kind == DATE else 'Date-time'} (ISO 8601); "
                f"training range {self.first} to {self.last}."
            )
        else:
            kind = "Whole number" if self.integer else "Number"
            text = f"{kind}; training range {_fmt(self.min)} to {_fmt(self.max)}."
            if self.number_text:
                text += f" Also as text written as in the training file: {self.number_text.get('example', '')!r}."
        return text + (" May be null." if self.nullable else " Required.")

    @property
    def type_name(self) -> str:
        """The type as the API documents it: number, category, boolean, date or date-time."""
        return {NUMERIC: "number", CATEGORICAL: "category", BOOLEAN: "boolean", DATE: "date", DATETIME: "date-time"}[
            self.kind
        ]

    def parse_cell(self, text: str, decimal: str = ".") -> Any:
        """One CSV (or form) cell as the JSON value it stands for: None when missing.

        What does not parse is returned as the text, so validation reports it like a JSON type error.
        """
        cell = text.strip()
        if cell in MISSING_MARKERS or cell in (self.missing_markers or ()):
            return None
        if self.kind == NUMERIC:
            number = parse_number(cell, decimal)
            if number is None and self.number_text:
                number = NumberText.from_dict(self.number_text).parse(cell, decimal)
            return cell if number is None else number
        if self.kind == BOOLEAN:
            word = cell.lower()
            return True if word in TRUE_WORDS else False if word in FALSE_WORDS else cell
        if self.kind in (DATE, DATETIME):
            moment = parse_date(cell, self.date_format)
            if moment is None:
                return cell
            return moment.date() if self.kind == DATE else moment
        if self.categories and isinstance(self.categories[0], int):  # coded categories: 1, 2, 3
            number = parse_number(cell, decimal)
            return int(number) if number is not None and number.is_integer() else cell
        return cell


def parse_number(text: str, decimal: str = ".") -> float | None:
    """A finite number from text ("1,5" with a decimal comma), else None."""
    if decimal == ",":
        text = text.replace(",", ".")
    if "_" in text:  # float() accepts "1_000"; a CSV cell with it is not a number
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_date(text: str, date_format: str | None = None) -> dt.datetime | None:
    """A date(-time) from text in the given format or ISO 8601, else None."""
    if date_format:
        try:
            return dt.datetime.strptime(text, date_format)
        except ValueError:
            pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=None) if moment.tzinfo is None else None  # time zones are not supported


def free_label(label: str, taken: set[str]) -> str:
    """A label no category has ("missing", else "(missing)", ...), added to `taken`: a drift bin's, an open
    category's "other" level."""
    while label in taken:
        label = f"({label})"
    taken.add(label)
    return label


def label_text(label: Any) -> str:
    """A class label as text: the JSON spelling (true, 1, Adelie), for probability keys and CSV columns."""
    return json.dumps(label) if isinstance(label, bool) else str(label)


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...] = field(default_factory=tuple)
    # Columns of the training file that are not features, with the reason: ids, empty, dropped.
    other_columns: dict[str, str] = field(default_factory=dict)
    # (name, its categories, the level others are answered as) of each open category: warnings look them up
    _open: tuple[tuple[str, frozenset, str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        opened = tuple((f.name, frozenset(f.categories or ()), f.other) for f in self.features if f.open)
        object.__setattr__(self, "_open", opened)

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
        features = [{k: v for k, v in asdict(f).items() if v is not None} for f in self.features]
        return {"features": features, "other_columns": dict(self.other_columns)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(tuple(Feature(**f) for f in data["features"]), dict(data.get("other_columns", {})))

    def example(self) -> dict[str, Any]:
        """A real training row, as JSON values."""
        return {f.name: f.example for f in self.features}

    def parse_row(self, row: dict[str, str], decimal: str = ".") -> dict[str, Any]:
        """Raw CSV cells of one row as JSON-like values (missing: None)."""
        return {f.name: f.parse_cell(row[f.name], decimal) for f in self.features}

    def out_of_range(self, record: dict[str, Any]) -> dict[str, str]:
        """{feature: warning} for inputs accepted but outside what training saw: numbers outside the training
        range, and values of an open category that the model answers as its `other` level."""
        warnings = {}
        for name, known, other in self._open:
            value = record.get(name)
            if value is not None and value not in known:
                warnings[name] = (
                    f"{name}={value!r} is not one of the {len(known)} categories the model tells apart; "
                    f"answered as {other!r}"
                )
        for f in self.features:
            value = record.get(f.name)
            if f.kind != NUMERIC or value is None or f.min is None or f.max is None:
                continue
            if value < f.min or value > f.max:
                warnings[f.name] = (
                    f"{f.name}={_fmt(value)} is outside the training range [{_fmt(f.min)}, {_fmt(f.max)}]"
                )
        return warnings

    def record_model(self, name: str = "Record", strict: bool = True) -> type[BaseModel]:
        """A pydantic model of one input record: the API's request type.

        Strict for JSON ("39.1" is not a number, true is not 1); lax for query strings and
        form fields, where every value arrives as text.
        """
        fields: dict[str, Any] = {}
        for f in self.features:
            info: dict[str, Any] = dict(description=f.description, examples=[f.example])
            if f.kind == NUMERIC:
                info["allow_inf_nan"] = False
            base = _field_type(f, strict)
            key = f.name
            if f.name.startswith("_") or f.name.startswith("model_"):  # names pydantic reserves
                key, info["alias"] = f"field_{len(fields)}", f.name
            if f.nullable:  # may be null or left out
                fields[key] = (base | None, Field(None, **info))
            else:
                fields[key] = (base, Field(..., **info))
        config = ConfigDict(
            extra="forbid",
            strict=strict,
            serialize_by_alias=True,
            json_schema_extra={"example": self.example()},  # OpenAPI 3.0 wants "example"
        )
        return create_model(name, __config__=config, **fields)


def _field_type(feature: Feature, strict: bool) -> Any:
    if feature.kind == CATEGORICAL and feature.open:  # any value; the kept categories are the examples
        if feature.categories and isinstance(feature.categories[0], int):
            return Annotated[int, BeforeValidator(_whole_number_text)] if not strict else int
        return Annotated[str, BeforeValidator(_code_text)]
    if feature.kind == CATEGORICAL and _digit_codes(feature):
        return Annotated[Literal[tuple(feature.categories or [])], BeforeValidator(_code_text)]
    if feature.kind == CATEGORICAL:
        allowed = Literal[tuple(feature.categories or [])]
        if not strict and feature.categories and isinstance(feature.categories[0], int):
            return Annotated[allowed, BeforeValidator(_whole_number_text)]  # "2" in a query string
        return allowed
    if feature.kind == BOOLEAN:
        return bool
    if feature.kind == DATE:
        return Annotated[dt.date, BeforeValidator(_date_text(feature)), Field(strict=False)]
    if feature.kind == DATETIME:
        return Annotated[dt.datetime, BeforeValidator(_date_text(feature)), Field(strict=False), AfterValidator(_naive)]
    if feature.number_text:
        return Annotated[float, BeforeValidator(_number_text(feature))]
    return float


def _digit_codes(feature: Feature) -> bool:
    """Text categories that are all digits (ZIP codes, "02134"): a client may send them as JSON numbers."""
    return bool(feature.categories) and all(isinstance(c, str) and c.isdigit() for c in feature.categories or ())


def _code_text(value: Any) -> Any:
    """A code sent as a JSON number (98108) is its text ("98108"); booleans and fractions are not codes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _number_text(feature: Feature):
    """A number, or text written as the training file writes it ("$28,000", "14.07%"): both are accepted."""
    written = NumberText.from_dict(feature.number_text or {})
    example = (feature.number_text or {}).get("example", "")
    decimal = (feature.number_text or {}).get("decimal", ".")

    def read(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        number = parse_number(value.strip()) if value.strip() else None
        for mark in dict.fromkeys((decimal, ".")):  # as the file wrote it, or with a decimal point
            number = number if number is not None else written.parse(value, mark)
        if number is None:
            raise ValueError(f"{value!r} is not a number; send a number or text written like {example!r}")
        return number

    return read


def _whole_number_text(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _date_text(feature: Feature):
    """Dates arrive as text (or date objects in-process); numbers are refused, not read as epochs."""

    def check(value: Any) -> Any:
        if isinstance(value, (dt.date, dt.datetime)):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected a {feature.type_name} as text, e.g. {feature.example!r}")
        moment = parse_date(value.strip(), feature.date_format)
        if moment is None:
            raise ValueError(f"{value!r} is not a {feature.type_name}; use ISO 8601, e.g. {feature.example!r}")
        return moment.date() if feature.kind == DATE else moment

    return check


def _naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        raise ValueError("time zones are not supported; send the local date-time without an offset")
    return value


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
