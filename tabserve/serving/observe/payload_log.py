"""The payload log: every predicted record as one JSON line, through BentoML's data-collection API
(`bentoml.monitor`), for offline drift reports (`python -m tabserve.serving.observe.drift_report`) and audits.

Off by default; PAYLOAD_LOG=1 turns it on (tabserve/serving/settings.py has its settings). Each entry
worker writes its own file, as BentoML's default monitor lays them out:

    <PAYLOAD_LOG_DIR>/<model name>/data/data.<worker>.log      one JSON line per record, rotated daily
    <PAYLOAD_LOG_DIR>/<model name>/schema/schema.<worker>.log  the columns, once per process

A line (the keys in this order):

    {"timestamp": "2025-01-31T12:00:00.123+00:00", "request_id": "6f1c0e9a2b7d4c11", "trace_id": "...",
     "model": "penguins:v1", "route": "/predict", "latency_ms": 3.912,
     "inputs": {"island": "Biscoe", "bill_length_mm": 48.6, ...}, "prediction": "Gentoo",
     "probabilities": {"Adelie": 0.0, "Chinstrap": 0.0, "Gentoo": 0.999999}, "warnings": [], "redacted": []}

- `inputs` are the record as validated (what the model saw; dates as ISO text); `route` the route
  template (/predict, /predict_batch, /predict_csv, /v1/predict, /v1/form, /v2/models/{model}/infer, ...);
  `request_id` is the X-BentoML-Request-ID header of the answer (BentoML's request span id, 16 hex
  digits), `trace_id` BentoML's trace id (32 hex digits); `timestamp` (UTC) is when the prediction was ready.
- `latency_ms`: from the request's arrival at the entry worker's middleware (before the gate reads the
  body) until its predictions were ready: validation, the cache, the model service. Sending the answer
  is not included. Every record of a request carries its request's latency. null outside a request.
- Sampling (PAYLOAD_LOG_SAMPLE, 0-1): each record is kept or not at random, on its own.
- Redaction (PAYLOAD_LOG_REDACT): the named features' values (null included) are written as
  "hmac-sha256:<first 16 hex digits of HMAC-SHA256(PAYLOAD_LOG_SALT, the value as JSON)>" and listed in
  `redacted`. Keyed, because a bare hash of a category ("female") or a small number is found again by
  hashing the few candidates; the same salt on every worker and replica keeps a value's hash the same
  across the deployment, so records can still be counted and joined by it. A redacted feature cannot
  be compared with the training data: the report leaves it out and says so.

Off the answer's path: the request path only draws the sample and puts a reference to the records on
a queue (a few microseconds); a thread of the worker formats and writes them and flushes once per
drain of the queue. A write that fails (disk full, a directory that cannot be created or written) never
fails a prediction: its records are counted on /metrics (tabserve_payload_log_errors_total{reason="write"})
and the failure is logged in one line (again only after writing has worked in between); records beyond
a backlog of QUEUE_SIZE requests are dropped and counted (reason="backlog").

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

import contextvars
import datetime as dt
import hmac
import json
import logging
import logging.handlers
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from hashlib import sha256
from itertools import repeat
from pathlib import Path
from typing import Any

import bentoml
from bentoml.monitoring import DefaultMonitor

from tabserve import bentoml_fixes
from tabserve.serving.observe import metrics

logger = logging.getLogger("tabserve")
QUEUE_SIZE = 10_000  # requests waiting to be written, at most; beyond, records are dropped and counted
DRAIN = 512  # requests written per flush, at most
HASH_PREFIX = "hmac-sha256:"
HASH_DIGITS = 16
_STOP = object()
# (route template, perf_counter at arrival) of the request being handled, set by `RequestStamp`.
_REQUEST: contextvars.ContextVar[tuple[str, float] | None] = contextvars.ContextVar(
    "tabserve_payload_request", default=None
)


class PayloadLogError(ValueError):
    """A setting the payload log cannot use; the message is one line."""


# --- BentoML's default monitor, adjusted -----------------------------------------------------------


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
        for row in zip(*(datas[c] for c in columns)):
            self.data_logger.info(dict(zip(columns, row)))
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


# --- the log -------------------------------------------------------------------------------------


def redaction_hash(value: Any, salt: str) -> str:
    """The value written for a redacted feature: a keyed hash of the value as JSON text."""
    text = json.dumps(value, default=_iso, ensure_ascii=False, sort_keys=True)
    return HASH_PREFIX + hmac.new(salt.encode(), text.encode(), sha256).hexdigest()[:HASH_DIGITS]


class PayloadLog:
    """Writes predicted records of one model through `bentoml.monitor`, from a thread of its own."""

    def __init__(
        self,
        tag: str,
        features: Sequence[str],
        directory: str | Path,
        sample: float = 1.0,
        redact: Sequence[str] = (),
        salt: str = "",
        name: str | None = None,
        rng: random.Random | None = None,
        queue_size: int = QUEUE_SIZE,
    ):
        unknown = [f for f in redact if f not in features]
        if unknown:
            raise PayloadLogError(
                f"PAYLOAD_LOG_REDACT names {', '.join(map(repr, unknown))}, not a feature of model {tag}; "
                f"its features: {', '.join(features)}"
            )
        if redact and not salt:
            raise PayloadLogError(
                "PAYLOAD_LOG_REDACT needs PAYLOAD_LOG_SALT, a secret of this deployment (e.g. `openssl rand -hex 32`): "
                "without a key, a redacted category or small number is found again by hashing the few candidates"
            )
        if not 0 <= sample <= 1:
            raise PayloadLogError(f"PAYLOAD_LOG_SAMPLE={sample:g} must be between 0 and 1")
        self.tag = tag
        self.directory = Path(directory).absolute()
        self.sample = sample
        self.redact = tuple(redact)
        self.salt = salt
        self.name = name or tag.split(":")[0]
        self.rng = rng or random.Random()
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.failing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- the request path ---------------------------------------------------------------------

    def observe(self, values: list[dict[str, Any]], answers: list[dict[str, Any]]) -> None:
        """Queue a call's records and answers for writing (after sampling). Never raises."""
        try:
            if self.sample < 1:
                kept = [i for i in range(len(values)) if self.rng.random() < self.sample]
                if not kept:
                    return
                if len(kept) < len(values):
                    values, answers = [values[i] for i in kept], [answers[i] for i in kept]
            if not values:
                return
            stamp = _REQUEST.get()
            route, latency = (stamp[0], round((time.perf_counter() - stamp[1]) * 1000, 3)) if stamp else (None, None)
            request_id, trace_id = bentoml_fixes.request_ids()
            self._ensure_thread()
            self.queue.put_nowait((time.time(), request_id, trace_id, route, latency, values, answers))
        except queue.Full:
            metrics.observe_payload_log_error("backlog", len(values))
        except Exception:  # noqa: BLE001 - logging must not cost an answer
            metrics.observe_payload_log_error("write", len(values))
            self._say_once("payload log: a record could not be queued; predictions go on")

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name="tabserve-payload-log", daemon=True)
                    thread.start()
                    self._thread = thread

    # --- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < DRAIN:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in batch if item is not _STOP]
            try:
                if items:
                    self.write(items)
            finally:
                for _ in batch:
                    self.queue.task_done()
            if len(items) < len(batch):
                return

    def write(self, items: list[tuple]) -> None:
        """Write queued items (in a fresh context: a failed BentoML record leaves its context variables set)
        and flush; a failure counts their records and is logged once."""
        records = sum(len(item[5]) for item in items)
        monitor: list[PayloadMonitor] = []
        try:
            contextvars.Context().run(self._export, items, monitor)
            monitor[0].flush()
        except Exception as exc:  # noqa: BLE001 - any write error: counted, said once
            if monitor:
                monitor[0].discard()
            metrics.observe_payload_log_error("write", records)
            self._say_once(
                f"payload log: cannot write to {self.directory}: {_one_line(exc)}; predictions go on, "
                "unwritten records are counted in tabserve_payload_log_errors_total"
            )
            return
        if self.failing:
            self.failing = False
            logger.warning("payload log: writing to %s again", self.directory)

    def _export(self, items: list[tuple], out: list[PayloadMonitor]) -> None:
        """One BentoML record per drain of the queue, one column at a time."""
        with bentoml.monitor(
            self.name, monitor_class=PayloadMonitor, monitor_options={"log_path": str(self.directory)}
        ) as mon:
            out.append(mon)
            redacted = list(self.redact)
            for moment, request_id, trace_id, route, latency, values, answers in items:
                n = len(values)
                classifier = answers[0].get("probabilities") is not None
                mon.log_batch(repeat(_utc(moment), n), "timestamp", "metadata", "datetime")
                mon.log_batch(repeat(_hex(request_id, 16), n), "request_id", "metadata", "text")
                mon.log_batch(repeat(_hex(trace_id, 32), n), "trace_id", "metadata", "text")
                mon.log_batch(
                    [a.get("model", self.tag) for a in answers], "model", "metadata", "text"
                )  # the version that answered
                mon.log_batch(repeat(route, n), "route", "metadata", "text")
                mon.log_batch(repeat(latency, n), "latency_ms", "metadata", "numerical")
                mon.log_batch(map(self._inputs, values) if self.redact else values, "inputs", "feature", "object")
                mon.log_batch(
                    [a["prediction"] for a in answers],
                    "prediction",
                    "prediction",
                    "categorical" if classifier else "numerical",
                )
                mon.log_batch([a.get("probabilities") for a in answers], "probabilities", "prediction", "object")
                mon.log_batch([a.get("warnings") or [] for a in answers], "warnings", "metadata", "object")
                mon.log_batch(repeat(redacted, n), "redacted", "metadata", "object")

    def _inputs(self, record: dict[str, Any]) -> dict[str, Any]:
        return {k: redaction_hash(v, self.salt) if k in self.redact else v for k, v in record.items()}

    def _say_once(self, message: str) -> None:
        if not self.failing:
            self.failing = True
            logger.warning(message)

    # --- waiting and stopping -----------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the thread (at exit)."""
        if self._thread is not None and self._thread.is_alive():
            try:
                self.queue.put(_STOP, timeout=timeout)
            except queue.Full:
                return
            self._thread.join(timeout)


