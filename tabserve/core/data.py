"""Reading tables: training files and uploaded files to score, as text first, typed by the schema.

A file is CSV text in any of the encodings users' tools write, or an Excel workbook:

- The encoding (`decode`): a byte-order mark says it (UTF-8, UTF-16 or UTF-32: Excel's "Unicode Text" is
  UTF-16 with a BOM); else text that is valid UTF-8 is UTF-8; else a legacy code page is detected with
  charset-normalizer, with one rule on top: when the bytes decode as Windows-1252 and the detector's guess is
  another single-byte Latin code page (on short French or German text it often says cp1250 or mac_roman),
  cp1252 is used, the code page Excel writes in Western Europe and the Americas. A file that mixes valid
  UTF-8 with other bytes is refused rather than read half garbled. `encoding=` (train.py's --encoding)
  overrides all of it.
- An .xlsx/.xlsm workbook (`read_sheet`, found by its zip signature whatever the file is named) is read with
  openpyxl into the same text table: the first worksheet unless `sheet=` names one; the header is its first
  non-empty row; numbers as text (36.0 is "36"), dates in ISO form, booleans true/false.

The separator and the decimal mark are detected (csv.Sniffer on a sample; a decimal comma when numbers
like 3,14 appear with a non-comma separator) unless given. Everything raises DataError with one line
that names what is wrong, never a pandas traceback.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import io
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tabserve.core.errors import DataError, TooLarge, repeated
from tabserve.core.schema import MISSING_MARKERS, FeatureSchema

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PENGUINS_CSV = PROJECT_ROOT / "data" / "penguins.csv"
SEPARATORS = ",;\t|"
SNIFF_BYTES = 64 * 1024
DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")

# Byte-order marks, longest first (UTF-32 LE's starts with UTF-16 LE's), and the codec that reads past them.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Single-byte Latin code pages a detector may guess for Western European text that is really cp1252.
LATIN_CODE_PAGES = frozenset(
    codecs.lookup(name).name
    for name in (
        "cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4",
        "iso8859_9", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16", "mac_roman",
        "mac_latin2", "mac_iceland", "mac_turkish", "cp437", "cp850", "cp852", "cp858", "cp775",
    )
)  # fmt: skip
DETECT_SAMPLE_BYTES = 64 * 1024  # of lines holding non-ASCII bytes: what the detector reads
XLSX_SIGNATURE = b"PK\x03\x04"  # a zip archive: .xlsx, .xlsm (and .ods, .docx, ...)
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an old Office file: .xls (and .doc, ...)
WORKBOOK = "xlsx"  # Table.encoding of a table read from a workbook (it has no text encoding)
MAX_UNZIP_RATIO = 100  # an uploaded workbook's parts unzip to at most this many times its size (workbooks: 5-20)

if TYPE_CHECKING:  # pandas is imported when a CSV is read, not by every `import service` (~0.6 s of a cold start)
    import pandas as pd


@dataclass(frozen=True)
class Table:
    """A table as text: every cell a stripped string ("" when empty), plus how the file was written:
    its separator and decimal mark, its encoding (the Python codec it was decoded with: "utf-8", "utf-8-sig"
    for UTF-8 with a BOM, "utf-16", "cp1252", ...; "xlsx" for a workbook) and the worksheet read."""

    raw: pd.DataFrame
    sep: str
    decimal: str
    encoding: str = "utf-8"
    sheet: str | None = None


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


# --- Bytes to text: the encoding ---------------------------------------------------------------

TRAINING_HINT = "give its encoding with --encoding (e.g. --encoding cp1252)"
UPLOAD_HINT = "save it as UTF-8"


def given_codec(encoding: str) -> str:
    """Python's name of an encoding the user named (--encoding); DataError when Python has no such text codec."""
    try:
        "".encode(encoding)  # LookupError for an unknown name, and for a codec that is not text (base64, zlib)
        return codecs.lookup(encoding).name
    except (LookupError, TypeError, ValueError):
        raise DataError(
            f"--encoding {encoding!r} is not a text encoding Python knows; use e.g. utf-8, cp1252, latin-1, utf-16"
        ) from None


def bom_codec(head: bytes) -> str | None:
    """The codec a byte-order mark at the start of the bytes names (it reads past the mark); None without one."""
    return next((codec for bom, codec in BOMS if head.startswith(bom)), None)


