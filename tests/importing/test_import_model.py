"""import_model.py in process: every family the issue lists, built with its own library from real data,
imported with the CLI and answering exactly as the model itself; the card says where it came from; every
bad input is one line and exit code 2 with the store unchanged; score.py's local engine on an imported model."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import bentoml
import joblib
import numpy as np
import pandas as pd
import pytest

import import_model
from tabserve.core import store
from tabserve.core.card import ModelCard
from tabserve.explaining.explainers import NotExplainable
from tests.importing.models import assert_same

CASES = ["pipe-skops", "pipe-joblib", "forest", "lgb-booster", "lgb-sklearn", "xgb-json", "xgb-ubj", "mlflow", "onnx"]


def records_of(card: ModelCard, sample: Path) -> list[dict]:
    """The sample's rows as the API's typed records (what /predict validates a JSON body into)."""
    text = pd.read_csv(sample, dtype=str, keep_default_na=False)
    return [card.schema.parse_row(row, card.training_data["decimal"]) for row in text.to_dict("records")]


@pytest.mark.parametrize("case", CASES)
def test_an_imported_model_answers_every_sample_row_as_the_model_itself(case, built_models, imported_models):
    built = built_models[case]
    stored = bentoml.models.get(imported_models[case])
    card = ModelCard.from_model(stored)
    runtime = store.load_runtime(stored)
    assert_same(runtime.predict_records(records_of(card, built.sample)), built.own(built.frame()))


def test_an_imported_forest_is_explained_exactly_on_every_sample_row(built_models, imported_models):
    """A scikit-learn RandomForestRegressor (skops) on the diabetes table: TreeSHAP on its trees, the explained
    value the model's own prediction, the card's summary measured on the sample. A Pipeline says why not."""
    built = built_models["forest"]
    stored = bentoml.models.get(imported_models["forest"])
    card = ModelCard.from_model(stored)
    runtime = store.load_runtime(stored)
    records = records_of(card, built.sample)
    explained = runtime.explain_records(records, [None] * len(records))
    own = [a["prediction"] for a in runtime.predict_records(records)]
    assert [e["value"] for e in explained] == pytest.approx(own, rel=1e-9)
    assert max(abs(e["base"] + sum(e["contributions"].values()) - e["value"]) for e in explained) <= 1e-6
    assert {e["method"] for e in explained} == {"tree_shap"} and card.explanation["method"] == "tree_shap"
    pipeline = store.load_runtime(bentoml.models.get(imported_models["pipe-skops"]))
    with pytest.raises(NotExplainable, match=r"\(scikit-learn\): a Pipeline is not a tree ensemble"):
        pipeline.explain_records(records_of(card, built.sample)[:1], [None])


@pytest.mark.parametrize("case", CASES)
def test_the_card_records_where_the_model_came_from(case, built_models, imported_models):
    built = built_models[case]
    card = ModelCard.from_model(bentoml.models.get(imported_models[case]))
    source = card.source
    assert source["format"] == built.fmt and source["family"] == built.family
    assert source["original_file"] == built.model.name
    stored = Path(bentoml.models.get(imported_models[case]).path_of(source["file"]))
    assert source["sha256"] == store.checksum(stored)
    if built.model.is_file():
        assert (
            source["sha256"] == hashlib.sha256(built.model.read_bytes()).hexdigest()
        )  # the user's own file, byte for byte
    assert source["library_version"] == card.library_versions[source["library"]]
    assert card.training_data["sha256"] == hashlib.sha256(built.sample.read_bytes()).hexdigest()
    assert card.reference is not None and card.reference.prediction_rows == card.training_data["rows"]


def test_task_and_labels_come_from_the_model(imported_models):
    cards = {case: ModelCard.from_model(bentoml.models.get(tag)) for case, tag in imported_models.items()}
    assert cards["lgb-booster"].classes == [0, 1, 2]  # a booster knows class indices only
    assert cards["lgb-sklearn"].classes == ["Adelie", "Chinstrap", "Gentoo"]  # its wrapper knows the labels
    assert cards["xgb-json"].classes == [0, 1] and cards["xgb-json"].task == "classification"
    assert cards["xgb-ubj"].task == cards["forest"].task == "regression" and cards["forest"].classes is None
    assert cards["onnx"].classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert set(cards["pipe-skops"].metrics) == {"accuracy", "f1_macro"} and set(cards["forest"].metrics) == {
        "rmse",
        "r2",
    }
    assert not cards["lgb-booster"].metrics  # no --target: no metrics


def test_the_schema_follows_the_sample_and_the_model(imported_models):
    card = ModelCard.from_model(bentoml.models.get(imported_models["lgb-booster"]))
    assert card.schema["island"].categories == ["Biscoe", "Dream", "Torgersen"]  # the model's own categories
    assert card.schema["sex"].nullable and card.schema["bill_length_mm"].kind == "numeric"
    assert "species" in card.schema.other_columns  # in the sample, not used by the model: passed through
    onnx = ModelCard.from_model(bentoml.models.get(imported_models["onnx"]))
    assert onnx.schema.names == [
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]


def test_the_summary_says_what_was_read_and_saved(built_models, capsys):
    built = built_models["lgb-sklearn"]
    assert (
        import_model.main([*built.command()[:4], "--name", "summary-check", "--trust-pickle", "--target", "species"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("model     pickle (trusted with --trust-pickle) lightgbm.pkl (lightgbm 4.7.0), sha256 ")
    assert "classification (from the model: a lightgbm classifier with 3 classes (Adelie, Chinstrap, Gentoo))" in out
    assert "island" in out and "the model's own 3 categories" in out
    assert "accuracy" in out and "saved model summary-check:" in out


# --- Bad input: one line, exit code 2, the store unchanged -----------------------------------------


def store_listing() -> list[str]:
    return sorted(str(m.tag) for m in bentoml.models.list())


def refused(capsys, *args: str) -> str:
    before = store_listing()
    try:
        code = import_model.main(list(args))
    except SystemExit as exit_:  # argparse's usage errors, in one line too
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert store_listing() == before
    return err


def test_a_pickle_without_trust_is_refused_saying_why_and_suggesting_skops(built_models, capsys):
    built = built_models["pipe-joblib"]
    err = refused(capsys, "--model", str(built.model), "--sample", str(built.sample), "--name", "nope")
    assert "runs code from the file" in err and "--trust-pickle" in err and "skops" in err


def test_a_skops_file_with_untrusted_types_lists_them(built_models, capsys):
    built = built_models["pipe-skops"]
    err = refused(capsys, "--model", str(built.model), "--sample", str(built.sample), "--name", "nope")
    assert "numpy.dtype" in err and "--trust numpy.dtype" in err


def test_an_mlflow_pickle_flavour_needs_trust_too(built_models, tmp_path, capsys):
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    frame = pd.read_csv(built_models["forest"].sample)
    model = LinearRegression().fit(frame.drop(columns=["progression"]), frame["progression"])
    mlflow.sklearn.save_model(model, tmp_path / "pickled", serialization_format="cloudpickle")
    capsys.readouterr()  # MLflow's own warning about pickles
    err = refused(
        capsys, "--model", str(tmp_path / "pickled"), "--sample", str(built_models["forest"].sample), "--name", "nope"
    )
    assert "pickle" in err and "--trust-pickle" in err
    assert (
        import_model.main(
            [
                "--model",
                str(tmp_path / "pickled"),
                "--sample",
                str(built_models["forest"].sample),
                "--name",
                "mlflow-cloudpickle",
                "--trust-pickle",
            ]
        )
        == 0
    )
    runtime = store.load_runtime(bentoml.models.get("mlflow-cloudpickle:latest"))
    card = ModelCard.from_model(bentoml.models.get("mlflow-cloudpickle:latest"))
    got = [a["prediction"] for a in runtime.predict_records(records_of(card, built_models["forest"].sample))]
    assert np.abs(np.array(got) - model.predict(frame.drop(columns=["progression"]))).max() <= 1e-9


def test_unknown_unreadable_and_missing_files(built_models, tmp_path, capsys):
    sample = str(built_models["forest"].sample)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model\n")
    assert "not a model file this server reads" in refused(
        capsys, "--model", str(text), "--sample", sample, "--name", "nope"
    )
    assert "does not exist" in refused(
        capsys, "--model", str(tmp_path / "absent.skops"), "--sample", sample, "--name", "nope"
    )
    broken = tmp_path / "broken.txt"
    broken.write_text(built_models["lgb-booster"].model.read_text()[:3000])
    assert "not a complete LightGBM model file" in refused(
        capsys, "--model", str(broken), "--sample", sample, "--name", "nope"
    )
    garbled = tmp_path / "garbled.txt"
    garbled.write_text(built_models["lgb-booster"].model.read_text().replace("num_leaves=", "num_leaves=x", 1))
    assert "could not be read as a lightgbm model" in refused(
        capsys, "--model", str(garbled), "--sample", sample, "--name", "nope"
    )
    assert "is a directory without an MLmodel file" in refused(
        capsys, "--model", str(tmp_path), "--sample", sample, "--name", "nope"
    )


def test_a_sample_missing_model_columns_names_them(built_models, tmp_path, capsys):
    built = built_models["lgb-booster"]
    sample = tmp_path / "short.csv"
    pd.read_csv(built.sample).drop(columns=["bill_depth_mm", "year"]).to_csv(sample, index=False)
    err = refused(capsys, "--model", str(built.model), "--sample", str(sample), "--name", "nope")
    assert "the sample lacks columns the model needs: bill_depth_mm, year" in err


def test_a_column_of_the_wrong_type_is_named(built_models, tmp_path, capsys):
    built = built_models["onnx"]
    sample = tmp_path / "text_numbers.csv"
    frame = pd.read_csv(built.sample)
    frame["body_mass_g"] = frame["body_mass_g"].map(lambda v: f"about {v:.0f}")
    frame.to_csv(sample, index=False)
    err = refused(capsys, "--model", str(built.model), "--sample", str(sample), "--name", "nope")
    assert "body_mass_g (the model takes numbers; the sample has text like 'about " in err


def test_a_category_the_model_does_not_know_is_named(built_models, tmp_path, capsys):
    built = built_models["lgb-booster"]
    sample = tmp_path / "new_island.csv"
    frame = pd.read_csv(built.sample)
    frame.loc[3, "island"] = "Atlantis"
    frame.to_csv(sample, index=False)
    err = refused(capsys, "--model", str(built.model), "--sample", str(sample), "--name", "nope")
    assert "island (categories the model does not know: Atlantis" in err


class WrongCount:
    """A 'model' that answers one prediction too few (a class at module level, so it pickles)."""

    feature_names_in_ = np.array(["bmi", "bp"], dtype=object)

    def predict(self, frame):
        return np.zeros(len(frame) - 1)


class Nan(WrongCount):
    def predict(self, frame):
        out = np.zeros(len(frame))
        out[7] = np.nan
        return out


class BadProbabilities(WrongCount):
    classes_ = np.array([0, 1])

    def predict(self, frame):
        return np.zeros(len(frame), dtype=int)

    def predict_proba(self, frame):
        out = np.tile([0.5, 0.5], (len(frame), 1))
        out[2] = [0.9, 0.3]
        return out


class Raises(WrongCount):
    def predict(self, frame):
        if (frame["bmi"] > 40).any():
            raise ValueError("bmi out of the fitted range")
        return np.zeros(len(frame))


@pytest.mark.parametrize(
    "model, message",
    [
        (
            Raises(),
            "the model raised on the sample: ValueError: bmi out of the fitted range "
            "(first failing row: 257 of the sample)",
        ),
        (WrongCount(), "the model answered 441 predictions for the sample's 442 rows"),
        (Nan(), "the model answered NaN for row 8 of the sample"),
        (BadProbabilities(), "the model's probabilities for row 3 of the sample sum to 1.2, not 1"),
    ],
)
def test_a_model_answering_wrong_is_refused(model, message, built_models, tmp_path, capsys):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    err = refused(
        capsys, "--model", str(path), "--sample", str(built_models["forest"].sample), "--name", "nope", "--trust-pickle"
    )
    assert message in err


def test_a_task_that_contradicts_the_model_is_refused(built_models, capsys):
    built = built_models["forest"]
    err = refused(capsys, *built.command(), "--task", "classification")
    assert "--task classification contradicts the model, which is a regression model" in err


def test_a_sample_of_fewer_than_10_rows_is_refused(built_models, tmp_path, capsys):
    sample = tmp_path / "tiny.csv"
    pd.read_csv(built_models["forest"].sample).head(9).to_csv(sample, index=False)
    err = refused(
        capsys,
        "--model",
        str(built_models["forest"].model),
        "--sample",
        str(sample),
        "--name",
        "nope",
        "--trust",
        "sklearn.tree._tree.Tree",
    )
    assert "the sample has 9 rows; at least 10" in err


@pytest.mark.parametrize("name", ["Has Space", "UPPER", "-lead", ""])
def test_an_invalid_model_name_is_refused(name, built_models, capsys):
    built = built_models["forest"]
    err = refused(capsys, "--model", str(built.model), "--sample", str(built.sample), f"--name={name}")
    assert "is invalid" in err


def test_missing_options_are_one_line(capsys):
    err = refused(capsys, "--sample", "x.csv")
    assert "--model" in err


def test_a_damaged_stored_file_is_refused_at_load(built_models, imported_models, tmp_path):
    """store.verify checks the imported file against the card's checksum, as for a trained pipeline."""
    from tabserve.core.errors import ModelCorrupted

    built = built_models["lgb-booster"]
    assert import_model.main([*built.command()[:4], "--name", "to-damage"]) == 0
    stored = bentoml.models.get("to-damage:latest")
    path = Path(stored.path_of(ModelCard.from_model(stored).source["file"]))
    path.write_text(path.read_text().replace("tree\n", "tree \n", 1))
    with pytest.raises(
        ModelCorrupted, match=r"\(lightgbm.txt does not match its checksum\); import it again with import_model.py"
    ):
        store.verify(stored)


