"""Why this answer: exact contributions per input feature, for every family that has them.

- Tree ensembles: TreeSHAP. scikit-learn's HistGradientBoosting and forests and XGBoost's boosters are read
  into arrays and explained here in float64 (explaining/treeshap.py, trees.py); LightGBM computes its own
  (`pred_contrib`, float64).
- train.py's linear family: coef × (x − training mean) in the model's input space, the training mean kept on
  the model at fit (`training_input_mean_`).
- Anything else (ONNX, MLflow pyfunc, other scikit-learn estimators): NotExplainable, a 400. A model-agnostic
  method would be an approximation costing hundreds of model calls per record; we answer exactly or not at all.

Every explainer answers, for a batch of inputs, contributions (records x outputs x input features), the
expected value per output and the explained output per record, in the model's raw space (log-odds of the
second class for a binary model with one output, softmax logits for a multi-class one, class probabilities for
a forest, the predicted value for a regression). The model's own columns are folded into the features the API
names (a date's parts into the date, one-hot columns into their category) by summing: sums keep additivity.
Each explainer is checked at build on probe rows: its explained outputs must be the model's own, else the
version has no explanations (never a wrong one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from tabserve.core.errors import InvalidInput
from tabserve.core.schema import CATEGORICAL, DATE, DATETIME, FeatureSchema, label_text

TREE_SHAP = "tree_shap"
LINEAR = "linear"
CHECK_TOLERANCE = 1e-9  # explained outputs against the model's own on probe rows (float64 models)
FLOAT32_TOLERANCE = 2e-5  # relative, for XGBoost, which sums its trees in float32


class NotExplainable(InvalidInput):
    def __init__(self, family: str, why: str = "") -> None:
        super().__init__(
            f"explanations are not available for this model family ({family})" + (f": {why}" if why else "")
        )


class Explainer(ABC):
    """Contributions of a model's input features. `space`: what the raw outputs are ("log-odds", "logit",
    "probability", "value", "log of the value"); `outputs` is 1 for a binary model explaining its second class."""

    method: str = TREE_SHAP
    space: str = "value"
    encode: Any = None  # records -> the matrix `explain` takes (the runtime's own encoding), set when built
    tolerance: float | None = None  # how far the explained outputs may be from the model's own (None: CHECK_TOLERANCE)

    def __init__(self, features: list[str], fold: np.ndarray | None) -> None:
        self.features = features  # the API's input features, in the schema's order
        self.fold = fold  # (model columns x features): 1 where a column belongs to a feature; None: same columns

    @abstractmethod
    def _explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(contributions per model column: records x outputs x columns, expected: outputs, raw: records x outputs)"""

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        phi, expected, raw = self._explain(X)
        if self.fold is not None:
            phi = phi @ self.fold
        return phi, expected, raw


class TreeShapExplainer(Explainer):
    def __init__(self, shap: Any, prepare: Any, features: list[str], fold: np.ndarray | None, space: str) -> None:
        super().__init__(features, fold)
        self.shap, self.prepare, self.space = shap, prepare, space

    def _explain(self, X):
        phi, raw = self.shap.explain(self.prepare(X))
        return phi, self.shap.expected, raw


class LightGBMExplainer(Explainer):
    method = "tree_shap (lightgbm pred_contrib)"

    def __init__(self, booster: Any, features: list[str], fold: np.ndarray | None, space: str) -> None:
        super().__init__(features, fold)
        self.booster, self.space = booster, space

    def _explain(self, X):
        contributions = np.asarray(self.booster.predict(X, pred_contrib=True), dtype=float)
        contributions = contributions.reshape(len(X), -1, X.shape[1] + 1)  # a block of columns + bias per output
        expected = contributions[0, :, -1] if len(X) else np.zeros(contributions.shape[1])
        phi = contributions[:, :, :-1]
        return phi, expected, expected[None, :] + phi.sum(axis=2)


