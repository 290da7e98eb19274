"""The interface every model family answers through, and what they share.

A runtime takes typed records (the API's validated values: dicts, missing as None) and answers one
{"prediction": label or number, "probabilities": {label text: p} or None} per record, in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tabserve.core.schema import label_text

CLASSIFICATION = "classification"
REGRESSION = "regression"


class Runtime(ABC):
    """A loaded model. `classes`: a classifier's labels (plain Python values) in its probabilities' order."""

    family: str = ""
    task: str = REGRESSION
    classes: list[Any] | None = None

    @abstractmethod
    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One answer per record, in order."""

    def __getstate__(self) -> dict[str, Any]:  # Spark ships runtimes to its workers: they build their own explainer
        return {key: value for key, value in self.__dict__.items() if key != "_explainer"}

    def make_explainer(self) -> Any:
        """This family's explainer (tabserve/explaining/explainers.py); NotExplainable where there is none."""
        from tabserve.explaining.explainers import NotExplainable

        raise NotExplainable(self.family)

    def explain_records(self, records: list[dict[str, Any]], targets: list[Any]) -> list[dict[str, Any]]:
        """One explanation per record, of the class each target names (None for a regression). The explainer is
        built on first use (tables of a few MB for tree ensembles) and kept, as is NotExplainable."""
        from tabserve.explaining.explainers import NotExplainable, explanations

        explainer = self.__dict__.get("_explainer")
        if explainer is None:
            try:
                explainer = self.make_explainer()
            except NotExplainable as exc:
                explainer = exc
            self.__dict__["_explainer"] = explainer
        if isinstance(explainer, NotExplainable):
            raise explainer
        return explanations(explainer, explainer.encode(records), self.classes, targets)


@dataclass
class Expectation:
    """What a model says about its input and output, read from the model itself at import.

    columns: its input columns in its order (None: it does not say; the sample's features are used);
    kinds: per column, what it takes where it says ("numeric", "categorical", "text", "boolean");
    categories: per categorical column, its own categories (LightGBM's, XGBoost's);
    task and classes: from the model (classes_, the objective, the output shape), never from the sample.
    """

    family: str
    task: str
    classes: list[Any] | None = None
    columns: list[str] | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    categories: dict[str, list[Any]] = field(default_factory=dict)
    library: str = ""
    library_version: str = ""


def plain(value: Any) -> Any:
    """numpy scalars as Python values (JSON-safe labels)."""
    return value.item() if hasattr(value, "item") else value


def answers(
    classes: list[Any] | None, probabilities: np.ndarray | None = None, labels: Any = None, values: Any = None
) -> list[dict[str, Any]]:
    """Answers from a model's output, unrounded: the model's own numbers.

    Classification: `probabilities` (rows x classes) and the labels (`labels`, the model's own predict,
    where its label is not simply the most probable class; else the argmax); regression: `values`."""
    if classes is None:
        return [
            {"prediction": float(v), "probabilities": None} for v in np.asarray(values, dtype=float).ravel().tolist()
        ]
    names = [label_text(c) for c in classes]
    if probabilities is None:
        return [{"prediction": plain(label), "probabilities": None} for label in labels]
    probabilities = np.asarray(probabilities, dtype=float)
    if labels is None:
        labels = [classes[i] for i in probabilities.argmax(axis=1).tolist()]
    return [
        {"prediction": plain(label), "probabilities": dict(zip(names, row, strict=True))}
        for label, row in zip(labels, probabilities.tolist(), strict=True)
    ]


def binary_columns(p: np.ndarray) -> np.ndarray:
    """A binary model's P(class 1) as the two columns its scikit-learn wrapper answers: [1 - p, p], computed in
    p's own dtype as the wrappers do (XGBoost's float32 1 - p is not float64's)."""
    p = np.asarray(p).ravel()
    return np.vstack((1 - p, p)).transpose()
