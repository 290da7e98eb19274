"""The Open Inference Protocol's messages: the pydantic request and answer models /docs.json documents,
and `OipError`, a refusal in the protocol's error shape.

Apart from the rest of /v2 because every other part speaks in these types: the codec builds an
InferenceRequest, the datatypes read it, the app declares the answers with these models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OipError(Exception):
    """A request the protocol refuses: answered with `status` and {"error": message, "detail": [...]}."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail or []


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
    name: str = Field(
        description="predict or predict_proba; with explanations contributions, explanation_output, explanation_base "
        "or explanation_value (naming one asks for explanations)."
    )
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")  # clients add fields (KServe: model_name)
    id: str | None = Field(None, description="Echoed in the answer.")
    parameters: dict[str, Any] | None = Field(
        None,
        description='{"content_type": "pd"} (MLServer\'s pandas codec) is accepted: the same columnar form. '
        '{"explain": true} adds the explanation outputs (contributions: [N, features], explanation_output, '
        'explanation_base, explanation_value); {"explain_class": LABEL} explains that class instead of the '
        "predicted one.",
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
