"""Reading CSVs: training data (typed by pandas) and uploaded prediction files (typed by the schema).

Both raise DataError with one line that names what is wrong, never a pandas traceback.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tabserve.errors import DataError, TooLarge
from tabserve.schema import CATEGORICAL, FeatureSchema

# Cells read as missing, in training and upload alike.
NA_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PENGUINS_CSV = PROJECT_ROOT / "data" / "penguins.csv"


@dataclass(frozen=True)
class TrainingData:
    features: pd.DataFrame
    target: pd.Series
    source: str  # file name, for the model card
    sha256: str  # of the file's bytes
    dropped_rows: int  # rows whose target was missing


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_csv(path: Path) -> pd.DataFrame:
    """A training CSV as a DataFrame, or DataError saying why it can't be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        frame = pd.read_csv(path, na_values=NA_VALUES, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path} is not a readable CSV: {_first_line(exc)}") from None
    if frame.empty:
        raise DataError(f"{path} has a header but no data rows")
    with open(path, encoding="utf-8-sig", newline="") as handle:  # pandas renames duplicates to "a.1"
        header = next(csv.reader(handle), [])
    dupes = sorted({name for name in header if header.count(name) > 1})
    if dupes:
        raise DataError(f"{path} has duplicate column names: {', '.join(dupes)}")
    # Booleans are categories to the model; strings keep them stable between training and serving.
    for name in frame.columns:
        if pd.api.types.is_bool_dtype(frame[name]):
            frame[name] = frame[name].astype(str)
    return frame


def load_training_data(path: Path, target: str, drop: list[str] | None = None) -> TrainingData:
    """Split a training CSV into features and target, checking everything a model needs."""
    frame = read_csv(path)
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in {Path(path).name}; columns are: {', '.join(frame.columns)}")
    unknown = [name for name in drop or [] if name not in frame.columns]
    if unknown:
        raise DataError(f"--drop names unknown column(s): {', '.join(unknown)}")
    if target in (drop or []):
        raise DataError(f"--drop names the target column {target!r}")
    frame = frame.drop(columns=drop or [])
    labelled = frame[frame[target].notna()]
    if labelled.empty:
        raise DataError(f"target column {target!r} has no values")
    all_null = [name for name in labelled.columns if labelled[name].isna().all()]
    if all_null:
        raise DataError(f"column(s) with no values at all: {', '.join(all_null)}; drop them with --drop {','.join(all_null)}")
    return TrainingData(
        features=labelled.drop(columns=[target]).reset_index(drop=True),
        target=labelled[target].reset_index(drop=True),
        source=Path(path).name,
        sha256=sha256_of(Path(path)),
        dropped_rows=len(frame) - len(labelled),
    )


def parse_upload(content: bytes, schema: FeatureSchema, max_rows: int, passthrough: tuple[str, ...] = ()) -> tuple[list[str], list[dict[str, str]]]:
    """An uploaded CSV as (header, rows of raw strings), checked for shape but not yet typed.

    Columns must be exactly the schema's features, in any order; columns named in
    `passthrough` (the training target, say) are allowed and echoed back but not used.
    """
    if not content.strip():
        raise DataError("the CSV file is empty")
    if b"\x00" in content[:65536]:
        raise DataError("the file is binary, not CSV text")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"the CSV file is not UTF-8 text (byte {exc.start} is invalid)") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"the CSV file is not readable: {exc}") from None
    dupes = sorted({name for name in header if header.count(name) > 1})
    if dupes:
        raise DataError(f"the CSV header repeats column(s): {', '.join(dupes)}")
    missing = [name for name in schema.names if name not in header]
    if missing:
        raise DataError(f"the CSV lacks column(s): {', '.join(missing)}")
    extra = [name for name in header if name not in schema.names and name not in passthrough]
    if extra:
        raise DataError(f"the CSV has unknown column(s): {', '.join(extra)}; expected: {', '.join(schema.names)}")
    rows = [row for row in rows if any(cell.strip() for cell in row)]  # skip blank lines
    if not rows:
        raise DataError("the CSV file has a header but no data rows")
    if len(rows) > max_rows:
        raise TooLarge(f"the CSV file has {len(rows)} rows; the limit is {max_rows}")
    out = []
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise DataError(f"row {number} has {len(row)} cells; the header has {len(header)}")
        out.append(dict(zip(header, row)))
    return header, out


def typed_cells(row: dict[str, str], schema: FeatureSchema) -> dict[str, Any]:
    """Raw CSV cells to JSON-like values: numbers parsed, missing cells None.

    What does not parse is left as the string, so validation reports it like a JSON type error.
    """
    record: dict[str, Any] = {}
    for feature in schema.features:
        cell = row[feature.name].strip()
        if cell in NA_VALUES:
            record[feature.name] = None
        elif feature.kind == CATEGORICAL:
            record[feature.name] = cell
        else:
            try:
                number = float(cell)
            except ValueError:
                number = None
            record[feature.name] = number if number is not None and math.isfinite(number) else cell
    return record


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