def decode(
    content: bytes, encoding: str | None = None, what: str = "the file", hint: str = TRAINING_HINT
) -> tuple[str, str]:
    """The text of a file's bytes and the codec that read them: `encoding` when given; else a byte-order
    mark's (utf-8-sig, utf-16, utf-32); else "utf-8" for valid UTF-8; else the legacy code page
    `legacy_encoding` detects. DataError (one line; `hint` says what to do) for binary bytes, bytes that are
    not in the encoding given, or bytes in no encoding this can tell."""
    if encoding is not None:
        codec = given_codec(encoding)
        text = _decoded(content, codec, what, "leave --encoding out to detect it, or give the right one")
    else:
        codec = bom_codec(content)
        if codec is None:
            if b"\x00" in content[:SNIFF_BYTES]:
                raise DataError(f"{what} is binary, not CSV text")
            try:
                return _no_nul(content.decode("utf-8"), what), "utf-8"
            except UnicodeDecodeError as exc:
                codec = legacy_encoding(content, what, hint, first_bad=exc.start)
        text = _decoded(content, codec, what, hint)
    return _no_nul(text.removeprefix("\ufeff"), what), codec


def legacy_encoding(content: bytes, what: str = "the file", hint: str = TRAINING_HINT, first_bad: int = 0) -> str:
    """The code page of bytes that are not UTF-8 (given whole, or a sample of them): charset-normalizer's
    guess from the lines holding non-ASCII bytes, except that cp1252 is taken when the bytes decode as cp1252
    and the guess is another single-byte Latin code page (LATIN_CODE_PAGES), reads them as the same text, or
    reads them with no less mess (charset-normalizer's chaos) than cp1252 does: on a few short values the
    guess is often a code page of another script. So a file in cp1250, cp1254 or latin-1 whose letters
    cp1252 also has is read as cp1252 (the same text); one with letters only cp1250 has (ł, ś, ő) needs
    --encoding cp1250. DataError for bytes that mix valid UTF-8 with other bytes (a UTF-8 file with a line
    pasted from elsewhere) and for bytes in no encoding it can tell."""
    from charset_normalizer import from_bytes

    sample = non_ascii_lines(content)
    mixed = sample.decode("utf-8", errors="replace")
    invalid = mixed.count("\ufffd")
    if sum(1 for char in mixed if char > "\x7f") - invalid > invalid:
        raise DataError(
            f"{what} mixes UTF-8 with another encoding (byte {first_bad} is not UTF-8); save it as UTF-8 throughout"
        )
    best = from_bytes(sample).best()
    guess = codecs.lookup(best.encoding).name if best is not None else None

    def cp1252_reads_no_worse() -> bool:
        as_cp1252 = from_bytes(sample, cp_isolation=["cp1252"], threshold=1.0).best()
        return as_cp1252 is not None and as_cp1252.chaos <= best.chaos

    if _decodes(content, "cp1252") and (
        guess is None or guess in LATIN_CODE_PAGES or "cp1252" in best.could_be_from_charset or cp1252_reads_no_worse()
    ):
        return "cp1252"
    if guess is None or guess.startswith("utf"):
        raise DataError(f"{what} is not UTF-8 (byte {first_bad} is invalid) and its encoding can't be told; {hint}")
    return guess


def non_ascii_lines(content: bytes, limit: int = DETECT_SAMPLE_BYTES) -> bytes:
    """The lines of `content` that hold a byte above 0x7F, up to about `limit` bytes: where an encoding shows."""
    found, size, start = [], 0, 0
    high = re.compile(rb"[\x80-\xff]")
    while size < limit and (match := high.search(content, start)) is not None:
        begin = content.rfind(b"\n", 0, match.start()) + 1
        end = content.find(b"\n", match.start())
        end = len(content) if end < 0 else end + 1
        found.append(content[begin:end])
        size += end - begin
        start = end
    return b"".join(found)


def _decodes(content: bytes, codec: str) -> bool:
    try:
        content.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def _decoded(content: bytes, codec: str, what: str, hint: str) -> str:
    try:
        return content.decode(codec)
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} is not {codec} text (byte {exc.start} is invalid); {hint}") from None


def _no_nul(text: str, what: str) -> str:
    if "\x00" in text[:SNIFF_BYTES]:
        raise DataError(f"{what} is binary, not CSV text")
    return text


# --- Workbooks ---------------------------------------------------------------------------------


def unzipped_size(content: bytes) -> int:
    """The bytes a zip archive's parts declare they unzip to (zipfile reads no more than that); 0 if unreadable."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return 0


def is_workbook(content: bytes, what: str) -> bool:
    """Whether the bytes are an .xlsx/.xlsm workbook (a zip archive); DataError for an old .xls."""
    if content.startswith(OLE_SIGNATURE):
        raise DataError(f"{what} is an old Excel .xls workbook (or another old Office file); save it as .xlsx or CSV")
    return content.startswith(XLSX_SIGNATURE)


def xlsx_cell(value: object, decimal: str = ".") -> str:
    """A workbook cell's value as the text a CSV would hold: "" for empty, true/false, whole numbers without
    ".0", other numbers as Python writes them (with `decimal` as the mark), dates and times in ISO form
    ("2013-01-01" for a date-time at midnight, else "2013-01-01 05:30:00"), text stripped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = str(int(value)) if math.isfinite(value) and value.is_integer() and abs(value) < 1e16 else repr(value)
        return text if decimal == "." else text.replace(".", decimal)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None and value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value).strip()


