"""The HTML form page and its result page, generated from the feature schema.

The markup lives in Jinja2 templates beside this module (templates/: base.html, form.html,
result.html), rendered with autoescaping on: every name, category, label, value and message from
the model card or the request is escaped by Jinja2, never by hand. This module only decides what
each page shows: the control for each kind of feature, what is selected, the order of the bars, and
the answer's explanation as bars of each feature's contribution (left of the zero axis: lowers it; right: raises it).

Plain HTML and inline CSS: no scripts, no external assets, works offline and in any browser.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class Contribution:
    """One feature's bar of the explanation: `share` is |contribution| over the largest, 0..1."""

    feature: str
    value: str | None  # the record's value, as text; None when the page was not given the record
    contribution: float
    signed: str  # the contribution as shown: "+2.31", "-0.48"
    share: float


@dataclass(frozen=True)
class Explained:
    """The chart's heading and its bars, largest |contribution| first."""

    answer: str
    output: str  # what is explained, with its article: "the softmax logit of 'Gentoo'"
    method: str
    base: str
    value: str
    bars: list[Contribution]


def _value_text(value: Any) -> str:
    """The record's value as a person wrote it: 2009 (the record holds 2009.0), 48.6, Biscoe, true, missing."""
    if value is None:
        return "missing"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return label_text(value)


def _decimals(largest: float) -> int:
    """2 decimals, or enough to show the largest contribution with three significant digits (at most 6)."""
    if largest >= 0.1 or largest == 0:
        return 2
    return min(6, 2 - math.floor(math.log10(largest)))


def _explained(item: dict[str, Any], values: dict[str, Any] | None) -> Explained | None:
    """The answer's explanation as the chart shows it; None without one (or with one the page cannot read)."""
    explanation = item.get("explanation")
    if not isinstance(explanation, dict) or not isinstance(explanation.get("contributions"), dict):
        return None
    try:
        contributions = [(str(name), float(c)) for name, c in explanation["contributions"].items()]
        base, value = float(explanation.get("base", 0.0)), float(explanation.get("value", 0.0))
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(c) for _, c in contributions):
        return None
    ranked = sorted(contributions, key=lambda kv: -abs(kv[1]))  # stable: ties keep the schema's order
    largest = abs(ranked[0][1]) if ranked else 0.0
    digits = _decimals(largest)
    output = str(explanation.get("output") or "the model's output")  # "softmax logit of 'a'", "the predicted value"
    bars = [
        Contribution(
            feature=name,
            value=None if values is None else _value_text(values.get(name)),
            contribution=c,
            signed=f"{c:+.{digits}f}",
            share=abs(c) / largest if largest else 0.0,
        )
        for name, c in ranked
    ]
    return Explained(
        answer=label_text(item["prediction"]),
        output=output if output.startswith("the ") else f"the {output}",
        method=str(explanation.get("method", "unknown")),
        base=f"{base:.{digits}f}",
        value=f"{value:.{digits}f}",
        bars=bars,
    )


def result_page(card: ModelCard, item: dict[str, Any], values: dict[str, Any] | None = None) -> str:
    """The answer `item` ({"prediction", "probabilities", "warnings", and "explanation" when asked}): one bar per
    class, most probable first; with an explanation, one bar per feature below it, the largest contribution
    first, labelled with the record's value from `values` (the record that was predicted)."""
    probabilities = item.get("probabilities") or {}
    bars = [Bar(str(label), p) for label, p in sorted(probabilities.items(), key=lambda kv: -kv[1])]
    return ENVIRONMENT.get_template("result.html").render(
        title=f"Predicted {card.target}",
        card=card,
        prediction=label_text(item["prediction"]),
        bars=bars,
        warnings=list(item.get("warnings") or []),
        explained=_explained(item, values),
    )
