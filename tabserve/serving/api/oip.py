"""The Open Inference Protocol V2 (KServe's "v2", Triton's HTTP API, MLServer), REST, mounted at /v2.

Routes: GET /v2 (server metadata), /v2/health/live, /v2/health/ready, /v2/models/{name}[/versions/{version}]
(model metadata: one input per feature, the outputs `predict` and, for classifiers, `predict_proba`),
.../ready, and POST .../infer.

Infer takes the columnar form: one named input per feature, a column of N values (`shape` [N] or [N, 1],
`data` a flat list, or binary data after the JSON header: Triton's binary tensor extension, which
tritonclient sends by default); MLServer's pandas codec (`parameters: {"content_type": "pd"}`) is the
same form. A missing value (nullable features only) is JSON null in `data`; as binary data has no null,
NaN in a float tensor (FP16/FP32/FP64) and the empty string in a BYTES tensor are missing too. The columns become records validated by the service's
strict Record type, so a bad value gets the same 400 message as /predict (naming the row for N > 1).
One row goes through the entry service's cache and in-flight batching (`predict_one`), more rows through
its bulk path (`predict_many`). Answers are JSON; errors are {"error": "<one line>", "detail": [...]},
the protocol's {"error"} plus the service's details.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tabserve.core.card import ModelCard
from tabserve.core.errors import (
    DuplicateKey,
    ModelUnavailable,
    error_body,
    pydantic_detail,
    refuse_duplicate_keys,
    repeated,
    summarize,
)
from tabserve.core.pipeline import CLASSIFICATION
from tabserve.core.schema import BOOLEAN, CATEGORICAL, NUMERIC, Feature
from tabserve.serving.rollout.versions import IncompatibleVersion, UnknownVersion

PLATFORM = "scikit-learn"
INTEGERS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
FLOATS = ("FP16", "FP32", "FP64")
# numpy dtypes of the datatypes binary tensor data may carry (little-endian, row-major).
BINARY_DTYPES = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
MAX_LISTED_ERRORS = 100  # row errors listed in `detail`; the message counts them all


class OipError(Exception):
    """A request the protocol refuses: answered with `status` and {"error": message, "detail": [...]}."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail or []


# --- The protocol's messages (documented in /docs.json) ------------------------------------------


