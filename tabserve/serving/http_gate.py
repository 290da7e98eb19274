"""The entry service's ASGI middleware: one gate in front of every route, one shape for every error.

Before a request reaches BentoML or the /v1 app it checks, in order: the API key (401), the
concurrency limit (429), the content type (415), and the body size (413, read before any parsing).
After, it rewrites every error answer as {"error": "<one line>", "detail": [...]}: BentoML's own
shapes (pydantic dumps with doc links, a JSON list for some exceptions, plain-text 404/405) included.
It also answers 504 past the request timeout, gives BentoML's health probes a JSON body instead of
an empty one, and adds the security scheme, the error responses, the probes' answers and the CSV
upload's `on_error` choice to /docs.json so the documented contract is the real one.
Every JSON body it writes is UTF-8 with non-ASCII text as is ("Añelo", not "A\\u00f1elo").
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from tabserve.serving import metrics
from tabserve.core.errors import error_body, pydantic_detail, summarize

CSV_PART_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel", "application/octet-stream")
DOCUMENTED_ERRORS = {
    400: "Invalid input: the error names the field (and row, for CSV)",
    401: "Missing or wrong API key",
    413: "Body or CSV over the configured limit",
    415: "Wrong content type",
    429: "Too many requests in flight; retry shortly",
    503: "Model not ready or overloaded; retry shortly",
    504: "No answer within the request timeout",
}
# BentoML's probes answer 200 with an empty text body; the gate answers {"status": <word>} instead.
PROBES = {"/healthz": "alive", "/livez": "alive", "/readyz": "ready"}
# Routes that score CSV rows and take the on_error choice (query parameter or header).
ON_ERROR_ROUTES = ("/predict_csv",)
ON_ERROR_SCHEMA = {"type": "string", "enum": ["fail", "skip"], "default": "fail"}
ON_ERROR_DOC = ("What to do with rows that fail validation: `fail` (default) answers 400 listing them and predicts nothing; "
                "`skip` predicts the other rows and names each bad row's problem in an `error` column (empty for good rows).")


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


class ErrorContract:
    def __init__(self, app: Any, gate: Gate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "")
        if method == "GET" and path == "/docs.json":
            return await self.app(scope, receive, _DocsRewriter(send, self.gate))
        if method in ("GET", "HEAD") and path in PROBES:
            return await self.app(scope, receive, _ProbeAnswer(_ErrorRewriter(send, path), PROBES[path]))
        if not self.gate.is_protected(path):
            return await self.app(scope, receive, _ErrorRewriter(send, path))

        refusal = self._check_key(scope) or self._check_content_type(scope, path, method) or _check_query(scope)
        if refusal is None and self.gate.in_flight >= self.gate.max_concurrency:
            refusal = 429, error_body(f"more than {self.gate.max_concurrency} requests in flight; retry shortly")
        if refusal is None and method == "POST":
            refusal, receive = await self._read_body(scope, receive, path)
        if refusal is not None:
            _count_refusal(path, refusal[0])
            return await _send_json(send, *refusal, headers=_extra_headers(refusal[0]))

        released = False

        def release() -> None:  # once the answer is sent, not when BentoML's after-response tasks end
            nonlocal released
            if not released:
                released = True
                self.gate.in_flight -= 1

        rewriter = _ErrorRewriter(send, path, on_answered=release)
        self.gate.in_flight += 1
        try:
            await asyncio.wait_for(self.app(scope, receive, rewriter), timeout=self.gate.timeout_s)
        except asyncio.TimeoutError:
            if not rewriter.started:
                await _send_json(send, 504, error_body(f"no answer within {self.gate.timeout_s:g} s"))
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
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


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
    names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return 400, error_body(f"invalid input: query parameter(s) given more than once: {', '.join(repeated)}")
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


class _ErrorRewriter:
    """A `send` that passes successes through and rewrites error answers to the contract."""

    def __init__(self, send: Any, path: str, on_answered: Any = None):
        self.send, self.path, self.on_answered = send, path, on_answered
        self.started = False
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            content_type = dict(message.get("headers", [])).get(b"content-type", b"").decode("latin-1")
            if message["status"] < 400 or content_type.startswith("text/html"):  # the form answers people in HTML
                return await self.send(message)
            self.start = message
            return None
        if message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                status, body = _rewrite(self.start["status"], b"".join(self.chunks))
                _count_refusal(self.path, status)
                await _send_json(self.send, status, body, headers=_kept_headers(self.start) + _extra_headers(status))
                self._answered()
            return None
        await self.send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._answered()

    def _answered(self) -> None:
        if self.on_answered is not None:
            self.on_answered()


class _ProbeAnswer:
    """A `send` that turns a probe's empty 200 into {"status": <word>}; other answers pass on."""

    def __init__(self, send: Any, word: str):
        self.send, self.word = send, word
        self.start: dict | None = None

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            self.start = message
            return None
        if message["type"] == "http.response.body" and self.start is not None:
            if not message.get("more_body", False):
                await _send_json(self.send, 200, {"status": self.word}, headers=_kept_headers(self.start))
            return None
        return await self.send(message)


