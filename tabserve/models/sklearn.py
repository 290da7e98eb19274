"""scikit-learn estimators and Pipelines that take a DataFrame: from skops (trusted types checked) or a pickle
(only when the user trusts it: unpickling runs code from the file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tabserve.core.errors import DataError
from tabserve.models.base import CLASSIFICATION, REGRESSION, Expectation, Runtime, answers, plain
from tabserve.models.inputs import ModelInput


def untrusted_types(path: Path) -> list[str]:
    """The types in a skops file that loading it would have to trust (skops' own check)."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(file=str(path)))


def load_skops(path: Path, trusted: list[str]) -> Any:
    import skops.io

    return skops.io.load(str(path), trusted=list(trusted))


def expectation(estimator: Any, family: str = "scikit-learn") -> Expectation:
    import sklearn

    if not hasattr(estimator, "predict"):
        raise DataError(
            f"the model is a {type(estimator).__name__}, which has no predict method; "
            "bring an estimator or a Pipeline ending in one"
        )
    classes = getattr(estimator, "classes_", None)
    names = getattr(estimator, "feature_names_in_", None)
    return Expectation(
        family=family,
        task=CLASSIFICATION if classes is not None else REGRESSION,
        classes=None if classes is None else [plain(c) for c in classes],
        columns=None if names is None else [str(n) for n in names],
        library="scikit-learn",
        library_version=sklearn.__version__,
    )


class SklearnRuntime(Runtime):
    """Calls the estimator's own predict_proba (classifiers that have it) or predict on the frame."""

    family = "scikit-learn"

    def __init__(
        self,
        estimator: Any,
        model_input: ModelInput,
        task: str,
        classes: list[Any] | None,
        labels_from_predict: bool = False,
    ) -> None:
        self.estimator = estimator
        self.input = model_input
        self.task = task
        self.classes = classes
        self.has_proba = task == CLASSIFICATION and hasattr(estimator, "predict_proba")
        # Where the model's label is not its most probable class (checked on the sample at import),
        # its own predict says it.
        self.labels_from_predict = labels_from_predict or (task == CLASSIFICATION and not self.has_proba)

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not records:
            return []
        frame = self.input.frame(records)
        if self.task != CLASSIFICATION:
            return answers(None, values=self.estimator.predict(frame))
        probabilities = self.estimator.predict_proba(frame) if self.has_proba else None
        labels = self.estimator.predict(frame) if self.labels_from_predict else None
        return answers(self.classes, probabilities, labels)

    def argmax_disagrees(self, frame: Any) -> bool:
        """Whether the most probable class differs from the model's own predict on these rows."""
        if not self.has_proba:
            return False
        best = np.asarray(self.classes, dtype=object)[self.estimator.predict_proba(frame).argmax(axis=1)]
        return not all(plain(a) == plain(b) for a, b in zip(best, self.estimator.predict(frame), strict=True))

    def make_explainer(self) -> Any:
        from tabserve.explaining.explainers import for_sklearn

        return for_sklearn(self)
