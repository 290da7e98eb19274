"""score.py --explain K on the local engine, in-process: columns reason_1 … reason_K after the prediction
columns, each row's K largest contributions from the runtime's own explain_records, spelt as /predict_csv?explain=K
spells them (tabserve/core/rows.py reasons), in CSV and Parquet outputs; bad rows rejected as without --explain;
a bad K, or a model without explanations, one line and exit code 2 with nothing written. Spark's reason columns
against the local engine's: test_score_spark.py."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import score
from tabserve.core import rows, store
from tabserve.core.data import PENGUINS_CSV
from tabserve.explaining.explainers import NotExplainable
from tabserve.scoring import batch
from tests.conftest import HGB_ONLY

BAD_ROW = 7  # island "Mars": rejected, never explained
REASON = re.compile(r"^(?P<feature>[^=]+)=(?P<value>.*) \((?P<sign>[+-])(?P<number>[0-9.,e+-]+)\)$")


@pytest.fixture(scope="module")
def tag(penguins_model) -> str:
    return str(penguins_model.tag)


@pytest.fixture(scope="module")
def runtime(penguins_model):
    return store.load_runtime(penguins_model)


@pytest.fixture(scope="module")
def penguins_text(tmp_path_factory) -> pd.DataFrame:
    """data/penguins.csv as text (its NA cells kept), a `row` id first, one bad row planted."""
    frame = pd.read_csv(PENGUINS_CSV, dtype=str, keep_default_na=False)
    frame.insert(0, "row", [str(i) for i in range(len(frame))])
    frame.loc[BAD_ROW, "island"] = "Mars"
    return frame


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory, penguins_text) -> Path:
    path = tmp_path_factory.mktemp("explain") / "penguins.csv"
    penguins_text.to_csv(path, index=False)
    return path


def _main(capsys, *args: str) -> tuple[int, str, str]:
    code = score.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _local(capsys, data: Path, out: Path, tag: str, *more: str) -> None:
    code, stdout, stderr = _main(
        capsys, "--data", str(data), "--out", str(out), "--model", tag, "--engine", "local", *more
    )
    assert code == 0, stderr[-2000:]


def _read_csv(path: Path, sep: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")), delimiter=sep))


def _explained(tag: str, runtime, text_rows: list[dict[str, str]], decimal: str = "."):
    """The good rows' validated records and their explanations of the predicted class, from the runtime itself."""
    card = store.served_model(tag)[1]
    record_type = card.schema.record_model("Record")
    records = [
        rows.validate(record_type, card.schema, {n: r[n].strip() for n in card.schema.names}, decimal)
        for r in text_rows
    ]
    predictions = runtime.predict_records(records)
    targets = [p["prediction"] for p in predictions] if runtime.classes is not None else [None] * len(records)
    return card, records, runtime.explain_records(records, targets)


def _assert_reasons_are_the_top_k(scored: list[dict[str, str]], records, explanations, k: int, decimal: str) -> None:
    """Each row's reason cells: its K largest contributions by absolute value, largest first (ranked here from
    explain_records, not by rows.reasons), each contribution spelt to 3 significant digits; and exactly the text
    rows.reasons gives for that explanation and record."""
    assert len(scored) == len(records) == len(explanations)
    for row, record, explanation in zip(scored, records, explanations, strict=True):
        cells = [row[f"reason_{i}"] for i in range(1, k + 1)]
        ranked = sorted(explanation["contributions"].items(), key=lambda kv: abs(kv[1]), reverse=True)[:k]
        assert cells == rows.reasons(explanation, record, k, decimal), row.get("row", row.get("id"))
        for cell, (feature, contribution) in zip(cells, ranked, strict=True):
            parsed = REASON.match(cell)
            assert parsed and parsed["feature"] == feature, (cell, feature)
            number = parsed["number"].replace(",", ".") if decimal == "," else parsed["number"]
            shown = float(parsed["sign"] + number)
            assert shown == pytest.approx(contribution, rel=5e-3, abs=1e-12), cell
            if record[feature] is None:
                assert parsed["value"] == "(missing)"


# --- Local engine: the reasons are explain_records' top K, as /predict_csv spells them -----------------


