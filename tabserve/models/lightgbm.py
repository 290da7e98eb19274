"""LightGBM: a booster's text model file, or a pickled LGBMClassifier/LGBMRegressor (trusted by the user).

Fast path: records go straight to the float matrix LightGBM makes of a DataFrame (a pandas categorical as
the index of its value in the model's own categories, NaN when missing or unknown; booleans 1/0), and the
booster predicts on it: the same numbers in, so the same answers as the model's own predict on the frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tabserve.core.errors import DataError
from tabserve.core.schema import FeatureSchema
from tabserve.models.base import CLASSIFICATION, REGRESSION, Expectation, Runtime, answers, binary_columns, plain

CLASSIFYING = ("binary", "multiclass", "multiclassova", "softmax", "ova", "ovr", "multiclass_ova")


def is_model_file(head: bytes) -> bool:
    """A LightGBM text model file starts with "tree" and its version line."""
    return head.startswith(b"tree\n") and b"version=v" in head[:200]


def load_booster(path: Path, first_in_a_child: bool = False) -> Any:
    """The booster of a model file. LightGBM's loader aborts the whole process on some malformed files (not
    an exception: SIGABRT), so a file that never loaded here (import time) is loaded in a child process first."""
    import lightgbm

    path = Path(path)
    text = path.read_text(errors="replace")
    if "end of trees" not in text:
        raise DataError(
            f"{path.name} is not a complete LightGBM model file (no 'end of trees'); "
            "save it again with booster.save_model"
        )
    if first_in_a_child:
        import subprocess
        import sys

        child = subprocess.run(
            [sys.executable, "-c", "import sys, lightgbm; lightgbm.Booster(model_file=sys.argv[1])", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if child.returncode != 0:
            said = [line for line in child.stderr.splitlines() if "LightGBM" in line or "Error" in line]
            raise DataError(
                f"{path.name} could not be read as a lightgbm model: "
                f"{(said or ['the loader crashed'])[-1].strip()[:300]}"
            )
    return lightgbm.Booster(model_str=text)


def booster_of(model: Any) -> Any:
    return model.booster_ if hasattr(model, "booster_") else model


def objective(booster: Any) -> tuple[str, int]:
    params = booster.params or {}
    name = str(params.get("objective", "regression")).split(" ")[0]
    return name, int(params.get("num_class", 1) or 1)


def expectation(model: Any) -> Expectation:
    import lightgbm

    booster = booster_of(model)
    name, num_class = objective(booster)
    columns = [str(c) for c in booster.feature_name()]
    wrapper_classes = getattr(model, "classes_", None) if hasattr(model, "booster_") else None
    if wrapper_classes is not None:
        task, classes = CLASSIFICATION, [plain(c) for c in wrapper_classes]
    elif name in CLASSIFYING:
        task, classes = CLASSIFICATION, list(range(2 if name == "binary" else num_class))
    else:
        task, classes = REGRESSION, None
    infos = booster.dump_model(num_iteration=1).get("feature_infos", {})  # a categorical feature lists its values
    categorical = [c for c in columns if (infos.get(c) or {}).get("values")]
    known = booster.pandas_categorical
    categories: dict[str, list[Any]] = {}
    if known:
        if len(known) != len(categorical):
            raise DataError(
                f"the LightGBM model lists {len(known)} pandas categories for {len(categorical)} categorical features "
                f"({', '.join(categorical)}); save the booster from a model fitted on a DataFrame with category columns"
            )
        categories = {name: [plain(c) for c in values] for name, values in zip(categorical, known, strict=True)}
    kinds = {c: ("categorical" if c in categories else "numeric") for c in columns}
    return Expectation("lightgbm", task, classes, columns, kinds, categories, "lightgbm", lightgbm.__version__)


class LightGBMRuntime(Runtime):
    family = "lightgbm"

    def __init__(
        self,
        model: Any,
        schema: FeatureSchema,
        columns: list[str],
        categories: dict[str, list[Any]],
        task: str,
        classes: list[Any] | None,
    ) -> None:
        self.model = model
        self.booster = booster_of(model)
        self.schema = schema
        self.task = task
        self.classes = classes
        self.binary = task == CLASSIFICATION and len(classes or []) == 2 and objective(self.booster)[0] == "binary"
        self.plan: list[tuple[str, str, dict[Any, float] | None]] = []  # (feature, kind, category -> code)
        for name in columns:
            codes = {value: float(i) for i, value in enumerate(categories[name])} if name in categories else None
            self.plan.append((name, schema[name].kind, codes))

    def matrix(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Column by column: numpy reads None as NaN and True/False as 1/0 for a float array."""
        out = np.empty((len(records), len(self.plan)))
        nan = float("nan")
        for column, (name, _kind, codes) in enumerate(self.plan):
            if codes is not None:
                out[:, column] = [nan if (v := r.get(name)) is None else codes.get(v, nan) for r in records]
            else:
                out[:, column] = np.array([r.get(name) for r in records], dtype=float)
        return out

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not records:
            return []
        output = self.booster.predict(self.matrix(records))
        if self.task != CLASSIFICATION:
            return answers(None, values=output)
        return answers(self.classes, binary_columns(output) if self.binary else output)

    def make_explainer(self) -> Any:
        from tabserve.explaining.explainers import for_lightgbm

        return for_lightgbm(self)
