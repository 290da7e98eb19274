"""The payload log's BentoML monitor: BentoML's DefaultMonitor with file handlers of our own, the header's
request id, the prediction's time, and a "metadata" role.

Apart because it is the one part touching BentoML's monitoring internals, to be read again on a new
BentoML (tests/serving/observe/test_payload_log.py checks they are still there).

BentoML parts used as they are: `bentoml.monitor` (one monitor per name and process, the record
lifecycle), the layout of the files, the schema line, python-json-logger's formatter. Changed, in
`PayloadMonitor` (BentoML's DefaultMonitor):
- `_init_logger`: BentoML's runs `logging.config.dictConfig`, which closes every logging handler of the
  process (`_clearExistingHandlers`), and its file handler prints a traceback to stderr for every line it
  cannot write (`logging.Handler.handleError`). Here: two handlers of our own, errors kept for the writer.
- `export_data`: BentoML's adds the time of writing (local, without a zone) and the request id in decimal
  (the header has it in hex) to every line; here those columns are the prediction's UTC time and the
  header's request id, and one BentoML record carries every request the writer drained at once.
- `log`, `log_batch`: BentoML's warns on every call for a role or type it does not know (our columns
  "model", "route", ... are role "metadata"), and for every value of a first batch ("duplicated"); here a
  column of a request's records is added in one call.
(BentoML internals touched: DefaultMonitor._init_logger here; the record's context variables and the request
id through tabserve/bentoml_fixes.py, touchpoint 6, checked against the version it requires at start.)
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

import bentoml
from bentoml.monitoring import DefaultMonitor

from tabserve import bentoml_fixes


class _LineFile(logging.handlers.TimedRotatingFileHandler):
    """A JSON-lines file: lines are flushed once per batch (`flush_lines`), not one write per line, and a
    write error is kept in `error` for the writer to count, never printed as a traceback."""

    def __init__(self, path: Path, rotate: bool):
        super().__init__(str(path), when="D" if rotate else "MIDNIGHT", backupCount=0, encoding="utf-8", delay=True)
        self.rotate = rotate
        self.error: BaseException | None = None
        self.resume = False  # after an error: start with a newline if the file ends in a partial line

    def shouldRollover(self, record: logging.LogRecord) -> int:  # noqa: N802 - logging's name
        return super().shouldRollover(record) if self.rotate else 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if self.error is None:
            self.error = sys.exc_info()[1]

    def flush(self) -> None:  # called by emit after every line: the writer flushes per batch instead
        pass

    def flush_lines(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    def discard(self) -> None:
        """Drop the open file and what its buffer holds (after an error); the next line reopens it."""
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - the buffer could not be written either: it is counted lost
                pass
        self.resume = True

    def _open(self):  # noqa: ANN202 - logging's signature
        stream = super()._open()
        if self.resume:
            self.resume = False
            with open(self.baseFilename, "rb") as existing:
                size = existing.seek(0, 2)
                cut = size > 0 and existing.seek(size - 1) >= 0 and existing.read(1) != b"\n"
            if cut:
                stream.write("\n")  # a line cut by a full disk stays one bad line, not two
        return stream


def _json_formatter() -> logging.Formatter:
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:  # python-json-logger < 3.1
        from pythonjsonlogger.jsonlogger import JsonFormatter
    return JsonFormatter("()", validate=False, json_ensure_ascii=False)


def _file_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger of its own (not in logging's registry: nothing else writes to it, it propagates nowhere)."""
    handler.setFormatter(_json_formatter())
    out = logging.Logger(name, logging.INFO)
    out.addHandler(handler)
    out.propagate = False
    return out


class PayloadMonitor(DefaultMonitor):
    """BentoML's DefaultMonitor with our own file handlers, the header's request id and the prediction's
    time, and a "metadata" role (see the module's docstring)."""

    def __init__(self, name: str, log_path: str, **options: Any) -> None:
        super().__init__(name, log_path, **options)
        self.handlers: list[_LineFile] = []

    def _init_logger(self) -> None:
        worker = bentoml.server_context.worker_index or 0
        base = Path(self.log_path) / self.name
        for folder in ("schema", "data"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        schema = _LineFile(base / "schema" / f"schema.{worker}.log", rotate=False)
        data = _LineFile(base / "data" / f"data.{worker}.log", rotate=True)
        self.handlers = [schema, data]
        self.schema_logger = _file_logger(f"tabserve.payload_log.schema.{self.name}", schema)
        self.data_logger = _file_logger(f"tabserve.payload_log.data.{self.name}", data)

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        self.log_batch([data], name, role, data_type)

    def log_batch(self, data_batch: Any, name: str, role: str, data_type: str) -> None:
        """A column of the record(s) being written (one call per column, not per value)."""
        columns, datas = bentoml_fixes.monitor_record_vars()
        if self.columns_schema is None:
            columns.get().setdefault(name, {"name": name, "role": role, "type": data_type})
        datas.get()[name].extend(data_batch)

    def export_data(self, datas: dict[str, Any]) -> None:
        """Every record as one line (BentoML's adds its own time of writing and a decimal request id: the
        columns here carry the prediction's time and the header's request id)."""
        if self.data_logger is None:
            self._init_logger()
        columns = list(datas)
        for row in zip(*(datas[c] for c in columns), strict=False):
            self.data_logger.info(dict(zip(columns, row, strict=False)))
        for c in columns:
            datas[c].clear()

    def flush(self) -> None:
        """Write what the handlers buffered; raise the first write error since the last flush."""
        try:
            for handler in self.handlers:
                handler.flush_lines()
            error = next((h.error for h in self.handlers if h.error is not None), None)
            if error is not None:
                raise error
        finally:
            for handler in self.handlers:
                handler.error = None

    def discard(self) -> None:
        for handler in self.handlers:
            handler.discard()