@contextlib.contextmanager
def open_sheet(
    source: bytes | Path, sheet: str | None = None, what: str = "the workbook", decimal: str = "."
) -> Iterator[tuple[str, list[str], Iterator[list[str]]]]:
    """A worksheet of an .xlsx as text: (its name, the header, the data rows), each row as many cells as
    the header. The first worksheet unless `sheet` names one; the header is its first non-empty row; empty
    rows are skipped. DataError (one line) for an unreadable workbook, an unknown sheet, a value right of
    the header, a repeated column name."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(
            io.BytesIO(source) if isinstance(source, bytes) else source, read_only=True, data_only=True
        )
    except Exception as exc:  # zipfile, XML and openpyxl's own errors: the file is not a workbook it can read
        raise DataError(
            f"{what} is a zip archive but not a readable .xlsx workbook ({_first_line(exc)}); save it as .xlsx or CSV"
        ) from None
    try:
        worksheets = [ws.title for ws in book.worksheets]
        if sheet is not None and sheet not in book.sheetnames:
            raise DataError(f"{what} has no sheet {sheet!r}; its sheets are: {', '.join(map(repr, book.sheetnames))}")
        if sheet is not None and sheet not in worksheets:
            raise DataError(f"sheet {sheet!r} of {what} is a chart, not a worksheet")
        if not worksheets:
            raise DataError(f"{what} has no worksheet")
        name = sheet if sheet is not None else worksheets[0]
        ws = book[name]
        ws.reset_dimensions()  # a wrong <dimension> in the file would cut rows or columns off
        header, rows = _sheet_rows(ws.iter_rows(values_only=True), f"sheet {name!r} of {what}", decimal)
        yield name, header, rows
    finally:
        book.close()


def _sheet_rows(values: Iterator[tuple], where: str, decimal: str) -> tuple[list[str], Iterator[list[str]]]:
    from openpyxl.utils import get_column_letter

    def cells(row: tuple) -> list[str]:
        text = [xlsx_cell(value, decimal) for value in row]
        while text and not text[-1]:
            text.pop()
        return text

    numbered, header = enumerate(values, start=1), []
    try:
        for _, row in numbered:  # the header: the first row with a value (the rows after it follow on)
            header = cells(row)
            if header:
                break
    except Exception as exc:  # openpyxl's and the XML parser's errors on a damaged sheet
        raise DataError(f"{where} is not readable: {_first_line(exc)}") from None
    if not header:
        raise DataError(f"{where} is empty")
    header = [name or f"Unnamed: {i}" for i, name in enumerate(header)]  # as pandas names a CSV's blank header
    dupes = repeated(header)
    if dupes:
        raise DataError(f"{where} repeats column name(s): {', '.join(dupes)}")
    width = len(header)

    def rows() -> Iterator[list[str]]:
        try:
            for number, row in numbered:
                text = cells(row)
                if len(text) > width:
                    raise DataError(
                        f"{where}: row {number} has a value in column {get_column_letter(len(text))}, right of the "
                        f"header (columns A-{get_column_letter(width)}); give that column a name or clear it"
                    )
                if text:
                    yield text + [""] * (width - len(text))
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{where} is not readable: {_first_line(exc)}") from None

    return header, rows()


def read_sheet(
    source: bytes | Path,
    sheet: str | None = None,
    what: str = "the workbook",
    decimal: str | None = None,
    max_rows: int | None = None,
) -> Table:
    """A worksheet as a Table (separator ",", decimal mark "." unless given, encoding "xlsx"). TooLarge past
    `max_rows` data rows, found without reading the rest."""
    import pandas as pd

    _check_decimal(decimal)
    decimal = decimal or "."
    with open_sheet(source, sheet, what, decimal) as (name, header, rows):
        body = []
        for row in rows:
            body.append(row)
            if max_rows is not None and len(body) > max_rows:
                raise TooLarge(f"the workbook has more than {max_rows:,} rows; the limit is {max_rows:,}")
    if not body:
        raise DataError(f"sheet {name!r} of {what} has a header but no data rows")
    return Table(pd.DataFrame(body, columns=header, dtype=str), ",", decimal, WORKBOOK, name)


def xlsx_rows(content: bytes) -> int:
    """Data rows of an .xlsx's first sheet, counted cheaply from its XML (its <row> elements but the header;
    a row of formatting only counts too), without reading a cell; 0 when it can't tell."""
    from xml.etree import ElementTree

    relationship = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    row = re.compile(rb"<(?:\w+:)?row[\s>/]")
    if unzipped_size(content) > MAX_UNZIP_RATIO * len(content):
        return 0  # refused by parse_upload
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as book:
            path = "xl/worksheets/sheet1.xml"
            with contextlib.suppress(KeyError, ElementTree.ParseError, StopIteration):
                workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
                first = next(e.get(relationship) for e in workbook.iter() if e.tag.endswith("}sheet"))
                links = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
                target = {e.get("Id"): e.get("Target") for e in links}[first]
                path = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            count, tail = 0, b""
            with book.open(path) as xml:
                for chunk in iter(lambda: xml.read(1 << 20), b""):
                    block = tail + chunk
                    cut = max(0, len(block) - 16)  # a tag starting in the last bytes is counted with the next chunk
                    count += sum(1 for match in row.finditer(block) if match.start() < cut)
                    tail = block[cut:]
            count += len(row.findall(tail))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return 0
    return max(0, count - 1)


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
    """CSV text as a Table (its encoding is the caller's to say); DataError naming the problem when it is not
    a usable CSV."""
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
    _check_decimal(decimal)
    return Table(raw, sep, decimal or sniff_decimal(raw, sep))