class _DocsRewriter:
    """Adds the API-key security scheme and the error responses to BentoML's generated /docs.json."""

    def __init__(self, send: Any, gate: Gate):
        self.send, self.gate = send, gate
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return None
        if message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            body = b"".join(self.chunks)
            if self.start and self.start["status"] == 200:
                body = _json_bytes(document_errors(json.loads(body), self.gate))
            await self.send({**(self.start or {}), "headers": [*_kept_headers(self.start or {}), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            return await self.send({"type": "http.response.body", "body": body})
        return await self.send(message)


def document_errors(spec: dict, gate: Gate) -> dict:
    """The OpenAPI document with the Error schema on every protected operation, the key scheme,
    the probes' JSON answers and the on_error choice of CSV scoring."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Probe"] = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "description": "`alive` (/healthz, /livez) or `ready` (/readyz)."}},
    }
    schemas["Error"] = {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "One line naming what was wrong."},
            "detail": {"type": "array", "items": {"type": "object"}, "description": "Per-field details: loc, msg, type."},
        },
    }
    if gate.api_key:
        components.setdefault("securitySchemes", {})["apiKey"] = {"type": "http", "scheme": "bearer", "description": "API_KEY of the server"}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in spec.get("paths", {}).items():
        if path in PROBES:
            _document_probe(operations.get("get"), path, error_ref)
        if not gate.is_protected(path):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            # FastAPI's 422 and BentoML's generic 400/404/500 shapes are not what this service answers.
            for status in ("422", "400", "404", "500"):
                responses.pop(status, None)
            for status, description in DOCUMENTED_ERRORS.items():
                if status == 401 and not gate.api_key:
                    continue
                responses[str(status)] = {"description": description, "content": error_ref}
            if "{" in path:
                responses["404"] = {"description": "No such item (the error lists the known ones)", "content": error_ref}
            if path in gate.form_routes and method == "post":
                # The form's reader is a person: invalid input re-renders the form, as HTML. The gate's
                # own refusals before the form is read (a repeated query parameter) are still JSON.
                responses["400"] = {
                    "description": "Invalid input: the form again, with the problems listed (HTML); or the request refused before the form was read (JSON)",
                    "content": {"text/html": {"schema": {"type": "string"}}, **error_ref},
                }
            if path in ON_ERROR_ROUTES and method == "post":
                _document_on_error(operation)
            if gate.api_key:
                operation["security"] = [{"apiKey": []}]
    return spec


def _document_probe(operation: dict | None, path: str, error_ref: dict) -> None:
    if not isinstance(operation, dict):
        return
    responses = operation.setdefault("responses", {})
    ok = responses.setdefault("200", {"description": "Successful Response"})
    ok["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Probe"}, "example": {"status": PROBES[path]}}}
    if path == "/readyz":
        responses["503"] = {"description": "Not ready: the model service does not answer", "content": error_ref}


def _document_on_error(operation: dict) -> None:
    parameters = [p for p in operation.get("parameters", []) if p.get("name") not in ("on_error", "X-On-Error")]
    parameters.append({"name": "on_error", "in": "query", "required": False, "description": ON_ERROR_DOC, "schema": dict(ON_ERROR_SCHEMA)})
    parameters.append({"name": "X-On-Error", "in": "header", "required": False,
                       "description": "The same choice as `on_error`, as a request header (the query parameter wins when both are given).", "schema": dict(ON_ERROR_SCHEMA)})
    operation["parameters"] = parameters


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


def _kept_headers(start: dict) -> list[tuple[bytes, bytes]]:
    dropped = {b"content-length", b"content-type"}
    return [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]


def _extra_headers(status: int) -> list[tuple[bytes, bytes]]:
    if status == 401:
        return [(b"www-authenticate", b"Bearer")]
    if status in (429, 503):
        return [(b"retry-after", b"1")]
    return []


def _rewrite(status: int, raw: bytes) -> tuple[int, dict]:
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return status, error_body(text or _reason(status))
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        body = body[0]  # BentoML answers some exceptions as a one-element list
    if not isinstance(body, dict):
        return status, error_body(_reason(status))
    detail = body.get("detail")
    if isinstance(detail, list) and detail and "validation error" in str(body.get("error", "")):
        clean = pydantic_detail(detail)
        return status, error_body(summarize(clean), clean)
    if "error" in body:
        return status, error_body(str(body["error"]), detail if isinstance(detail, list) else None)
    return status, error_body(str(detail or _reason(status)))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _json_bytes(body: Any) -> bytes:
    """UTF-8 JSON with non-ASCII characters as they are, not \\u escapes. A lone surrogate (valid in
    JSON input, not encodable in UTF-8) is written as the JSON escape it came in as."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")


async def _send_json(send: Any, status: int, body: dict, headers: list | None = None) -> None:
    payload = _json_bytes(body)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*(headers or []), (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})


def install(service: Any) -> None:
    """Put the gate (and CORS, when CORS_ORIGINS is set) in front of every route of the entry service."""
    from starlette.middleware.cors import CORSMiddleware

    from tabserve.core import config

    if config.CORS_ORIGINS:
        service.add_asgi_middleware(
            CORSMiddleware, allow_origins=config.CORS_ORIGINS, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-On-Error"], expose_headers=["X-Cache", "X-Failed-Rows"],
        )
    service.add_asgi_middleware(
        ErrorContract,
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
