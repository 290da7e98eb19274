"""The files of batch scoring: the input (CSV read as text, an .xlsx workbook, or Parquet) checked before any
work starts, and the outputs: the scored rows (Parquet with the model tag in its metadata, or CSV) and the rejected
rows beside them (<out stem>.rejects.csv, the input row plus an `error` column).

A CSV is read in the encodings train.py reads (tabserve/core/data.py: UTF-8, a byte-order mark's UTF-16 or
UTF-32, else a detected legacy code page such as cp1252; --encoding overrides). UTF-8 is read as it is; a file in
another encoding, and a workbook's sheet (--sheet, the first by default), are first written as a UTF-8 CSV in a
temporary directory (system temp; beside the input for a Spark cluster, whose workers read it at the same path),
removed afterwards: both engines then read the one kind of file. Outputs are UTF-8.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tabserve.core import data, rows
from tabserve.core.errors import DataError
from tabserve.scoring.frames import ERROR, ScoringModel

TEXT_INPUTS = (".csv", ".txt", ".tsv")  # Excel's "Unicode Text" is a .txt (UTF-16, tabs)
WORKBOOK_INPUTS = (".xlsx", ".xlsm")
INPUTS = (*TEXT_INPUTS, *WORKBOOK_INPUTS, ".parquet")
OUTPUTS = (".parquet", ".csv")
METADATA_KEY = b"tabserve.model"
UTF8 = ("utf-8", "utf-8-sig")  # read as they are; any other encoding is copied to UTF-8 first
SAMPLE_BYTES = 1 << 20  # read around the first byte that is not UTF-8, to detect the encoding


@dataclass(frozen=True)
class Source:
    """An input file, checked: its kind, columns, and for a CSV its separator, decimal mark and encoding.
    `path` is the file the engines read: the input itself, or its UTF-8 copy (then `origin` is the input)."""

    path: Path
    kind: str  # "csv" or "parquet" (a workbook is read as its sheet's UTF-8 CSV copy)
    columns: list[str]
    sep: str = ","
    decimal: str = "."
    rows: int | None = None  # known for Parquet (its metadata); a CSV is counted by lines, roughly
    multiline: bool = False  # a CSV whose first rows have quoted line breaks in cells
    encoding: str = "utf-8"  # the codec of the input's text (data.Table.encoding; "xlsx" for a workbook)
    encoding_given: bool = False  # by --encoding
    sheet: str | None = None  # the worksheet, for a workbook
    origin: Path | None = None  # the input, when `path` is its UTF-8 copy
    scratch: Path | None = None  # the temporary directory of that copy (close() removes it)

    @classmethod
    def open(
        cls,
        path: Path,
        model: ScoringModel,
        encoding: str | None = None,
        sheet: str | None = None,
        scratch_dir: Path | None = None,
    ) -> Source:
        """The input checked against the model; a UTF-8 copy made (in `scratch_dir`, else the system's temp
        directory) when it is in another encoding or a workbook. close() it when done."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in INPUTS:
            kind = path.suffix or "(none)"
            raise DataError(f"{path.name}: unsupported file type {kind!r}; use .csv, .txt, .tsv, .xlsx or .parquet")
        if not path.is_file():
            raise DataError(f"no such file: {path}")
        if suffix == ".parquet":
            if encoding is not None or sheet is not None:
                raise DataError("--encoding and --sheet are for CSV and .xlsx inputs, not Parquet")
            source = cls._parquet(path)
        else:
            source = cls._text_or_workbook(path, encoding, sheet)
        missing = [name for name in model.card.schema.names if name not in source.columns]
        if missing:
            raise DataError(f"{path.name} lacks feature column(s): {', '.join(missing)}")
        taken = [name for name in model.added_columns if name in source.columns]
        if taken:
            raise DataError(f"{path.name} already has column(s) {', '.join(taken)}, which the output adds; rename them")
        return source._in_utf8(scratch_dir)

    def close(self) -> None:
        """Remove the UTF-8 copy, if one was made."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def input(self) -> Path:
        """The file the user gave."""
        return self.origin or self.path

    @classmethod
    def _parquet(cls, path: Path) -> Source:
        try:
            meta = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path} is not a readable Parquet file: {_first_line(exc)}") from None
        return cls(path, "parquet", list(meta.schema_arrow.names), rows=meta.metadata.num_rows)

    @classmethod
    def _text_or_workbook(cls, path: Path, encoding: str | None, sheet: str | None) -> Source:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(data.SNIFF_BYTES)
        except OSError as exc:
            raise DataError(f"{path} can't be read: {exc.strerror}") from None
        workbook = data.is_workbook(raw, str(path))
        data.check_file_options(workbook, encoding, sheet, str(path))
        if workbook:
            return cls._workbook(path, sheet)
        if not raw.strip():
            raise DataError(f"{path} is empty")
        codec = data.given_codec(encoding) if encoding is not None else data.bom_codec(raw)
        if codec is None and b"\x00" in raw:
            raise DataError(f"{path} is binary, not CSV text")
        codec, lines = _scan(path, raw, codec, encoding is not None)
        try:
            head = codecs.getincrementaldecoder(codec)().decode(raw)  # a character cut at the end waits
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not {codec} text (byte {exc.start} is invalid); {_hint(encoding)}") from None
        head = head.removeprefix("\ufeff")
        if "\x00" in head:
            raise DataError(f"{path} is binary, not CSV text")
        if not head.strip():
            raise DataError(f"{path} is empty")
        sep = data.sniff_separator(head)
        # The first rows, read as /predict_csv reads an upload: the header, and the decimal mark.
        parts = head.splitlines(keepends=True)
        if len(raw) == data.SNIFF_BYTES and len(parts) > 2:
            parts = parts[:-1]  # cut off mid-row
        table = data.parse_text("".join(parts[:201]), sep, what=str(path))
        multiline = bool(table.raw.apply(lambda col: col.str.contains("\n", regex=False).any()).any())
        return cls(
            path,
            "csv",
            list(table.raw.columns),
            sep,
            table.decimal,
            lines - 1,
            multiline,
            encoding=codec,
            encoding_given=encoding is not None,
        )

    @classmethod
    def _workbook(cls, path: Path, sheet: str | None) -> Source:
        with data.open_sheet(path, sheet, str(path)) as (name, header, cells):
            if next(cells, None) is None:
                raise DataError(f"sheet {name!r} of {path} has a header but no data rows")
        return cls(path, "csv", header, encoding=data.WORKBOOK, sheet=name)

    def _in_utf8(self, scratch_dir: Path | None) -> Source:
        """This source, or one reading a UTF-8 CSV copy of it (a workbook's sheet, or text in another encoding)."""
        if self.kind != "csv" or (self.sheet is None and self.encoding in UTF8):
            return self
        try:
            scratch = Path(tempfile.mkdtemp(prefix="tabserve-score-", dir=scratch_dir))
        except OSError as exc:
            where = scratch_dir or tempfile.gettempdir()
            raise DataError(
                f"{self.path} is read through a UTF-8 copy, which can't be written in {where}: {exc.strerror}"
            ) from None
        copy = scratch / f"{self.path.stem}.csv"
        try:
            if self.sheet is not None:
                lines, multiline = _sheet_to_csv(self.path, self.sheet, copy)
            else:
                lines, multiline = _transcode(self.path, self.encoding, copy, self.encoding_given), self.multiline
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return replace(self, path=copy, origin=self.path, scratch=scratch, rows=lines - 1, multiline=multiline)

    def csv_chunks(self, size: int) -> Iterator[pd.DataFrame]:
        """The CSV's rows as text, `size` at a time (every cell a str, names stripped)."""
        try:
            reader = pd.read_csv(
                self.path,
                sep=self.sep,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=True,
                chunksize=size,
                encoding="utf-8-sig",
            )
            for chunk in reader:
                chunk.columns = self.columns
                yield chunk
        except (pd.errors.ParserError, ValueError) as exc:
            raise DataError(f"{self.input} is not a readable CSV: {_first_line(exc)}") from None

    def parquet_batches(self, size: int) -> Iterator[pa.Table]:
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=size):
            yield pa.Table.from_batches([batch])