def _check_decimal(decimal: str | None) -> None:
    if decimal not in (None, ".", ","):
        raise DataError(f"decimal mark {decimal!r} is not supported; use . or ,")


def read_table(
    path: Path,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> Table:
    """A training file (CSV text in any encoding `decode` reads, or an .xlsx workbook) as a Table, or
    DataError saying why it can't be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    content = path.read_bytes()
    workbook = is_workbook(content, str(path))
    check_file_options(workbook, encoding, sheet, str(path))
    if workbook:
        return read_sheet(content, sheet, str(path), decimal)
    text, codec = decode(content, encoding, str(path))
    return replace(parse_text(text, sep, decimal, what=str(path)), encoding=codec)


def check_file_options(workbook: bool, encoding: str | None, sheet: str | None, what: str) -> None:
    """--encoding is for CSV text and --sheet for workbooks: DataError when one is given for the other kind."""
    if workbook and encoding is not None:
        raise DataError(f"--encoding is for CSV text; {what} is an .xlsx workbook (--sheet chooses its sheet)")
    if not workbook and sheet is not None:
        raise DataError(f"--sheet is for .xlsx workbooks; {what} is CSV text")


def load_training_data(
    path: Path,
    target: str,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> TrainingData:
    """A training file, checked for its target column."""
    table = read_table(path, sep, decimal, encoding, sheet)
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
    """An uploaded CSV (in any encoding `decode` reads; the answer is UTF-8) or .xlsx workbook (its first
    sheet), checked for shape but not yet typed.

    Columns must be the schema's features, in any order; the training file's other columns
    (ids, dropped columns) and `passthrough` (the target) may be there and are echoed back.
    """
    if not content.strip():
        raise DataError("the CSV file is empty")
    if is_workbook(content, "the uploaded file"):
        kind = "the workbook"
        if unzipped_size(content) > MAX_UNZIP_RATIO * len(content):  # a zip bomb would keep a worker busy for long
            raise DataError(
                f"the uploaded workbook unzips to more than {MAX_UNZIP_RATIO} times its size; send it as CSV"
            )
        table = read_sheet(content, what="the uploaded file", max_rows=max_rows)
    else:
        kind = "the CSV"
        text, codec = decode(content, what="the CSV file", hint=UPLOAD_HINT)
        sep = sniff_separator(text)  # once: the row check and the parse read the same dialect
        _check_row_lengths(text, sep)
        table = replace(parse_text(text, sep, what="the CSV file"), encoding=codec)
    header = list(table.raw.columns)
    missing = [name for name in schema.names if name not in header]
    if missing:
        raise DataError(f"{kind} lacks column(s): {', '.join(missing)}")
    allowed = set(schema.names) | set(schema.other_columns) | set(passthrough)
    extra = [name for name in header if name not in allowed]
    if extra:
        raise DataError(f"{kind} has unknown column(s): {', '.join(extra)}; expected: {', '.join(schema.names)}")
    if len(table.raw) > max_rows:
        raise TooLarge(f"the CSV file has {len(table.raw):,} rows; the limit is {max_rows:,}")
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
