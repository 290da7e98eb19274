"""The rows of a scored file, shared by /predict_csv (tabserve/serving/api/csv_upload.py) and batch scoring
(tabserve/scoring/): each row's text cells checked into a validated record, or one line naming its
problems; each result as the output's `prediction` and `proba_<class>` values and cells."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from tabserve.core.card import ModelCard
from tabserve.core.errors import pydantic_detail
from tabserve.core.pipeline import CLASSIFICATION
from tabserve.core.schema import FeatureSchema, label_text

PREDICTION = "prediction"


def validate(
    record_type: type[BaseModel], schema: FeatureSchema, row: dict[str, str], decimal: str = "."
) -> dict[str, Any]:
    """One row of text cells as the record the API validates (missing: None); ValidationError if it fails."""
    return record_type.model_validate(schema.parse_row(row, decimal)).model_dump()


def problems(exc: ValidationError, position: int) -> list[dict[str, Any]]:
    """A failed row's errors, each located as ["row N", field] (N counts from 1)."""
    return pydantic_detail(exc.errors(include_context=False, include_input=False), prefix=(f"row {position + 1}",))


def error_line(row_problems: list[dict[str, Any]]) -> str:
    """One line naming every problem of a row: "island: Input should be ...; bill_length_mm: ..."."""
    return "; ".join(f"{'.'.join(map(str, p['loc'][1:]))}: {p['msg']}" for p in row_problems)


def class_texts(card: ModelCard) -> list[str]:
    """The classes as the output's columns spell them (proba_<class>); [] for regression."""
    return [label_text(c) for c in card.classes] if card.task == CLASSIFICATION and card.classes else []


def result_columns(card: ModelCard) -> list[str]:
    """`prediction`, then a `proba_<class>` per class where the model answers probabilities."""
    return [PREDICTION, *(f"proba_{label}" for label in class_texts(card) if card.has_probabilities)]


def result_values(result: dict[str, Any], labels: list[str]) -> list[Any]:
    """A result as the output's values, in result_columns' order: the label as text (classification) or
    the number (regression), then each class's probability (none for a classifier that answers labels only)."""
    prediction, probabilities = result["prediction"], result["probabilities"]
    shown = label_text(prediction) if labels else float(prediction)
    return [shown] if probabilities is None else [shown, *(float(probabilities[label]) for label in labels)]


def cell(value: Any, decimal: str = ".") -> str:
    """A result value as a CSV cell: labels as they are, numbers as Python writes them, in the decimal mark."""
    if isinstance(value, str):
        return value
    text = repr(float(value))
    return text.replace(".", ",") if decimal == "," else text


def reason_columns(count: int) -> list[str]:
    """`reason_1` … `reason_K`: a row's K largest contributions (explain=K), after the prediction columns."""
    return [f"reason_{i}" for i in range(1, count + 1)]


def reasons(explanation: dict[str, Any], record: dict[str, Any], count: int, decimal: str = ".") -> list[str]:
    """The K largest contributions by absolute value, largest first, each as `feature=value (+contribution)`
    (`flipper_length_mm=230 (+2.31)`), numbers in the file's decimal mark; a missing value reads `(missing)`."""
    ranked = sorted(explanation["contributions"].items(), key=lambda kv: -abs(kv[1]))[:count]
    out = []
    for feature, contribution in ranked:
        value = record.get(feature)
        if value is None:
            shown = "(missing)"
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            shown = str(value)
        else:
            shown = _decimal(f"{value:g}" if isinstance(value, float) else str(value), decimal)
        out.append(f"{feature}={shown} ({_decimal(f'{contribution:+.3g}', decimal)})")
    return out


def _decimal(number: str, decimal: str) -> str:
    return number.replace(".", ",") if decimal == "," else number
