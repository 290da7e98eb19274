"""score.py without Spark: its one-line errors (exit 2), and the local engine's output against what the
service's /predict_csv code writes for the same file, in-process (columns, cell spelling, separator and
decimal mark, the `error` of each bad row). Spark, and a real server: test_score_spark.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import score
from tabserve.core import pipeline, store
from tabserve.scoring import batch
from tabserve.scoring.frames import as_text, text_cell
from tabserve.serving.api import csv_upload as csv_scoring
from tests.conftest import DATA, HGB_ONLY
from tests.scoring.scoring_data import PENGUIN_BAD, penguins_frame, run_score


@pytest.fixture(scope="module")
def tag(penguins_model) -> str:
    return str(penguins_model.tag)


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "penguins.csv"
    penguins_frame().to_csv(path, index=False)
    return path


def _main(capsys, *args: str) -> tuple[int, str, str]:
    code = score.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- Errors: one line, exit code 2, never a traceback --------------------------------------------


def test_a_model_the_store_lacks_is_one_line_naming_what_it_has_and_how_to_train(tag, penguins_csv, tmp_path):
    run = run_score(
        "--data",
        str(penguins_csv),
        "--out",
        str(tmp_path / "o.parquet"),
        "--model",
        "nosuch:latest",
        "--engine",
        "local",
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: model 'nosuch:latest' is not in the BentoML model store (it has: ")
    assert "penguins" in run.stderr and "train.py --data your.csv --target COLUMN --name nosuch" in run.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_a_missing_file_is_one_line(tag, tmp_path):
    run = run_score("--data", str(tmp_path / "big.csv"), "--out", str(tmp_path / "o.parquet"), "--model", tag)
    assert (run.returncode, run.stderr) == (2, f"error: no such file: {tmp_path / 'big.csv'}\n")


@pytest.mark.parametrize(
    "name, content, out, message",
    [
        (
            "big.json",
            b"{}",
            "o.parquet",
            "error: big.json: unsupported file type '.json'; use .csv, .txt, .tsv, .xlsx or .parquet",
        ),
        (
            "big.csv",
            b"island,sex,year,bill_length_mm\nDream,male,2007,40\n",
            "o.parquet",
            "error: big.csv lacks feature column(s): bill_depth_mm, flipper_length_mm, body_mass_g",
        ),
        ("big.parquet", b"island,sex\n", "o.parquet", "error: {dir}/big.parquet is not a readable Parquet file: "),
        (
            "big.csv",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "o.parquet",
            "error: {dir}/big.csv is binary, not CSV text",
        ),
        ("big.csv", b"", "o.parquet", "error: {dir}/big.csv is empty"),
        ("ok.csv", None, "o.xlsx", "error: o.xlsx: unsupported output type '.xlsx'; use .parquet or .csv"),
        ("ok.csv", None, "no/such/dir/o.parquet", "error: no such directory for the output: {dir}/no/such/dir"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, tag, penguins_csv, tmp_path, name, content, out, message):
    data = tmp_path / name
    data.write_bytes(penguins_csv.read_bytes() if content is None else content)
    code, stdout, stderr = _main(capsys, "--data", str(data), "--out", str(tmp_path / out), "--model", tag)
    assert code == 2 and stdout == ""
    assert stderr.startswith(message.format(dir=tmp_path)) and stderr.count("\n") == 1


def test_an_input_that_already_has_an_output_column_is_refused(capsys, tag, tmp_path):
    frame = penguins_frame().head(5).assign(prediction="x")
    frame.to_csv(tmp_path / "p.csv", index=False)
    code, _, stderr = _main(
        capsys, "--data", str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.parquet"), "--model", tag
    )
    assert code == 2
    assert stderr == "error: p.csv already has column(s) prediction, which the output adds; rename them\n"


# --- The local engine writes what /predict_csv writes ----------------------------------------------


def _service_csv(content: bytes, tag: str) -> list[list[str]]:
    """What /predict_csv?on_error=skip answers for `content`, computed with the service's own code."""
    model = store.served_model(tag)
    card = model[1]
    scoring = csv_scoring.records_from_csv(
        content, card, card.schema.record_model("Record"), max_rows=10**6, skip_bad_rows=True
    )
    results = pipeline.predict_records(store.load_pipeline(model[0].stored), card.schema, scoring.records)
    text = csv_scoring.csv_with_predictions(scoring, results, card)
    return list(csv.reader(io.StringIO(text), delimiter=scoring.upload.table.sep))


def _read(path: Path, sep: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text()), delimiter=sep))


@pytest.fixture(scope="module")
def sales_tag(bentoml_home) -> str:
    from tabserve.training import trainer

    return str(trainer.train(DATA / "european.csv", "umsatz", name="scoring-sales", choices=HGB_ONLY).model.tag)


@pytest.fixture(scope="module")
def loans_tag(bentoml_home) -> str:
    from tabserve.training import trainer

    return str(trainer.train(DATA / "loans.csv", "interest_rate", name="scoring-loans", choices=HGB_ONLY).model.tag)


