"""XGBoost: a booster saved as JSON or UBJSON, or a pickled XGBClassifier/XGBRegressor (trusted by the user).

The booster gets the DataFrame a notebook gives it: categorical columns as pandas categoricals, which
XGBoost (3.1 and later) re-codes to the categories it stored with the model (`enable_categorical`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tabserve.core.errors import DataError
from tabserve.models.base import CLASSIFICATION, REGRESSION, Expectation, Runtime, answers, binary_columns, plain
from tabserve.models.inputs import ModelInput


def is_json_model(head: bytes) -> bool:
    return head.lstrip().startswith(b"{") and b'"learner"' in head


def is_ubj_model(head: bytes) -> bool:
    return head.startswith(b"{") and b"learner" in head and b'"learner"' not in head


def load_booster(path: Path) -> Any:
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(str(path))
    return booster


def booster_of(model: Any) -> Any:
    return model.get_booster() if hasattr(model, "get_booster") else model


def objective(booster: Any) -> tuple[str, int]:
    learner = json.loads(booster.save_config())["learner"]
    return learner["objective"]["name"], int(float(learner["learner_model_param"].get("num_class", "0")))


def model_categories(booster: Any) -> dict[str, list[Any]]:
    """{column: the categories stored with the model} (XGBoost 3.1+; empty for models without them)."""
    try:
        found = booster.get_categories(export_to_arrow=True).to_arrow()
    except Exception:  # an older model, or one fitted without categories
        return {}
    return {str(name): [plain(v) for v in values.to_pylist()] for name, values in found or [] if values is not None}


def expectation(model: Any) -> Expectation:
    import xgboost

    booster = booster_of(model)
    name, num_class = objective(booster)
    columns = [str(c) for c in booster.feature_names or []] or None
    # strict=False: a booster may name its features without typing them (feature_types None): all numeric
    types = dict(zip(columns or [], booster.feature_types or [], strict=False))
    wrapper_classes = getattr(model, "classes_", None) if hasattr(model, "get_booster") else None
    if wrapper_classes is not None:
        task, classes = CLASSIFICATION, [plain(c) for c in wrapper_classes]
    elif name.startswith("binary:"):
        task, classes = CLASSIFICATION, [0, 1]
    elif name.startswith("multi:"):
        task, classes = CLASSIFICATION, list(range(num_class))
    elif name.startswith(("rank:", "survival:")):
        raise DataError(
            f"the XGBoost model's objective is {name}, which is neither a classifier nor a regressor; "
            "bring one of those"
        )
    else:
        task, classes = REGRESSION, None
    if columns is None:
        raise DataError(
            "the XGBoost model has no feature names; fit it on a DataFrame (or set booster.feature_names) "
            "and save it again"
        )
    kinds = {c: ("categorical" if types.get(c) == "c" else "numeric") for c in columns}
    return Expectation(
        "xgboost", task, classes, columns, kinds, model_categories(booster), "xgboost", xgboost.__version__
    )


class XGBoostRuntime(Runtime):
    family = "xgboost"

    def __init__(self, model: Any, model_input: ModelInput, task: str, classes: list[Any] | None) -> None:
        self.model = model
        self.booster = booster_of(model)
        self.input = model_input
        self.task = task
        self.classes = classes
        name, _ = objective(self.booster)
        self.binary = name.startswith("binary:")
        self.labels_only = name == "multi:softmax"  # answers class indices, no probabilities

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not records:
            return []
        frame = self.input.frame(records)
        if hasattr(self.model, "get_booster"):  # the wrapper's own calls
            if self.task != CLASSIFICATION:
                return answers(None, values=self.model.predict(frame))
            if self.labels_only:
                return answers(self.classes, labels=self.model.predict(frame))
            return answers(self.classes, self.model.predict_proba(frame))
        output = self.booster.inplace_predict(frame)
        if self.task != CLASSIFICATION:
            return answers(None, values=output)
        if self.labels_only:
            return answers(self.classes, labels=[self.classes[int(i)] for i in output])
        return answers(self.classes, binary_columns(output) if self.binary else output)

    def make_explainer(self) -> Any:
        from tabserve.explaining.explainers import for_xgboost

        return for_xgboost(self)
