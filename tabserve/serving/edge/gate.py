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

`GateMiddleware.__call__` reads as that sequence, one named step per check; the body is read, checked and
its records counted in tabserve/serving/edge/limits.py. `install(service)` puts the gate, and CORS when
CORS_ORIGINS is set, in front of the entry service.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tabserve.core.errors import error_body, repeated
from tabserve.serving.edge.consumers import ANONYMOUS, CURRENT, Consumer, Decision, Keyring
from tabserve.serving.edge.error_shape import PROBES, ErrorRewriter, ProbeAnswer, extra_headers, send_json
from tabserve.serving.edge.limits import RECORD_ROUTES, count_records, header, read_body
from tabserve.serving.edge.openapi import DocsRewriter
from tabserve.serving.observe import metrics

# Query parameters that look like a credential: a key in a URL ends up in logs, so it is refused.
KEY_PARAMETERS = ("api_key", "apikey", "api-key", "key", "token", "access_token")
ADMIN_PREFIX = "/v1/admin"


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
        how_many = RECORD_ROUTES.get((method, metrics.route_label(path)))
        statuses: list[int] = []
        stamp: list[tuple[bytes, bytes]] = []  # X-RateLimit-* headers for the answer, when the consumer has a quota
        send = _stamped(send, statuses, stamp)
        consumer: Consumer | None = None
        records = 0
        CURRENT.set(ANONYMOUS)
        try:
            consumer, refusal = self._identify(scope)
            if consumer is not None:
                CURRENT.set(consumer.name)
                refusal = self._check_route(consumer, path) or self._take_request(consumer, stamp)
            refusal = refusal or self._check_content_type(scope, path, method) or _check_query(scope)
            refusal = refusal or self._check_concurrency()
            body = b""
            if refusal is None and method == "POST":
                refusal, receive, body = await read_body(self.gate, scope, receive, path)
            if refusal is None and how_many is not None:
                records = count_records(how_many, body)
                refusal = self._take_records(consumer, records, stamp)
            if refusal is not None:
                return await _refuse(send, refusal, count)
            await self._answer(scope, receive, send, count)
        finally:
            _account(consumer, path, statuses, records)

    # --- the steps, in the order __call__ takes them ------------------------------------------------

    def _identify(self, scope: dict) -> tuple[Consumer | None, tuple[int, dict] | None]:
        """The consumer whose key the request carries, when keys are required: a 400 for a key in the query
        string, a 401 if it has none that is known. An unknown key and a wrong one are one case: nothing
        maps a key to a consumer but its hash."""
        if not self.gate.requires_key:
            return None, None
        refusal = _check_key_in_query(scope)
        if refusal is not None:
            return None, refusal
        scheme, _, token = header(scope, b"authorization").partition(" ")
        consumer = self.gate.keyring.identify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if consumer is not None:
            return consumer, None
        message = "wrong API key" if token else "missing API key: send 'Authorization: Bearer <key>'"
        return None, (401, error_body(message))

    @staticmethod
    def _check_route(consumer: Consumer, path: str) -> tuple[int, dict] | None:
        """The routes the consumer's key may call (403)."""
        if consumer.allows(path):
            return None
        routes = ", ".join(consumer.routes or ())
        return 403, error_body(f"the key of consumer {consumer.name!r} may not call {path}; it may call: {routes}")

    def _take_request(self, consumer: Consumer, stamp: list) -> tuple | None:
        """The consumer's requests-per-second quota (429)."""
        decision = self.gate.keyring.take_request(consumer)
        if decision is None or _quota_allows(decision, stamp):
            return None
        return (
            429,
            error_body(
                f"consumer {consumer.name!r} is over its quota of {consumer.rps:g} requests per second "
                f"(burst {decision.limit}); retry in {decision.retry_after_s} s"
            ),
            True,
        )

    def _check_content_type(self, scope: dict, path: str, method: str) -> tuple[int, dict] | None:
        """The content type a POST to the route needs: JSON, a multipart upload, or a form (415)."""
        if method != "POST":
            return None
        content_type = header(scope, b"content-type")
        media_type = content_type.split(";")[0].strip().lower()
        if path in self.gate.json_routes:
            if media_type and media_type != "application/json" and not media_type.endswith("+json"):
                return 415, error_body(f"send the body as JSON with Content-Type: application/json (got {media_type})")
        elif path in self.gate.upload_routes:
            if media_type != "multipart/form-data":
                return 415, error_body(
                    "upload the CSV as multipart/form-data with a field named 'file' "
                    f"(got {media_type or 'no content type'})"
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

    def _check_concurrency(self) -> tuple[int, dict] | None:
        """The requests in flight, at most MAX_CONCURRENCY (429)."""
        if self.gate.in_flight >= self.gate.max_concurrency:
            return 429, error_body(f"more than {self.gate.max_concurrency} requests in flight; retry shortly")
        return None

    def _take_records(self, consumer: Consumer | None, records: int, stamp: list) -> tuple | None:
        """The consumer's records-per-minute quota: 429, or 413 for more records than it ever allows."""
        if consumer is None or not records:
            return None
        decision = self.gate.keyring.take_records(consumer, records)
        if decision is None or _quota_allows(decision, stamp):
            return None
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

    async def _answer(self, scope: dict, receive: Any, send: Any, count: Any) -> None:
        """The app answers, counted in flight until its answer is sent; 504 past the request timeout."""
        released = False

        def release() -> None:  # once the answer is sent, not when BentoML's after-response tasks end
            nonlocal released
            if not released:
                released = True
                self.gate.in_flight -= 1

        rewriter = ErrorRewriter(send, on_error=count, on_answered=release)
        self.gate.in_flight += 1
        try:
            async with asyncio.timeout(self.gate.timeout_s):  # not wait_for: on 3.11 that is one more task per request
                await self.app(scope, receive, rewriter)
        except TimeoutError:
            if not rewriter.started:
                await send_json(send, 504, error_body(f"no answer within {self.gate.timeout_s:g} s"))
        finally:
            release()


def _quota_allows(decision: Decision, stamp: list) -> bool:
    """Apply a bucket's decision: its headers go on the answer (none when the request can never fit)."""
    if decision.allowed:
        stamp[:] = decision.headers()
        return True
    stamp[:] = decision.headers() if decision.fits else []
    return False


async def _refuse(send: Any, refusal: tuple, count: Any) -> None:
    """Answer a refusal in the error shape (counted on /metrics when it is bad input)."""
    count(refusal[0])
    headers = [] if len(refusal) > 2 else extra_headers(refusal[0])  # a quota refusal carries its own Retry-After
    await send_json(send, refusal[0], refusal[1], headers=headers)


def _account(consumer: Consumer | None, path: str, statuses: list[int], records: int) -> None:
    """Every protected request on /metrics, per consumer, route and status; its records once answered 2xx."""
    if statuses:  # a client gone before any answer is not counted
        name = consumer.name if consumer is not None else ANONYMOUS
        metrics.observe_request(name, path, statuses[0])
        if 200 <= statuses[0] < 300:
            metrics.observe_records(name, records)


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


def _check_query(scope: dict) -> tuple[int, dict] | None:
    query = scope.get("query_string", b"").decode("utf-8", "replace")
    twice = repeated(name for name, _ in parse_qsl(query, keep_blank_values=True))
    if twice:
        return 400, error_body(f"invalid input: query parameter(s) given more than once: {', '.join(twice)}")
    return None


def _count_refusal(path: str, status: int) -> None:
    """Invalid requests on /metrics: bad input (400), too large (413), wrong content type (415)."""
    if status in (400, 413, 415):
        metrics.observe_refusal(path, status)


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
            and header(scope, b"origin")
            and header(scope, b"access-control-request-method")
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
