"""The HTML form page and its result page, generated from the feature schema.

Plain HTML and inline CSS: no scripts, no external assets, works offline and in any browser.
"""

from __future__ import annotations

from html import escape
from typing import Any

from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, Feature, FeatureSchema, label_text
from tabserve.core.card import ModelCard

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; } .muted { color: #666; font-size: .9rem; }
form { display: grid; grid-template-columns: 12rem 1fr; gap: .6rem 1rem; align-items: center; }
label { font-weight: 600; } input, select { padding: .35rem; font-size: 1rem; }
.hint { grid-column: 2; color: #666; font-size: .8rem; margin-top: -.4rem; }
button { grid-column: 2; padding: .5rem 1rem; font-size: 1rem; cursor: pointer; }
.errors { background: #fde8e8; border: 1px solid #e0a0a0; padding: .6rem 1rem; }
.answer { font-size: 1.6rem; font-weight: 700; }
.bar { display: grid; grid-template-columns: 10rem 1fr 4rem; gap: .5rem; align-items: center; margin: .3rem 0; }
.track { background: #eee; height: 1.1rem; } .fill { background: #3b7dd8; height: 100%; }
.warn { color: #8a5a00; }
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
        f"<body>{body}</body></html>"
    )


def _field(feature: Feature, value: Any) -> str:
    name = escape(feature.name)
    if feature.kind in (CATEGORICAL, BOOLEAN):
        choices = [True, False] if feature.kind == BOOLEAN else feature.categories or []
        options = ['<option value="">(missing)</option>'] if feature.nullable else []
        for choice in choices:
            text = escape(label_text(choice))
            selected = " selected" if value is not None and label_text(choice) == label_text(value) else ""
            options.append(f'<option value="{text}"{selected}>{text}</option>')
        control = f'<select id="{name}" name="{name}">{"".join(options)}</select>'
    else:
        shown = "" if value is None else escape(str(value))
        required = "" if feature.nullable else " required"
        kind = {DATE: 'type="date"', DATETIME: 'type="datetime-local" step="1"'}.get(feature.kind, 'type="number" step="any"')
        control = f'<input id="{name}" name="{name}" {kind} value="{shown}"{required}>'
    return f'<label for="{name}">{name}</label>{control}<div class="hint">{escape(feature.description)}</div>'


def form_page(card: ModelCard, values: dict[str, Any] | None = None, errors: list[str] | None = None) -> str:
    schema: FeatureSchema = card.schema
    values = values if values is not None else schema.example()
    error_box = ""
    if errors:
        items = "".join(f"<li>{escape(e)}</li>" for e in errors)
        error_box = f'<div class="errors" role="alert"><strong>Please fix:</strong><ul>{items}</ul></div>'
    fields = "".join(_field(f, values.get(f.name)) for f in schema.features)
    body = (
        f"<h1>Predict {escape(card.target)}</h1>"
        f'<p class="muted">Model {escape(card.tag)} ({escape(card.task)}). Prefilled with a training example.</p>'
        f"{error_box}"
        f'<form method="post" action="form">{fields}<button type="submit" id="submit">Predict</button></form>'
    )
    return _page(f"Predict {card.target}", body)


def result_page(card: ModelCard, item: dict[str, Any]) -> str:
    bars = ""
    for label, probability in sorted((item.get("probabilities") or {}).items(), key=lambda kv: -kv[1]):
        width = f"{probability * 100:.1f}%"
        bars += (
            f'<div class="bar" data-label="{escape(label)}"><span>{escape(label)}</span>'
            f'<div class="track"><div class="fill" style="width:{width}"></div></div><span>{width}</span></div>'
        )
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in item.get("warnings", []))
    body = (
        f"<h1>Predicted {escape(card.target)}</h1>"
        f'<p class="answer" id="prediction">{escape(label_text(item["prediction"]))}</p>'
        f'<div id="probabilities">{bars}</div>{warnings}'
        f'<p class="muted">Model {escape(card.tag)}. <a href="form">Another prediction</a></p>'
    )
    return _page(f"Predicted {card.target}", body)