class LinearExplainer(Explainer):
    """train.py's linear pipeline: one-hot categories, imputed and scaled numbers, a logistic or ridge
    regression. Per encoded column: its weights' share of the output minus that share's training mean."""

    method = LINEAR

    def __init__(self, inner: Any, width: int, features: list[str], fold: np.ndarray) -> None:
        super().__init__(features, fold)
        from sklearn.linear_model import LogisticRegression

        prepare, final = inner[0], inner[-1]
        mean = np.asarray(getattr(inner, "training_input_mean_", None), dtype=float)
        weights = np.atleast_2d(final.coef_)
        self.intercept = np.atleast_1d(final.intercept_).astype(float)
        self.space = (
            ("log-odds" if weights.shape[0] == 1 else "logit") if isinstance(final, LogisticRegression) else "value"
        )
        self.width = width
        self.categorical: list[tuple[int, np.ndarray, np.ndarray]] = []  # (column, code+1 -> weights, mean)
        self.numeric = None
        for name, step, columns in prepare.transformers_:
            where = prepare.output_indices_[name]
            if name == "remainder" or where.start == where.stop:
                continue
            if name == "one_hot":
                offset = where.start
                for column, known in zip(columns, step[-1].categories_, strict=True):
                    codes = np.asarray(known, dtype=float)
                    table = np.zeros((int(max(codes.max(), 0)) + 2, weights.shape[0]))
                    block = slice(offset, offset + len(codes))
                    for index, code in enumerate(codes):
                        table[int(code) + 1] = weights[:, offset + index]
                    average = weights[:, block] @ mean[block]  # this column's share of the output, on average
                    self.categorical.append((int(column), table, average))
                    offset += len(codes)
            else:  # "scaled": the scaler's mean is the training mean of the imputed column and of its indicator
                imputer, scaler = step[0], step[-1]
                indicators = imputer.indicator_.features_ if imputer.indicator_ is not None else np.array([], int)
                columns = np.asarray(columns, dtype=int)
                owner = np.concatenate([columns, columns[np.asarray(indicators, dtype=int)]])
                self.numeric = (
                    columns,
                    imputer.statistics_,
                    np.asarray(indicators, int),
                    weights[:, where] / scaler.scale_,
                    scaler.mean_,
                    owner,
                )
        self.expected = self.intercept + sum(
            (average for _, _, average in self.categorical), np.zeros_like(self.intercept)
        )

    def _explain(self, X):
        n, outputs = X.shape[0], len(self.intercept)
        phi = np.zeros((n, outputs, self.width))
        for column, table, average in self.categorical:
            values = X[:, column]
            rows = np.where(np.isnan(values), 0.0, values + 1.0)
            inside = (rows >= 0) & (rows < len(table))
            share = np.where(inside[:, None], table[np.where(inside, rows, 0).astype(np.intp)], 0.0)
            phi[:, :, column] += share - average
        if self.numeric is not None:
            columns, medians, indicators, scaled, means, owner = self.numeric
            values = X[:, columns]
            missing = np.isnan(values)
            design = np.where(missing, medians, values)
            if len(indicators):
                design = np.hstack([design, missing[:, indicators].astype(float)])
            parts = (design - means)[:, None, :] * scaled[None, :, :]  # records x outputs x design columns
            for k, column in enumerate(owner):
                phi[:, :, column] += parts[:, :, k]
        return phi, self.expected, self.expected[None, :] + phi.sum(axis=2)


# --- which explainer a model gets -------------------------------------------------------------------------------


def tree_space(model: Any, classifier: bool, outputs: int) -> str:
    if classifier:
        return "log-odds" if outputs == 1 else "logit"
    link = type(getattr(getattr(model, "_loss", None), "link", None)).__name__
    return "value" if link in ("IdentityLink", "NoneType") else "log of the value"


