"""The model families train.py can fit, one small class each behind one interface (as MLServer's runtimes).

Every family's pipeline has the shape fit.build makes: the ordinal-encoded categories, then the numeric
columns (a ColumnTransformer), then the family's estimator. So the service's encoder (RecordEncoder in
tabserve/core/pipeline.py) turns records into every family's input without pandas, and a stored version
needs nothing of tabserve.training to load: only scikit-learn, and LightGBM or XGBoost for theirs.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tabserve.core.errors import DataError
from tabserve.core.pipeline import CLASSIFICATION

# What a Bento must install to load each library's models (as import_model.py's: tabserve/models/formats.py).
LIBRARY_PINS = {"lightgbm": "lightgbm==4.7.0", "xgboost": "xgboost==3.2.0"}
LIBRARY_SYSTEM_PACKAGES = {"lightgbm": ["libgomp1"]}  # LightGBM's wheel links the system's OpenMP runtime


@dataclass(frozen=True)
class Layout:
    """The model's input matrix: `categorical` ordinal-coded columns first, then `numeric` ones."""

    categorical: int
    numeric: int
    rows: int

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(self.categorical))

    @property
    def numeric_indices(self) -> list[int]:
        return list(range(self.categorical, self.categorical + self.numeric))


class Family(ABC):
    """One model family: its estimator for the encoded matrix, and what fitting it needs."""

    name: ClassVar[str]
    title: ClassVar[str]  # what the leaderboard and the report call it
    library: ClassVar[str | None] = None  # a library beyond scikit-learn
    encodes_labels: ClassVar[bool] = False  # fitted on class indices 0..K-1 (its classes_), not on the labels

    @abstractmethod
    def estimator(self, layout: Layout, task: str, seed: int, class_weight: str | None, one_row_class: bool) -> Any:
        """The unfitted estimator that takes the encoded matrix."""

    def fit_params(self, layout: Layout, target: np.ndarray, class_weight: str | None) -> dict[str, Any]:
        """Keyword arguments of the pipeline's fit (for its `model` step)."""
        return {}

    def for_serving(self, estimator: Any) -> Any:
        """The fitted estimator as it should predict: a server runs one worker per core."""
        return estimator

    def remember_training(self, pipeline: Any, features: Any) -> None:
        """Keep on the fitted model what explaining it needs from its training rows (nothing, for trees)."""
        return None

    @property
    def installed(self) -> bool:
        return self.library is None or importlib.util.find_spec(self.library) is not None

    @property
    def requirements(self) -> list[str]:
        return [LIBRARY_PINS[self.library]] if self.library else []

    @property
    def system_packages(self) -> list[str]:
        return LIBRARY_SYSTEM_PACKAGES.get(self.library or "", [])


class Linear(Family):
    name, title = "linear", "regularized logistic/linear regression"

    def estimator(self, layout, task, seed, class_weight, one_row_class):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        # Codes as one-hot columns (a missing or unknown value, NaN, as a level of its own); numbers imputed by
        # their median with a was-missing indicator, then scaled, so the penalty treats every column alike.
        prepare = ColumnTransformer(
            [
                (
                    "one_hot",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value=-1.0, keep_empty_features=True),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    layout.categorical_indices,
                ),
                (
                    "scaled",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                        StandardScaler(),
                    ),
                    layout.numeric_indices,
                ),
            ]
        )
        if task == CLASSIFICATION:
            model = LogisticRegression(C=1.0, max_iter=2000, class_weight=class_weight, random_state=seed)
        else:
            model = Ridge(alpha=1.0)
        return Pipeline([("prepare", prepare), ("model", model)])

    def remember_training(self, pipeline, features):
        # Explanations are coef x (x - training mean) in the model's input space (tabserve/explaining/).
        inner = pipeline[-1]
        encoded = inner[0].transform(pipeline[0].transform(features))
        inner.training_input_mean_ = np.asarray(encoded.mean(axis=0), dtype=float).ravel()


