"""The project's error types, and the one JSON shape every HTTP error answers with.

Every message is one line a user can act on: it names what was wrong and, where it helps,
what is allowed instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


class TabserveError(Exception):
    """Base class: a failure with a message meant for the user, not a stack trace."""


class DataError(TabserveError):
    """A CSV (for training or upload) cannot be used as it is."""


class TooLarge(DataError):
    """More data than the configured limits allow (answered with HTTP 413)."""


class ModelNotFound(TabserveError):
    """The model version named is not in the store."""


class ModelCorrupted(TabserveError):
    """The model version exists but its files are missing or damaged."""


class ModelUnavailable(TabserveError):
    """The model service could not answer: HTTP 503 (or 429 when it refused the load)."""

    def __init__(self, message: str, status: int = 503):
        super().__init__(message)
        self.status = status


class InvalidInput(TabserveError):
    """A request failed validation: answered with HTTP 400 (or 413) and per-field details."""

    def __init__(self, message: str, detail: list[dict[str, Any]] | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.detail = detail or []
        self.status = status


def error_body(message: str, detail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON body of every error response: {"error": "...", "detail": [...]}."""
    return {"error": message, "detail": detail or []}


# Where FastAPI's RequestValidationError says a value came from: the first part of its `loc`.
REQUEST_PARTS = ("query", "path", "body", "header", "cookie")


def pydantic_detail(errors: list[dict[str, Any]], prefix: tuple = (), request: bool = False) -> list[dict[str, Any]]:
    """Pydantic errors as JSON-safe dicts: where (loc), what (msg) and the error type; the rest
    (input, context, documentation links) left out. `request=True` for FastAPI's errors: the part
    of the request (query, path, body) is left out of `loc`, which then names the field alone."""
    detail = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if request and loc and loc[0] in REQUEST_PARTS:
            loc = loc[1:]
        detail.append({"loc": [*prefix, *loc], "msg": err.get("msg", ""), "type": err.get("type", "")})
    return detail


def summarize(detail: list[dict[str, Any]]) -> str:
    """One line from validation details: "island: Input should be 'Biscoe', ... (and 2 more)"."""
    if not detail:
        return "invalid request"
    first = detail[0]
    where = ".".join(str(part) for part in first.get("loc", [])) or "body"
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return f"invalid input: {where}: {first.get('msg', '')}{more}"


def repeated(names: Iterable[str]) -> list[str]:
    """The names given more than once, sorted: for refusing a CSV header that repeats a column, a
    query that repeats a parameter, a JSON object that repeats a key."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


class DuplicateKey(ValueError):
    """A JSON object repeats a key (raised by `refuse_duplicate_keys`)."""


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A json.loads object_pairs_hook: JSON parsers keep the last of duplicate keys silently."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise DuplicateKey(repeated(key for key, _ in pairs)[0])
    return obj
