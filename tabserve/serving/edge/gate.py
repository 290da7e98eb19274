"""The entry service's request gate: one ASGI middleware in front of every route.

Before a request to a protected route reaches BentoML or the /v1 app it checks, in order: no key in
the query string (400), the API key and whose it is (401; tabserve/serving/edge/consumers.py), the routes
that consumer may call (403), its requests-per-second quota (429), the content type (415), repeated
query parameters (400), the concurrency limit (429) and the body: its size (413, read before any
parsing), an empty JSON body or a key repeated in one JSON object (400), an upload without a CSV file
part (400/415), then the consumer's records-per-minute quota (429; 413 for more records than it ever
allows). It answers 504 past the request timeout. A consumer with a quota gets X-RateLimit-* headers
on every answer; every protected request is counted per consumer, route and status on /metrics.
Every error answer, the gate's or the app's, leaves in the one error shape and the probes answer
JSON (tabserve/serving/edge/error_shape.py); /docs.json documents all that (tabserve/serving/edge/openapi.py).

`install(service)` puts the gate, and CORS when CORS_ORIGINS is set, in front of the entry service.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tabserve.core.errors import DuplicateKey, error_body, refuse_duplicate_keys, repeated
from tabserve.serving.edge.consumers import ANONYMOUS, CURRENT, Consumer, Decision, Keyring
from tabserve.serving.edge.error_shape import PROBES, ErrorRewriter, ProbeAnswer, extra_headers, send_json
from tabserve.serving.edge.openapi import DocsRewriter
from tabserve.serving.observe import metrics

CSV_PART_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel", "application/octet-stream")
# Query parameters that look like a credential: a key in a URL ends up in logs, so it is refused.
KEY_PARAMETERS = ("api_key", "apikey", "api-key", "key", "token", "access_token")
ADMIN_PREFIX = "/v1/admin"
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


@dataclass
class Gate:
    """What the middleware enforces. Routes are exact paths; `protected_prefixes` also need the key."""

    json_routes: tuple[str, ...] = ()
    upload_routes: tuple[str, ...] = ()
    form_routes: tuple[str, ...] = ()
    protected_prefixes: tuple[str, ...] = ()
    api_key: str = ""  # API_KEY: the consumer "default"; ignored when `keyring` is given
    keyring: Keyring | None = None  # the consumers and their quotas (API_KEY's and API_KEYS_FILE's)
    max_body_bytes: int = 10 << 20
    max_concurrency: int = 1000
    timeout_s: float = 60
    in_flight: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.keyring is None:
            self.keyring = Keyring(api_key=self.api_key)

    @property
    def requires_key(self) -> bool:
        """Whether protected routes need a key (API_KEY, API_KEYS_FILE or both)."""
        return self.keyring.required

    def is_protected(self, path: str) -> bool:
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            return False  # the admin routes check ADMIN_KEY themselves (tabserve/serving/api/v1.py), not an API key
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

        metrics.observe_worker_request()
        route = metrics.route_label(path)
        how_many = RECORD_ROUTES.get((method, route))
        statuses: list[int] = []
        stamp: list[tuple[bytes, bytes]] = []  # X-RateLimit-* headers for the answer, when the consumer has a quota
        send = _stamped(send, statuses, stamp)
        consumer: Consumer | None = None
        records = 0
        CURRENT.set(ANONYMOUS)
        try:
            refusal = _check_key_in_query(scope) if self.gate.requires_key else None
            if refusal is None:
                consumer, refusal = self._identify(scope)
            if consumer is not None:
                CURRENT.set(consumer.name)
            if refusal is None and consumer is not None and not consumer.allows(path):
                routes = ", ".join(consumer.routes or ())
                refusal = (
                    403,
                    error_body(f"the key of consumer {consumer.name!r} may not call {path}; it may call: {routes}"),
                )
            if refusal is None and consumer is not None:
                refusal = self._take(stamp, self.gate.keyring.take_request(consumer), consumer, "requests")
            refusal = refusal or self._check_content_type(scope, path, method) or _check_query(scope)
            if refusal is None and self.gate.in_flight >= self.gate.max_concurrency:
                refusal = 429, error_body(f"more than {self.gate.max_concurrency} requests in flight; retry shortly")
            body = b""
            if refusal is None and method == "POST":
                refusal, receive, body = await self._read_body(scope, receive, path)
            if refusal is None and how_many is not None:
                records = _count_records(how_many, body)
                if consumer is not None and records:
                    refusal = self._take(
                        stamp, self.gate.keyring.take_records(consumer, records), consumer, "records", records
                    )
            if refusal is not None:
                count(refusal[0])
                headers = (
                    [] if len(refusal) > 2 else extra_headers(refusal[0])
                )  # a quota refusal carries its own Retry-After
                return await send_json(send, refusal[0], refusal[1], headers=headers)

            released = False

            def release() -> None:  # once the answer is sent, not when BentoML's after-response tasks end
                nonlocal released
                if not released:
                    released = True
                    self.gate.in_flight -= 1

            rewriter = ErrorRewriter(send, on_error=count, on_answered=release)
            self.gate.in_flight += 1
            try:
                async with asyncio.timeout(
                    self.gate.timeout_s
                ):  # not wait_for: on 3.11 that is one more task per request
                    await self.app(scope, receive, rewriter)
            except TimeoutError:
                if not rewriter.started:
                    await send_json(send, 504, error_body(f"no answer within {self.gate.timeout_s:g} s"))
            finally:
                release()
        finally:
            if statuses:  # a client gone before any answer is not counted
                name = consumer.name if consumer is not None else ANONYMOUS
                metrics.observe_request(name, path, statuses[0])
                if 200 <= statuses[0] < 300:
                    metrics.observe_records(name, records)

    def _identify(self, scope: dict) -> tuple[Consumer | None, tuple[int, dict] | None]:
        """The consumer whose key the request carries; a 401 if keys are required and it has none that
        is known. An unknown key and a wrong one are one case: nothing maps a key to a consumer but its hash."""
        if not self.gate.requires_key:
            return None, None
        scheme, _, token = _header(scope, b"authorization").partition(" ")
        consumer = self.gate.keyring.identify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if consumer is not None:
            return consumer, None
        message = "wrong API key" if token else "missing API key: send 'Authorization: Bearer <key>'"
        return None, (401, error_body(message))

    @staticmethod
    def _take(stamp: list, decision: Decision | None, consumer: Consumer, what: str, records: int = 0) -> tuple | None:
        """Apply a bucket's decision: its headers go on the answer; a refusal is 429 (413 when it never fits)."""
        if decision is None:
            return None
        if decision.allowed:
            stamp[:] = decision.headers()
            return None
        stamp[:] = decision.headers() if decision.fits else []
        if what == "requests":
            return (
                429,
                error_body(
                    f"consumer {consumer.name!r} is over its quota of {consumer.rps:g} requests per second "
                    f"(burst {decision.limit}); retry in {decision.retry_after_s} s"
                ),
                True,
            )
        if not decision.fits:
            return (
                413,
                error_body(
                    f"{records} records are more than consumer {consumer.name!r} may send in a minute "
                    f"({decision.limit}); send smaller requests"
                ),
                True,
            )
        return (
            429,
            error_body(
                f"consumer {consumer.name!r} is over its quota of {decision.limit} records per minute "
                f"({decision.remaining} left now, {records} asked); retry in {decision.retry_after_s} s"
            ),
            True,
        )

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
                return 415, error_body(
                    f"upload the CSV as multipart/form-data with a field named 'file' (got {media_type or 'no content type'})"
                )
            if "boundary=" not in content_type:
                return 400, error_body("the multipart/form-data content type has no boundary")
        elif path in self.gate.form_routes and media_type not in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            return 415, error_body(
                f"submit the form as application/x-www-form-urlencoded (got {media_type or 'no content type'})"
            )
        return None

    async def _read_body(self, scope: dict, receive: Any, path: str) -> tuple[tuple[int, dict] | None, Any, bytes]:
        """Read the body up to the limit (refusing 413 early), check uploads, hand the bytes on
        (and give back what holds the records, to count them: the JSON body parsed, the uploaded file)."""
        limit = self.gate.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            return (413, error_body(f"the body is {int(declared)} bytes; the limit is {limit}")), receive, b""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return (400, error_body("the client disconnected before the body was complete")), receive, b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return (413, error_body(f"the body is larger than the limit of {limit} bytes")), receive, b""
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        refusal, counted = None, body
        if path in self.gate.upload_routes:
            refusal, counted = await _check_upload(scope, body)
        elif path in self.gate.json_routes:
            if not body.strip():
                refusal = 400, error_body("invalid input: the request body is empty; send a JSON object")
            else:
                refusal, counted = _check_duplicate_keys(body)
        return refusal, _replay(body, then=receive), counted


