"""One request through an ASGI app in-process, for the gate's tests (test_gate.py, test_error_shape.py)."""

import asyncio
import json


def drive(
    app,
    path="/predict",
    method="POST",
    body=b"{}",
    content_type=b"application/json",
    query=b"",
    headers=(),
    receive=None,
):
    """Send one request to `app`; return (status, headers, raw body bytes) of what it answered."""
    sent = []

    async def whole_body():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(b"content-type", content_type), *headers],
    }
    asyncio.run(app(scope, receive or whole_body, send))
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    return (
        start["status"],
        dict(start["headers"]),
        b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
    )


def drive_json(app, **request):
    """Send one request to `app`; return (status, JSON body)."""
    status, _, raw = drive(app, **request)
    return status, json.loads(raw)


def answering(status, body, content_type=b"text/plain; charset=utf-8"):
    """An ASGI app that answers every request with this status and body."""

    async def app(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app
