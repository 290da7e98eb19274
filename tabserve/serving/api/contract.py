"""The HTTP contract, made from a model card: the request and response types of the API."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, create_model, model_serializer
from pydantic_core import to_json
from starlette.responses import JSONResponse, Response

from tabserve.core.card import ModelCard
from tabserve.core.errors import error_body
from tabserve.core.pipeline import CLASSIFICATION
from tabserve.core.schema import label_text


class _StrictInput(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")


class Explanation(BaseModel):
    """Why this answer (?explain=true): each input feature's contribution to the explained output."""

    method: str = Field(
        description="How: tree_shap (exact TreeSHAP), tree_shap (lightgbm pred_contrib), or linear "
        "(coef x (x - training mean) in the model's input space).",
        examples=["tree_shap"],
    )
    output: str = Field(
        description="What is explained: the log-odds or softmax logit of a class, a class's probability (forests), "
        "or the predicted value.",
        examples=["log-odds of 'yes'"],
    )
    base: float = Field(description="The expected output over the training data (before any feature).", examples=[0.1])
    value: float = Field(description="The explained output for this record: base + sum(contributions).", examples=[2.4])
    contributions: dict[str, float] = Field(
        description="Per input feature, as the request names it (a date's parts, a category's columns folded in).",
        examples=[{"<a feature>": 2.31, "<another>": -0.12}],
    )


class _Answer(BaseModel):
    """An answer item: `explanation` is written only when one was asked."""

    @model_serializer(mode="wrap")
    def _without_absent_explanation(self, handler):
        out = handler(self)
        if out.get("explanation", 0) is None:
            del out["explanation"]
        return out


@dataclass(frozen=True)
class ApiTypes:
    record: type[BaseModel]  # one input row
    prediction: type[BaseModel]  # answer of /predict
    record_list: Any  # the `records` field of /predict_batch: 1 to max_records records
    batch_request: type[BaseModel]  # the body of /predict_batch
    batch_response: type[BaseModel]

    @classmethod
    def from_card(cls, card: ModelCard, max_records: int) -> ApiTypes:
        record = card.schema.record_model("Record")
        if card.task == CLASSIFICATION and card.classes:
            label: Any = Literal[tuple(card.classes)]
            label_doc = f"Predicted {card.target!r}: one of {', '.join(map(label_text, card.classes))}."
            keys: dict[str, Any] = {"propertyNames": {"enum": [label_text(c) for c in card.classes]}}
        else:
            label = float
            label_doc = f"Predicted {card.target!r}."
            keys = {}
        example = _example_result(card)
        item = create_model(
            "PredictionItem",
            __base__=_Answer,
            prediction=(label, Field(description=label_doc, examples=[example["prediction"]])),
            probabilities=(
                dict[str, float] | None,
                Field(
                    description="Probability per class (classification), keyed by the class as JSON writes it "
                    "(true, 1, Adelie); null for regression.",
                    examples=[example["probabilities"]],
                    json_schema_extra=keys,
                ),
            ),
            warnings=(
                list[str],
                Field(
                    description="Inputs accepted but outside what training saw: a number outside the training range, "
                    "a value an open category answers as 'other'.",
                    examples=[[]],
                ),
            ),
            explanation=(
                Explanation | None,
                Field(None, description="With ?explain=true only: why this answer (absent otherwise)."),
            ),
        )
        prediction = create_model(
            "Prediction",
            __base__=item,
            model=(str, Field(description="Tag of the model version that answered.", examples=[card.tag])),
        )
        record_list = Annotated[
            list[record], Field(min_length=1, max_length=max_records, description=f"1 to {max_records} records.")
        ]
        # A BentoML input spec with a named field: `client.predict_batch(records=[...])` works, and the
        # body stays {"records": [...]}; a misspelt top-level key is refused, not ignored.
        batch_request = create_model(
            "BatchRequest",
            __base__=_StrictInput,
            records=(record_list, ...),
            __doc__='The body of /predict_batch: {"records": [...]}.',
        )
        batch_response = create_model(
            "BatchResponse",
            predictions=(list[item], Field(description="One prediction per record, in input order.")),
            model=(str, Field(description="Tag of the model version that answered.", examples=[card.tag])),
        )
        return cls(record, prediction, record_list, batch_request, batch_response)


def _example_result(card: ModelCard) -> dict[str, Any]:
    if card.task == CLASSIFICATION and card.classes:
        share = round(1 / len(card.classes), 3)
        return {
            "prediction": card.classes[0],
            "probabilities": {label_text(c): share for c in card.classes} if card.has_probabilities else None,
        }
    return {"prediction": 0.0, "probabilities": None}


def record_values(record: BaseModel) -> dict[str, Any]:
    """A validated record as `record.model_dump()` gives it (keys as the training file spells them), without
    model_dump's serialization pass: ~3 ms of a 1,000-record /predict_batch (bench/README.md, Findings 14)."""
    values = dict(record.__dict__)
    for key, alias in _aliases(type(record)):  # a feature named _x or model_x (schema.record_model)
        values[alias] = values.pop(key)
    return values


@functools.lru_cache(maxsize=64)
def _aliases(record_type: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(field, alias) of a record type's aliased fields: looked up once per type, not once per record."""
    return tuple(
        (key, field.alias)
        for key, field in record_type.model_fields.items()
        if field.alias is not None and field.alias != key
    )


def batch_answer(predictions: list[dict[str, Any]], model: str) -> Response:
    """The /predict_batch answer (the BatchResponse shape: the items without their tag, the tag once) as JSON
    straight from the answers pydantic-core writes, instead of validating 1,000 items into BatchResponse
    first (~12 ms of a 1,000-record call); the served tests check the answer against the documented schema."""
    items = [{key: value for key, value in item.items() if key != "model"} for item in predictions]
    return Response(to_json({"predictions": items, "model": model}), media_type="application/json")


def shape(result: dict[str, Any], out_of_range: dict[str, str], model: str) -> dict[str, Any]:
    """A model-service result as one API prediction item, with its out-of-range warnings and the tag of
    the version that answered (the batch answer's items drop it: the batch names it once)."""
    return {**result, "warnings": list(out_of_range.values()), "model": model}


def error_response(ctx: Any, status: int, message: str, detail: list | None = None) -> JSONResponse:
    """An error answer from inside an API method, in the one error shape."""
    if ctx is not None:  # BentoML copies the context's status onto the response
        ctx.response.status_code = status
    return JSONResponse(error_body(message, detail), status_code=status)
