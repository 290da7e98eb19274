"""Batch scoring, start to end: the model version from the store, the input checked, an engine run,
the outputs closed, and the summary score.py prints. Every failure a user can fix is a TabserveError
with one line (a missing model, file or column; an unsupported file type; a bad --explain, or a model without
explanations), raised before anything is written."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tabserve.core import store
from tabserve.core.card import ModelCard
from tabserve.core.cli import encoding_note
from tabserve.explaining import options
from tabserve.scoring import engines
from tabserve.scoring.files import UTF8, Sink, Source
from tabserve.scoring.frames import ScoringModel


@dataclass(frozen=True)
class Summary:
    model: str
    engine: str  # "local", or "spark (local[2])"
    data: Path
    read: int
    scored: int
    rejected: int
    out: Path
    rejects: Path | None  # None when no row was rejected
    seconds: float
    reading: str = ""  # how the input was read, when not as UTF-8 or Parquet: "encoding  cp1252 (detected; ...)"

    @property
    def rows_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        rejects = f"{self.rejected:>10,}  -> {self.rejects}" if self.rejects else f"{0:>10,}"
        starting = ", Spark starting included" if self.engine != "local" else ""
        return "\n".join(
            [
                f"model     {self.model}",
                f"engine    {self.engine}",
                f"read      {self.read:>10,}  <- {self.data}",
                *([self.reading] if self.reading else []),
                f"scored    {self.scored:>10,}  -> {self.out}",
                f"rejected  {rejects}",
                f"time      {self.seconds:>10.2f} s ({self.rows_per_s:,.0f} rows/s{starting})",
            ]
        )


def load_model(tag: str) -> ScoringModel:
    """The model version `tag` names, verified as the service verifies it at start; ModelNotFound or
    ModelCorrupted (one line naming what the store has and the train.py command) when it can't be used."""
    model, card = store.served_model(tag)
    return ScoringModel(card, store.load_runtime(model.stored))


def reason_count(card: ModelCard, explain: str | int | None) -> int:
    """--explain K: /predict_csv's explain=K rules, the option named as score.py spells it."""
    return options.reason_count(card, explain, option="--explain")


def score(
    data: Path,
    out: Path,
    tag: str,
    engine: str = "spark",
    master: str = "local[2]",
    conf: dict[str, str] | None = None,
    chunk_rows: int = engines.CHUNK_ROWS,
    encoding: str | None = None,
    sheet: str | None = None,
    explain: str | int | None = None,
) -> Summary:
    """Score `data` into `out` (and <out stem>.rejects.csv) with the model `tag`. `encoding` and `sheet`: how
    to read a CSV or a workbook (files.Source). `explain`: K, for columns reason_1 … reason_K after the
    prediction columns (reason_count)."""
    if engine not in engines.ENGINES:
        raise ValueError(f"engine must be one of {', '.join(engines.ENGINES)}")
    model = load_model(tag)
    model.reasons = reason_count(model.card, explain)  # checked before any file is opened or written
    # A UTF-8 copy of the input, when one is needed, goes where the engine's workers can read it.
    on_cluster = engine == "spark" and not master.startswith("local")
    source = Source.open(Path(data), model, encoding, sheet, Path(data).resolve().parent if on_cluster else None)
    try:
        sink = Sink(Path(out), model, source)
        start = time.perf_counter()
        try:
            if engine == "local":
                read = engines.run_local(model, source, sink, chunk_rows)
            else:
                read = engines.run_spark(model, source, sink, master, conf)
        except BaseException:
            sink.close()
            sink.out.unlink(missing_ok=True)  # no half-written output taken for a whole one
            sink.rejects_path.unlink(missing_ok=True)
            raise
        sink.close()
        seconds = time.perf_counter() - start
    finally:
        source.close()
    return Summary(
        model.tag,
        "local" if engine == "local" else f"spark ({master})",
        Path(data),
        read,
        sink.scored,
        sink.rejected,
        sink.out,
        sink.rejects_path if sink.rejected else None,
        seconds,
        reading(source),
    )


def reading(source: Source) -> str:
    """The summary's line on how the input was read, when it was not UTF-8 text or Parquet."""
    if source.sheet is not None:
        return f"sheet     {source.sheet!r}"
    if source.kind == "csv" and (source.encoding_given or source.encoding not in UTF8):
        return f"encoding  {encoding_note(source.encoding, source.encoding_given)}"
    return ""