# --- score.py's local engine on an imported model ----------------------------------------------


@pytest.mark.parametrize("case", ["lgb-booster", "onnx", "xgb-ubj"])
def test_score_py_local_engine_answers_as_the_model(case, built_models, imported_models, tmp_path):
    import score

    built = built_models[case]
    out = tmp_path / "scored.csv"
    assert (
        score.main(
            ["--data", str(built.sample), "--out", str(out), "--model", imported_models[case], "--engine", "local"]
        )
        == 0
    )
    scored = pd.read_csv(out)
    own = built.own(built.frame())
    if "values" in own:
        assert np.abs(scored["prediction"].to_numpy(dtype=float) - own["values"]).max() <= 1e-9
    else:
        assert scored["prediction"].tolist() == own["labels"]
        got = scored[[f"proba_{c}" for c in own["classes"]]].to_numpy(dtype=float)
        assert np.abs(got - own["probabilities"]).max() <= 1e-9


def test_an_onnx_runtime_travels_to_spark_workers_by_pickle(imported_models):
    runtime = store.load_runtime(bentoml.models.get(imported_models["onnx"]))
    copy = pickle.loads(pickle.dumps(runtime))
    card = ModelCard.from_model(bentoml.models.get(imported_models["onnx"]))
    record = card.schema.example()
    assert copy.predict_records([record]) == runtime.predict_records([record])


