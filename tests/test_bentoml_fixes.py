"""The two changes to BentoML's HTTP stack (tabserve/bentoml_patches.py), each driven as ASGI middleware."""

import asyncio

from bentoml._internal.server.http.traffic import TimeoutMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tabserve import bentoml_fixes as bentoml_patches

bentoml_patches.apply()
bentoml_patches.apply()  # idempotent: service.py is imported in several processes and by the tests


async def answer_ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def call(middleware, scope=None):
    """One request through `middleware`; returns the statuses it sent, and the timers still pending."""
    scope = scope or {"type": "http", "method": "POST", "path": "/predict", "query_string": b"", "headers": []}

    async def scenario():
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message):
            sent.append(message)

        await middleware(scope, receive, send)
        pending = [h for h in asyncio.get_running_loop()._scheduled if not h.cancelled()]
        return [m["status"] for m in sent if m["type"] == "http.response.start"], pending

    return asyncio.run(scenario())


def test_the_request_timer_is_released_when_the_request_ends():
    """Unpatched, a 60 s timer per request kept the request's context (and tracing span) alive."""
    statuses, pending = call(TimeoutMiddleware(answer_ok, timeout=60))
    assert statuses == [200] and pending == []


def test_a_slow_request_still_gets_504():
    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    assert call(TimeoutMiddleware(slow_app, timeout=0.05))[0] == [504]


def test_a_request_is_traced_as_one_span_not_one_per_message():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    statuses, _ = call(OpenTelemetryMiddleware(answer_ok, tracer_provider=provider))
    spans = exporter.get_finished_spans()
    assert statuses == [200]
    assert len(spans) == 1 and spans[0].name.startswith("POST"), [s.name for s in spans]
    assert spans[0].attributes.get("http.status_code", spans[0].attributes.get("http.response.status_code")) == 200