def test_local_csv_reasons_are_each_rows_top_k_of_explain_records(
    capsys, tag, runtime, penguins_csv, penguins_text, tmp_path
):
    _local(capsys, penguins_csv, tmp_path / "out.csv", tag, "--explain", "3")
    scored = _read_csv(tmp_path / "out.csv")
    card = store.served_model(tag)[1]
    assert list(scored[0]) == [
        *penguins_text.columns,
        *rows.result_columns(card),
        "reason_1",
        "reason_2",
        "reason_3",
    ]
    good = [r for i, r in enumerate(penguins_text.to_dict("records")) if i != BAD_ROW]
    assert [r["row"] for r in scored] == [r["row"] for r in good]
    _, records, explanations = _explained(tag, runtime, good)
    _assert_reasons_are_the_top_k(scored, records, explanations, 3, ".")
    assert any("=(missing) (" in r["reason_1"] + r["reason_2"] + r["reason_3"] for r in scored)  # the NA rows


def test_the_bad_row_goes_to_the_rejects_without_reason_columns(capsys, tag, penguins_csv, penguins_text, tmp_path):
    _local(capsys, penguins_csv, tmp_path / "out.csv", tag, "--explain", "2")
    rejects = _read_csv(tmp_path / "out.rejects.csv")
    assert list(rejects[0]) == [*penguins_text.columns, "error"]
    assert [r["row"] for r in rejects] == [str(BAD_ROW)]
    assert rejects[0]["error"].startswith("island: Input should be 'Biscoe', 'Dream' or 'Torgersen'")


def test_parquet_output_has_the_same_reason_text_typed_as_strings(capsys, tag, penguins_csv, tmp_path):
    _local(capsys, penguins_csv, tmp_path / "out.csv", tag, "--explain", "7")
    _local(capsys, penguins_csv, tmp_path / "out.parquet", tag, "--explain", "7")
    table = pq.read_table(tmp_path / "out.parquet")
    reasons = rows.reason_columns(7)  # every feature: the whole ranking
    assert table.column_names[-7:] == reasons
    assert all(str(table.schema.field(name).type) == "string" for name in reasons)
    from_csv = pd.DataFrame(_read_csv(tmp_path / "out.csv"))
    assert table.select(reasons).to_pandas().values.tolist() == from_csv[reasons].values.tolist()
    assert from_csv["reason_7"].str.len().min() > 0


def test_a_decimal_comma_file_gets_reasons_in_its_decimal_mark(capsys, tag, runtime, penguins_text, tmp_path):
    """A `;` file with decimal commas (as a European spreadsheet saves it): the reasons' numbers in commas, as
    /predict_csv writes them for that file."""
    european = penguins_text.drop(index=BAD_ROW)
    for name in ("bill_length_mm", "bill_depth_mm"):
        european[name] = european[name].str.replace(".", ",", regex=False)
    european.to_csv(tmp_path / "eu.csv", index=False, sep=";")
    _local(capsys, tmp_path / "eu.csv", tmp_path / "out.csv", tag, "--explain", "4")
    scored = _read_csv(tmp_path / "out.csv", sep=";")
    _, records, explanations = _explained(tag, runtime, european.to_dict("records"), decimal=",")
    _assert_reasons_are_the_top_k(scored, records, explanations, 4, ",")
    cells = [r[f"reason_{i}"] for r in scored for i in range(1, 5)]
    assert not any("." in cell for cell in cells)
    assert any(re.search(r"bill_length_mm=\d+,\d", cell) for cell in cells)
    assert any(re.search(r"\(.\d+,\d", cell) for cell in cells)


def test_a_regression_explains_its_value(capsys, bentoml_home, regression_csv, tmp_path):
    from tabserve.training import trainer

    tag = str(trainer.train(regression_csv, "price", name="explain-prices", choices=HGB_ONLY).model.tag)
    runtime = store.load_runtime(store.served_model(tag)[0].stored)
    _local(capsys, regression_csv, tmp_path / "out.csv", tag, "--explain", "2")
    scored = _read_csv(tmp_path / "out.csv")
    assert list(scored[0])[-3:] == ["prediction", "reason_1", "reason_2"]
    text = pd.read_csv(regression_csv, dtype=str, keep_default_na=False).to_dict("records")
    _, records, explanations = _explained(tag, runtime, text)
    _assert_reasons_are_the_top_k(scored, records, explanations, 2, ".")
    assert {r["reason_1"].split("=")[0] for r in scored} <= {"a", "b", "colour"}


