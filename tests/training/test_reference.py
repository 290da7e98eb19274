"""The drift reference train.py keeps in the model card, and cards from before it."""

import dataclasses
import json

import bentoml
import pandas as pd
import pytest

from tabserve.core import profile, store
from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.core.profile import Thresholds
from tabserve.training import trainer as training
from tests.conftest import DATA, HGB_ONLY


def test_the_card_carries_the_reference_after_training(penguins_model):
    meta = penguins_model.info.metadata
    card = ModelCard.from_model(penguins_model)
    reference = card.reference
    assert reference is not None and meta["reference"]["version"] == profile.VERSION
    assert list(reference.features) == card.schema.names and reference.not_profiled == {}
    assert reference.rows == 344 and reference.prediction_rows == meta["training_data"]["scored_rows"]
    assert reference.prediction.binning.categories == tuple(card.classes)
    assert reference.features["island"].binning.categories == tuple(card.schema["island"].categories)
    assert card.to_dict()["drift_reference"]["features"] == card.schema.names
    # The training file itself, counted into the reference's bins, is the reference.
    frame = pd.read_csv(PENGUINS_CSV)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    counts = reference.count(records)
    report = profile.compare(reference, counts, Thresholds(min_records=100), card.schema)
    assert report["status"] == "ok" and max(f["psi"] for f in report["features"]) < 1e-6


def test_dates_and_regression_predictions(tmp_path):
    result = training.train(DATA / "european.csv", "umsatz", name="sales-drift", choices=HGB_ONLY)
    reference = ModelCard.from_model(result.model).reference
    assert set(reference.not_profiled) == {"datum"} and "dates move by nature" in reference.not_profiled["datum"]
    assert "datum" not in reference.features and {"region", "preis", "menge"} <= set(reference.features)
    prediction = reference.prediction
    assert (
        prediction.binning.kind == "numeric" and not prediction.binning.missing and len(prediction.binning.edges) <= 9
    )
    assert reference.prediction_rows == result.labelled_rows and sum(prediction.shares) == pytest.approx(1, abs=1e-5)


def test_an_old_card_without_a_reference_loads_and_serves(penguins_model):
    meta = {key: value for key, value in penguins_model.info.metadata.items() if key != "reference"}
    old = ModelCard.from_metadata(meta, tag="penguins:old")
    assert old.reference is None and "reference" not in old.to_metadata()
    assert old.to_dict()["drift_reference"] is None
    # Saved like a model from before references were kept, it is stored, verified and loaded as any other.
    pipeline = store.load_pipeline(bentoml.models.get(penguins_model.tag))
    saved = store.save("penguins-old-card", pipeline, labels={"task": "classification"}, card=old)
    assert "reference" not in saved.info.metadata
    model, card = store.served_model(str(saved.tag))
    assert card.reference is None and card.schema == old.schema


def test_the_reference_survives_the_store(penguins_model):
    card = ModelCard.from_model(penguins_model)
    again = ModelCard.from_metadata(json.loads(json.dumps(card.to_metadata())))
    assert again.reference == card.reference
    assert dataclasses.replace(card, reference=None).to_metadata().keys() == card.to_metadata().keys() - {"reference"}
