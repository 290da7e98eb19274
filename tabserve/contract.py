"""The HTTP contract, made from a model card: request and response types, and the CSV round trip.

Everything here is plain pydantic and pandas, so the service stays a thin layer of routes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from tabserve import data
from tabserve.errors import DataError, InvalidInput, TooLarge, pydantic_detail
from tabserve.pipeline import CLASSIFICATION
from tabserve.store import ModelCard

# Rows whose errors are listed in a 400 for a bad CSV; the count of all bad rows is always given.
MAX_REPORTED_ROWS = 50


@dataclass(frozen=True)
class ApiTypes:
    record: type[BaseModel]  # one input row
    prediction: type[BaseModel]  # answer of /predict
    batch_request: type[BaseModel]
    batch_response: type[BaseModel]

    @classmethod
    def from_card(cls, card: ModelCard, max_records: int) -> ApiTypes:
        record = card.schema.record_model("Record")
        if card.task == CLASSIFICATION and card.classes:
            label: Any = Literal[tuple(card.classes)]
            label_doc = f"Predicted {card.target!r}: one of {', '.join(map(str, card.classes))}."
        else:
            label = float
            label_doc = f"Predicted {card.target!r}."
        example = _example_result(card)
        item = create_model(
            "PredictionItem",
            prediction=(label, Field(description=label_doc, examples=[example["prediction"]])),
            probabilities=(Optional[dict[str, float]], Field(description="Probability per class (classification); null for regression.", examples=[example["probabilities"]])),
            warnings=(list[str], Field(description="Inputs accepted but outside the training range.", examples=[[]])),
        )
        prediction = create_model(
            "Prediction",
            __base__=item,
            model=(str, Field(description="Tag of the model version that answered.", examples=[card.tag])),
        )
        batch_request = create_model(
            "BatchRequest",
            __config__=ConfigDict(extra="forbid"),
            records=(list[record], Field(min_length=1, max_length=max_records, description=f"1 to {max_records} records.")),
        )
        batch_response = create_model(
            "BatchResponse",
            predictions=(list[item], Field(description="One prediction per record, in input order.")),
            model=(str, Field(description="Tag of the model version that answered.", examples=[card.tag])),
        )
        return cls(record, prediction, batch_request, batch_response)


def _example_result(card: ModelCard) -> dict[str, Any]:
    if card.task == CLASSIFICATION and card.classes:
        share = round(1 / len(card.classes), 3)
        return {"prediction": card.classes[0], "probabilities": {str(c): share for c in card.classes}}
    return {"prediction": 0.0, "probabilities": None}


def shape(result: dict[str, Any], out_of_range: dict[str, str]) -> dict[str, Any]:
    """A model-service result as one API prediction item, with its out-of-range warnings."""
    return {**result, "warnings": list(out_of_range.values())}


def records_from_csv(content: bytes, card: ModelCard, record_type: type[BaseModel], max_rows: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """An uploaded CSV as (the input table, validated records); InvalidInput lists every bad row."""
    try:
        header, rows = data.parse_upload(content, card.schema, max_rows, passthrough=(card.target,))
    except TooLarge as exc:
        raise InvalidInput(str(exc), status=413) from None
    except DataError as exc:
        raise InvalidInput(str(exc)) from None
    records, detail, bad_rows = [], [], 0
    for number, row in enumerate(rows, start=1):
        try:
            records.append(record_type.model_validate(data.typed_cells(row, card.schema)).model_dump())
        except ValidationError as exc:
            bad_rows += 1
            if bad_rows <= MAX_REPORTED_ROWS:
                detail.extend(pydantic_detail(exc.errors(include_context=False, include_input=False), prefix=(f"row {number}",)))
    if bad_rows:
        first = detail[0]["loc"][0] if detail else ""
        raise InvalidInput(f"{bad_rows} of {len(rows)} CSV rows failed validation (first: {first}); nothing was predicted", detail)
    return pd.DataFrame(rows, columns=header), records


def csv_with_predictions(table: pd.DataFrame, results: list[dict[str, Any]], card: ModelCard) -> str:
    """The uploaded table plus a prediction column and, for classification, proba_<class> columns."""
    out = table.copy()
    out["prediction"] = [r["prediction"] for r in results]
    if card.task == CLASSIFICATION and card.classes:
        for label in card.classes:
            out[f"proba_{label}"] = [r["probabilities"][str(label)] for r in results]
    buffer = io.StringIO()
    out.to_csv(buffer, index=False)
    return buffer.getvalue()