class HistGradientBoosting(Family):
    name, title = "hgb", "scikit-learn HistGradientBoosting"

    def estimator(self, layout, task, seed, class_weight, one_row_class):
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        is_categorical = [True] * layout.categorical + [False] * layout.numeric
        # A class with one training row: its own stratified early-stopping split (on by itself above 10,000
        # rows) could not be drawn, so early stopping is off.
        options = {"early_stopping": False} if one_row_class else {}
        if task == CLASSIFICATION:
            # An L2 penalty on leaf values (XGBoost's default is the same 1.0): without it a rare class's tiny
            # hessians make huge leaves, and the model diverges (Seattle's pet licences: cross-validated log loss
            # 7.4 without, 0.028 with; nycflights13's planes: below the majority class's accuracy without)
            return HistGradientBoostingClassifier(
                categorical_features=is_categorical,
                random_state=seed,
                class_weight=class_weight,
                l2_regularization=1.0,
                **options,
            )
        return HistGradientBoostingRegressor(categorical_features=is_categorical, random_state=seed, **options)


class RandomForest(Family):
    name, title = "forest", "scikit-learn random forest"

    def estimator(self, layout, task, seed, class_weight, one_row_class):
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        # Leaves of at least rows/20,000 rows: fully grown trees on 300,000 rows make a file of gigabytes.
        options = {"n_estimators": 100, "min_samples_leaf": max(1, layout.rows // 20_000), "n_jobs": -1}
        if task == CLASSIFICATION:
            return RandomForestClassifier(random_state=seed, class_weight=class_weight, **options)
        return RandomForestRegressor(random_state=seed, max_features=1.0 / 3, **options)

    def for_serving(self, estimator):
        # Fitted on every core; predicting one record on a pool of threads costs ~30 ms of waiting for it.
        estimator.set_params(n_jobs=None)
        return estimator


class LightGBM(Family):
    name, title, library = "lightgbm", "LightGBM", "lightgbm"

    def estimator(self, layout, task, seed, class_weight, one_row_class):
        import lightgbm

        model = lightgbm.LGBMClassifier if task == CLASSIFICATION else lightgbm.LGBMRegressor
        options = {"class_weight": class_weight} if task == CLASSIFICATION else {}
        # n_jobs=0: OpenMP's own thread count (OMP_NUM_THREADS), where None would take every physical core
        return model(n_estimators=200, learning_rate=0.05, random_state=seed, verbose=-1, n_jobs=0, **options)

    def fit_params(self, layout, target, class_weight):
        return {"model__categorical_feature": layout.categorical_indices} if layout.categorical else {}

    def for_serving(self, estimator):
        # One thread per prediction: a server runs one worker per core (8 ms a record on 2 threads, 1 ms on one)
        estimator.set_params(n_jobs=1)
        return estimator


class XGBoost(Family):
    name, title, library = "xgboost", "XGBoost", "xgboost"
    encodes_labels = True  # XGBoost's classifier takes class indices only

    def estimator(self, layout, task, seed, class_weight, one_row_class):
        import xgboost

        model = xgboost.XGBClassifier if task == CLASSIFICATION else xgboost.XGBRegressor
        return model(
            n_estimators=200,
            learning_rate=0.1,
            max_depth=6,
            tree_method="hist",
            enable_categorical=True,
            feature_types=["c"] * layout.categorical + ["q"] * layout.numeric,
            random_state=seed,
        )

    def for_serving(self, estimator):
        estimator.set_params(n_jobs=1)  # as LightGBM's: one thread per prediction
        return estimator

    def fit_params(self, layout, target, class_weight):
        if class_weight != "balanced":
            return {}
        from sklearn.utils.class_weight import compute_sample_weight

        return {"model__sample_weight": compute_sample_weight("balanced", target)}


# In the order auto tries them, and the order ties go by: simpler and faster first.
FAMILIES: dict[str, Family] = {
    f.name: f for f in (Linear(), HistGradientBoosting(), LightGBM(), XGBoost(), RandomForest())
}
CHOICES = ("auto", *FAMILIES)


def chosen(model: str) -> list[Family]:
    """The families `--model` names: all for auto (those whose library is missing are reported by selection),
    else the one, which must be installed."""
    if model == "auto":
        return list(FAMILIES.values())
    if model not in FAMILIES:
        raise DataError(f"--model {model!r} is unknown; use one of: {', '.join(CHOICES)}")
    family = FAMILIES[model]
    if not family.installed:
        raise DataError(
            f"--model {model} needs {family.library}, which is not installed here: "
            f".venv/bin/pip install {family.requirements[0]}"
        )
    return [family]
