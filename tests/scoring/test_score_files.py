"""score.py on files as spreadsheet tools save them (tests/spreadsheets.py, real data): a French Excel CSV in
Windows-1252, Excel's "Unicode Text" (UTF-16, tabs), an .xlsx workbook. Every row is answered, as the same rows
in UTF-8 are; the output is UTF-8 in the input's separator and decimal mark; the UTF-8 copy made on the way is
removed. The local engine in process (score.main); Spark once, as a user runs it (slow)."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import score
from tabserve.core import pipeline, store
from tabserve.scoring import batch
from tabserve.scoring.files import Source
from tabserve.serving.api import csv_upload as csv_scoring
from tests.conftest import HGB_ONLY
from tests.scoring.scoring_data import SPARK, run_score
from tests.spreadsheets import METRO_FR, french_excel_csv, metro, unicode_text, workbook


@pytest.fixture(scope="module")
def metro_tag(bentoml_home) -> str:
    from tabserve.training import trainer

    return str(trainer.train(METRO_FR, "passengers", name="scoring-metro", choices=HGB_ONLY).model.tag)


@pytest.fixture(scope="module")
def tag(penguins_model) -> str:
    return str(penguins_model.tag)


@pytest.fixture()
def scratch(tmp_path, monkeypatch) -> Path:
    """The system's temp directory for the test: what score.py leaves in it."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _main(capsys, *args: str) -> tuple[int, str, str]:
    code = score.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _service_rows(content: bytes, tag: str) -> list[list[str]]:
    """What /predict_csv?on_error=skip answers for `content`, computed with the service's own code."""
    model, card = store.served_model(tag)
    scoring = csv_scoring.records_from_csv(
        content, card, card.schema.record_model("Record"), max_rows=10**6, skip_bad_rows=True
    )
    results = pipeline.predict_records(store.load_pipeline(model.stored), card.schema, scoring.records)
    text = csv_scoring.csv_with_predictions(scoring, results, card)
    return list(csv.reader(io.StringIO(text), delimiter=scoring.upload.table.sep))


def test_a_french_excel_csv_is_scored_row_for_row_as_predict_csv_answers_it(capsys, metro_tag, tmp_path, scratch):
    out = tmp_path / "scored.csv"
    code, stdout, stderr = _main(
        capsys, "--data", str(METRO_FR), "--out", str(out), "--model", metro_tag, "--engine", "local"
    )
    assert code == 0, stderr
    assert "encoding  cp1252 (detected; --encoding to override)" in stdout.splitlines()
    assert "read             308  <- " in stdout and "rejected           0" in stdout
    written = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8")), delimiter=";"))  # UTF-8, the input's ;
    assert written == _service_rows(METRO_FR.read_bytes(), metro_tag)
    header, rows = written[0], written[1:]
    assert [row[0] for row in rows] == metro()["name"].tolist()  # Champs-Élysées—Clemenceau, ... intact
    assert len(rows) == 308 and all("," in row[header.index("prediction")] for row in rows)  # decimal commas
    assert list(scratch.iterdir()) == []  # the UTF-8 copy is gone


def test_a_byte_past_the_first_megabytes_decides_the_encoding(capsys, metro_tag, tmp_path, scratch):
    """ASCII rows for 2 MB, then the accented ones: read as cp1252, every row answered, no row garbled."""
    frame = metro()
    plain = frame[frame.apply(lambda row: all(str(v).isascii() for v in row), axis=1)]
    long = pd.concat([plain] * 200 + [frame], ignore_index=True)
    path = french_excel_csv(long, tmp_path / "long.csv")
    assert path.read_bytes()[: 2 << 20].isascii()
    out = tmp_path / "long.parquet"
    code, stdout, stderr = _main(
        capsys, "--data", str(path), "--out", str(out), "--model", metro_tag, "--engine", "local"
    )
    assert code == 0, stderr
    assert "encoding  cp1252 (detected; --encoding to override)" in stdout
    scored = pq.read_table(out).to_pandas()
    assert len(scored) == len(long) and scored["name"].tolist() == long["name"].tolist()
    assert scored["prediction"].notna().all()