def _hint(encoding: str | None) -> str:
    return "leave --encoding out to detect it, or give the right one" if encoding is not None else data.TRAINING_HINT


def _scan(path: Path, head: bytes, codec: str | None, given: bool) -> tuple[str, int]:
    """One pass over the file: its lines counted (bytes b"\\n": right for every encoding but UTF-16/32, which
    are counted again as they are copied) and, unless an encoding other than UTF-8 is known, its bytes checked
    as UTF-8. (The codec, the lines): a legacy code page detected (data.legacy_encoding) around the first byte
    that is not UTF-8, when none was known; DataError when one was and the bytes are not in it."""
    check = codec is None or codec in UTF8
    decoder = codecs.getincrementaldecoder("utf-8")() if check else None
    count, last, offset, bad = 0, b"\n", 0, None
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
            if decoder is not None and bad is None:
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    bad = offset - pending + exc.start
            offset += len(block)
        if decoder is not None and bad is None:
            pending = len(decoder.getstate()[0])
            if pending:  # a character cut off by the end of the file
                bad = offset - pending
        if bad is not None and codec is None:
            handle.seek(max(0, bad - 4096))
            codec = data.legacy_encoding(head + handle.read(SAMPLE_BYTES), str(path), first_bad=bad)
    lines = count + (last != b"\n")
    if bad is not None and codec in UTF8:
        raise DataError(f"{path} is not UTF-8 text (byte {bad} is invalid); {_hint('utf-8' if given else None)}")
    return codec or "utf-8", lines