def edited_copy(built, name: str, edit) -> bentoml.Model:
    """The booster imported as `name`, its stored card then edited as another install would have written it."""
    import yaml

    assert import_model.main([*built.command()[:4], "--name", name]) == 0
    stored = bentoml.models.get(f"{name}:latest")
    info = Path(stored.path) / "model.yaml"
    spec = yaml.safe_load(info.read_text())
    edit(spec["metadata"]["source"])
    info.write_text(yaml.safe_dump(spec))
    return bentoml.models.get(f"{name}:latest")


def test_a_version_imported_with_another_library_version_warns_once_naming_both(built_models, caplog):
    stored = edited_copy(
        built_models["lgb-booster"], "older-lightgbm", lambda source: source.update(library_version="4.0.0")
    )
    with caplog.at_level("WARNING", logger="tabserve"):
        store.load_runtime(stored)
        store.load_runtime(stored)
    warnings = [r.getMessage() for r in caplog.records if "imported with" in r.getMessage()]
    assert (
        len(warnings) == 1
        and "lightgbm 4.0.0" in warnings[0]
        and "lightgbm 4.7.0" in warnings[0]
        and str(stored.tag) in warnings[0]
    )


def test_a_version_whose_library_is_not_installed_is_refused_in_one_line(built_models):
    from tabserve.core.errors import ModelCorrupted

    stored = edited_copy(
        built_models["lgb-booster"], "needs-more", lambda source: source.update(requirements=["nosuchlib==1.0"])
    )
    with pytest.raises(
        ModelCorrupted, match=r"needs nosuchlib==1.0, which is not installed here: pip install nosuchlib==1.0"
    ):
        store.verify(stored)


