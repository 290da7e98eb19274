"""Inferring a feature schema from the text of a CSV: what each column is, and why.

Each column is, in this order of checks: empty (ignored), boolean, numeric, date, or text; an
integer column unique per row that counts like a row number, and a text column with too many
distinct values, are identifiers (passed through, not features). Every choice carries a reason
that the training summary prints, and every choice can be overridden (`Overrides`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from tabserve.core import data
from tabserve.core.errors import DataError
from tabserve.core.numbers import NumberText, detect
from tabserve.core.pipeline import CLASSIFICATION, REGRESSION
from tabserve.core.schema import (
    BOOLEAN,
    CATEGORICAL,
    DATE,
    DATETIME,
    FALSE_WORDS,
    MISSING_MARKERS,
    NUMERIC,
    TRUE_WORDS,
    Feature,
    FeatureSchema,
    free_label,
    parse_date,
    parse_number,
)

# A category keeps at most this many values (the most frequent); a column with more is an identifier when
# its values hardly repeat, else a rich category whose rarer values are pooled into one "other" level.
MAX_CATEGORIES = 200
# A value of a rich category with fewer rows than this is pooled into "other": too rare to learn from.
MIN_CATEGORY_ROWS = 5
# ... and the values kept must cover this share of the rows, else the column is an identifier or free text.
MIN_KEPT_SHARE = 0.5
# Below this many values, uniqueness says nothing: a tiny file's categories are all distinct.
MIN_ROWS_FOR_ID = 20
# A text column whose distinct values exceed this share of its values is an identifier or free text.
MAX_DISTINCT_SHARE = 0.5
# A column whose values all come from one of these pairs (any case) is boolean; 1/0 stays numeric.
BOOLEAN_PAIRS = ({"true", "false"}, {"yes", "no"}, {"t", "f"}, {"y", "n"})
# Names that say "identifier" when the column is unique per row (row numbers, keys, exports' index).
ID_NAME = re.compile(r"(?i)(.*[_ .\-])?(id|key|index|rownames|row|uuid|#)|unnamed: ?\d+|.*[a-z]Id|.*ID")
# Names that say "a name, an address, free text" for a text column with many values: not categories.
NAME_LIKE = re.compile(
    r"(?i).*(name|title|email|e-mail|phone|address|url|comment|description|text|tweet|message|note|notes)"
)
# Whole numbers named like a code (ZIP, postal, FIPS, ..._code) are categories, not amounts.
CODE_NAME = re.compile(r"(?i)(.*[_ .\-])?(zip|zipcode|zip_code|postcode|postal|postal_code|plz|fips|code)")
# Date formats tried in order (ISO first); the first that reads every value of a column wins.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d %Y",
    "%b %d, %Y",
    "%d-%b-%Y",
    "%d-%b-%y",
)
# With a European separator (";"), day-first formats are preferred where both read every value.
DAY_FIRST = ("%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S")


@dataclass(frozen=True)
class Overrides:
    """What the user said about columns (train.py's --categorical, --numeric, --date, --id, --keep, --drop)."""

    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    date: tuple[str, ...] = ()
    id: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    keep_constant: bool = False  # --keep-constant: columns with one value are features too
    # A model from elsewhere (import_model.py) saw the sample as pandas reads it: no number text stripped,
    # no codes made categories, no values pooled; only train.py's own pipeline gets those rules.
    as_pandas_reads: bool = False

    def check(self, columns: list[str], target: str) -> None:
        seen: dict[str, str] = {}
        for option in ("categorical", "numeric", "date", "id", "keep", "drop"):
            for name in getattr(self, option):
                if name not in columns:
                    raise DataError(f"--{option} names unknown column {name!r}; columns are: {', '.join(columns)}")
                if name == target:
                    raise DataError(f"--{option} names the target column {target!r}")
                if (
                    name in seen
                    and {seen[name], option} != {"keep", "categorical"}
                    and {seen[name], option} != {"keep", "numeric"}
                ):
                    raise DataError(f"column {name!r} is given to both --{seen[name]} and --{option}; choose one")
                seen[name] = option


NO_OVERRIDES = Overrides()  # the default: every column's kind is inferred


@dataclass
class Inferred:
    """A column's verdict: a feature, or a column kept out of the model (with the reason)."""

    feature: Feature | None = None
    other: str | None = None
    notes: list[str] = field(default_factory=list)


def infer_schema(
    raw: pd.DataFrame, overrides: Overrides = Overrides(), decimal: str = ".", sep: str = ","
) -> FeatureSchema:
    """The schema of `raw` (every cell as stripped text; the target column already removed)."""
    features, others = [], {}
    example = _example_row(raw)
    for name in raw.columns:
        verdict = infer_column(raw[name], example[name], overrides, decimal, sep)
        if verdict.feature is not None:
            features.append(verdict.feature)
        else:
            others[name] = verdict.other
    if not features:
        raise DataError(
            "no feature columns left: the CSV needs at least one column besides the target, ids, constant and "
            "dropped columns"
        )
    return FeatureSchema(tuple(features), others)


def infer_column(
    column: pd.Series, example_text: str, overrides: Overrides = Overrides(), decimal: str = ".", sep: str = ","
) -> Inferred:
    name = str(column.name)
    if name in overrides.drop:
        return Inferred(other="dropped with --drop")
    if name in overrides.id:
        return Inferred(other="identifier (--id)")
    missing = column.isin(MISSING_MARKERS)
    values = column[~missing]
    if values.empty:
        return Inferred(other="empty: no values in any row")
    nullable = bool(missing.any())
    markers = sorted(set(column[missing]) - {""})
    seen = f"; missing: {', '.join(repr(m) for m in markers)}" if markers else ""

    if name in overrides.numeric:
        return Inferred(
            _numeric(name, values, nullable, example_text, decimal, "numeric (--numeric)", forced=True, seen=seen)
        )
    if name in overrides.categorical:
        return Inferred(
            _categorical(name, values, nullable, example_text, decimal, "categorical (--categorical)" + seen, overrides)
        )
    if name in overrides.date:
        return Inferred(_date(name, values, nullable, example_text, sep, forced=True, seen=seen))

    constant = _constant(name, column, overrides)
    if constant:
        return Inferred(other=constant)

    lowered = set(values.str.lower().unique())
    if any(lowered <= pair for pair in BOOLEAN_PAIRS):
        spelled = "/".join(sorted(values.unique())[:4])
        example = Feature(name, BOOLEAN, nullable).parse_cell(example_text)
        return Inferred(Feature(name, BOOLEAN, nullable, example=example, reason=f"boolean: values {spelled}{seen}"))

    numbers = values.map(lambda text: parse_number(text, decimal))
    if numbers.notna().all():
        numbers = numbers.astype(float)
        if all_whole(numbers) and name not in overrides.keep:
            why = _id_reason(name, numbers)
            if why:
                return Inferred(other=f"identifier: {why} (--keep {name} makes it a feature)")
        code = None if overrides.as_pandas_reads else _code_reason(name, values, numbers)
        if code:
            return Inferred(_text_category(name, values, nullable, example_text, f"{code}{seen}", overrides))
        return Inferred(_numeric(name, values, nullable, example_text, decimal, "numeric" + seen))

    written = None if overrides.as_pandas_reads else detect(values.unique(), decimal)
    if written is not None:
        return Inferred(_numeric(name, values, nullable, example_text, decimal, "numeric", seen=seen, written=written))

    date_format = _date_format(values, sep)
    if date_format:
        return Inferred(_date(name, values, nullable, example_text, sep, seen=seen, date_format=date_format))

    distinct = values.nunique()
    if name not in overrides.keep:
        not_category = _not_category(name, values, distinct)
        if not_category:
            return Inferred(other=f"{not_category}; --keep {name} makes it a category")
    not_numbers = sorted(values[numbers.isna()].unique())[:3]
    reason = ("text" if distinct > MAX_CATEGORIES else f"text: {distinct} categories") + (
        f" (e.g. {', '.join(repr(v) for v in not_numbers)} are not numbers)" if numbers.notna().any() else ""
    )
    return Inferred(_text_category(name, values, nullable, example_text, reason + seen, overrides))


def _constant(name: str, column: pd.Series, overrides: Overrides) -> str | None:
    """Why a column with one value in every row is left out, or None (a value and some missing cells is
    information: present or not)."""
    if overrides.keep_constant or name in overrides.keep or len(column) < 2 or column.nunique() != 1:
        return None
    return f"constant: {column.iloc[0]!r} in every row, nothing to learn (--keep {name} makes it a feature)"


def _code_reason(name: str, values: pd.Series, numbers: pd.Series) -> str | None:
    """Why whole numbers are codes (a category), not amounts: named like a code, or written with leading
    zeros at a fixed width ("02134"); else None."""
    if not all_whole(numbers):
        return None
    widths = values.str.len()
    fixed_width = widths.nunique() == 1 and widths.iloc[0] >= 3
    if fixed_width and values.str.fullmatch(r"\d+").all() and values.str.startswith("0").any():
        return f"category: codes written with leading zeros ({values.iloc[0]!r}); --numeric {name} makes them numbers"
    if CODE_NAME.fullmatch(name):
        return f"category: whole numbers named like a code; --numeric {name} makes them numbers"
    return None


def _not_category(name: str, values: pd.Series, distinct: int) -> str | None:
    """Why a text column is an identifier or free text rather than a category, or None. Values that repeat
    make a category however many there are (336 dog breeds over 52,000 licences); values that hardly
    repeat, or many values under a name that says name/id/free text, do not."""
    if len(values) >= MIN_ROWS_FOR_ID and distinct > MAX_DISTINCT_SHARE * len(values):
        return (
            f"identifier or free text: nearly one value per row ({distinct} distinct values in {len(values)} rows, "
            f"{len(values) / distinct:.1f} rows each)"
        )
    if distinct > MAX_CATEGORIES and (ID_NAME.fullmatch(name) or NAME_LIKE.fullmatch(name)):
        return f"identifier or free text: {distinct} distinct values and named like a name, id or text"
    if distinct > MAX_CATEGORIES:
        kept, _ = _kept_values(values.value_counts())
        share = int(values.isin(kept).sum()) / len(values)
        if share < MIN_KEPT_SHARE:
            return (
                f"identifier or free text: {distinct} distinct values that rarely repeat (those with "
                f"{MIN_CATEGORY_ROWS}+ rows cover {share:.0%} of the rows, under {MIN_KEPT_SHARE:.0%})"
            )
    return None


def _kept_values(counts: pd.Series) -> tuple[list, int]:
    """The values a rich category keeps (the most frequent with MIN_CATEGORY_ROWS+ rows, at most MAX_CATEGORIES),
    and how many rows the others hold."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    kept = [value for value, n in ranked if n >= MIN_CATEGORY_ROWS][:MAX_CATEGORIES]
    return kept, int(counts.sum()) - int(counts[kept].sum())


def _numeric(
    name: str,
    values: pd.Series,
    nullable: bool,
    example_text: str,
    decimal: str,
    reason: str,
    forced: bool = False,
    seen: str = "",
    written: NumberText | None = None,
) -> Feature:
    if forced and written is None:  # --numeric on "$28,000": the sign and separators are stripped all the same
        written = detect(values[values.map(lambda text: parse_number(text, decimal)).isna()].unique(), decimal)

    def read(text: str) -> float | None:
        number = parse_number(text, decimal)
        return number if number is not None or written is None else written.parse(text, decimal)

    numbers = values.map(read)
    extra: list[str] = []
    if numbers.isna().any():
        if not forced:
            raise DataError(f"column {name!r} has cells that are not numbers")
        extra = sorted(values[numbers.isna()].unique())
        if len(extra) > 20:
            raise DataError(
                f"--numeric {name}: {len(extra)} different non-numeric values (e.g. {extra[0]!r}); "
                "this column is not numeric"
            )
        nullable = True
        reason += f"; read as missing: {', '.join(repr(v) for v in extra)}"
    numbers = numbers.dropna().astype(float)
    if numbers.empty:
        raise DataError(f"--numeric {name}: no cell is a number")
    integer = all_whole(numbers)
    example = read(example_text) if example_text not in extra else None
    if example is not None and integer:
        example = int(example)
    number_text = None
    if written is not None:
        shown = example_text if written.parse(example_text, decimal) is not None else values.iloc[0]
        reason += f"; {written.describe(shown, decimal)}"
        number_text = written.to_dict(shown, decimal)
    return Feature(
        name,
        NUMERIC,
        nullable,
        min=float(numbers.min()),
        max=float(numbers.max()),
        integer=integer,
        example=example,
        missing_markers=extra or None,
        reason=reason + seen,
        number_text=number_text,
    )


def _categorical(
    name: str,
    values: pd.Series,
    nullable: bool,
    example_text: str,
    decimal: str,
    reason: str,
    overrides: Overrides = NO_OVERRIDES,
    as_text: bool = False,
) -> Feature:
    numbers = values.map(lambda text: parse_number(text, decimal))
    coded = not as_text and numbers.notna().all() and all_whole(numbers.astype(float))
    if coded:  # coded categories stay numbers: 1, 2, 3
        values = numbers.astype(float).astype(int)
        example = int(parse_number(example_text, decimal)) if parse_number(example_text, decimal) is not None else None
    else:
        example = example_text if example_text not in MISSING_MARKERS else None
    counts = values.value_counts()
    other = None
    if len(counts) > MAX_CATEGORIES and not overrides.as_pandas_reads:  # a rich category: the rare values pooled
        kept, pooled = _kept_values(counts)
        other = free_label("other", {str(v) for v in counts.index})
        reason += (
            f"; {len(counts)} distinct values that repeat ({len(values) / len(counts):.0f} rows each on average), so "
            f"a category, not an identifier; the {len(kept)} with {MIN_CATEGORY_ROWS}+ rows kept, the "
            f"{len(counts) - len(kept)} rarer ones ({pooled} rows) pooled as {other!r}, as is any value never seen"
        )
        categories: list = sorted(kept)
    else:
        categories = sorted(counts.index.tolist())
    if coded:
        reason += f"; codes {', '.join(map(str, categories[:8]))}{', ...' if len(categories) > 8 else ''}"
    return Feature(name, CATEGORICAL, nullable, categories=categories, example=example, reason=reason, other=other)


def _text_category(
    name: str, values: pd.Series, nullable: bool, example_text: str, reason: str, overrides: Overrides
) -> Feature:
    """A category of the cells' text (codes keep their leading zeros)."""
    return _categorical(name, values, nullable, example_text, ".", reason, overrides, as_text=True)


def _date(
    name: str,
    values: pd.Series,
    nullable: bool,
    example_text: str,
    sep: str,
    forced: bool = False,
    seen: str = "",
    date_format: str | None = None,
) -> Feature:
    date_format = date_format or _date_format(values, sep)
    if date_format is None:
        bad = next(v for v in values if parse_date(v) is None)
        raise DataError(
            f"--date {name}: {bad!r} is not a date in any known format (e.g. 2024-01-31, 31.01.2024, 01/31/2024)"
        )
    moments = values.map(lambda text: parse_date(text, date_format))
    has_time = any(m.hour or m.minute or m.second or m.microsecond for m in moments) or "%H" in date_format
    kind = DATETIME if has_time else DATE
    show = (lambda m: m.isoformat()) if has_time else (lambda m: m.date().isoformat())
    example = parse_date(example_text, date_format) if example_text not in MISSING_MARKERS else None
    why = f"{kind}{' (--date)' if forced else ''}: every value reads as {date_format}"
    return Feature(
        name,
        kind,
        nullable,
        example=None if example is None else show(example),
        date_format=date_format,
        first=show(min(moments)),
        last=show(max(moments)),
        reason=why + seen,
    )


def _date_format(values: pd.Series, sep: str) -> str | None:
    """The first format that reads every value (only for text with a separator: 20240131 is a number)."""
    sample = values.unique()
    if not all(re.search(r"\d", v) and re.search(r"[-/. :]", v) for v in sample[:50]):
        return None
    formats = (*DAY_FIRST, *DATE_FORMATS) if sep == ";" else DATE_FORMATS
    for date_format in formats:
        if all(_reads(v, date_format) for v in sample):
            return date_format
    return None


def _reads(text: str, date_format: str) -> bool:
    try:
        datetime.strptime(text, date_format)
        return True
    except ValueError:
        return False


def all_whole(numbers: pd.Series) -> bool:
    """Every number is a whole number (1.0 counts; NaN does not occur here)."""
    return bool((numbers == numbers.round()).all())


def _id_reason(name: str, numbers: pd.Series) -> str | None:
    """Why a whole-number column unique per row is a row number or key, or None."""
    if len(numbers) < MIN_ROWS_FOR_ID or numbers.nunique() != len(numbers):
        return None
    if numbers.is_monotonic_increasing:
        return "whole numbers unique per row, increasing like a row number"
    if numbers.max() - numbers.min() < 2 * len(numbers):
        return "whole numbers unique per row, dense like an auto-increment id"
    if ID_NAME.fullmatch(name):
        return "whole numbers unique per row, named like an id"
    return None


def _example_row(raw: pd.DataFrame) -> pd.Series:
    """The first complete row (no missing cells, empty columns aside), else the first row."""
    missing = raw.isin(MISSING_MARKERS)
    complete = ~missing.loc[:, ~missing.all()].any(axis=1)
    return raw[complete].iloc[0] if complete.any() else raw.iloc[0]


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV typed as training infers it (missing: None): for notebooks and tests."""
    table = data.read_table(path)
    schema = infer_schema(table.raw, decimal=table.decimal, sep=table.sep)
    typed = pd.DataFrame({f.name: [f.parse_cell(c, table.decimal) for c in table.raw[f.name]] for f in schema.features})
    others = [name for name in table.raw.columns if name not in schema.names]
    return pd.concat([table.raw[others], typed], axis=1)[list(table.raw.columns)]


MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
# A numeric target with at most this many distinct whole-number values is taken as class labels.
MAX_CLASSES_FOR_NUMERIC_TARGET = 20


def check_name(name: str) -> str:
    """`name` if it is a valid model name in the store, else DataError saying what is allowed."""
    if not MODEL_NAME_PATTERN.match(name):
        raise DataError(f"model name {name!r} is invalid: use lowercase letters, digits, '.', '_' and '-'")
    return name


def default_name(path: Path) -> str:
    """A valid BentoML model name from a file name: "My Data.csv" -> "my_data"."""
    name = re.sub(r"[^a-z0-9._-]+", "_", Path(path).stem.lower()).strip("._-")
    return name or "model"


def infer_target(raw: pd.Series, task: str | None, decimal: str) -> tuple[pd.Series, str, str]:
    """The labelled target cells as labels or values of the right type: (target, task, why that task).

    Booleans (true/false, yes/no) are labels true/false; whole numbers stay whole; text stays text.
    """
    name = str(raw.name)
    lowered = set(raw.str.lower().unique())
    if lowered <= TRUE_WORDS | FALSE_WORDS and not lowered <= {"0", "1"} and len(lowered) <= 2:
        if task == REGRESSION:
            raise DataError(
                f"target {name!r} is boolean ({', '.join(sorted(raw.unique()))}), so it can't be a regression target"
            )
        return raw.str.lower().isin(TRUE_WORDS).rename(name), CLASSIFICATION, "boolean target: predicted as true/false"
    numbers = raw.map(lambda text: parse_number(text, decimal))
    written = detect(raw.unique(), decimal) if numbers.isna().any() else None
    if written is not None:  # "14.07%", "$28,000": an amount written as text
        numbers = raw.map(lambda text: written.parse(text, decimal)).astype(float).rename(name)
        if written.is_money_or_percent and task is None:
            shown = raw.iloc[0]
            why = (
                f"{written.describe(shown, decimal)}: an amount, so a regression "
                f"({numbers.nunique()} distinct values); --task classification treats them as classes"
            )
            return numbers, REGRESSION, why
    if numbers.isna().any():
        if task == REGRESSION:
            bad = raw[numbers.isna()].iloc[0]
            raise DataError(f"target {name!r} is not numeric (e.g. {bad!r}), so it can't be a regression target")
        return raw, CLASSIFICATION, f"text target: {raw.nunique()} classes"
    numbers = numbers.astype(float).rename(name)
    whole = all_whole(numbers)
    distinct = numbers.nunique()
    if task is None:
        if whole and distinct <= MAX_CLASSES_FOR_NUMERIC_TARGET:
            task = CLASSIFICATION
            why = (
                f"{distinct} distinct whole numbers (at most {MAX_CLASSES_FOR_NUMERIC_TARGET}) taken as classes; "
                "--task regression predicts a number instead"
            )
        else:
            task = REGRESSION
            why = f"numeric target with {distinct} distinct values; --task classification treats them as classes"
    else:
        why = f"--task {task}"
    if task == CLASSIFICATION and whole:
        return numbers.astype(int), task, why  # 0/1 labels stay integers, not 0.0/1.0
    return numbers, task, why