def for_trained(pipeline: Any, schema: FeatureSchema) -> Explainer:
    """The explainer of a train.py pipeline (fit.build's shape: our encoder, then the family's estimator)."""
    from tabserve.core import pipeline as pipelines

    fast = pipelines.fast_path(pipeline, schema)
    model = pipeline[-1]
    family = type(model).__name__
    if fast is None:
        raise NotExplainable(family, "the pipeline is not of the shape train.py makes")
    encoder, direct = fast
    features, fold = model_column_fold(schema)
    classifier = hasattr(model, "predict_proba")
    if hasattr(model, "_predictors"):  # HistGradientBoosting
        from tabserve.explaining import trees
        from tabserve.explaining.treeshap import TreeShap

        if isinstance(direct, pipelines.TreesDirect):
            prepare = direct.model_matrix
        elif model._preprocessor is None:
            prepare = _same
        else:
            prepare = model._preprocessor.transform
        ensemble = trees.hist_gradient_boosting(model)
        explainer: Explainer = TreeShapExplainer(
            TreeShap(ensemble), prepare, features, fold, tree_space(model, classifier, ensemble.outputs)
        )
        own_raw = lambda X: model._raw_predict(X)  # noqa: E731
    elif hasattr(model, "estimators_") and hasattr(model.estimators_[0], "tree_"):  # a forest
        from tabserve.explaining import trees
        from tabserve.explaining.treeshap import TreeShap

        ensemble = trees.forest(model)
        explainer = TreeShapExplainer(
            TreeShap(ensemble), _same, features, fold, "probability" if classifier else "value"
        )
        own_raw = model.predict_proba if classifier else (lambda X: model.predict(X)[:, None])
    elif hasattr(model, "get_booster"):  # XGBoost
        explainer, own_raw = _xgboost(model.get_booster(), _same, features, fold, classifier)
    elif hasattr(model, "booster_"):  # LightGBM
        booster = model.booster_
        outputs = len(model.classes_) if classifier and len(model.classes_) > 2 else 1
        explainer = LightGBMExplainer(booster, features, fold, tree_space(None, classifier, outputs))
        own_raw = lambda X: booster.predict(X, raw_score=True)  # noqa: E731
    elif isinstance(direct, pipelines.LinearDirect):
        if getattr(model, "training_input_mean_", None) is None:
            raise NotExplainable("linear", "this version was trained before explanations; train it again")
        explainer = LinearExplainer(model, encoder.width, features, fold)
        own_raw = direct._raw
    else:
        raise NotExplainable(family)
    probe = encoder.probe(schema)
    check(explainer, probe, np.asarray(own_raw(probe), dtype=float), family)
    explainer.encode = encoder.encode  # records -> the matrix the explainer takes
    return explainer


def _xgboost(booster: Any, prepare: Any, features: list[str], fold: np.ndarray | None, classifier: bool):
    import xgboost

    from tabserve.explaining import trees
    from tabserve.explaining.treeshap import TreeShap

    try:
        ensemble = trees.xgboost_booster(booster)
    except (ValueError, KeyError) as exc:
        raise NotExplainable("xgboost", str(exc)) from None
    space = ("log-odds" if ensemble.outputs == 1 else "logit") if classifier else "value"
    explainer = TreeShapExplainer(TreeShap(ensemble), prepare, features, fold, space)
    explainer.tolerance = FLOAT32_TOLERANCE
    types = booster.feature_types

    def margin(X):
        data = xgboost.DMatrix(prepare(X), feature_types=types, enable_categorical=True)
        return booster.predict(data, output_margin=True)

    return explainer, margin


def _same(X: np.ndarray) -> np.ndarray:
    return X


def check(explainer: Explainer, probe: np.ndarray, own: np.ndarray, family: str) -> None:
    """The explainer's explained outputs on probe rows must be the model's own, and add up."""
    phi, expected, raw = explainer.explain(probe)
    own = own.reshape(raw.shape)
    tolerance = explainer.tolerance or CHECK_TOLERANCE
    same = np.allclose(raw, own, rtol=tolerance, atol=tolerance)
    adds_up = np.allclose(expected[None, :] + phi.sum(axis=2), raw, rtol=0, atol=1e-9)
    if not (same and adds_up):
        raise NotExplainable(family, "its explanations did not reproduce its own outputs on probe rows")


