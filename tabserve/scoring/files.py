"""The files of batch scoring: the input (CSV read as text, or Parquet) checked before any work starts,
and the outputs: the scored rows (Parquet with the model tag in its metadata, or CSV) and the rejected
rows beside them (<out stem>.rejects.csv, the input row plus an `error` column)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tabserve.core import data, rows
from tabserve.core.errors import DataError
from tabserve.scoring.frames import ERROR, ScoringModel

INPUTS = (".csv", ".parquet")
OUTPUTS = (".parquet", ".csv")
METADATA_KEY = b"tabserve.model"


@dataclass(frozen=True)
class Source:
    """An input file, checked: its kind, columns, and for a CSV its separator and decimal mark."""

    path: Path
    kind: str  # "csv" or "parquet"
    columns: list[str]
    sep: str = ","
    decimal: str = "."
    rows: int | None = None  # known for Parquet (its metadata); a CSV is counted by lines, roughly
    multiline: bool = False  # a CSV whose first rows have quoted line breaks in cells

    @classmethod
    def open(cls, path: Path, model: ScoringModel) -> Source:
        path = Path(path)
        if path.suffix.lower() not in INPUTS:
            raise DataError(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}; use .csv or .parquet")
        if not path.is_file():
            raise DataError(f"no such file: {path}")
        source = cls._parquet(path) if path.suffix.lower() == ".parquet" else cls._csv(path)
        missing = [name for name in model.card.schema.names if name not in source.columns]
        if missing:
            raise DataError(f"{path.name} lacks feature column(s): {', '.join(missing)}")
        taken = [name for name in (*model.result_columns, ERROR) if name in source.columns]
        if taken:
            raise DataError(f"{path.name} already has column(s) {', '.join(taken)}, which the output adds; rename them")
        return source

    @classmethod
    def _parquet(cls, path: Path) -> Source:
        try:
            meta = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path} is not a readable Parquet file: {_first_line(exc)}") from None
        return cls(path, "parquet", list(meta.schema_arrow.names), rows=meta.metadata.num_rows)

    @classmethod
    def _csv(cls, path: Path) -> Source:
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                head = handle.read(data.SNIFF_BYTES)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text (byte {exc.start} is invalid); save it as UTF-8") from None
        except OSError as exc:
            raise DataError(f"{path} can't be read: {exc.strerror}") from None
        if "\x00" in head:
            raise DataError(f"{path} is binary, not CSV text")
        if not head.strip():
            raise DataError(f"{path} is empty")
        sep = data.sniff_separator(head)
        # The first rows, read as /predict_csv reads an upload: the header, and the decimal mark.
        lines = head.splitlines(keepends=True)
        if len(head) == data.SNIFF_BYTES and len(lines) > 2:
            lines = lines[:-1]  # cut off mid-row
        table = data.parse_text("".join(lines[:201]), sep, what=str(path))
        multiline = bool(table.raw.apply(lambda col: col.str.contains("\n", regex=False).any()).any())
        return cls(path, "csv", list(table.raw.columns), sep, table.decimal, _count_lines(path) - 1, multiline)

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
            raise DataError(f"{self.path} is not a readable CSV: {_first_line(exc)}") from None

    def parquet_batches(self, size: int) -> Iterator[pa.Table]:
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=size):
            yield pa.Table.from_batches([batch])


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Sink:
    """Where scored rows go: the good ones to `out` (Parquet or CSV), the rejected ones to the rejects CSV.

    Tables arrive in input order with the input columns, the result columns and `error`.
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
        rejected = table.filter(bad).drop_columns(self.model.result_columns)
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
    """The Arrow types of the result columns and `error`: labels as text, numbers as doubles."""
    labels = rows.class_texts(model.card)
    return [
        pa.field(name, pa.string() if name == rows.PREDICTION and labels else pa.float64())
        for name in model.result_columns
    ] + [pa.field(ERROR, pa.string())]