def _stamped(send: Any, statuses: list[int], headers: list[tuple[bytes, bytes]]) -> Any:
    """A `send` noting the answer's status and adding `headers` (filled in later) to it."""

    async def stamp(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            if headers:
                message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return stamp


def _check_key_in_query(scope: dict) -> tuple[int, dict] | None:
    """Keys travel only in the Authorization header: a URL is logged by proxies and kept in histories."""
    query = scope.get("query_string", b"").decode("utf-8", "replace")
    names = sorted({name for name, _ in parse_qsl(query, keep_blank_values=True) if name.lower() in KEY_PARAMETERS})
    if names:
        return 400, error_body(
            f"send the API key only in the header 'Authorization: Bearer <key>', never in the URL (query parameter "
            f"{', '.join(names)}); a key that was sent in a URL may have been logged on the way: have it replaced"
        )
    return None


def _count_records(how: str, body: Any) -> int:
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


def _csv_rows(data: bytes) -> int:
    """Data rows of an uploaded CSV, counted cheaply (~20 ms for 10 MB): its non-empty lines but the
    header. A quoted cell holding a line break counts once per line: reading the CSV properly here
    would cost a second parse of every upload (~1 s for 10 MB with quotes) for a rare case."""
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


def _check_query(scope: dict) -> tuple[int, dict] | None:
    query = scope.get("query_string", b"").decode("utf-8", "replace")
    twice = repeated(name for name, _ in parse_qsl(query, keep_blank_values=True))
    if twice:
        return 400, error_body(f"invalid input: query parameter(s) given more than once: {', '.join(twice)}")
    return None


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
            return (415, error_body(f"the uploaded file must be CSV (text/csv), not {part_type}")), b""
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
        if (
            scope["type"] == "http"
            and scope.get("method") == "OPTIONS"
            and _header(scope, b"origin")
            and _header(scope, b"access-control-request-method")
        ):
            send = ErrorRewriter(send)  # a preflight: answered by CORSMiddleware alone
        await self.cors(scope, receive, send)


def install(service: Any) -> None:
    """Put the gate (and CORS, when CORS_ORIGINS is set) in front of every route of the entry service.
    A keys file that cannot be used stops the process here, at start, with one line."""
    from tabserve import bentoml_fixes
    from tabserve.serving import settings
    from tabserve.serving.edge.consumers import KeysFileError

    try:
        keyring = Keyring(api_key=settings.API_KEY, path=settings.API_KEYS_FILE or None)
    except KeysFileError as exc:
        raise SystemExit(f"error: API_KEYS_FILE {exc}") from None
    if not (settings.API_KEY or settings.API_KEYS_FILE):
        logging.getLogger("tabserve").warning(
            "neither API_KEY nor API_KEYS_FILE is set: the prediction endpoints are open to anyone who can reach"
            " this port"
        )
    bentoml_fixes.consumer_in_access_log(CURRENT)

    if settings.CORS_ORIGINS:
        service.add_asgi_middleware(
            CORS,
            allow_origins=settings.CORS_ORIGINS,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-On-Error", "Inference-Header-Content-Length"],
            expose_headers=["X-Cache", "X-Failed-Rows"],
        )
    service.add_asgi_middleware(
        GateMiddleware,
        gate=Gate(
            json_routes=("/predict", "/predict_batch"),
            upload_routes=("/predict_csv",),
            form_routes=("/v1/form",),
            protected_prefixes=("/v1", "/v2/models"),  # /v2 and /v2/health/* stay open, like /healthz
            api_key=settings.API_KEY,
            keyring=keyring,
            max_body_bytes=settings.MAX_BODY_BYTES,
            max_concurrency=settings.MAX_CONCURRENCY,
            timeout_s=settings.REQUEST_TIMEOUT_S,
        ),
    )