# --- Errors: one line naming --explain, exit code 2, nothing written --------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "error: --explain must be from 1 to 7 (the model's feature count), not 0"),
        ("-1", "error: --explain must be from 1 to 7 (the model's feature count), not -1"),
        ("8", "error: --explain must be from 1 to 7 (the model's feature count), not 8"),
        ("99", "error: --explain must be from 1 to 7 (the model's feature count), not 99"),
        ("abc", "error: --explain must be a whole number of reasons from 1 to 7, not 'abc'"),
        ("2.5", "error: --explain must be a whole number of reasons from 1 to 7, not '2.5'"),
    ],
)
def test_a_bad_k_is_one_line_exit_2_and_nothing_written(capsys, tag, penguins_csv, tmp_path, value, message):
    out = tmp_path / "out.csv"
    out.write_text("an earlier run's output\n")  # left as it was
    code, stdout, stderr = _main(
        capsys, "--data", str(penguins_csv), "--out", str(out), "--model", tag, "--engine", "local", "--explain", value
    )
    assert (code, stdout, stderr) == (2, "", message + "\n")
    assert out.read_text() == "an earlier run's output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@pytest.fixture(scope="module")
def unexplainable_tag(bentoml_home, tmp_path_factory) -> str:
    """A real model of a family without explanations: a scikit-learn k-nearest-neighbours pipeline, saved with
    joblib and imported as its users would (import_model.py --trust-pickle)."""
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import import_model

    folder = tmp_path_factory.mktemp("knn")
    frame = pd.read_csv(PENGUINS_CSV).dropna()
    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    columns = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]),
        ]
    )
    knn = Pipeline([("columns", columns), ("model", KNeighborsClassifier(5))]).fit(
        frame.drop(columns="species"), frame["species"]
    )
    joblib.dump(knn, folder / "knn.joblib")
    frame.to_csv(folder / "sample.csv", index=False)
    argv = ["--model", str(folder / "knn.joblib"), "--sample", str(folder / "sample.csv"), "--name", "explain-knn"]
    assert import_model.main([*argv, "--trust-pickle", "--target", "species"]) == 0
    return "explain-knn:latest"


def test_a_model_without_explanations_is_one_line_exit_2_and_nothing_written(
    capsys, unexplainable_tag, penguins_csv, tmp_path
):
    card = store.served_model(unexplainable_tag)[1]
    assert not card.explanation and card.imported
    capsys.readouterr()  # the import's own report
    code, stdout, stderr = _main(
        capsys,
        "--data",
        str(penguins_csv),
        "--out",
        str(tmp_path / "out.parquet"),
        "--model",
        unexplainable_tag,
        "--engine",
        "local",
        "--explain",
        "3",
    )
    assert (code, stdout) == (2, "")
    assert stderr == f"error: {NotExplainable(card.family).message}\n"
    assert stderr.startswith("error: explanations are not available for this model family (")
    assert list(tmp_path.iterdir()) == []
    # Without --explain the same model scores the file.
    _local(capsys, penguins_csv, tmp_path / "out.parquet", unexplainable_tag)
    assert not any(name.startswith("reason_") for name in pq.read_schema(tmp_path / "out.parquet").names)


def test_an_input_that_already_has_a_reason_column_is_refused(capsys, tag, penguins_text, tmp_path):
    penguins_text.head(5).assign(reason_2="x").to_csv(tmp_path / "p.csv", index=False)
    args = ("--data", str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.csv"), "--model", tag, "--engine", "local")
    code, _, stderr = _main(capsys, *args, "--explain", "2")
    assert code == 2
    assert stderr == "error: p.csv already has column(s) reason_2, which the output adds; rename them\n"
    _local(capsys, tmp_path / "p.csv", tmp_path / "o.csv", tag, "--explain", "1")  # reason_1 only: no clash
    header = list(_read_csv(tmp_path / "o.csv")[0])
    assert header[-1] == "reason_1" and header.index("reason_2") < header.index("prediction")  # passed through


def test_batch_score_takes_k_as_a_number(tag, penguins_csv, tmp_path):
    summary = batch.score(penguins_csv, tmp_path / "o.parquet", tag, engine="local", explain=1)
    assert (summary.scored, summary.rejected) == (len(pd.read_csv(PENGUINS_CSV)) - 1, 1)
    assert pq.read_schema(summary.out).names[-1] == "reason_1"
