"""What /docs.json adds to BentoML's generated OpenAPI document, so the documented contract is the
real one: the API-key security scheme, the error responses of every protected operation (Error
schema), the probes' JSON answers, the CSV upload's `on_error` choice, and what predict-by-id's
404, 422 and 503 mean.

`DocsRewriter` is the ASGI `send` the gate puts on GET /docs.json; `document_errors` is the edit.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Protocol

from tabserve.serving.edge.error_shape import PROBES, AnswerRewriter, json_bytes, kept_headers


class Gate(Protocol):
    """What the document needs of the gate's rules (edge/gate.py's Gate has them); a protocol, so this module
    does not import the gate that imports it."""

    requires_key: bool
    form_routes: Collection[str]

    def is_protected(self, path: str) -> bool: ...


DOCUMENTED_ERRORS = {
    400: "Invalid input: the error names the field (and row, for CSV)",
    401: "Missing or wrong API key",
    403: "The key's consumer may not call this route (its `routes` in API_KEYS_FILE)",
    413: "Body or CSV over the configured limit, or more records than the consumer's records_per_minute",
    415: "Wrong content type",
    429: (
        "Too many requests in flight, the consumer's quota (rps and burst, records_per_minute) used up, "
        "or the model service overloaded; retry after Retry-After seconds"
    ),
    503: "Model not ready or overloaded; retry shortly",
    504: "No answer within the request timeout",
}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {
        "description": "The consumer's bucket: its burst of requests, or its records per minute",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {"description": "What is left in that bucket now", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Seconds until the bucket is full again", "schema": {"type": "integer"}},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
# Predict by entity id (tabserve/serving/api/entities.py): what its 404, 422, 501 and 503 mean there.
VERSION_ROUTES = ("/v1/models/{version}", "/v1/models/{version}/predict", "/v1/models/{version}/comparison")
VERSION_CONFLICT = (
    "A held version that cannot serve this request: one whose feature schema differs from the API's (predict), "
    "or one that is not the challenger (comparison); the error says what to do"
)
ADMIN_ROUTES = ("/v1/admin/promote",)
ENTITY_ROUTES = ("/v1/entities/{id}/predict",)
ENTITY_ERRORS = {
    404: "No entity with this id in the feature table",
    422: (
        "The entity's row holds a value the model cannot take, or the table lacks a feature the model requires: "
        "the error names the entity, the column and the table. The request is right, the stored data is not; "
        "giving that feature as a query parameter scores the entity anyway"
    ),
    501: (
        "No feature table is configured (FEATURE_DB_URL unset and no features.db loaded): the error says how to load "
        "one with `python -m tabserve.serving.api.feature_table load`"
    ),
    503: (
        "The feature database is unreachable, the table is missing "
        "(fill it with `python -m tabserve.serving.api.feature_table load`), or the lookup took longer than "
        "FEATURE_DB_TIMEOUT_MS; or the model is not ready. Retry after Retry-After seconds"
    ),
}
# Routes that score CSV rows and take the on_error choice (query parameter or header).
ON_ERROR_ROUTES = ("/predict_csv",)
ON_ERROR_SCHEMA = {"type": "string", "enum": ["fail", "skip"], "default": "fail"}
ON_ERROR_DOC = (
    "What to do with rows that fail validation: `fail` (default) answers 400 listing them and predicts nothing; "
    "`skip` predicts the other rows and names each bad row's problem in an `error` column (empty for good rows)."
)


class DocsRewriter(AnswerRewriter):
    """A `send` that passes BentoML's generated /docs.json through `document_errors`."""

    def __init__(self, send: Any, gate: Gate):
        super().__init__(send)
        self.gate = gate

    def holds(self, start: dict) -> bool:
        return True

    async def answer(self, start: dict, body: bytes) -> None:
        if start["status"] == 200:
            body = json_bytes(document_errors(json.loads(body), self.gate))
        await self.send(
            {
                **start,
                "headers": [
                    *kept_headers(start),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": body})


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
            "detail": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Per-field details: loc, msg, type.",
            },
        },
    }
    if gate.requires_key:
        components.setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "API_KEY of the server, or a consumer's key from API_KEYS_FILE "
            "(python -m tabserve.serving.edge.keys add)",
        }
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in spec.get("paths", {}).items():
        if path in PROBES:
            _document_probe(operations.get("get"), path, error_ref)
        if path in ADMIN_ROUTES:
            _document_admin(operations.get("post"), error_ref)
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
                if status in (401, 403) and not gate.requires_key:
                    continue
                responses[str(status)] = {"description": description, "content": error_ref}
            responses["429"]["headers"] = {**RETRY_AFTER, **(RATE_LIMIT_HEADERS if gate.requires_key else {})}
            if gate.requires_key:
                for status, response in responses.items():
                    if status.startswith("2"):
                        response.setdefault("headers", {}).update(RATE_LIMIT_HEADERS)
            if "{" in path:
                responses["404"] = {
                    "description": "No such item (the error lists the known ones)",
                    "content": error_ref,
                }
            if path in VERSION_ROUTES:
                responses["404"] = {
                    "description": "No such version held (the error lists the held ones)",
                    "content": error_ref,
                }
                responses["409"] = {"description": VERSION_CONFLICT, "content": error_ref}
            if path in ENTITY_ROUTES:
                for status, description in ENTITY_ERRORS.items():
                    responses[str(status)] = {"description": description, "content": error_ref}
                responses["503"]["headers"] = dict(RETRY_AFTER)
            if path in gate.form_routes and method == "post":
                # The form's reader is a person: invalid input re-renders the form, as HTML. The gate's
                # own refusals before the form is read (a repeated query parameter) are still JSON.
                responses["400"] = {
                    "description": "Invalid input: the form again, with the problems listed (HTML); "
                    "or the request refused before the form was read (JSON)",
                    "content": {"text/html": {"schema": {"type": "string"}}, **error_ref},
                }
            if path in ON_ERROR_ROUTES and method == "post":
                _document_on_error(operation)
            if path in EXPLAINED_ROUTES and method == "post":
                _document_explain(operation, path)
            if gate.requires_key:
                operation["security"] = [{"apiKey": []}]
    return spec