def test_classes_name_a_boosters_class_indices(built_models, capsys):
    built = built_models["lgb-booster"]
    names = ["Adelie", "Chinstrap", "Gentoo"]  # the order LGBMClassifier encoded them in (sorted)
    assert (
        import_model.main(
            [*built.command()[:4], "--name", "named-booster", "--classes", ",".join(names), "--target", "species"]
        )
        == 0
    )
    stored = bentoml.models.get("named-booster:latest")
    card = ModelCard.from_model(stored)
    assert card.classes == names and card.metrics["accuracy"] > 0.9  # the sample's text labels now meet the model's
    answers = store.load_runtime(stored).predict_records(records_of(card, built.sample))
    own = built.own(built.frame())
    assert [a["prediction"] for a in answers] == [names[i] for i in own["labels"]]
    got = np.array([[a["probabilities"][n] for n in names] for a in answers])
    assert np.abs(got - own["probabilities"]).max() <= 1e-9
    capsys.readouterr()
    assert "3 classes (0 to 2)" in refused(capsys, *built.command()[:4], "--name", "nope", "--classes", "a,b")
    assert "has labels of its own (Adelie, Chinstrap, Gentoo)" in refused(
        capsys, *built_models["lgb-sklearn"].command()[:4], "--name", "nope", "--trust-pickle", "--classes", "a,b,c"
    )


