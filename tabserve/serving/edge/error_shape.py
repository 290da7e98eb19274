"""One shape for every error answer: {"error": "<one line>", "detail": [{"loc", "msg", "type"}, ...]}.

`ErrorRewriter` is an ASGI `send` that passes successes through and rewrites error answers into that
shape, whatever made them: BentoML's pydantic dumps with doc links, the one-element JSON list some
of its exceptions answer, plain-text 404/405, Starlette's CORS preflight refusal. `ProbeAnswer`
gives BentoML's health probes a JSON body instead of an empty one. Both are an `AnswerRewriter`
(as is openapi.DocsRewriter): a `send` that holds an answer until its body is whole, then sends
another. `send_json` is how the gate sends its own refusals. Every JSON body is UTF-8 with
non-ASCII text as is ("Añelo", not "A\\u00f1elo").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from tabserve.core.errors import error_body, pydantic_detail, summarize

# BentoML's probes answer 200 with an empty text body; they answer {"status": <word>} instead.
PROBES = {"/healthz": "alive", "/livez": "alive", "/readyz": "ready"}


class AnswerRewriter:
    """A `send` that holds the answers `holds(start)` picks until their whole body is there, then sends
    `answer(start, body)` instead; other answers pass on as they are."""

    def __init__(self, send: Any):
        self.send = send
        self.started = False
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    def holds(self, start: dict) -> bool:
        raise NotImplementedError

    async def answer(self, start: dict, body: bytes) -> None:
        raise NotImplementedError

    def answered(self) -> None:
        """Called once the answer, held or not, is sent."""

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if self.holds(message):
                self.start = message
                return None
            return await self.send(message)
        if message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self.answer(self.start, b"".join(self.chunks))
                self.answered()
            return None
        await self.send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered()


class ErrorRewriter(AnswerRewriter):
    """A `send` that passes successes through and rewrites error answers to the contract.

    `on_error(status)` is called once per rewritten answer (the gate counts refusals with it);
    `on_answered()` once the answer is sent, whatever it was.
    """

    def __init__(
        self, send: Any, on_error: Callable[[int], None] | None = None, on_answered: Callable[[], None] | None = None
    ):
        super().__init__(send)
        self.on_error, self.on_answered = on_error, on_answered

    def holds(self, start: dict) -> bool:
        content_type = dict(start.get("headers", [])).get(b"content-type", b"").decode("latin-1")
        return start["status"] >= 400 and not content_type.startswith("text/html")  # the form answers people in HTML

    async def answer(self, start: dict, body: bytes) -> None:
        status, shaped = rewrite(start["status"], body)
        if self.on_error is not None:
            self.on_error(status)
        kept = kept_headers(start)
        present = {name.lower() for name, _ in kept}  # the app's own Retry-After (a quota's, say) wins
        await send_json(
            self.send, status, shaped, headers=kept + [h for h in extra_headers(status) if h[0] not in present]
        )

    def answered(self) -> None:
        if self.on_answered is not None:
            self.on_answered()


class ProbeAnswer(AnswerRewriter):
    """A `send` that turns a probe's empty 200 into {"status": <word>}; other answers pass on."""

    def __init__(self, send: Any, word: str):
        super().__init__(send)
        self.word = word

    def holds(self, start: dict) -> bool:
        return start["status"] == 200

    async def answer(self, start: dict, body: bytes) -> None:
        await send_json(self.send, 200, {"status": self.word}, headers=kept_headers(start))


def rewrite(status: int, raw: bytes) -> tuple[int, dict]:
    """An error answer's body, whatever its shape, as the contract's {"error", "detail"}."""
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return status, error_body(text or reason(status))
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        body = body[0]  # BentoML answers some exceptions as a one-element list
    if not isinstance(body, dict):
        return status, error_body(reason(status))
    detail = body.get("detail")
    if isinstance(detail, list) and detail and "validation error" in str(body.get("error", "")):
        clean = pydantic_detail(detail)
        return status, error_body(summarize(clean), clean)
    if "error" in body:
        return status, error_body(str(body["error"]), detail if isinstance(detail, list) else None)
    return status, error_body(str(detail or reason(status)))


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def json_bytes(body: Any) -> bytes:
    """UTF-8 JSON with non-ASCII characters as they are, not \\u escapes. A lone surrogate (valid in
    JSON input, not encodable in UTF-8) is written as the JSON escape it came in as."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")


async def send_json(send: Any, status: int, body: dict, headers: list | None = None) -> None:
    payload = json_bytes(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *(headers or []),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def kept_headers(start: dict) -> list[tuple[bytes, bytes]]:
    """An answer's headers but its length and type, which change when the body is rewritten."""
    dropped = {b"content-length", b"content-type"}
    return [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]


def extra_headers(status: int) -> list[tuple[bytes, bytes]]:
    """The headers an error status carries: the scheme to authenticate with, when to retry."""
    if status == 401:
        return [(b"www-authenticate", b"Bearer")]
    if status in (429, 503):
        return [(b"retry-after", b"1")]
    return []
