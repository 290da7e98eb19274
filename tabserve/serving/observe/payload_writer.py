"""The payload log's writer: `PayloadLog` samples a call's records on the request path and queues them;
a thread of the worker formats and writes them through `bentoml.monitor` and flushes once per drain.

Apart because it is the log itself, with the one cost on the answer's path (a draw and a queue put)
and every way writing can fail kept off that path: counted on /metrics and said in one log line.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import queue
import random
import threading
import time
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import bentoml

from tabserve import bentoml_fixes
from tabserve.serving.observe import metrics
from tabserve.serving.observe.payload_monitor import PayloadMonitor
from tabserve.serving.observe.payload_redaction import redaction_hash
from tabserve.serving.observe.payload_stamp import REQUEST

logger = logging.getLogger("tabserve")
QUEUE_SIZE = 10_000  # requests waiting to be written, at most; beyond, records are dropped and counted
DRAIN = 512  # requests written per flush, at most
_STOP = object()


class PayloadLogError(ValueError):
    """A setting the payload log cannot use; the message is one line."""


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
            stamp = REQUEST.get()
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


def _utc(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="milliseconds")


def _hex(number: int | None, digits: int) -> str | None:
    """As BentoML writes ids in its headers and access log (format "016x" / "032x")."""
    return format(number, f"0{digits}x") if number else None


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