def _transcode(path: Path, codec: str, copy: Path, given: bool) -> int:
    """`path` in `codec` written to `copy` as UTF-8 (line ends as they were); its lines."""
    decoder = codecs.getincrementaldecoder(codec)()
    lines, offset, last, started = 0, 0, "\n", False
    with open(path, "rb") as source, open(copy, "w", encoding="utf-8", newline="") as target:
        for block in itertools.chain(iter(lambda: source.read(1 << 20), b""), [None]):  # None: the end
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(block or b"", final=block is None)
            except UnicodeDecodeError as exc:
                where = offset - pending + exc.start
                hint = _hint(codec if given else None)
                raise DataError(f"{path} is not {codec} text (byte {where} is invalid); {hint}") from None
            if not started and text:
                text, started = text.removeprefix("\ufeff"), True
            if text:
                lines += text.count("\n")
                last = text[-1]
                target.write(text)
            offset += len(block or b"")
    return lines + (last != "\n")


def _sheet_to_csv(path: Path, sheet: str, copy: Path) -> tuple[int, bool]:
    """The worksheet written to `copy` as a UTF-8 CSV (the header, then the data rows as text); (its lines,
    whether a cell holds a line break: Spark then reads it as multi-line CSV)."""
    lines, multiline = 0, False
    with (
        data.open_sheet(path, sheet, str(path)) as (_, header, cells),
        open(copy, "w", encoding="utf-8", newline="") as target,
    ):
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(header)
        for row in cells:
            writer.writerow(row)
            lines += 1
            multiline = multiline or any("\n" in cell or "\r" in cell for cell in row)
    return lines + 1, multiline


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Sink:
    """Where scored rows go: the good ones to `out` (Parquet or CSV), the rejected ones to the rejects CSV.

    Tables arrive in input order with the input columns, the result columns, the reason columns (--explain) and
    `error`; a rejected row is written as its input cells and `error`.
    """

    def __init__(self, out: Path, model: ScoringModel, source: Source):
        self.out = Path(out)
        if self.out.suffix.lower() not in OUTPUTS:
            raise DataError(
                f"{self.out.name}: unsupported output type {self.out.suffix or '(none)'!r}; use .parquet or .csv"
            )
        if not self.out.parent.is_dir():
            raise DataError(f"no such directory for the output: {self.out.parent}")
        self.rejects_path = self.out.with_name(f"{self.out.stem}.rejects.csv")
        self.model = model
        self.sep = source.sep if source.kind == "csv" else ","
        self.decimal = source.decimal if source.kind == "csv" else "."
        self.scored = self.rejected = 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv_started = self._rejects_started = False
        self.rejects_path.unlink(missing_ok=True)  # a previous run's rejects would be taken for this one's
        self.out.unlink(missing_ok=True)

    def write(self, table: pa.Table) -> None:
        bad = table.column(ERROR).is_valid()
        good = table.filter(pc.invert(bad)).drop_columns([ERROR])
        rejected = table.filter(bad).drop_columns([*self.model.result_columns, *self.model.reason_columns])
        if good.num_rows or (self._parquet is None and not self._csv_started):
            self._write_good(good)
        if rejected.num_rows:
            frame = rejected.to_pandas()
            frame.to_csv(self.rejects_path, mode="a", header=not self._rejects_started, index=False, sep=self.sep)
            self._rejects_started = True
        self.scored += good.num_rows
        self.rejected += rejected.num_rows

    def _write_good(self, good: pa.Table) -> None:
        if self.out.suffix.lower() == ".parquet":
            if self._parquet is None:
                schema = good.schema.with_metadata({METADATA_KEY: self.model.tag.encode()})
                self._parquet = pq.ParquetWriter(self.out, schema)
            self._parquet.write_table(good.cast(self._parquet.schema))
            return
        frame = good.to_pandas()
        for name in self.model.result_columns:  # spelt as /predict_csv writes them
            frame[name] = [rows.cell(v, self.decimal) for v in frame[name]]
        frame.to_csv(self.out, mode="a", header=not self._csv_started, index=False, sep=self.sep)
        self._csv_started = True

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None


def result_fields(model: ScoringModel) -> list[pa.Field]:
    """The Arrow types of the result columns, the reason columns and `error`: labels as text, numbers as doubles,
    reasons as text."""
    labels = rows.class_texts(model.card)
    return [
        *(
            pa.field(name, pa.string() if name == rows.PREDICTION and labels else pa.float64())
            for name in model.result_columns
        ),
        *(pa.field(name, pa.string()) for name in model.reason_columns),
        pa.field(ERROR, pa.string()),
    ]