def test_a_classifier_without_predict_proba_answers_labels_only(built_models, tmp_path, capsys):
    """Any estimator with predict: a LinearSVC has no predict_proba, so its answers, CSV and /v2 carry labels only."""
    import joblib
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from tabserve.serving.api import oip

    sample = built_models["pipe-skops"].sample
    frame = pd.read_csv(sample)
    columns = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    model = make_pipeline(StandardScaler(), LinearSVC()).fit(frame[columns], frame["species"])
    joblib.dump(model, tmp_path / "svc.joblib")
    assert (
        import_model.main(
            ["--model", str(tmp_path / "svc.joblib"), "--sample", str(sample), "--name", "svc", "--trust-pickle"]
        )
        == 0
    )
    assert "labels only" in capsys.readouterr().out
    stored = bentoml.models.get("svc:latest")
    card = ModelCard.from_model(stored)
    assert card.task == "classification" and not card.has_probabilities and oip.output_names(card) == ["predict"]
    answers = store.load_runtime(stored).predict_records(records_of(card, sample))
    assert [a["prediction"] for a in answers] == model.predict(frame[columns]).tolist()
    assert all(a["probabilities"] is None for a in answers)
    import score

    assert (
        score.main(
            [
                "--data",
                str(sample),
                "--out",
                str(tmp_path / "scored.csv"),
                "--model",
                str(stored.tag),
                "--engine",
                "local",
            ]
        )
        == 0
    )
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert scored["prediction"].tolist() == model.predict(frame[columns]).tolist()
    assert not [c for c in scored.columns if c.startswith("proba_")]


