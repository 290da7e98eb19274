"""Two changes to BentoML 1.4's HTTP stack, applied by service.py in every worker (`apply()`).

Both were found by profiling the benchmark (bench/README.md, "Findings"); each has a unit test that
fails without it, which is also what catches a BentoML upgrade that moves the code they replace.

1. A fix: BentoML's TimeoutMiddleware schedules `loop.call_later(timeout, ...)` for every request and
   never cancels it, so each request's waiter and context (its tracing span and all they reference)
   stay alive for the whole traffic timeout, 60 s. Under load that was ~300 MB of extra memory in the
   entry worker and a full garbage collection of 100-250 ms every second or so: the p98-p99 latency.
   The replacement is the same code plus the cancel.
2. A cost cut: OpenTelemetry's ASGI middleware, as BentoML sets it up, records a child span for every
   ASGI message (request body received, response start, response body) beside the request's own span,
   about a quarter of the entry worker's CPU at 32 clients. The request span and its trace id (in
   the access log) stay; the per-message spans go (`exclude_spans`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_APPLIED = "_tabserve_patched"


def apply() -> None:
    """Apply all; idempotent."""
    release_request_timers()
    trace_requests_not_messages()
    quiet_client_error_logs()


def release_request_timers() -> None:
    from bentoml._internal.server.http.traffic import TimeoutMiddleware
    from starlette.responses import JSONResponse

    if getattr(TimeoutMiddleware.__call__, _APPLIED, False):
        return

    async def __call__(self: Any, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: dict) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send))
        try:
            await waiter
        except asyncio.TimeoutError:
            if task.cancel():
                answer = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(answer, status_code=504)(scope, receive, send)
        else:
            await task
        finally:
            timer.cancel()

    setattr(__call__, _APPLIED, True)
    TimeoutMiddleware.__call__ = __call__


def trace_requests_not_messages() -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    original = OpenTelemetryMiddleware.__init__
    if getattr(original, _APPLIED, False):
        return

    def __init__(self: Any, app: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exclude_spans", ["receive", "send"])
        original(self, app, *args, **kwargs)

    setattr(__init__, _APPLIED, True)
    OpenTelemetryMiddleware.__init__ = __init__


class _ClientErrorsInOneLine(logging.Filter):
    """BentoML logs every invalid request as an ERROR with a full traceback; it is the client's
    mistake, already answered 400, so it becomes one WARNING line naming the first problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            first = error.errors(include_url=False)[0] if error.error_count() else {}
            record.msg = f"{record.getMessage()}: invalid input answered 400 ({'.'.join(map(str, first.get('loc', ())))}: {first.get('msg', '')})"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_client_error_logs() -> None:
    """Invalid requests logged in one line (BentoML's request logger is private: a touchpoint)."""
    logging.getLogger("bentoml._internal.server.http_app").addFilter(_ClientErrorsInOneLine())
