"""Small real models built with their own libraries from real public data (palmerpenguins, scikit-learn's
diabetes table), saved as their users save them, with the sample CSV each is imported with and the model's
own answers on that sample: what every imported answer must equal."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
CATEGORIES = ["island", "sex"]


@dataclass
class Built:
    name: str  # also the model's name in the store
    model: Path  # the file (or MLflow directory) import_model.py reads
    sample: Path  # the sample CSV
    args: list[str] = field(default_factory=list)  # the rest of the import command
    own: Callable[[pd.DataFrame], dict[str, Any]] | None = (
        None  # the model's own answers on frames read from the sample
    )
    family: str = ""
    fmt: str = ""

    def command(self) -> list[str]:
        return ["--model", str(self.model), "--sample", str(self.sample), "--name", self.name, *self.args]

    def frame(self) -> pd.DataFrame:
        """The sample as a notebook reads it (pd.read_csv), categoricals as the model was fitted on them."""
        return pd.read_csv(self.sample)


def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


LEVELS = {
    "island": ["Biscoe", "Dream", "Torgersen"],
    "sex": ["female", "male"],
    "species": ["Adelie", "Chinstrap", "Gentoo"],
}


def as_categories(frame: pd.DataFrame, columns=CATEGORIES) -> pd.DataFrame:
    """Category columns with the data set's levels (what astype("category") gives on the whole table, also for
    one row)."""
    frame = frame.copy()
    for column in columns:
        frame[column] = pd.Categorical(frame[column], categories=LEVELS[column])
    return frame


def proba_answers(classes, probabilities, labels=None) -> dict[str, Any]:
    probabilities = np.asarray(probabilities, dtype=float)
    if labels is None:
        labels = [classes[i] for i in probabilities.argmax(axis=1)]
    return {
        "labels": [v.item() if hasattr(v, "item") else v for v in labels],
        "probabilities": probabilities,
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
    }


def value_answers(values) -> dict[str, Any]:
    return {"values": np.asarray(values, dtype=float).ravel()}


def sklearn_pipeline(frame: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    columns = ColumnTransformer(
        [("numbers", numbers, NUMERIC), ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORIES)]
    )
    labelled = frame.dropna(subset=["species", "sex"])
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=2000))]).fit(
        labelled[NUMERIC + CATEGORIES], labelled["species"]
    )


def build_all(folder: Path) -> dict[str, Built]:
    """Every model of the issue's list, in `folder`."""
    warnings.filterwarnings("ignore")
    import joblib
    import lightgbm
    import skops.io
    import xgboost
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    folder.mkdir(parents=True, exist_ok=True)
    built: dict[str, Built] = {}
    data = penguins()
    sample = folder / "penguins.csv"
    data.to_csv(sample, index=False)  # every row, species included: a column the models do not take

    # scikit-learn Pipeline: ColumnTransformer + OneHotEncoder + StandardScaler + LogisticRegression, skops and joblib
    pipe = sklearn_pipeline(data.dropna(subset=["sex"]))
    kept = folder / "sex_known.csv"  # the pipeline's OneHotEncoder has no missing sex: its sample has none either
    data.dropna(subset=["sex"]).to_csv(kept, index=False)

    def own(frame, p=pipe):
        return proba_answers(
            p.classes_, p.predict_proba(frame[NUMERIC + CATEGORIES]), p.predict(frame[NUMERIC + CATEGORIES])
        )

    skops.io.dump(pipe, folder / "pipeline.skops")
    built["pipe-skops"] = Built(
        "pipe-skops",
        folder / "pipeline.skops",
        kept,
        ["--target", "species", "--trust", "numpy.dtype"],
        own,
        "scikit-learn",
        "skops",
    )
    joblib.dump(pipe, folder / "pipeline.joblib")
    built["pipe-joblib"] = Built(
        "pipe-joblib", folder / "pipeline.joblib", kept, ["--trust-pickle"], own, "scikit-learn", "pickle"
    )

    # A RandomForest regressor on scikit-learn's diabetes table (a regression), with skops
    diabetes = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    diabetes_csv = folder / "diabetes.csv"
    diabetes.to_csv(diabetes_csv, index=False)
    features = [c for c in diabetes.columns if c != "progression"]
    forest = RandomForestRegressor(n_estimators=30, max_depth=6, random_state=0).fit(
        diabetes[features], diabetes["progression"]
    )
    skops.io.dump(forest, folder / "forest.skops")
    built["forest"] = Built(
        "forest",
        folder / "forest.skops",
        diabetes_csv,
        ["--target", "progression", "--trust", "sklearn.tree._tree.Tree"],
        lambda frame, m=forest: value_answers(m.predict(frame[features])),
        "scikit-learn",
        "skops",
    )

    # LightGBM with pandas categorical columns: the booster's text file and the pickled sklearn wrapper
    x = as_categories(data.drop(columns=["species"]))
    classifier = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=8, verbose=-1, random_state=0).fit(
        x, data["species"]
    )
    classifier.booster_.save_model(folder / "lightgbm.txt")
    booster = lightgbm.Booster(model_file=str(folder / "lightgbm.txt"))
    built["lgb-booster"] = Built(
        "lgb-booster",
        folder / "lightgbm.txt",
        sample,
        [],
        lambda frame, b=booster: proba_answers([0, 1, 2], b.predict(as_categories(frame.drop(columns=["species"])))),
        "lightgbm",
        "lightgbm",
    )
    joblib.dump(classifier, folder / "lightgbm.pkl")
    built["lgb-sklearn"] = Built(
        "lgb-sklearn",
        folder / "lightgbm.pkl",
        sample,
        ["--trust-pickle", "--target", "species"],
        lambda frame, m=classifier: proba_answers(
            m.classes_,
            m.predict_proba(as_categories(frame.drop(columns=["species"]))),
            m.predict(as_categories(frame.drop(columns=["species"]))),
        ),
        "lightgbm",
        "pickle",
    )

    # XGBoost with categorical support: a binary classifier's booster as JSON, a regressor's as UBJSON
    known_sex = data.dropna(subset=["sex"])
    sex_csv = folder / "penguins_sex.csv"
    known_sex.drop(columns=["sex"]).assign(sex=(known_sex["sex"] == "male").astype(int)).to_csv(sex_csv, index=False)
    xs = as_categories(known_sex.drop(columns=["sex"]), ["island", "species"])
    binary = xgboost.XGBClassifier(
        n_estimators=30, max_depth=3, enable_categorical=True, tree_method="hist", random_state=0
    )
    binary.fit(xs, (known_sex["sex"] == "male").astype(int))
    binary.get_booster().save_model(folder / "xgboost.json")
    xgb_booster = xgboost.Booster()
    xgb_booster.load_model(folder / "xgboost.json")
    built["xgb-json"] = Built(
        "xgb-json",
        folder / "xgboost.json",
        sex_csv,
        ["--target", "sex"],
        lambda frame, m=binary: proba_answers(
            m.classes_, m.predict_proba(as_categories(frame.drop(columns=["sex"]), ["island", "species"]))
        ),
        "xgboost",
        "xgboost",
    )
    mass = data.dropna(subset=["body_mass_g"])
    mass_csv = folder / "penguins_mass.csv"
    mass.to_csv(mass_csv, index=False)
    xm = as_categories(mass.drop(columns=["body_mass_g"]), ["island", "sex", "species"])
    regressor = xgboost.XGBRegressor(
        n_estimators=30, max_depth=3, enable_categorical=True, tree_method="hist", random_state=0
    )
    regressor.fit(xm, mass["body_mass_g"])
    regressor.get_booster().save_model(folder / "xgboost.ubj")
    built["xgb-ubj"] = Built(
        "xgb-ubj",
        folder / "xgboost.ubj",
        mass_csv,
        ["--target", "body_mass_g"],
        lambda frame, m=regressor: value_answers(
            m.predict(as_categories(frame.drop(columns=["body_mass_g"]), ["island", "sex", "species"]))
        ),
        "xgboost",
        "xgboost",
    )

    # An MLflow sklearn model directory with a signature (MLflow 3 saves it with skops)
    import mlflow.sklearn
    from mlflow.models import infer_signature

    inputs = known_sex[NUMERIC + CATEGORIES]
    mlflow.sklearn.save_model(
        pipe,
        folder / "mlflow-model",
        signature=infer_signature(inputs, pipe.predict(inputs)),
        skops_trusted_types=["numpy.dtype"],
    )
    built["mlflow"] = Built(
        "mlflow", folder / "mlflow-model", kept, ["--trust", "numpy.dtype"], own, "scikit-learn", "mlflow"
    )

    # ONNX: the same kind of pipeline converted with skl2onnx, one input per column
    from skl2onnx import to_onnx

    typed = known_sex[NUMERIC + CATEGORIES].copy()
    typed[NUMERIC] = typed[NUMERIC].astype(np.float32)
    onnx_pipe = sklearn_pipeline(known_sex.assign(**{c: typed[c] for c in NUMERIC}))
    (folder / "pipeline.onnx").write_bytes(to_onnx(onnx_pipe, typed[:1], options={"zipmap": False}).SerializeToString())

    def onnx_own(frame, path=folder / "pipeline.onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {
            c: frame[[c]].to_numpy().astype(np.float32)
            if c in NUMERIC
            else frame[[c]].to_numpy().astype(str).astype(object)
            for c in NUMERIC + CATEGORIES
        }
        labels, probabilities = session.run(None, feeds)
        return proba_answers(list(onnx_pipe.classes_), probabilities, list(labels))

    built["onnx"] = Built("onnx", folder / "pipeline.onnx", kept, ["--target", "species"], onnx_own, "onnx", "onnx")
    return built


def assert_same(answers: list[dict[str, Any]], own: dict[str, Any]) -> None:
    """Every answer equal to the model's own: labels exactly, probabilities and values to 1e-9."""
    if "values" in own:
        got = np.array([a["prediction"] for a in answers], dtype=float)
        assert got.shape == own["values"].shape and np.abs(got - own["values"]).max() <= 1e-9
        assert all(a["probabilities"] is None for a in answers)
        return
    assert [a["prediction"] for a in answers] == own["labels"]
    names = [str(c).lower() if isinstance(c, bool) else str(c) for c in own["classes"]]
    got = np.array([[a["probabilities"][n] for n in names] for a in answers], dtype=float)
    assert got.shape == own["probabilities"].shape and np.abs(got - own["probabilities"]).max() <= 1e-9
