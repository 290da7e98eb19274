"""ASGI middleware that holds every endpoint to one error contract.

BentoML answers some failures in shapes of its own (pydantic dumps with doc URLs, a JSON list for
some exceptions, plain-text 404/405). This middleware checks content types before a body is parsed
and rewrites every error answer as {"error": "<one line>", "detail": [...]}.
"""

from __future__ import annotations

import json
from typing import Any

from tabserve.errors import error_body, summarize

JSON_TYPES = ("application/json",)
CSV_PART_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel", "application/octet-stream")


class ErrorContract:
    def __init__(self, app: Any, json_routes: tuple[str, ...] = (), upload_routes: tuple[str, ...] = (), max_upload_bytes: int = 10 << 20):
        self.app = app
        self.json_routes = set(json_routes)
        self.upload_routes = set(upload_routes)
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._check_content_type(scope)
        if refusal is None and scope.get("method") == "POST" and scope.get("path") in self.upload_routes:
            refusal, receive = await self._check_upload(scope, receive)
        if refusal is not None:
            return await _send_json(send, *refusal)

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    return await send(message)
                start.update(message)  # hold an error answer back to rewrite it
                return
            if message["type"] == "http.response.body" and start:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    status, body = _rewrite(start["status"], b"".join(chunks))
                    await _send_json(send, status, body, _kept_headers(start))
                return
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _check_content_type(self, scope: dict) -> tuple[int, dict] | None:
        path = scope.get("path", "")
        if scope.get("method") != "POST" or (path not in self.json_routes and path not in self.upload_routes):
            return None
        content_type = _header(scope, b"content-type")
        media_type = content_type.split(";")[0].strip().lower()
        if path in self.json_routes:
            if media_type and media_type not in JSON_TYPES and not media_type.endswith("+json"):
                return 415, error_body(f"send the body as JSON with Content-Type: application/json (got {media_type})")
        elif media_type != "multipart/form-data":
            return 415, error_body(f"upload the CSV as multipart/form-data with a field named 'file' (got {media_type or 'no content type'})")
        elif "boundary=" not in content_type:
            return 400, error_body("the multipart/form-data content type has no boundary")
        return None


    async def _check_upload(self, scope: dict, receive: Any) -> tuple[tuple[int, dict] | None, Any]:
        """Read the upload (up to the limit), check its 'file' part, and hand the same bytes on."""
        from starlette.requests import Request

        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return (400, error_body("the client disconnected before the upload finished")), receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_upload_bytes:
                return (413, error_body(f"the upload is larger than the limit of {self.max_upload_bytes} bytes")), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        def replay() -> Any:
            sent = False

            async def receive_again() -> dict:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            return receive_again

        try:
            form = await Request(scope, replay()).form()
        except Exception as exc:  # starlette/python-multipart raise several types for broken bodies
            return (400, error_body(f"the multipart body is malformed: {exc}")), replay()
        part = form.get("file")
        if part is None or not hasattr(part, "content_type"):
            return (400, error_body("the upload has no file field named 'file'")), replay()
        part_type = (part.content_type or "application/octet-stream").split(";")[0].strip().lower()
        await form.close()
        if part_type not in CSV_PART_TYPES:
            return (415, error_body(f"the uploaded file must be CSV (text/csv), not {part_type}")), replay()
        return None, replay()


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _kept_headers(start: dict) -> list[tuple[bytes, bytes]]:
    dropped = {b"content-length", b"content-type"}
    return [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]


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
        clean = [{"loc": list(d.get("loc", [])), "msg": d.get("msg", ""), "type": d.get("type", "")} for d in detail]
        return status, error_body(summarize(clean), clean)
    if "error" in body:
        return status, error_body(str(body["error"]), detail if isinstance(detail, list) else None)
    return status, error_body(str(detail or _reason(status)))


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


async def _send_json(send: Any, status: int, body: dict, headers: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*(headers or []), (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})