class RequestStamp:
    """ASGI middleware: notes each request's route template and arrival time for the payload log."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            _REQUEST.set((metrics.route_label(scope.get("path", "")), time.perf_counter()))
        await self.app(scope, receive, send)


# --- the served model's log -------------------------------------------------------------------------

_log: PayloadLog | None = None


def install(service: Any, card: Any) -> PayloadLog | None:
    """With PAYLOAD_LOG=1: the served model's payload log, and the middleware noting route and arrival time.
    An unusable setting (a PAYLOAD_LOG_REDACT name that is not a feature, ...) stops the process at start with one line."""
    global _log
    from tabserve.serving import settings

    if not settings.PAYLOAD_LOG:
        return None
    try:
        _log = PayloadLog(
            card.tag,
            card.schema.names,
            settings.PAYLOAD_LOG_DIR,
            sample=settings.PAYLOAD_LOG_SAMPLE,
            redact=settings.PAYLOAD_LOG_REDACT,
            salt=settings.PAYLOAD_LOG_SALT,
        )
    except PayloadLogError as exc:
        raise SystemExit(f"error: {exc}") from None
    import atexit

    atexit.register(_log.close)
    service.add_asgi_middleware(RequestStamp)
    return _log


def observe(values: list[dict[str, Any]], answers: list[dict[str, Any]]) -> None:
    """Log a call's records and answers (the request path; nothing when PAYLOAD_LOG is off)."""
    if _log is not None:
        _log.observe(values, answers)


def redacted(record: dict[str, Any]) -> dict[str, Any]:
    """A record with PAYLOAD_LOG_REDACT's features as their keyed hashes, by the payload log's rule
    (shown elsewhere, e.g. in a challenger's recent disagreements); as it is when nothing is redacted."""
    from tabserve.serving import settings

    if not settings.PAYLOAD_LOG_REDACT or not settings.PAYLOAD_LOG_SALT:
        return dict(record)
    return {
        k: redaction_hash(v, settings.PAYLOAD_LOG_SALT) if k in settings.PAYLOAD_LOG_REDACT else v
        for k, v in record.items()
    }


# --- helpers -----------------------------------------------------------------------------------------


def _utc(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="milliseconds")


def _hex(number: int | None, digits: int) -> str | None:
    """As BentoML writes ids in its headers and access log (format "016x" / "032x")."""
    return format(number, f"0{digits}x") if number else None


def _iso(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return str(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


__all__ = [
    "PayloadLog",
    "PayloadLogError",
    "PayloadMonitor",
    "RequestStamp",
    "install",
    "observe",
    "redacted",
    "redaction_hash",
]
