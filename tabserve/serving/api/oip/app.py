"""The /v2 app: the FastAPI routes of the Open Inference Protocol (server and model metadata, health,
readiness, infer), their OpenAPI description, errors in the protocol's shape, and `ServerRoot` for GET /v2.

Apart from the messages, the codec and the datatypes: this is the HTTP side only. It checks the path's
model and version against the held ones and the content type, then hands the body to the codec, the
columns to the datatypes, and the records to the entry service (`predict_one`, `predict_many`).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tabserve.core.card import ModelCard
from tabserve.core.errors import InvalidInput, ModelUnavailable, error_body, pydantic_detail, summarize
from tabserve.explaining.options import explain_target
from tabserve.serving.api.oip.codec import parse_request
from tabserve.serving.api.oip.datatypes import (
    input_datatype,
    model_metadata,
    output_names,
    outputs,
    records_from_request,
    split_tag,
    wanted_outputs,
)
from tabserve.serving.api.oip.explain import explain_options
from tabserve.serving.api.oip.messages import (
    InferenceRequest,
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    OipError,
    OipErrorBody,
    Ready,
    ServerMetadata,
)
from tabserve.serving.rollout.versions import IncompatibleVersion, UnknownVersion


def _server_version() -> str:
    try:
        return metadata.version("tabserve")
    except metadata.PackageNotFoundError:
        return "0"


ERRORS = {
    400: "Invalid input: the error names the input (and the row, for N > 1), the output or the explanation option",
    404: "Unknown model or version (the error names the held ones)",
    409: "A held version whose feature schema differs from the served API's: serve it on its own",
    415: "Not JSON (or JSON with binary tensor data)",
    429: "Too many requests in flight; retry shortly",
    503: "Model not ready or overloaded; retry shortly",
}


def create_app(
    card: ModelCard, record_type: type[BaseModel], predictor: Callable[[], Any], max_records: int = 10_000
) -> FastAPI:
    """`predictor()` gives the entry service (tabserve/serving/inference/path.py): `versions`,
    `async predict_one(record, card[, explain]) -> (item, cache_hit)`, `async predict_many(records, card[, explain])
    -> [item]` and `async is_ready() -> bool`. `explain` is passed only when the request asks for explanations."""
    app = FastAPI(title="tabserve /v2 (Open Inference Protocol)", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, detail: list | None = None, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, detail), status_code=status, headers=headers)

    @app.exception_handler(OipError)
    async def refused(request: Request, exc: OipError) -> JSONResponse:
        return error(exc.status, exc.message, exc.detail)

    @app.exception_handler(InvalidInput)
    async def invalid_option(request: Request, exc: InvalidInput) -> JSONResponse:
        return error(exc.status, exc.message, exc.detail)  # an explanation option the answering version refuses

    @app.exception_handler(ModelUnavailable)
    async def unavailable(request: Request, exc: ModelUnavailable) -> JSONResponse:
        return error(exc.status, str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = pydantic_detail(exc.errors(), request=True)
        return error(400, summarize(detail), detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    def check_model(model_name: str, model_version: str | None) -> ModelCard | None:
        """The held version a path names (tabserve/serving/rollout/versions.py); None for the model without a
        version: the champion answers."""
        versions = predictor().versions
        name, version = split_tag(versions.champion.tag)
        if model_version is None:
            if model_name != name:
                raise OipError(404, f"unknown model {model_name!r}; this server serves {name!r} (version {version!r})")
            return None
        try:
            return versions.answering(f"{model_name}:{model_version}")
        except UnknownVersion as exc:
            raise OipError(404, str(exc)) from None
        except IncompatibleVersion as exc:
            raise OipError(409, str(exc)) from None

    def documented(*statuses: int) -> dict:
        return {s: {"model": OipErrorBody, "description": ERRORS[s]} for s in statuses}

    @app.get("/", response_model=ServerMetadata, summary="Server metadata")
    @app.get("", include_in_schema=False)
    async def server_metadata() -> dict[str, Any]:
        return {"name": "tabserve", "version": _server_version(), "extensions": []}

    @app.get("/health/live", response_model=Live, summary="Server live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    async def is_ready() -> bool:
        return bool(await predictor().is_ready())

    @app.get(
        "/health/ready",
        response_model=Ready,
        summary="Server ready (the model service answers)",
        responses=documented(503),
    )
    async def ready() -> Any:
        if await is_ready():
            return {"ready": True}
        return error(503, "not ready: the model service does not answer", headers={"Retry-After": "1"})

    async def model_ready(model_name: str, model_version: str | None) -> Any:
        check_model(model_name, model_version)
        if await is_ready():
            return {"name": model_name, "ready": True}
        return error(
            503, f"model {model_name!r} is not ready: the model service does not answer", headers={"Retry-After": "1"}
        )

    @app.get(
        "/models/{model_name}",
        response_model=ModelMetadata,
        response_model_exclude_none=True,
        summary="Model metadata: inputs (one per feature) and outputs",
        responses=documented(404),
    )
    async def get_metadata(model_name: str) -> dict[str, Any]:
        check_model(model_name, None)
        return model_metadata(predictor().versions.champion)

    @app.get(
        "/models/{model_name}/versions/{model_version}",
        response_model=ModelMetadata,
        response_model_exclude_none=True,
        summary="Model metadata of a version",
        responses=documented(404),
    )
    async def get_version_metadata(model_name: str, model_version: str) -> dict[str, Any]:
        return model_metadata(check_model(model_name, model_version))

    @app.get(
        "/models/{model_name}/ready", response_model=ModelReady, summary="Model ready", responses=documented(404, 503)
    )
    async def get_model_ready(model_name: str) -> Any:
        return await model_ready(model_name, None)

    @app.get(
        "/models/{model_name}/versions/{model_version}/ready",
        response_model=ModelReady,
        summary="Model version ready",
        responses=documented(404, 503),
    )
    async def get_version_ready(model_name: str, model_version: str) -> Any:
        return await model_ready(model_name, model_version)

    example = {
        "id": "42",
        "inputs": [
            {"name": f.name, "shape": [1], "datatype": input_datatype(f), "data": [f.example]}
            for f in card.schema.features
        ],
        "outputs": [{"name": n} for n in output_names(card)],
    }
    request_schema = _inline(InferenceRequest.model_json_schema())
    infer_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema, "example": example}},
        }
    }
    infer_responses = {**documented(400, 404, 409, 415, 429, 503)}

    async def infer(request: Request, response: Response, model_name: str, model_version: str | None) -> Any:
        version_card = check_model(model_name, model_version)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        header_length = request.headers.get("inference-header-content-length")
        if (
            media_type
            and media_type not in ("application/json", "application/octet-stream")
            and not media_type.endswith("+json")
        ):
            raise OipError(
                415, f"send the inference request as JSON with Content-Type: application/json (got {media_type})"
            )
        inference = parse_request(await request.body(), header_length)
        records = records_from_request(inference, card, record_type, max_records)
        service = predictor()
        # Bad explanation options and unknown outputs are refused before the model is called: the options against
        # the version named, else the champion (the request path checks the version that answers again: a canary).
        explain = explain_options(inference)
        explained = explain_target(version_card or service.versions.champion, *explain) is not None
        tensors_wanted = inference.outputs
        wanted_outputs(card, tensors_wanted, explained)
        asked = {"explain": explain} if explained else {}
        if len(records) == 1:
            answer, hit = await service.predict_one(records[0], version_card, **asked)
            answers = [answer]
            response.headers["X-Cache"] = "hit" if hit else "miss"
        else:
            answers = await service.predict_many(records, version_card, **asked)
        name, version = split_tag(answers[0]["model"])  # the version that answered
        body = {
            "model_name": name,
            "model_version": version,
            "outputs": outputs(card, answers, tensors_wanted, explained),
        }
        if inference.id is not None:
            body["id"] = inference.id
        return body

    @app.post(
        "/models/{model_name}/infer",
        response_model=InferenceResponse,
        response_model_exclude_none=True,
        summary="Predict N rows given as one column per feature",
        openapi_extra=infer_body,
        responses=infer_responses,
    )
    async def post_infer(model_name: str, request: Request, response: Response) -> Any:
        return await infer(request, response, model_name, None)

    @app.post(
        "/models/{model_name}/versions/{model_version}/infer",
        response_model=InferenceResponse,
        response_model_exclude_none=True,
        summary="Predict with a model version",
        openapi_extra=infer_body,
        responses=infer_responses,
    )
    async def post_version_infer(model_name: str, model_version: str, request: Request, response: Response) -> Any:
        return await infer(request, response, model_name, model_version)

    return app


class ServerRoot:
    """ASGI middleware: GET /v2 (server metadata, what clients ask first) reaches the app mounted at
    /v2, whose root the mount only matches as /v2/ (else the answer is a 307 redirect clients don't follow)."""

    def __init__(self, app: Any, path: str = "/v2"):
        self.app, self.path = app, path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == self.path:
            scope = {**scope, "path": self.path + "/", "raw_path": (self.path + "/").encode()}
        await self.app(scope, receive, send)


def _inline(schema: dict) -> dict:
    """A pydantic JSON schema with its $defs inlined, to stand alone in an OpenAPI request body."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)
