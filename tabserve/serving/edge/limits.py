"""The request body as the gate reads it: within MAX_BODY_BYTES (413, refused before any parsing; 400 for
a client gone mid-body), checked (an upload's CSV part named 'file', an empty JSON body, a key repeated in
one JSON object), handed on to the app, and the records it holds counted for the records-per-minute quota.

Apart from tabserve/serving/edge/gate.py, which decides in which order the checks run and answers: this
is the one part that reads the body, for POST requests only.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Protocol

from tabserve.core.errors import DuplicateKey, error_body, refuse_duplicate_keys


class Gate(Protocol):
    """The gate's limits this module reads (edge/gate.py's Gate has them); a protocol, so no import cycle."""

    max_body_bytes: int
    upload_routes: Collection[str]
    json_routes: Collection[str]


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_PART_TYPES = (
    "text/csv",
    "text/plain",
    "text/tab-separated-values",
    "application/csv",
    "application/vnd.ms-excel",
    "application/octet-stream",
    XLSX_TYPE,  # an .xlsx workbook: its first sheet is read (tabserve/core/data.py parse_upload)
)
# How many records a request scores, by route template (metrics.route_label) and method: "one", the
# length of the JSON body's "records", the CSV upload's rows, or an Open Inference Protocol body's batch.
RECORD_ROUTES = {
    ("POST", "/predict"): "one",
    ("POST", "/predict_batch"): "records",
    ("POST", "/predict_csv"): "csv",
    ("GET", "/v1/predict"): "one",
    ("POST", "/v1/form"): "one",
    ("GET", "/v1/entities/{id}/predict"): "one",
    ("POST", "/v1/models/{version}/predict"): "one",
    ("GET", "/v1/models/{version}/predict"): "one",
    ("POST", "/v2/models/{model}/infer"): "oip",
    ("POST", "/v2/models/{model}/versions/{version}/infer"): "oip",
}


def score_instead(setting: str, tag: str = "TAG") -> str:
    """The way out of a 413 for a file to score: score.py, which reads a file of any size, or the limit raised."""
    command = f"python score.py --data FILE --out OUT.csv --model {tag}"
    return f"score a file this size with score.py ({command}) or raise {setting}"


def too_large(gate: Gate, path: str, size: int | None) -> tuple[int, dict]:
    """The 413 for a body over MAX_BODY_BYTES (its size when the client declared it); for an upload to score,
    with the way out."""
    limit = f"{gate.max_body_bytes:,} bytes (MAX_BODY_BYTES)"
    message = f"the body is {size:,} bytes; the limit is {limit}" if size is not None else f"the body is over {limit}"
    if path in gate.upload_routes:
        message += f"; {score_instead('MAX_BODY_BYTES')}"
    return 413, error_body(message)


async def read_body(gate: Gate, scope: dict, receive: Any, path: str) -> tuple[tuple[int, dict] | None, Any, bytes]:
    """Read the body up to the limit (refusing 413 early), check uploads, hand the bytes on
    (and give back what holds the records, to count them: the JSON body parsed, the uploaded file)."""
    limit = gate.max_body_bytes
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        return too_large(gate, path, int(declared)), receive, b""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return (400, error_body("the client disconnected before the body was complete")), receive, b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return too_large(gate, path, None), receive, b""
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    refusal, counted = None, body
    if path in gate.upload_routes:
        refusal, counted = await _check_upload(scope, body)
    elif path in gate.json_routes:
        if not body.strip():
            refusal = 400, error_body("invalid input: the request body is empty; send a JSON object")
        else:
            refusal, counted = _check_duplicate_keys(body)
    return refusal, _replay(body, then=receive), counted


def count_records(how: str, body: Any) -> int:
    """Records a request scores, read from what the gate has read anyway: the JSON body it parsed for
    repeated keys, the CSV part of an upload (0 when it cannot tell: the endpoint refuses the body)."""
    if how == "one":
        return 1
    if how == "csv":
        return _csv_rows(body) if isinstance(body, bytes) else 0
    data = body
    if isinstance(body, bytes):  # a route whose JSON the gate does not check (/v2)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return 0
    if how == "records":
        records = data.get("records") if isinstance(data, dict) else None
        return len(records) if isinstance(records, list) else 0
    # Open Inference Protocol: each input tensor's first dimension is the batch.
    inputs = data.get("inputs") if isinstance(data, dict) else None
    shapes = [i.get("shape") for i in inputs if isinstance(i, dict)] if isinstance(inputs, list) else []
    return max([s[0] for s in shapes if isinstance(s, list) and s and isinstance(s[0], int) and s[0] > 0] or [1])


def header(scope: dict, name: bytes) -> str:
    """A request header as text: UTF-8 when it is (clients send it), else Latin-1 (HTTP's old default)."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return value.decode("latin-1")
    return ""


def _csv_rows(data: bytes) -> int:
    """Data rows of an uploaded CSV, counted cheaply (~20 ms for 10 MB): its non-empty lines but the
    header. A quoted cell holding a line break counts once per line: reading the CSV properly here
    would cost a second parse of every upload (~1 s for 10 MB with quotes) for a rare case. UTF-16 and
    UTF-32 text (a byte-order mark) is decoded first; an .xlsx workbook's rows are counted in its XML."""
    from tabserve.core import data as files

    if data.startswith(files.XLSX_SIGNATURE):
        return files.xlsx_rows(data)
    codec = files.bom_codec(data)
    if codec is not None and codec != "utf-8-sig":
        return max(0, len([line for line in data.decode(codec, errors="replace").splitlines() if line]) - 1)
    lines = data.splitlines()
    return max(0, len(lines) - lines.count(b"") - 1)


def _check_duplicate_keys(body: bytes) -> tuple[tuple[int, dict] | None, Any]:
    """JSON parsers keep the last of duplicate keys silently; a record with two values is refused.
    Also gives back the parsed body (None if it is not JSON), to count its records."""
    try:
        return None, json.loads(body, object_pairs_hook=refuse_duplicate_keys)
    except DuplicateKey as exc:
        return (400, error_body(f"invalid input: the key {str(exc)!r} appears twice in one JSON object")), None
    except (ValueError, RecursionError):
        return None, None  # not JSON at all: the endpoint's own parser says why


async def _check_upload(scope: dict, body: bytes) -> tuple[tuple[int, dict] | None, bytes]:
    """A refusal if the multipart body has no CSV part named 'file'; and that part's bytes."""
    from starlette.requests import Request

    try:
        form = await Request(scope, _replay(body)).form()
    except Exception as exc:  # starlette / python-multipart raise several types for broken bodies
        return (400, error_body(f"the multipart body is malformed: {exc}")), b""
    try:
        part = form.get("file")
        if part is None or not hasattr(part, "content_type"):
            return (400, error_body("the upload has no file field named 'file'")), b""
        part_type = (part.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if part_type not in CSV_PART_TYPES:
            return (
                415,
                error_body(f"the uploaded file must be CSV (text/csv) or an .xlsx workbook, not {part_type}"),
            ), b""
        return None, await part.read()
    finally:
        await form.close()


def _replay(body: bytes, then: Any = None) -> Any:
    """A `receive` that gives `body` once, then defers to the real one (to see a disconnect)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            if then is None:
                return {"type": "http.disconnect"}
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