@pytest.mark.parametrize("case", ["penguins", "european", "loans"])
def test_local_csv_output_and_rejects_are_predict_csvs_rows(capsys, request, tmp_path, case):
    """The scored rows are /predict_csv's good rows cell for cell (its header without `error`); the
    rejects are its bad rows' input cells and `error`. european.csv: `;` and decimal commas kept; loans.csv:
    amounts as a loan book writes them ("$7,000.00", "36 months")."""
    if case == "loans":
        tag, sep = request.getfixturevalue("loans_tag"), ","
        content = (DATA / "loans.csv").read_bytes().replace(b'"$7,000.00"', b'"EUR 7,000.00"', 1)
    elif case == "penguins":
        tag, sep = request.getfixturevalue("tag"), ","
        content = penguins_frame().drop(columns=["row", "note"]).to_csv(index=False).encode()
    else:
        tag, sep = request.getfixturevalue("sales_tag"), ";"
        lines = (DATA / "european.csv").read_text(encoding="utf-8").splitlines()
        lines[3] = "31.02.2024;Ost;1,5;2;3"  # not a date
        content = ("\n".join(lines) + "\n").encode()
    (tmp_path / "in.csv").write_bytes(content)
    code, stdout, _ = _main(
        capsys,
        "--data",
        str(tmp_path / "in.csv"),
        "--out",
        str(tmp_path / "out.csv"),
        "--model",
        tag,
        "--engine",
        "local",
    )
    assert code == 0, stdout
    served = _service_csv(content, tag)
    header, body = served[0], served[1:]
    assert header[-1] == "error"
    columns = _read(tmp_path / "in.csv", sep)[0]
    good = [r[:-1] for r in body if not r[-1]]
    bad = [[*r[: len(columns)], r[-1]] for r in body if r[-1]]  # the input's cells and the error
    assert _read(tmp_path / "out.csv", sep) == [header[:-1], *good]
    assert _read(tmp_path / "out.rejects.csv", sep) == [[*columns, "error"], *bad] and len(bad) >= 1
    if case == "european":
        assert any("," in cell for cell in good[0][-1:])  # the prediction in a decimal comma
        assert bad[0][-1].startswith("datum: ")
    if case == "loans":
        assert len(good) == 499 and good[0][columns.index("loan_amount")] == "$17,600.00"  # as written
        assert bad[0][-1].startswith("loan_amount: ") and "'$" in bad[0][-1]


def test_chunks_keep_input_order_and_answers(tag, penguins_csv, tmp_path):
    one = batch.score(penguins_csv, tmp_path / "one.parquet", tag, engine="local")
    many = batch.score(penguins_csv, tmp_path / "many.parquet", tag, engine="local", chunk_rows=97)
    assert (one.read, one.scored, one.rejected) == (3096, 3093, 3)
    a, b = pq.read_table(one.out).to_pandas(), pq.read_table(many.out).to_pandas()
    pd.testing.assert_frame_equal(a, b)
    assert a["row"].tolist() == [str(p) for p in range(3096) if p not in PENGUIN_BAD]
    assert pq.read_schema(many.out).metadata == {b"tabserve.model": tag.encode()}
    assert pd.read_csv(many.rejects, dtype=str)["row"].tolist() == [str(p) for p in PENGUIN_BAD]


def test_when_every_row_is_bad_the_output_is_empty_and_the_rejects_hold_all(tag, tmp_path):
    frame = penguins_frame().head(20).assign(island="Mars")
    frame.to_csv(tmp_path / "bad.csv", index=False)
    summary = batch.score(tmp_path / "bad.csv", tmp_path / "o.parquet", tag, engine="local")
    assert (summary.scored, summary.rejected) == (0, 20)
    assert pq.read_table(summary.out).num_rows == 0
    assert len(pd.read_csv(summary.rejects)) == 20


def test_typed_cells_read_as_the_text_the_service_parses():
    assert [text_cell(v) for v in (None, float("nan"), pd.NA, pd.NaT, np.float64("nan"))] == [""] * 5
    assert [text_cell(v) for v in (True, np.bool_(False), np.int64(7), 39.1, np.float32(0.5), " Dream ")] == [
        "true",
        "false",
        "7",
        "39.1",
        "0.5",
        "Dream",
    ]
    assert text_cell(dt.date(2024, 1, 31)) == "2024-01-31"
    assert text_cell(pd.Timestamp("2024-01-31 10:00")) == "2024-01-31 10:00:00"
    assert text_cell(pd.Timestamp("2024-01-31 10:00", tz="Europe/Berlin")) == "2024-01-31 09:00:00"  # in UTC


def test_whole_columns_read_as_text_exactly_as_cell_by_cell():
    """as_text's per-type shortcuts (floats, integers, booleans, plain text) give text_cell's text, and the
    nullable and mixed columns pandas 3 and Spark hand over (pd.NA, NaN, None) take the slow path."""
    frame = pd.DataFrame(
        {
            "float": [1.5, np.nan, 39.1],
            "int": [1, 2, 3],
            "bool": [True, False, True],
            "text": [" x", "y ", None],
            "Int64": pd.array([1, None, 3], dtype="Int64"),
            "float32": np.array([0.5, 0.25, 0.1], dtype="float32"),
            "moment": pd.Series([pd.Timestamp("2024-01-01"), pd.NaT, pd.Timestamp("2024-02-03 10:00")]),
            "boolean": pd.array([True, None, False], dtype="boolean"),
            "str": pd.Series(["a", None, " b"], dtype="str"),
            "mixed": pd.Series([dt.date(2024, 1, 1), None, "x"], dtype=object),
        }
    )
    text = as_text(frame)
    assert text.values.tolist() == [[text_cell(v) for v in row] for row in frame.astype(object).values.tolist()]
    assert text["Int64"].tolist() == ["1", "", "3"] and text["text"].tolist() == ["x", "y", ""]