def _document_admin(operation: dict | None, error_ref: dict) -> None:
    """POST /v1/admin/promote checks ADMIN_KEY itself (not the API key): 400, 403, 404 and 409 in the one error
    shape."""
    if operation is None:
        return
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    responses["400"] = {"description": 'Invalid body: {"version": "..."} only', "content": error_ref}
    responses["403"] = {
        "description": "Missing or wrong admin key: send 'Authorization: Bearer <ADMIN_KEY>'",
        "content": error_ref,
    }
    responses["404"] = {"description": "No such version held (the error lists the held ones)", "content": error_ref}
    responses["409"] = {
        "description": "A version whose feature schema differs from the API's cannot be champion",
        "content": error_ref,
    }


def _document_probe(operation: dict | None, path: str, error_ref: dict) -> None:
    if not isinstance(operation, dict):
        return
    responses = operation.setdefault("responses", {})
    ok = responses.setdefault("200", {"description": "Successful Response"})
    ok["content"] = {
        "application/json": {"schema": {"$ref": "#/components/schemas/Probe"}, "example": {"status": PROBES[path]}}
    }
    if path == "/readyz":
        responses["503"] = {"description": "Not ready: the model service does not answer", "content": error_ref}


def _document_on_error(operation: dict) -> None:
    parameters = [p for p in operation.get("parameters", []) if p.get("name") not in ("on_error", "X-On-Error")]
    parameters.append(
        {
            "name": "on_error",
            "in": "query",
            "required": False,
            "description": ON_ERROR_DOC,
            "schema": dict(ON_ERROR_SCHEMA),
        }
    )
    parameters.append(
        {
            "name": "X-On-Error",
            "in": "header",
            "required": False,
            "description": "The same choice as `on_error`, as a request header "
            "(the query parameter wins when both are given).",
            "schema": dict(ON_ERROR_SCHEMA),
        }
    )
    operation["parameters"] = parameters


# BentoML's routes whose query string takes the explanation options (/v1's routes declare their own).
EXPLAINED_ROUTES = ("/predict", "/predict_batch", "/predict_csv")


def _document_explain(operation: dict, path: str) -> None:
    from tabserve.explaining.options import EXPLAIN_CLASS_DOC, EXPLAIN_CSV_DOC, EXPLAIN_DOC

    parameters = [p for p in operation.get("parameters", []) if p.get("name") not in ("explain", "explain_class")]
    if path == "/predict_csv":
        parameters.append(
            {
                "name": "explain",
                "in": "query",
                "required": False,
                "description": EXPLAIN_CSV_DOC,
                "schema": {"type": "integer", "minimum": 1},
            }
        )
    else:
        parameters.append(
            {
                "name": "explain",
                "in": "query",
                "required": False,
                "description": EXPLAIN_DOC,
                "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
            }
        )
        parameters.append(
            {
                "name": "explain_class",
                "in": "query",
                "required": False,
                "description": EXPLAIN_CLASS_DOC,
                "schema": {"type": "string"},
            }
        )
    operation["parameters"] = parameters
    operation["responses"]["400"]["description"] = (
        DOCUMENTED_ERRORS[400] + "; an explain option that is wrong (the error names it and its values), or "
        "explanations asked of a model family without them"
    )