def model_column_fold(schema: FeatureSchema) -> tuple[list[str], np.ndarray]:
    """The input features, and the (model columns x features) fold of train.py's encoded matrix: categories
    first, then numbers, booleans and each date's parts (core/pipeline.py model_columns' order)."""
    from tabserve.core.pipeline import date_parts

    features = [f.name for f in schema.features]
    owners = [f.name for f in schema.features if f.kind == CATEGORICAL]
    for f in schema.features:
        if f.kind in (DATE, DATETIME):
            owners += [f.name] * len(date_parts(f.kind))
        elif f.kind != CATEGORICAL:
            owners.append(f.name)
    fold = np.zeros((len(owners), len(features)))
    for column, owner in enumerate(owners):
        fold[column, features.index(owner)] = 1.0
    return features, fold


# --- answers --------------------------------------------------------------------------------------------------


def output_text(space: str, label: Any) -> str:
    """What an explanation explains: a class's output ("softmax logit of 'Gentoo'"), or a regression's (label None)."""
    if label is None:
        return {"value": "the predicted value", "log of the value": "the log of the predicted value"}.get(space, space)
    return f"{class_output(space)} of {label_text(label)!r}"


def class_output(space: str) -> str:
    return "softmax logit" if space == "logit" else space


def explanations(
    explainer: Explainer, X: np.ndarray, classes: list[Any] | None, targets: list[Any]
) -> list[dict[str, Any]]:
    """One explanation per row of X, for the class each target names (a label; None for a regression)."""
    phi, expected, raw = explainer.explain(X)
    out = []
    for row, target in enumerate(targets):
        sign, column = 1.0, 0
        if classes is not None:
            index = classes.index(target)
            if phi.shape[1] == 1:  # one output: the second class's log-odds; the first's is its negative
                sign = 1.0 if index == 1 else -1.0
            else:
                column = index
        values = (sign * phi[row, column]).tolist()
        out.append(
            {
                "method": explainer.method,
                "output": output_text(explainer.space, target if classes is not None else None),
                "base": float(sign * expected[column]),
                "value": float(sign * raw[row, column]),
                "contributions": dict(zip(explainer.features, values, strict=True)),
            }
        )
    return out


def summary(explainer: Explainer, found: list[dict[str, Any]], where: str, classifier: bool) -> dict[str, Any]:
    """The card's global picture: each feature's mean absolute contribution to the explained output (the
    predicted class's, for a classifier), largest first, over the explanations `found` of the rows `where` says."""
    features = explainer.features
    totals = np.abs(np.array([[e["contributions"][f] for f in features] for e in found])).mean(axis=0)
    ranked = sorted(zip(features, totals.tolist(), strict=True), key=lambda kv: -kv[1])
    what = (
        f"the predicted class's {class_output(explainer.space)}" if classifier else output_text(explainer.space, None)
    )
    return {
        "method": explainer.method,
        "output": what,
        "importance": {feature: round(value, 6) for feature, value in ranked},
        "measured": f"mean absolute contribution to {what} over {len(found)} {where}",
    }


# --- imported models ------------------------------------------------------------------------------------------


def probe_records(features: list[Any], limit: int = 40) -> list[dict[str, Any]]:
    """Records to check an imported model's explainer on: the example, every value missing, and the example with
    each category of each categorical feature in turn (at most `limit` per feature)."""
    example = {feature.name: feature.example for feature in features}
    records = [example, {}]
    for feature in features:
        if feature.kind == CATEGORICAL:
            records += [{**example, feature.name: value} for value in (feature.categories or [])[:limit]]
    return records


