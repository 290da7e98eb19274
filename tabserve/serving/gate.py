"""The entry service's request gate: one ASGI middleware in front of every route.

Before a request to a protected route reaches BentoML or the /v1 app it checks, in order: the API
key (401), the content type (415), repeated query parameters (400), the concurrency limit (429) and
the body: its size (413, read before any parsing), an empty JSON body or a key repeated in one JSON
object (400), an upload without a CSV file part (400/415). It answers 504 past the request timeout.
Every error answer, the gate's or the app's, leaves in the one error shape and the probes answer
JSON (tabserve/serving/error_shape.py); /docs.json documents all that (tabserve/serving/openapi.py).

`install(service)` puts the gate, and CORS when CORS_ORIGINS is set, in front of the entry service.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tabserve.core.errors import error_body, repeated
from tabserve.serving import metrics
from tabserve.serving.error_shape import PROBES, ErrorRewriter, ProbeAnswer, extra_headers, send_json
from tabserve.serving.openapi import DocsRewriter

CSV_PART_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel", "application/octet-stream")


@dataclass
class Gate:
    """What the middleware enforces. Routes are exact paths; `protected_prefixes` also need the key."""

    json_routes: tuple[str, ...] = ()
    upload_routes: tuple[str, ...] = ()
    form_routes: tuple[str, ...] = ()
    protected_prefixes: tuple[str, ...] = ()
    api_key: str = ""
    max_body_bytes: int = 10 << 20
    max_concurrency: int = 1000
    timeout_s: float = 60
    in_flight: int = field(default=0, init=False)

    def is_protected(self, path: str) -> bool:
        routes = (*self.json_routes, *self.upload_routes)
        return path in routes or any(path == p or path.startswith(p + "/") for p in self.protected_prefixes)


class GateMiddleware:
    """The ASGI middleware enforcing a `Gate`."""

    def __init__(self, app: Any, gate: Gate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "")

        def count(status: int) -> None:
            _count_refusal(path, status)

        if method == "GET" and path == "/docs.json":
            return await self.app(scope, receive, DocsRewriter(send, self.gate))
        if method in ("GET", "HEAD") and path in PROBES:
            return await self.app(scope, receive, ProbeAnswer(ErrorRewriter(send, on_error=count), PROBES[path]))
        if not self.gate.is_protected(path):
            return await self.app(scope, receive, ErrorRewriter(send, on_error=count))

        refusal = self._check_key(scope) or self._check_content_type(scope, path, method) or _check_query(scope)
        if refusal is None and self.gate.in_flight >= self.gate.max_concurrency:
            refusal = 429, error_body(f"more than {self.gate.max_concurrency} requests in flight; retry shortly")
        if refusal is None and method == "POST":
            refusal, receive = await self._read_body(scope, receive, path)
        if refusal is not None:
            count(refusal[0])
            return await send_json(send, *refusal, headers=extra_headers(refusal[0]))

        released = False

        def release() -> None:  # once the answer is sent, not when BentoML's after-response tasks end
            nonlocal released
            if not released:
                released = True
                self.gate.in_flight -= 1

        rewriter = ErrorRewriter(send, on_error=count, on_answered=release)
        self.gate.in_flight += 1
        try:
            await asyncio.wait_for(self.app(scope, receive, rewriter), timeout=self.gate.timeout_s)
        except asyncio.TimeoutError:
            if not rewriter.started:
                await send_json(send, 504, error_body(f"no answer within {self.gate.timeout_s:g} s"))
        finally:
            release()

    def _check_key(self, scope: dict) -> tuple[int, dict] | None:
        if not self.gate.api_key:
            return None
        scheme, _, token = _header(scope, b"authorization").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.gate.api_key.encode()):
            return None
        message = "wrong API key" if token else "missing API key: send 'Authorization: Bearer <key>'"
        return 401, error_body(message)

    def _check_content_type(self, scope: dict, path: str, method: str) -> tuple[int, dict] | None:
        if method != "POST":
            return None
        content_type = _header(scope, b"content-type")
        media_type = content_type.split(";")[0].strip().lower()
        if path in self.gate.json_routes:
            if media_type and media_type != "application/json" and not media_type.endswith("+json"):
                return 415, error_body(f"send the body as JSON with Content-Type: application/json (got {media_type})")
        elif path in self.gate.upload_routes:
            if media_type != "multipart/form-data":
                return 415, error_body(f"upload the CSV as multipart/form-data with a field named 'file' (got {media_type or 'no content type'})")
            if "boundary=" not in content_type:
                return 400, error_body("the multipart/form-data content type has no boundary")
        elif path in self.gate.form_routes and media_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return 415, error_body(f"submit the form as application/x-www-form-urlencoded (got {media_type or 'no content type'})")
        return None

    async def _read_body(self, scope: dict, receive: Any, path: str) -> tuple[tuple[int, dict] | None, Any]:
        """Read the body up to the limit (refusing 413 early), check uploads, hand the bytes on."""
        limit = self.gate.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            return (413, error_body(f"the body is {int(declared)} bytes; the limit is {limit}")), receive
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return (400, error_body("the client disconnected before the body was complete")), receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return (413, error_body(f"the body is larger than the limit of {limit} bytes")), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        refusal = None
        if path in self.gate.upload_routes:
            refusal = await _check_upload(scope, body)
        elif path in self.gate.json_routes:
            refusal = (400, error_body("invalid input: the request body is empty; send a JSON object")) if not body.strip() else _check_duplicate_keys(body)
        return refusal, _replay(body, then=receive)


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise _DuplicateKey(repeated(key for key, _ in pairs)[0])
    return obj


def _check_duplicate_keys(body: bytes) -> tuple[int, dict] | None:
    """JSON parsers keep the last of duplicate keys silently; a record with two values is refused."""
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        return 400, error_body(f"invalid input: the key {str(exc)!r} appears twice in one JSON object")
    except (ValueError, RecursionError):
        return None  # not JSON at all: the endpoint's own parser says why
    return None


def _check_query(scope: dict) -> tuple[int, dict] | None:
    query = scope.get("query_string", b"").decode("utf-8", "replace")
    twice = repeated(name for name, _ in parse_qsl(query, keep_blank_values=True))
    if twice:
        return 400, error_body(f"invalid input: query parameter(s) given more than once: {', '.join(twice)}")
    return None


async def _check_upload(scope: dict, body: bytes) -> tuple[int, dict] | None:
    from starlette.requests import Request

    try:
        form = await Request(scope, _replay(body)).form()
    except Exception as exc:  # starlette / python-multipart raise several types for broken bodies
        return 400, error_body(f"the multipart body is malformed: {exc}")
    try:
        part = form.get("file")
        if part is None or not hasattr(part, "content_type"):
            return 400, error_body("the upload has no file field named 'file'")
        part_type = (part.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if part_type not in CSV_PART_TYPES:
            return 415, error_body(f"the uploaded file must be CSV (text/csv), not {part_type}")
        return None
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


def _count_refusal(path: str, status: int) -> None:
    """Invalid requests on /metrics: bad input (400), too large (413), wrong content type (415)."""
    if status in (400, 413, 415):
        metrics.observe_refusal(path, status)


def _header(scope: dict, name: bytes) -> str:
    """A request header as text: UTF-8 when it is (clients send it), else Latin-1 (HTTP's old default)."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return value.decode("latin-1")
    return ""


class CORS:
    """Starlette's CORSMiddleware, with its preflight refusals in the one error shape.

    CORSMiddleware answers a preflight itself (OPTIONS with Origin and Access-Control-Request-Method)
    and refuses an origin, method or header it does not allow with a text/plain 400; here that 400 is
    JSON {"error", "detail"} like every other refusal. It stays outside the gate, so the gate's own
    refusals (a 401 to a browser without the key) carry the CORS headers a browser needs to read them.
    """

    def __init__(self, app: Any, **options: Any):
        from starlette.middleware.cors import CORSMiddleware

        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "OPTIONS" and _header(scope, b"origin") and _header(scope, b"access-control-request-method"):
            send = ErrorRewriter(send)  # a preflight: answered by CORSMiddleware alone
        await self.cors(scope, receive, send)


def install(service: Any) -> None:
    """Put the gate (and CORS, when CORS_ORIGINS is set) in front of every route of the entry service."""
    from tabserve.core import config

    if config.CORS_ORIGINS:
        service.add_asgi_middleware(
            CORS, allow_origins=config.CORS_ORIGINS, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-On-Error"], expose_headers=["X-Cache", "X-Failed-Rows"],
        )
    service.add_asgi_middleware(
        GateMiddleware,
        gate=Gate(
            json_routes=("/predict", "/predict_batch"),
            upload_routes=("/predict_csv",),
            form_routes=("/v1/form",),
            protected_prefixes=("/v1",),
            api_key=config.API_KEY,
            max_body_bytes=config.MAX_BODY_BYTES,
            max_concurrency=config.MAX_CONCURRENCY,
            timeout_s=config.REQUEST_TIMEOUT_S,
        ),
    )
