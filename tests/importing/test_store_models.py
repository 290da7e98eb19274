"""Models already in the BentoML store, saved the way BentoML's documentation teaches (bentoml.sklearn,
bentoml.lightgbm, bentoml.xgboost, bentoml.onnx, bentoml.mlflow, bentoml.picklable_model), imported where
they are with `import_model.py --model bentoml:NAME`: a new version beside the untouched original, answering
every sample row as the model itself; a card-less store model refused with the one line that fixes it."""

from __future__ import annotations

import warnings

import bentoml
import joblib
import pytest

import import_model
from tabserve.core import store
from tabserve.core.card import ModelCard
from tabserve.core.errors import ModelCorrupted
from tests.importing.models import assert_same
from tests.importing.test_import_model import records_of, refused

FRAMEWORKS = ["sklearn", "lightgbm", "xgboost", "onnx", "mlflow", "picklable_model"]


@pytest.fixture(scope="module")
def saved(built_models):
    """{framework: (the original's tag, the built model whose own answers it must give, extra import args)}."""
    import lightgbm
    import onnx
    import xgboost

    warnings.filterwarnings("ignore")
    pipe = joblib.load(built_models["pipe-joblib"].model)
    booster = xgboost.Booster()
    booster.load_model(built_models["xgb-json"].model)
    return {
        "sklearn": (bentoml.sklearn.save_model("store-sklearn", pipe).tag, built_models["pipe-joblib"], []),
        "lightgbm": (
            bentoml.lightgbm.save_model(
                "store-lgb", lightgbm.Booster(model_file=str(built_models["lgb-booster"].model))
            ).tag,
            built_models["lgb-booster"],
            [],
        ),
        "xgboost": (bentoml.xgboost.save_model("store-xgb", booster).tag, built_models["xgb-json"], []),
        "onnx": (
            bentoml.onnx.save_model("store-onnx", onnx.load(str(built_models["onnx"].model))).tag,
            built_models["onnx"],
            [],
        ),
        "mlflow": (
            bentoml.mlflow.import_model("store-mlflow", model_uri=str(built_models["mlflow"].model)).tag,
            built_models["mlflow"],
            ["--trust", "numpy.dtype"],
        ),
        "picklable_model": (
            bentoml.picklable_model.save_model("store-pickle", pipe).tag,
            built_models["pipe-joblib"],
            ["--trust-pickle"],
        ),
    }


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_store_model_imported_where_it_is_answers_as_itself(framework, saved):
    original, built, args = saved[framework]
    assert import_model.main(["--model", f"bentoml:{original}", "--sample", str(built.sample), *args]) == 0
    versions = {str(m.tag) for m in bentoml.models.list(original.name)}
    imported = bentoml.models.get(f"{original.name}:latest")
    assert str(imported.tag) != str(original) and {str(original), str(imported.tag)} <= versions  # beside, untouched
    assert "feature_schema" not in bentoml.models.get(original).info.metadata
    card = ModelCard.from_model(imported)
    assert card.source["bentoml_model"] == str(original) and card.source["original_file"] == f"bentoml:{original}"
    assert_same(store.load_runtime(imported).predict_records(records_of(card, built.sample)), built.own(built.frame()))


def test_a_store_model_without_a_card_is_refused_with_the_line_that_fixes_it(saved):
    original = saved["sklearn"][0]
    with pytest.raises(ModelCorrupted) as refusal:
        store.verify(bentoml.models.get(original))
    assert str(refusal.value) == (
        f"model {original} has no feature schema yet; import it with: "
        f".venv/bin/python import_model.py --model bentoml:{original} --sample your.csv"
    )


def test_store_refusals(saved, built_models, capsys):
    sample = str(built_models["pipe-joblib"].sample)
    assert "bentoml.picklable_model, a cloudpickle" in refused(
        capsys, "--model", f"bentoml:{saved['picklable_model'][0]}", "--sample", sample
    )
    assert "is not in the BentoML model store (it has: " in refused(
        capsys, "--model", "bentoml:no-such-model", "--sample", sample
    )
    assert "--name is required" in refused(
        capsys, "--model", str(built_models["pipe-joblib"].model), "--sample", sample, "--trust-pickle"
    )
