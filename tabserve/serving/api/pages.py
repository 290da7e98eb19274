"""The HTML form page and its result page, generated from the feature schema.

The markup lives in Jinja2 templates beside this module (templates/: base.html, form.html,
result.html), rendered with autoescaping on: every name, category, label, value and message from
the model card or the request is escaped by Jinja2, never by hand. This module only decides what
each page shows: the control for each kind of feature, what is selected, the order of the bars.

Plain HTML and inline CSS: no scripts, no external assets, works offline and in any browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabserve.core import html
from tabserve.core.card import ModelCard
from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, Feature, label_text

TEMPLATES = Path(__file__).resolve().parent / "templates"

ENVIRONMENT = html.environment(TEMPLATES)

# The <input> of the kinds that are not a choice: (type, step).
INPUTS = {DATE: ("date", None), DATETIME: ("datetime-local", "1")}
NUMBER_INPUT = ("number", "any")
TEXT_NUMBER_INPUT = ("text", None)  # a number also written as the file writes it: "$28,000", "14.07%"


@dataclass(frozen=True)
class Option:
    value: str
    text: str
    selected: bool = False


@dataclass(frozen=True)
class Field:
    """One feature's control: a <select> when `options` is set, else an <input>."""

    name: str
    hint: str
    options: list[Option] | None = None
    input_type: str | None = None
    step: str | None = None
    value: str = ""
    required: bool = False
    suggestions: list[str] | None = None  # an <input> with a <datalist>: an open category's kept values


def _field(feature: Feature, value: Any) -> Field:
    if feature.kind == CATEGORICAL and feature.open:  # any text; the categories the model tells apart suggested
        return Field(
            feature.name,
            feature.description,
            input_type="text",
            value="" if value is None else label_text(value),
            required=not feature.nullable,
            suggestions=[label_text(c) for c in feature.categories or []],
        )
    if feature.kind in (CATEGORICAL, BOOLEAN):
        choices = [True, False] if feature.kind == BOOLEAN else feature.categories or []
        chosen = None if value is None else label_text(value)
        options = [Option("", "(missing)")] if feature.nullable else []
        options += [Option(label_text(c), label_text(c), label_text(c) == chosen) for c in choices]
        return Field(feature.name, feature.description, options=options)
    input_type, step = INPUTS.get(feature.kind, TEXT_NUMBER_INPUT if feature.number_text else NUMBER_INPUT)
    return Field(
        feature.name,
        feature.description,
        input_type=input_type,
        step=step,
        value="" if value is None else str(value),
        required=not feature.nullable,
    )


def form_page(card: ModelCard, values: dict[str, Any] | None = None, errors: list[str] | None = None) -> str:
    """The form, prefilled with `values` (default: the schema's training example), `errors` listed above it."""
    values = values if values is not None else card.schema.example()
    fields = [_field(f, values.get(f.name)) for f in card.schema.features]
    return ENVIRONMENT.get_template("form.html").render(
        title=f"Predict {card.target}", card=card, fields=fields, errors=list(errors or [])
    )


@dataclass(frozen=True)
class Bar:
    label: str
    probability: float


def result_page(card: ModelCard, item: dict[str, Any]) -> str:
    """The answer `item` ({"prediction", "probabilities", "warnings"}): one bar per class, most probable first."""
    probabilities = item.get("probabilities") or {}
    bars = [Bar(str(label), p) for label, p in sorted(probabilities.items(), key=lambda kv: -kv[1])]
    return ENVIRONMENT.get_template("result.html").render(
        title=f"Predicted {card.target}",
        card=card,
        prediction=label_text(item["prediction"]),
        bars=bars,
        warnings=list(item.get("warnings") or []),
    )