def test_excel_unicode_text_and_a_workbook_score_as_the_utf8_csv_does(capsys, tag, tmp_path, scratch):
    frame = pd.read_csv(Path(score.__file__).parent / "data" / "penguins.csv", dtype=str, keep_default_na=False)
    plain = tmp_path / "penguins.csv"
    frame.to_csv(plain, index=False)
    expected = batch.score(plain, tmp_path / "plain.parquet", tag, engine="local")
    wanted = pq.read_table(expected.out).to_pandas()
    text = unicode_text(frame, tmp_path / "penguins.txt")
    sheets = workbook(tmp_path / "penguins.xlsx", notes=pd.DataFrame({"note": ["Palmer Station"]}), penguins=frame)
    for path, extra, line in (
        (text, (), "encoding  UTF-16 (byte-order mark)"),
        (sheets, ("--sheet", "penguins"), "sheet     'penguins'"),
    ):
        out = tmp_path / f"{path.suffix[1:]}.parquet"
        code, stdout, stderr = _main(
            capsys, "--data", str(path), "--out", str(out), "--model", tag, "--engine", "local", *extra
        )
        assert code == 0, stderr
        assert line in stdout.splitlines() and "read             344  <- " in stdout
        pd.testing.assert_frame_equal(pq.read_table(out).to_pandas(), wanted)
    assert list(scratch.iterdir()) == []


def test_the_copy_is_removed_when_scoring_fails(tag, tmp_path, scratch):
    frame = pd.read_csv(Path(score.__file__).parent / "data" / "penguins.csv", dtype=str, keep_default_na=False)
    text = unicode_text(frame, tmp_path / "penguins.txt")
    with pytest.raises(Exception, match="no such directory"):
        batch.score(text, tmp_path / "no" / "such" / "out.csv", tag, engine="local")
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    "name, args, message",
    [
        (
            "m.parquet",
            ("--encoding", "cp1252"),
            "error: --encoding and --sheet are for CSV and .xlsx inputs, not Parquet",
        ),
        ("m.csv", ("--sheet", "data"), "error: --sheet is for .xlsx workbooks; {d}/m.csv is CSV text"),
        ("m.xlsx", ("--sheet", "nope"), "error: {d}/m.xlsx has no sheet 'nope'; its sheets are: 'data'"),
        ("m.xlsx", ("--encoding", "cp1252"), "error: --encoding is for CSV text; {d}/m.xlsx is an .xlsx workbook"),
        ("m.csv", ("--encoding", "klingon"), "error: --encoding 'klingon' is not a text encoding Python knows"),
        (
            "m.csv",
            ("--encoding", "utf-8"),
            "error: {d}/m.csv is not UTF-8 text (byte 269 is invalid); leave --encoding",
        ),
        ("mixed.csv", (), "error: {d}/mixed.csv mixes UTF-8 with another encoding (byte "),
    ],
)
def test_bad_file_options_are_one_line_and_exit_code_2(capsys, metro_tag, tmp_path, name, args, message):
    frame = metro()
    if name.endswith(".parquet"):
        frame.to_parquet(tmp_path / name)
    elif name.endswith(".xlsx"):
        workbook(tmp_path / name, data=frame)
    elif name == "mixed.csv":  # a UTF-8 export with one row pasted in from a cp1252 file
        (tmp_path / name).write_bytes(
            frame.to_csv(sep=";", index=False).encode() + "Bérault;;1;;;;;1;1;1;x\n".encode("cp1252")
        )
    else:
        (tmp_path / name).write_bytes(METRO_FR.read_bytes())
    code, stdout, stderr = _main(
        capsys, "--data", str(tmp_path / name), "--out", str(tmp_path / "o.csv"), "--model", metro_tag, *args
    )
    assert (code, stdout) == (2, "") and stderr.count("\n") == 1
    assert stderr.startswith(message.format(d=tmp_path)), stderr


def test_a_source_counts_the_rows_of_its_copy(metro_tag, tmp_path, scratch):
    model = batch.load_model(metro_tag)
    text = unicode_text(metro(), tmp_path / "metro.txt")  # UTF-16: its bytes' \n are not its lines
    source = Source.open(text, model)
    try:
        assert (source.rows, source.encoding, source.input) == (308, "utf-16", text)
        assert source.path.parent.parent == scratch and source.path.read_text(encoding="utf-8").startswith("name\t")
    finally:
        source.close()
    assert list(scratch.iterdir()) == []


@pytest.mark.slow  # Spark starts in ~20 s
def test_spark_scores_a_french_excel_csv_as_the_local_engine_does(metro_tag, tmp_path):
    local = batch.score(METRO_FR, tmp_path / "local.parquet", metro_tag, engine="local")
    run = run_score("--data", str(METRO_FR), "--out", str(tmp_path / "spark.parquet"), "--model", metro_tag, *SPARK)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "encoding  cp1252 (detected; --encoding to override)" in run.stdout
    spark = pq.read_table(tmp_path / "spark.parquet").to_pandas()
    pd.testing.assert_frame_equal(spark, pq.read_table(local.out).to_pandas())
    assert "Sacré-Cœur" in spark["caption"].tolist()
