"""Calling the scikit-learn pipeline: typed records -> the frame it was fitted on -> predictions.

Training (tabserve/training/fit.py) fits it on frames made here too, so both see the same columns.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATE_PARTS, DATETIME, NUMERIC, FeatureSchema, label_text

if (
    TYPE_CHECKING
):  # scikit-learn is imported when a pipeline is loaded, not by `bentoml serve`'s arbiter (~1.6 s of its cold start);
    # pandas only for the pipelines RecordEncoder cannot take and for dates (~0.6 s more)
    import pandas as pd
    from sklearn.pipeline import Pipeline

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)


def date_parts(kind: str) -> tuple[str, ...]:
    """The numeric columns a date or datetime feature becomes."""
    return (*DATE_PARTS, *(("hour",) if kind == DATETIME else ()))


def model_columns(schema: FeatureSchema) -> tuple[list[str], list[str]]:
    """The columns the model sees: (categorical, numeric). Booleans are 0/1; a date is its parts."""
    categorical = [f.name for f in schema.features if f.kind == CATEGORICAL]
    numeric: list[str] = []
    for f in schema.features:
        if f.kind in (NUMERIC, BOOLEAN):
            numeric.append(f.name)
        elif f.kind in (DATE, DATETIME):
            numeric.extend(f"{f.name}.{part}" for part in date_parts(f.kind))
    return categorical, numeric


def category_text(feature) -> dict[Any, str] | None:
    """{category: its text} for coded (non-text) categories, which the encoder knows as text; None for text ones.
    A dict lookup, so 6.0 finds 6's "6"."""
    if feature.categories and not isinstance(feature.categories[0], str):
        return {c: str(c) for c in feature.categories}
    return None


