"""The payload log's request stamp: an ASGI middleware noting each request's route template and arrival
time, which the log's lines carry as `route` and `latency_ms`.

Apart because it runs on every request, outside the gate, while the records are logged deep in the
request path: a context variable carries the stamp from one to the other.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable

from tabserve.serving.observe import metrics

# (route template, perf_counter at arrival) of the request being handled, set by `RequestStamp`.
REQUEST: contextvars.ContextVar[tuple[str, float] | None] = contextvars.ContextVar(
    "tabserve_payload_request", default=None
)


class RequestStamp:
    """ASGI middleware: notes each request's route template and arrival time for the payload log."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            REQUEST.set((metrics.route_label(scope.get("path", "")), time.perf_counter()))
        await self.app(scope, receive, send)