def test_yes_no_columns_reach_the_model_as_the_text_it_was_fitted_on(tmp_path, capsys):
    """Palmer Penguins' raw export has a Yes/No column. train.py reads it as a boolean; a notebook's pandas reads
    text, so the model was fitted on "Yes"/"No" and must get them back (as booleans its encoder would ignore them)."""
    from palmerpenguins import load_penguins_raw
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    sample = tmp_path / "penguins_raw.csv"
    load_penguins_raw().to_csv(sample, index=False)
    frame = pd.read_csv(sample)
    columns = ["Island", "Clutch Completion", "Culmen Length (mm)", "Culmen Depth (mm)", "Flipper Length (mm)"]
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["Island", "Clutch Completion"]), remainder=SimpleImputer()
        ),
        LogisticRegression(max_iter=5000),
    )
    model.fit(frame[columns], frame["Species"])
    joblib.dump(model, tmp_path / "raw.joblib")
    assert (
        import_model.main(
            [
                "--model",
                str(tmp_path / "raw.joblib"),
                "--sample",
                str(sample),
                "--name",
                "raw-penguins",
                "--target",
                "Species",
                "--trust-pickle",
            ]
        )
        == 0
    )
    assert "Clutch Completion: no/yes kept as text categories" in capsys.readouterr().out
    stored = bentoml.models.get("raw-penguins:latest")
    card = ModelCard.from_model(stored)
    assert card.schema["Clutch Completion"].categories == ["No", "Yes"]
    assert (
        "Comments" in card.schema.other_columns and "Date Egg" in card.schema.other_columns
    )  # not the model's: passed through
    answers = store.load_runtime(stored).predict_records(records_of(card, sample))
    assert [a["prediction"] for a in answers] == model.predict(frame[columns]).tolist()
    got = np.array([[a["probabilities"][c] for c in model.classes_] for a in answers])
    assert np.abs(got - model.predict_proba(frame[columns])).max() <= 1e-9


def test_a_sample_in_cp1252_or_in_a_workbook_is_read_as_train_py_reads_it(tmp_path, capsys):
    """A model fitted on the Paris Métro stations, imported with the French Excel CSV it came from
    (Windows-1252, `;`, decimal commas) and with the same rows in an .xlsx: the summary says how each was read,
    the card keeps it, and the accented categories are the model's."""
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from tests.spreadsheets import METRO_FR, metro, workbook

    frame = metro()
    labelled = frame[frame["passengers"].notna()]
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["location"]), remainder=SimpleImputer(), sparse_threshold=0
        ),
        LinearRegression(),
    ).fit(labelled[["location", "latitude", "longitude"]], labelled["passengers"].astype(float))
    joblib.dump(model, tmp_path / "metro.joblib")
    sheets = workbook(tmp_path / "metro.xlsx", notes=pd.DataFrame({"note": ["gt"]}), stations=frame)
    for sample, extra, lines in (
        (
            METRO_FR,
            (),
            [
                "sample    read with separator ';' and decimal mark ','",
                "encoding  cp1252 (detected; --encoding to override)",
            ],
        ),
        (sheets, ("--sheet", "stations"), ["sample    read sheet 'stations' of metro.xlsx"]),
    ):
        args = ["--model", str(tmp_path / "metro.joblib"), "--sample", str(sample), "--name", "metro-import"]
        assert import_model.main([*args, "--target", "passengers", "--trust-pickle", *extra]) == 0
        out = capsys.readouterr().out.splitlines()
        assert all(line in out for line in lines), out
        card = ModelCard.from_model(bentoml.models.get("metro-import:latest"))
        assert {"Saint-Mandé, Vincennes", "Le Kremlin-Bicêtre"} <= set(card.schema["location"].categories)
        assert card.training_data["encoding"] == ("xlsx" if extra else "cp1252")
        assert card.training_data.get("sheet") == ("stations" if extra else None)
