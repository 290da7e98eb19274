"""The explanation options, checked against the answering version before the model is called: a request's
`explain=true|false` and `explain_class=LABEL` (JSON answers), `explain=K` (a CSV's K reason columns, and
score.py's --explain K).

Every bad value is InvalidInput (a 400 in the one error shape; one line from score.py) naming the option and
what it takes; a version without explanations is NotExplainable saying why (explainers.py)."""

from __future__ import annotations

from typing import Any

from tabserve.core.card import ModelCard
from tabserve.core.errors import InvalidInput
from tabserve.core.pipeline import CLASSIFICATION
from tabserve.core.schema import label_text
from tabserve.explaining.explainers import NotExplainable

EXPLAIN_DOC = (
    "true: the answer gains `explanation` — the contribution of each input feature to the explained output "
    "(base + sum of contributions = value). false (default): no explanation."
)
EXPLAIN_CLASS_DOC = "The class to explain (a label); default: the predicted class. Implies explain=true."
EXPLAIN_CSV_DOC = "K: add columns reason_1 … reason_K, each row's K largest contributions (1 to the feature count)."


def explainable(card: ModelCard) -> None:
    """NotExplainable (a 400) when this version has no explanations, saying why."""
    if card.explanation:
        return
    if card.imported:
        raise NotExplainable(card.family)
    raise NotExplainable(card.family, "this version was saved before explanations existed; train it again")


def explain_target(card: ModelCard, explain: str | None, explain_class: str | None) -> Any:
    """None: no explanation asked. True: explain the predicted class (or the regression's value). A label: explain
    that class."""
    if explain is not None and explain.lower() not in ("true", "false"):
        raise InvalidInput(f"invalid input: explain must be true or false, not {explain!r}")
    if explain_class is None:
        if explain is None or explain.lower() == "false":
            return None
        explainable(card)
        return True
    if explain is not None and explain.lower() == "false":
        raise InvalidInput("invalid input: explain_class asks for an explanation; leave out explain=false")
    if card.task != CLASSIFICATION:
        raise InvalidInput("invalid input: explain_class is for classifiers; this model is a regression")
    labels = {label_text(c): c for c in card.classes or []}
    if explain_class not in labels:
        raise InvalidInput(
            f"invalid input: explain_class must be one of the classes: {', '.join(labels)}; not {explain_class!r}"
        )
    explainable(card)
    return labels[explain_class]


def reason_count(card: ModelCard, explain: str | int | None, option: str = "explain") -> int:
    """K reason columns (0: none asked): /predict_csv's explain=K, score.py's --explain K (`option`)."""
    if explain is None or explain == "":
        return 0
    features = len(card.schema.features)
    prefix = "invalid input: " if option == "explain" else ""
    try:
        count = int(explain)
    except ValueError:
        raise InvalidInput(
            f"{prefix}{option} must be a whole number of reasons from 1 to {features}, not {str(explain)!r}"
        ) from None
    if not 1 <= count <= features:
        raise InvalidInput(f"{prefix}{option} must be from 1 to {features} (the model's feature count), not {count}")
    explainable(card)
    return count