def to_frame(records: list[dict[str, Any]] | pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Typed records (validated dicts, missing: None) as the frame the pipeline was fitted on: once per batch.

    Training calls this too, on the parsed rows of the file, so both see exactly the same columns.
    """
    import pandas as pd

    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(records, columns=schema.names)
    out: dict[str, Any] = {}
    for feature in schema.features:
        column = frame[feature.name]
        if feature.kind == CATEGORICAL:  # the encoder's categories are text: coded categories too
            as_text = category_text(feature)
            if feature.open:  # any value outside the kept categories is the `other` level
                known = as_text or {c: c for c in feature.categories or ()}
                out[feature.name] = column.map(
                    lambda v, k=known, o=feature.other: np.nan if pd.isna(v) else k.get(v, o)
                ).astype(object)
            elif as_text is not None:  # value by value: a missing value makes an int column float, and 6.0 is not "6.0"
                out[feature.name] = column.map(lambda v, t=as_text: np.nan if pd.isna(v) else t.get(v, str(v))).astype(
                    object
                )
            else:
                out[feature.name] = column.astype(object).where(column.notna(), np.nan)
        elif feature.kind == BOOLEAN:
            out[feature.name] = column.map({True: 1.0, False: 0.0}).astype(float)
        elif feature.kind in (DATE, DATETIME):
            moments = pd.to_datetime(column, errors="coerce")
            for part in date_parts(feature.kind):
                out[f"{feature.name}.{part}"] = getattr(moments.dt, part).astype(float)
        else:
            out[feature.name] = pd.to_numeric(column, errors="coerce").astype(float)
    categorical, numeric = model_columns(schema)
    return pd.DataFrame(out, index=frame.index)[categorical + numeric]


class RecordEncoder:
    """Typed records straight to the model's input matrix, as `to_frame` + the fitted ColumnTransformer
    (fit.build: ordinal-encoded categories, then the numeric columns) make it, without pandas.

    Why: for one record, the frame and the ColumnTransformer cost ~10 ms of pure-Python overhead (two
    thirds of a prediction), for 0.1 ms of work. Built once per loaded pipeline from its fitted encoder
    (its categories, not the schema's); `for_pipeline` is None for a pipeline of another shape, which
    then takes the pandas path. tests/core/test_pipeline.py checks both give the same matrix on real data.
    """

    def __init__(self, schema: FeatureSchema, categories: dict[str, dict[Any, int]]) -> None:
        self.columns: list[tuple[str, str, Any]] = []  # (feature, kind, its codes for a category)
        categorical, numeric = model_columns(schema)
        for name in categorical:
            feature = schema[name]
            as_text = category_text(feature)
            if as_text is not None:  # coded categories: their text's code, looked up by value
                codes = {value: categories[name][text] for value, text in as_text.items() if text in categories[name]}
            else:
                codes = categories[name]
            if feature.open:  # any other value: the `other` level's code (NaN when the encoder has none)
                self.columns.append((name, "open", (codes, categories[name].get(feature.other, np.nan))))
            else:
                self.columns.append((name, "category", codes))
        for feature in schema.features:
            if feature.kind in (NUMERIC, BOOLEAN, DATE, DATETIME):
                self.columns.append((feature.name, feature.kind, None))
        self.width = len(categorical) + len(numeric)

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline, schema: FeatureSchema) -> RecordEncoder | None:
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import OrdinalEncoder

        categorical, numeric = model_columns(schema)
        columns = pipeline[0] if len(pipeline) == 2 else None
        if (
            not isinstance(columns, ColumnTransformer)
            or columns.remainder != "drop"
            or hasattr(pipeline[-1], "feature_names_in_")
        ):
            return None
        declared = [
            (name, "encoder" if isinstance(step, OrdinalEncoder) else step, list(cols))
            for name, step, cols in columns.transformers
            if len(cols)
        ]
        if declared != [
            *([("categorical", "encoder", categorical)] if categorical else []),
            *([("numeric", "passthrough", numeric)] if numeric else []),
        ]:
            return None
        codes = {}
        if categorical:
            encoder = columns.named_transformers_["categorical"]
            if not (np.isnan(encoder.unknown_value) and np.isnan(encoder.encoded_missing_value)):
                return None
            codes = {
                name: {value: float(i) for i, value in enumerate(values)}
                for name, values in zip(categorical, encoder.categories_, strict=True)  # one per encoded column
            }
        return cls(schema, codes)

    def probe(self, schema: FeatureSchema) -> np.ndarray:
        """Rows to check a shortcut against the model on: the schema's example, a record with every value
        missing, and the example with each category of each categorical feature in turn."""
        example = schema.example()
        records = [example, {}]
        for name, kind, codes in self.columns:
            if kind == "category":
                records += [{**example, name: value} for value in codes]
            elif kind == "open":
                records += [{**example, name: value} for value in [*codes[0], f"{name} unseen"]]
        return self.encode(records)

    def encode(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The model's input: one row per record, missing and unknown values NaN."""
        matrix = np.full((len(records), self.width), np.nan)
        column = 0
        for name, kind, codes in self.columns:
            values = [record.get(name) for record in records]
            if kind == "category":
                for row, value in enumerate(values):
                    if value is not None:
                        code = codes.get(value)
                        if code is not None:
                            matrix[row, column] = code
                column += 1
            elif kind == "open":
                known, other = codes
                for row, value in enumerate(values):
                    if value is not None:
                        matrix[row, column] = known.get(value, other)
                column += 1
            elif kind == BOOLEAN:  # as Series.map({True: 1.0, False: 0.0}): 1 and 0 are True and False
                for row, value in enumerate(values):
                    if isinstance(value, (bool, int, float)) and value in (0, 1):
                        matrix[row, column] = float(value)
                column += 1
            elif kind == NUMERIC:
                for row, value in enumerate(values):
                    if value is not None:
                        try:
                            matrix[row, column] = float(value)
                        except (TypeError, ValueError):
                            pass
                column += 1
            else:  # a date: its parts, parsed as to_frame parses them
                import pandas as pd

                moments = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce")
                for part in date_parts(kind):
                    matrix[:, column] = getattr(moments.dt, part).astype(float).to_numpy()
                    column += 1
        return matrix


class TreesDirect:
    """A fitted HistGradientBoosting model's predictions without its own input re-encoding.

    Why: given categorical features, the model re-encodes its input at every call (an internal ColumnTransformer
    with an OrdinalEncoder: pandas-free but ~3 ms of pure-Python checks for one record, a third of the call;
    bench/README.md, Findings 14). The categories it maps are our encoder's codes, so the same mapping is a
    lookup table here, and the trees are walked by the model's own `_predict_iterations`. Private scikit-learn
    API, so it is used only when the model has the attributes and shape this was written for (scikit-learn is
    pinned in requirements.txt) AND it gives exactly the model's own answers on probe rows at load; otherwise
    `for_model` is None and the model's public predict_proba/predict runs.
    """

    def __init__(self, model: Any, lookups: list[tuple[int, np.ndarray]]) -> None:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        self.model = model
        self.lookups = lookups  # (column, our code -> the model's own category index, NaN where it has none)
        self.threads = _openmp_effective_n_threads  # asked at each call, as the model does (threadpoolctl limits apply)

    @classmethod
    def for_model(cls, model: Any, probe: np.ndarray) -> TreesDirect | None:
        needed = (
            "_preprocessor",
            "_predictors",
            "_baseline_prediction",
            "_predict_iterations",
            "_loss",
            "_bin_mapper",
            "n_trees_per_iteration_",
        )
        if not all(hasattr(model, name) for name in needed):
            return None
        lookups: list[tuple[int, np.ndarray]] = []
        if model._preprocessor is not None:
            lookups_or_none = cls._lookups(model._preprocessor, probe.shape[1])
            if lookups_or_none is None:
                return None
            lookups = lookups_or_none
        try:
            direct = cls(model, lookups)
            same = (
                np.array_equal(direct.predict_proba(probe), model.predict_proba(probe))
                if hasattr(model, "predict_proba")
                else np.array_equal(direct.predict(probe), model.predict(probe))
            )
        except Exception:  # an internal that changed shape: the public path it is
            return None
        return direct if same else None

    @staticmethod
    def _lookups(preprocessor: Any, width: int) -> list[tuple[int, np.ndarray]] | None:
        """The model's encoder as lookup tables, when its preprocessor keeps the column order: its categorical
        columns first (as RecordEncoder writes them), then the numeric ones passed through, nothing dropped."""
        from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

        steps = [(name, step, np.asarray(columns)) for name, step, columns in preprocessor.transformers_]
        if [name for name, _, _ in steps] != ["encoder", "numerical", "remainder"] or steps[2][1] != "drop":
            return None
        (_, encoder, categorical), (_, passthrough, numeric) = steps[0], steps[1]
        if (
            categorical.dtype != bool
            or numeric.dtype != bool
            or len(categorical) != width
            or not np.array_equal(categorical, ~numeric)
        ):
            return None
        n_categorical = int(categorical.sum())
        if (
            not categorical[:n_categorical].all()
            or not isinstance(encoder, OrdinalEncoder)
            or not isinstance(passthrough, FunctionTransformer)
        ):
            return None
        if encoder.handle_unknown != "use_encoded_value" or not (
            np.isnan(encoder.unknown_value) and np.isnan(encoder.encoded_missing_value)
        ):
            return None
        lookups = []
        for column, known in enumerate(encoder.categories_):
            known = np.asarray(known, dtype=float)
            codes = known[~np.isnan(known)]
            if len(codes) and (codes.min() < 0 or (codes != np.round(codes)).any()):
                return None  # not the whole-number codes RecordEncoder writes
            table = np.full(int(codes.max()) + 1 if len(codes) else 0, np.nan)  # index: our code
            for index, code in enumerate(known):
                if not np.isnan(code):
                    table[int(code)] = float(index)
            lookups.append((column, table))
        return lookups

    def model_matrix(self, X: np.ndarray) -> np.ndarray:
        """Our encoded matrix as the model's predictors take it: categories as the model's own indices."""
        if self.lookups:
            X = X.copy()  # the caller's matrix keeps our codes
        for column, table in self.lookups:  # our codes -> the model's; NaN (missing, unknown) stays NaN
            values = X[:, column]
            known = ~np.isnan(values)
            codes = values[known].astype(np.intp)
            inside = codes < len(table)
            values[np.flatnonzero(known)[~inside]] = np.nan
            values[np.flatnonzero(known)[inside]] = table[codes[inside]]
        return X

    def _raw(self, X: np.ndarray) -> np.ndarray:
        X = self.model_matrix(X)
        model = self.model
        raw = np.zeros((X.shape[0], model.n_trees_per_iteration_), dtype=model._baseline_prediction.dtype, order="F")
        raw += model._baseline_prediction
        model._predict_iterations(X, model._predictors, raw, False, self.threads())
        return raw

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model._loss.predict_proba(self._raw(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model._loss.link.inverse(self._raw(X).ravel())


class LinearDirect:
    """train.py's linear family (tabserve/training/candidates.py Linear: codes one-hot; numbers imputed by the
    median with was-missing columns, then scaled; a logistic or ridge regression) as arithmetic on the encoded
    matrix, from the fitted steps' public attributes.

    Why: the model's own call goes through a ColumnTransformer, two imputers, an encoder and a scaler, ~2 ms of
    input checks for one record, for one small matrix product. Used only when it gives the model's own answers
    (within float rounding) on probe rows at load; otherwise `for_model` is None and the model's public call runs.
    """

    def __init__(self, categorical, numeric, coef: np.ndarray, intercept: np.ndarray, kind: str) -> None:
        self.categorical = categorical  # [(column, table: row code+1 -> its weights; row 0: missing)]
        self.numeric = numeric  # (columns, medians, indicator columns, weights/scale, bias) or None
        self.coef, self.intercept, self.kind = coef, intercept, kind  # kind: binary, multinomial, regression

    @classmethod
    def for_model(cls, model: Any, probe: np.ndarray) -> LinearDirect | None:
        try:
            direct = cls._from(model)
            if direct is None:
                return None
            if hasattr(model, "predict_proba"):
                same = np.allclose(direct.predict_proba(probe), model.predict_proba(probe), rtol=1e-7, atol=1e-9)
            else:
                same = np.allclose(direct.predict(probe), model.predict(probe), rtol=1e-7, atol=1e-9)
        except Exception:  # a shape this was not written for: the public path it is
            return None
        return direct if same else None

    @classmethod
    def _from(cls, model: Any) -> LinearDirect | None:
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline

        if not (isinstance(model, Pipeline) and len(model) == 2 and isinstance(model[0], ColumnTransformer)):
            return None
        prepare, final = model[0], model[-1]
        if isinstance(final, LogisticRegression):
            weights, intercept = np.atleast_2d(final.coef_), np.atleast_1d(final.intercept_)
            kind = "binary" if weights.shape[0] == 1 else "multinomial"
        elif isinstance(final, Ridge) and np.ndim(final.coef_) == 1:
            weights, intercept, kind = final.coef_[None, :], np.atleast_1d(final.intercept_), "regression"
        else:
            return None
        categorical, numeric = [], None
        for name, step, columns in prepare.transformers_:
            where = prepare.output_indices_[name]
            if name == "remainder" or where.start == where.stop:
                continue
            if name == "one_hot":
                encoder = step[-1]
                if encoder.drop_idx_ is not None or encoder.handle_unknown != "ignore":
                    return None
                offset = where.start
                for column, known in zip(columns, encoder.categories_, strict=True):
                    codes = np.asarray(known, dtype=float)  # -1 stands for a missing or unknown value
                    table = np.zeros((int(max(codes.max(), 0)) + 2, weights.shape[0]))
                    for index, code in enumerate(codes):
                        table[int(code) + 1] = weights[:, offset + index]
                    categorical.append((int(column), table))
                    offset += len(codes)
            elif name == "scaled":
                imputer, scaler = step[0], step[-1]
                indicators = imputer.indicator_.features_ if imputer.indicator_ is not None else np.array([], int)
                scaled = weights[:, where] / scaler.scale_
                bias = -(scaled * scaler.mean_).sum(axis=1)
                numeric = (np.asarray(columns, dtype=int), imputer.statistics_, np.asarray(indicators), scaled, bias)
            else:
                return None
        return cls(categorical, numeric, weights, intercept, kind)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        raw = np.tile(self.intercept, (X.shape[0], 1)).astype(float)
        for column, table in self.categorical:  # NaN: the imputer's -1, row 0; a code the encoder never saw: 0
            values = X[:, column]
            rows = np.where(np.isnan(values), 0.0, values + 1.0)
            inside = (rows >= 0) & (rows < len(table))
            raw += np.where(inside[:, None], table[np.where(inside, rows, 0).astype(np.intp)], 0.0)
        if self.numeric is not None:
            columns, medians, indicators, scaled, bias = self.numeric
            values = X[:, columns]
            missing = np.isnan(values)
            design = np.where(missing, medians, values)
            if len(indicators):
                design = np.hstack([design, missing[:, indicators].astype(float)])
            raw += design @ scaled.T + bias
        return raw

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raw = self._raw(X)
        if self.kind == "binary":
            positive = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        raw -= raw.max(axis=1, keepdims=True)
        exp = np.exp(raw)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._raw(X)[:, 0]


_encoders: weakref.WeakKeyDictionary = (
    weakref.WeakKeyDictionary()
)  # pipeline -> (its RecordEncoder, its TreesDirect or LinearDirect), or None


def fast_path(pipeline: Pipeline, schema: FeatureSchema) -> tuple[RecordEncoder, Any] | None:
    """(its RecordEncoder, its TreesDirect or LinearDirect or None) for a pipeline of fit.build's shape, built
    and checked once per pipeline; None for a pipeline of another shape."""
    try:
        return _encoders[pipeline]
    except KeyError:
        encoder = RecordEncoder.for_pipeline(pipeline, schema)
        if encoder is None:
            fast = _encoders[pipeline] = None
        else:
            probe = encoder.probe(schema)
            direct = TreesDirect.for_model(pipeline[-1], probe) or LinearDirect.for_model(pipeline[-1], probe)
            fast = _encoders[pipeline] = (encoder, direct)
        return fast


def model_input(pipeline: Pipeline, schema: FeatureSchema, records: list[dict[str, Any]]) -> tuple[Any, Any]:
    """(the estimator, its input) for these records: the encoded matrix and the model alone (or the model's
    trees directly, TreesDirect) when the pipeline has the shape fit.build makes, else the frame and the
    whole pipeline."""
    fast = fast_path(pipeline, schema)
    if fast is None:
        return pipeline, to_frame(records, schema)
    encoder, direct = fast
    return direct or pipeline[-1], encoder.encode(records)


def predict_records(
    pipeline: Pipeline, schema: FeatureSchema, records: list[dict[str, Any]], classes: list[Any] | None = None
) -> list[dict[str, Any]]:
    """One result per record, in order: {"prediction": label or number, "probabilities": {...} or None}.

    Labels keep the training labels' type (text, whole number, boolean); probability keys are the
    labels as JSON writes them (label_text), since JSON object keys are always text.
    """
    if not records:
        return []
    estimator, inputs = model_input(pipeline, schema, records)
    model = pipeline[-1]
    if hasattr(model, "predict_proba"):
        probabilities = estimator.predict_proba(inputs)
        classes = classes or class_labels(pipeline)  # the card's labels (a model fitted on their indices: 0..K-1)
        names = [label_text(c) for c in classes]
        best = probabilities.argmax(axis=1).tolist()
        return [  # rounded and made Python floats for the whole matrix at once, not row by row
            {"prediction": classes[i], "probabilities": dict(zip(names, row, strict=True))}
            for i, row in zip(best, np.asarray(probabilities, dtype=float).round(6).tolist(), strict=True)
        ]
    return [{"prediction": float(value), "probabilities": None} for value in estimator.predict(inputs)]


def class_labels(pipeline: Pipeline) -> list[Any]:
    """The classifier's labels as plain Python values (numpy's int64/bool_ are not JSON)."""
    return [c.item() if hasattr(c, "item") else c for c in pipeline[-1].classes_]
