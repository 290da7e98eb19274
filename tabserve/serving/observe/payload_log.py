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

This module is the served model's log, what the service and the request path call: `install` (the settings
checked at start, the middleware added) and `observe`; the rest is split by job, each name importable from here:
    payload_writer.py     PayloadLog: sampling and queueing on the request path, the writer thread, failures counted
    payload_monitor.py    PayloadMonitor: BentoML's DefaultMonitor adjusted (its own files, ids, time)
    payload_redaction.py  the keyed hash of a redacted value, and `redacted` for records shown elsewhere
    payload_stamp.py      RequestStamp: the ASGI middleware noting each request's route and arrival
"""

from __future__ import annotations

from typing import Any

from tabserve.serving.observe.payload_monitor import PayloadMonitor
from tabserve.serving.observe.payload_redaction import redacted, redaction_hash
from tabserve.serving.observe.payload_stamp import REQUEST as _REQUEST  # noqa: F401 - the tests stamp requests
from tabserve.serving.observe.payload_stamp import RequestStamp
from tabserve.serving.observe.payload_writer import PayloadLog, PayloadLogError

_log: PayloadLog | None = None


def install(service: Any, card: Any) -> PayloadLog | None:
    """With PAYLOAD_LOG=1: the served model's payload log, and the middleware noting route and arrival time.
    An unusable setting (a PAYLOAD_LOG_REDACT name that is not a feature, ...) stops the process at start
    with one line."""
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