def for_lightgbm(runtime: Any) -> Explainer:
    """An imported LightGBM model: the booster's own pred_contrib on the runtime's matrix."""
    booster = runtime.booster
    features = [name for name, _, _ in runtime.plan]
    if runtime.task == "regression":
        objective = str((booster.params or {}).get("objective", "regression"))
        space = (
            "value"
            if objective.startswith(("regression", "l2", "l1", "huber", "fair", "quantile", "mse", "mae"))
            else "raw score"
        )
    else:
        space = "log-odds" if runtime.binary else "logit"
    explainer = LightGBMExplainer(booster, features, None, space)
    explainer.encode = runtime.matrix
    probe = runtime.matrix(probe_records(runtime.schema.features))
    check(explainer, probe, np.asarray(booster.predict(probe, raw_score=True), dtype=float), "lightgbm")
    return explainer


def for_xgboost(runtime: Any) -> Explainer:
    """An imported XGBoost model: its trees (explaining/trees.py) on the frame's numbers and category codes."""
    import pandas as pd

    model_input = runtime.input

    def encode(records: list[dict[str, Any]]) -> np.ndarray:
        frame = model_input.frame(records)
        columns = []
        for name in model_input.columns:
            column = frame[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                codes = column.cat.codes.to_numpy().astype(float)
                columns.append(np.where(codes < 0, np.nan, codes))
            else:
                columns.append(pd.to_numeric(column, errors="raise").to_numpy(dtype=float))
        return np.column_stack(columns) if columns else np.zeros((len(records), 0))

    booster = runtime.booster
    explainer, _ = _xgboost(booster, _same, list(model_input.columns), None, runtime.task == "classification")
    if explainer.space != "value" and runtime.task == "regression":
        explainer.space = "raw score"
    margin = lambda frame: booster.inplace_predict(frame, predict_type="margin")  # noqa: E731
    return _checked(explainer, encode, model_input, margin, "xgboost", "a column is neither numeric nor categorical")


def for_sklearn(runtime: Any) -> Explainer:
    """An imported scikit-learn tree ensemble taking numbers only (a random forest, extra trees, a
    HistGradientBoosting model without categorical features): TreeSHAP on the frame's numbers. Pipelines and
    other estimators: NotExplainable (their derived columns cannot be folded back with certainty)."""
    from tabserve.explaining import trees
    from tabserve.explaining.treeshap import TreeShap

    model, model_input = runtime.estimator, runtime.input
    kind = type(model).__name__
    if hasattr(model, "_predictors") and getattr(model, "is_categorical_", None) is None:
        ensemble, space = trees.hist_gradient_boosting(model), None
    elif hasattr(model, "estimators_") and hasattr(np.ravel(model.estimators_)[0], "tree_"):
        ensemble, space = trees.forest(model), ("probability" if runtime.task == "classification" else "value")
    else:
        raise NotExplainable("scikit-learn", f"a {kind} is not a tree ensemble explained exactly here")
    if space is None:
        space = tree_space(model, runtime.task == "classification", ensemble.outputs)

    def encode(records: list[dict[str, Any]]) -> np.ndarray:
        return model_input.frame(records).to_numpy(dtype=float)

    explainer = TreeShapExplainer(TreeShap(ensemble), _same, list(model_input.columns), None, space)
    if hasattr(model, "_predictors"):
        own = model._raw_predict
    else:
        own = model.predict_proba if runtime.task == "classification" else (lambda frame: model.predict(frame)[:, None])
    return _checked(explainer, encode, model_input, own, "scikit-learn", "its input is not all numbers")


def _checked(explainer: Explainer, encode: Any, model_input: Any, own: Any, family: str, unreadable: str) -> Explainer:
    """An imported model's explainer, taking records through `encode`, checked on probe records against `own`
    (the model's raw output on the frame the runtime gives it)."""
    explainer.encode = encode
    records = probe_records(model_input.features)
    try:
        probe = encode(records)
    except (TypeError, ValueError) as exc:
        raise NotExplainable(family, f"{unreadable} ({exc})") from None
    check(explainer, probe, np.asarray(own(model_input.frame(records)), dtype=float), family)
    return explainer