class RequestInput(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str = Field(description="A feature name (GET /v2/models/{name} lists them).")
    shape: list[int] = Field(description="[N] or [N, 1]: one value per row.")
    datatype: str = Field(
        description="BYTES (text categories, dates), INT64 (coded categories; numbers too), FP64 (numbers), BOOL."
    )
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size` with binary data; `content_type` (str, base64) for BYTES."
    )
    data: list[Any] | None = Field(
        None, description="The column, flat (or one list per row); null for a missing value."
    )


class RequestOutput(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str = Field(description="predict or predict_proba.")
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")  # clients add fields (KServe: model_name)
    id: str | None = Field(None, description="Echoed in the answer.")
    parameters: dict[str, Any] | None = Field(
        None, description='{"content_type": "pd"} (MLServer\'s pandas codec) is accepted: the same columnar form.'
    )
    inputs: list[RequestInput] = Field(min_length=1, description="One input per feature.")
    outputs: list[RequestOutput] | None = Field(None, description="The outputs wanted (default: all).")


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OutputTensor]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class OipErrorBody(BaseModel):
    error: str = Field(description="One line naming what was wrong (the protocol's error message).")
    detail: list[dict[str, Any]] = Field(default_factory=list, description="Per-field details: loc, msg, type.")


# --- The model's tensors ---------------------------------------------------------------------------


def input_datatype(feature: Feature) -> str:
    """The datatype metadata declares for a feature."""
    if feature.kind == NUMERIC:
        return "FP64"
    if feature.kind == BOOLEAN:
        return "BOOL"
    if feature.kind == CATEGORICAL and feature.categories and isinstance(feature.categories[0], int):
        return "INT64"
    return "BYTES"  # text categories, dates and date-times (ISO 8601)


def accepted_datatypes(feature: Feature) -> tuple[str, ...]:
    """The datatypes infer accepts for a feature: numbers may come as any number type."""
    declared = input_datatype(feature)
    if declared == "FP64":
        return (*FLOATS, *INTEGERS)
    if declared == "INT64":
        return INTEGERS
    return (declared,)


def output_datatype(card: ModelCard) -> str:
    """The datatype of `predict`: the labels' type, or FP64 for regression."""
    if card.task != CLASSIFICATION or not card.classes:
        return "FP64"
    first = card.classes[0]
    if isinstance(first, bool):
        return "BOOL"
    if isinstance(first, int):
        return "INT64"
    return "BYTES"


def output_names(card: ModelCard) -> list[str]:
    return ["predict", "predict_proba"] if card.has_probabilities else ["predict"]


def class_parameters(card: ModelCard) -> dict[str, str]:
    """The class order of predict_proba's columns: a JSON array, as text (parameter values are scalars)."""
    return {"classes": json.dumps(card.classes)}


def model_metadata(card: ModelCard) -> dict[str, Any]:
    name, version = split_tag(card.tag)
    inputs = [{"name": f.name, "datatype": input_datatype(f), "shape": [-1]} for f in card.schema.features]
    outputs = [{"name": "predict", "datatype": output_datatype(card), "shape": [-1]}]
    if "predict_proba" in output_names(card):
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [-1, len(card.classes or [])],
                "parameters": class_parameters(card),
            }
        )
    return {"name": name, "versions": [version], "platform": PLATFORM, "inputs": inputs, "outputs": outputs}


def split_tag(tag: str) -> tuple[str, str]:
    name, _, version = tag.partition(":")
    return name, version


# --- Columns -> records ----------------------------------------------------------------------------


def parse_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """The request body (JSON, or a JSON header then binary tensor data) as an InferenceRequest."""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise OipError(
                400,
                f"invalid input: Inference-Header-Content-Length {header_length!r} is not a length within the {len(body)}-byte body",
            )
        size = int(header_length)
        header, raw = body[:size], body[size:]
    else:
        header, raw = body, b""
    if not header.strip():
        raise OipError(400, "invalid input: the request body is empty; send an inference request (JSON)")
    try:
        parsed = json.loads(header, object_pairs_hook=refuse_duplicate_keys)
    except DuplicateKey as exc:
        raise OipError(400, f"invalid input: the key {str(exc)!r} appears twice in one JSON object") from None
    except (ValueError, RecursionError) as exc:
        raise OipError(400, f"invalid input: the body is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise OipError(400, "invalid input: the body must be a JSON object (an inference request)")
    try:
        request = InferenceRequest.model_validate(parsed)
    except ValidationError as exc:
        detail = pydantic_detail(exc.errors(include_context=False, include_input=False))
        raise OipError(400, summarize(detail), detail) from None
    _attach_binary(request, raw)
    return request


def _attach_binary(request: InferenceRequest, raw: bytes) -> None:
    """Binary tensor data (Triton's extension): each input with `binary_data_size` takes its bytes, in order."""
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise OipError(
                400, f"invalid input: input {tensor.name!r}: binary_data_size must be a whole number of bytes"
            )
        if tensor.data is not None:
            raise OipError(400, f"invalid input: input {tensor.name!r} has both data and binary_data_size")
        chunk = raw[offset : offset + size]
        if len(chunk) < size:
            raise OipError(
                400, f"invalid input: input {tensor.name!r}: binary_data_size {size} runs past the end of the body"
            )
        offset += size
        tensor.data = _decode_binary(tensor.name, tensor.datatype, chunk)
    if offset != len(raw):
        raise OipError(
            400, f"invalid input: {len(raw) - offset} bytes of binary data after the JSON header belong to no input"
        )


def _decode_binary(name: str, datatype: str, chunk: bytes) -> list[Any]:
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then the bytes
        values, offset = [], 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise OipError(400, f"invalid input: input {name!r}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", chunk, offset)
            offset += 4
            if offset + length > len(chunk):
                raise OipError(400, f"invalid input: input {name!r}: truncated BYTES element")
            values.append(_text(name, chunk[offset : offset + length]))
            offset += length
        return values
    dtype = BINARY_DTYPES.get(datatype)
    if dtype is None:
        raise OipError(
            400,
            f"invalid input: input {name!r}: datatype {datatype!r} is not one of {', '.join(['BYTES', *BINARY_DTYPES])}",
        )
    if len(chunk) % np.dtype(dtype).itemsize:
        raise OipError(
            400, f"invalid input: input {name!r}: {len(chunk)} bytes is not a whole number of {datatype} values"
        )
    return np.frombuffer(chunk, dtype=dtype).tolist()


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OipError(400, f"invalid input: input {name!r}: a BYTES value is not UTF-8 text") from None


def column(tensor: RequestInput, feature: Feature) -> list[Any]:
    """One input as the column of JSON-like values its feature's Record field validates."""
    name = tensor.name
    if tensor.datatype not in accepted_datatypes(feature):
        expected = input_datatype(feature)
        raise OipError(
            400,
            f"invalid input: input {name!r}: datatype {tensor.datatype} does not fit the {feature.type_name} feature; send {expected}"
            + (" (any number type is accepted)" if expected == "FP64" else ""),
        )
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise OipError(
            400, f"invalid input: input {name!r}: shape {shape} is not a column; send [N] or [N, 1] with N >= 1"
        )
    if tensor.data is None:
        raise OipError(400, f"invalid input: input {name!r} has no data")
    data = tensor.data
    if len(shape) == 2 and all(isinstance(row, list) for row in data):  # [[v], [v], ...]: one list per row
        if any(len(row) != 1 for row in data):
            raise OipError(400, f"invalid input: input {name!r}: shape {shape} wants one value per row")
        data = [row[0] for row in data]
    if len(data) != shape[0]:
        raise OipError(
            400, f"invalid input: input {name!r}: shape {shape} says {shape[0]} values but data has {len(data)}"
        )
    if tensor.datatype in FLOATS:
        return [None if isinstance(v, float) and math.isnan(v) else v for v in data]
    if tensor.datatype == "BYTES":  # no null in binary BYTES (tritonclient sends None as "None"): "" is missing
        if (tensor.parameters or {}).get("content_type") == "base64":
            data = [v if not isinstance(v, str) else _text(name, _b64(name, v)) for v in data]
        return [None if v == "" else v for v in data]
    return list(data)


def _b64(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise OipError(
            400, f"invalid input: input {name!r}: a value is not base64 (its content_type says base64)"
        ) from None


def records_from_request(
    request: InferenceRequest, card: ModelCard, record_type: type[BaseModel], max_records: int
) -> list[dict[str, Any]]:
    """The request's columns as validated records (dicts as Record.model_dump() gives them), in row order."""
    content_type = (request.parameters or {}).get("content_type")
    if content_type not in (None, "pd"):
        raise OipError(
            400,
            f"invalid input: request content_type {content_type!r} is not supported; send one input per feature (no content_type, or 'pd')",
        )
    schema = card.schema
    names = [t.name for t in request.inputs]
    twice = repeated(names)
    if twice:
        raise OipError(400, f"invalid input: input(s) given more than once: {', '.join(twice)}")
    unknown = [n for n in names if n not in schema.names]
    if unknown:
        raise OipError(
            400,
            f"invalid input: unknown input(s): {', '.join(unknown)}; this model's inputs: {', '.join(schema.names)}",
        )
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise OipError(
            400,
            f"invalid input: missing input(s): {', '.join(missing)}; send every feature as an input (null values for a nullable one)",
        )
    columns = {t.name: column(t, schema[t.name]) for t in request.inputs}
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise OipError(
            400, f"invalid input: the inputs have different lengths ({listed}); every column needs one value per row"
        )
    rows = next(iter(lengths.values()))
    if rows > max_records:
        raise OipError(400, f"invalid input: {rows} rows; at most {max_records} in one request")
    records, detail, failed = [], [], 0
    for i in range(rows):
        try:
            records.append(
                record_type.model_validate({name: values[i] for name, values in columns.items()}).model_dump()
            )
        except ValidationError as exc:
            failed += 1
            prefix = (f"row {i + 1}",) if rows > 1 else ()
            detail.extend(pydantic_detail(exc.errors(include_context=False, include_input=False), prefix=prefix))
    if failed:
        first = summarize(detail[:1])
        message = (
            first if rows == 1 and len(detail) == 1 else f"{first} ({len(detail)} problems in {failed} of {rows} rows)"
        )
        raise OipError(400, message, detail[:MAX_LISTED_ERRORS])
    return records


def outputs(
    card: ModelCard, answers: list[dict[str, Any]], requested: list[RequestOutput] | None
) -> list[dict[str, Any]]:
    """The output tensors of the answers (API items: prediction, probabilities), as requested."""
    available = output_names(card)
    wanted = [o.name for o in requested] if requested else available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise OipError(
            400, f"invalid input: unknown output(s): {', '.join(unknown)}; this model's outputs: {', '.join(available)}"
        )
    tensors = []
    for name in wanted:
        if name == "predict":
            tensors.append(
                {
                    "name": "predict",
                    "datatype": output_datatype(card),
                    "shape": [len(answers)],
                    "data": [a["prediction"] for a in answers],
                }
            )
        else:
            keys = [
                json.dumps(c) if isinstance(c, bool) else str(c) for c in card.classes or []
            ]  # probability keys: label_text
            data = [a["probabilities"][k] for a in answers for k in keys]
            tensors.append(
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": [len(answers), len(keys)],
                    "data": data,
                    "parameters": class_parameters(card),
                }
            )
    return tensors


# --- The app ---------------------------------------------------------------------------------------


def _server_version() -> str:
    try:
        return metadata.version("tabserve")
    except metadata.PackageNotFoundError:
        return "0"


ERRORS = {
    400: "Invalid input: the error names the input (and the row, for N > 1)",
    404: "Unknown model or version (the error names the held ones)",
    409: "A held version whose feature schema differs from the served API's: serve it on its own",
    415: "Not JSON (or JSON with binary tensor data)",
    429: "Too many requests in flight; retry shortly",
    503: "Model not ready or overloaded; retry shortly",
}


def create_app(
    card: ModelCard, record_type: type[BaseModel], predictor: Callable[[], Any], max_records: int = 10_000
) -> FastAPI:
    """`predictor()` gives the entry service: `async predict_one(record) -> (item, cache_hit)`,
    `async predict_many(records) -> [item]` and `async __is_ready__() -> bool`."""
    app = FastAPI(title="tabserve /v2 (Open Inference Protocol)", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, detail: list | None = None, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, detail), status_code=status, headers=headers)

    @app.exception_handler(OipError)
    async def refused(request: Request, exc: OipError) -> JSONResponse:
        return error(exc.status, exc.message, exc.detail)

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
        """The held version a path names (tabserve/serving/rollout/versions.py); None for the model without a version: the champion answers."""
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
        tensors_wanted = inference.outputs
        outputs(card, [], tensors_wanted)  # an unknown output is refused before the model is called
        service = predictor()
        if len(records) == 1:
            answer, hit = await service.predict_one(records[0], version_card)
            answers = [answer]
            response.headers["X-Cache"] = "hit" if hit else "miss"
        else:
            answers = await service.predict_many(records, version_card)
        name, version = split_tag(answers[0]["model"])  # the version that answered
        body = {"model_name": name, "model_version": version, "outputs": outputs(card, answers, tensors_wanted)}
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
