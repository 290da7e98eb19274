"""Reading CSVs: training files and uploaded files to score, as text first, typed by the schema.

The separator and the decimal mark are detected (csv.Sniffer on a sample; a decimal comma when
numbers like 3,14 appear with a non-comma separator) unless given. Everything raises DataError with
one line that names what is wrong, never a pandas traceback.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tabserve.core.errors import DataError, TooLarge, repeated
from tabserve.core.schema import MISSING_MARKERS, FeatureSchema

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PENGUINS_CSV = PROJECT_ROOT / "data" / "penguins.csv"
SEPARATORS = ",;\t|"
SNIFF_BYTES = 64 * 1024
DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")

if TYPE_CHECKING:  # pandas is imported when a CSV is read, not by every `import service` (~0.6 s of a cold start)
    import pandas as pd


@dataclass(frozen=True)
class Table:
    """A CSV as text: every cell a stripped string ("" when empty), plus how the file was written."""

    raw: pd.DataFrame
    sep: str
    decimal: str


@dataclass(frozen=True)
class TrainingData:
    table: Table
    target: str
    source: str  # file name, for the model card
    sha256: str  # of the file's bytes


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sniff_separator(text: str) -> str:
    """The field separator of CSV text: comma, semicolon, tab or pipe (comma when unsure)."""
    sample = "\n".join(text[:SNIFF_BYTES].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {sep: header.count(sep) for sep in SEPARATORS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def sniff_decimal(raw: pd.DataFrame, sep: str) -> str:
    """ "," when numbers are written with a decimal comma (only possible when commas don't separate)."""
    if sep == ",":
        return "."
    sample = raw.head(200)
    return "," if sample.apply(lambda col: col.str.match(DECIMAL_COMMA).any()).any() else "."


def parse_text(text: str, sep: str | None = None, decimal: str | None = None, what: str = "the CSV file") -> Table:
    """CSV text as a Table; DataError naming the problem when it is not a usable CSV."""
    import pandas as pd

    if not text.strip():
        raise DataError(f"{what} is empty")
    sep = sep or sniff_separator(text)
    if sep not in SEPARATORS:
        raise DataError(f"separator {sep!r} is not supported; use one of: , ; tab |")
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    except (csv.Error, StopIteration) as exc:
        raise DataError(f"{what} is not a readable CSV: {exc}") from None
    header = [name.strip() for name in header]
    dupes = [name for name in repeated(header) if name]
    if dupes:
        raise DataError(f"{what} repeats column name(s): {', '.join(dupes)}")
    try:
        raw = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{what} is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{what} is not a readable CSV: {_first_line(exc)}") from None
    raw.columns = [str(name).strip() for name in raw.columns]
    raw = raw.apply(lambda col: col.str.strip())
    raw = raw[(raw != "").any(axis=1)].reset_index(drop=True)  # blank lines (all cells empty)
    if raw.empty:
        raise DataError(f"{what} has a header but no data rows")
    if decimal not in (None, ".", ","):
        raise DataError(f"decimal mark {decimal!r} is not supported; use . or ,")
    return Table(raw, sep, decimal or sniff_decimal(raw, sep))


def read_table(path: Path, sep: str | None = None, decimal: str | None = None) -> Table:
    """A training CSV as a Table, or DataError saying why it can't be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start} is invalid); save it as UTF-8") from None
    if "\x00" in text[:SNIFF_BYTES]:
        raise DataError(f"{path} is binary, not CSV text")
    return parse_text(text, sep, decimal, what=str(path))


def load_training_data(path: Path, target: str, sep: str | None = None, decimal: str | None = None) -> TrainingData:
    """A training CSV, checked for its target column."""
    table = read_table(path, sep, decimal)
    if target not in table.raw.columns:
        raise DataError(
            f"target column {target!r} is not in {Path(path).name}; columns are: {', '.join(table.raw.columns)}"
        )
    if table.raw[target].isin(MISSING_MARKERS).all():
        raise DataError(f"target column {target!r} has no values")
    return TrainingData(table, target, Path(path).name, sha256_of(Path(path)))


@dataclass(frozen=True)
class Upload:
    """An uploaded CSV to score: its table, and the columns passed through to the output."""

    table: Table
    passthrough: list[str]


def parse_upload(content: bytes, schema: FeatureSchema, max_rows: int, passthrough: tuple[str, ...] = ()) -> Upload:
    """An uploaded CSV, checked for shape but not yet typed.

    Columns must be the schema's features, in any order; the training file's other columns
    (ids, dropped columns) and `passthrough` (the target) may be there and are echoed back.
    """
    if not content.strip():
        raise DataError("the CSV file is empty")
    if b"\x00" in content[:SNIFF_BYTES]:
        raise DataError("the file is binary, not CSV text")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"the CSV file is not UTF-8 text (byte {exc.start} is invalid)") from None
    sep = sniff_separator(text)  # once: the row check and the parse read the same dialect
    _check_row_lengths(text, sep)
    table = parse_text(text, sep, what="the CSV file")
    header = list(table.raw.columns)
    missing = [name for name in schema.names if name not in header]
    if missing:
        raise DataError(f"the CSV lacks column(s): {', '.join(missing)}")
    allowed = set(schema.names) | set(schema.other_columns) | set(passthrough)
    extra = [name for name in header if name not in allowed]
    if extra:
        raise DataError(f"the CSV has unknown column(s): {', '.join(extra)}; expected: {', '.join(schema.names)}")
    if len(table.raw) > max_rows:
        raise TooLarge(f"the CSV file has {len(table.raw)} rows; the limit is {max_rows}")
    return Upload(table, [name for name in header if name not in schema.names])


def _check_row_lengths(text: str, sep: str) -> None:
    """Every non-blank row has as many cells as the header (pandas would pad or fail vaguely)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(reader, [])
        for number, row in enumerate((r for r in reader if any(c.strip() for c in r)), start=1):
            if len(row) != len(header):
                raise DataError(f"row {number} has {len(row)} cells; the header has {len(header)}")
    except csv.Error as exc:
        raise DataError(f"the CSV file is not readable: {exc}") from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
