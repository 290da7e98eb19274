"""score.py on Apache Spark (local[2]: two Python worker processes, files split in several partitions),
against the local engine and a real `bentoml serve` on the same rows.

Two Spark runs in all (Spark's start is most of the time), each a subprocess as a user runs it:
- data/penguins.csv nine times, perturbed, with missing markers, padded cells, passed-through columns
  and three planted bad rows, as CSV text;
- palmerpenguins' penguins-raw (dates, Yes/No booleans, NA, names with spaces and brackets) as a typed
  Parquet file in several row groups, with two planted bad rows.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from tabserve.core import rows
from tabserve.core.schema import MISSING_MARKERS, label_text
from tabserve.scoring import batch
from tests.conftest import HGB_ONLY, Server
from tests.scoring.scoring_data import (
    PENGUIN_BAD,
    PENGUIN_NUMBERS,
    RAW_BAD_ISLAND,
    SPARK,
    json_value,
    penguins_frame,
    raw_penguins_csv,
    raw_penguins_typed,
    run_score,
)

pytestmark = pytest.mark.slow  # each Spark run takes 20 s to minutes, most of it Spark starting


def _scored(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def _results_equal(scored: pd.DataFrame, answers: list[dict], labels: list[str]) -> None:
    """Spark's output rows against the service's JSON answers, row by row, exactly."""
    assert len(scored) == len(answers)
    for (_, row), answer in zip(scored.iterrows(), answers, strict=True):
        assert row["prediction"] == label_text(answer["prediction"])
        assert {label: row[f"proba_{label}"] for label in labels} == answer["probabilities"]


@pytest.fixture(scope="module")
def penguins(penguins_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spark-penguins")
    frame = penguins_frame()
    data = tmp / "penguins.csv"
    frame.to_csv(data, index=False)
    tag = str(penguins_model.tag)
    run = run_score("--data", str(data), "--out", str(tmp / "spark.parquet"), "--model", tag, *SPARK)
    assert run.returncode == 0, run.stderr[-3000:]
    local = batch.score(data, tmp / "local.parquet", tag, engine="local")
    return SimpleNamespace(frame=frame, data=data, tag=tag, run=run, local=local, spark=tmp / "spark.parquet", tmp=tmp)


def test_the_summary_counts_rows_and_names_model_engine_and_files(penguins):
    out = penguins.run.stdout
    assert f"model     {penguins.tag}" in out
    assert "engine    spark (local[2])" in out
    assert f"read           3,096  <- {penguins.data}" in out
    assert f"scored         3,093  -> {penguins.spark}" in out
    assert f"rejected           3  -> {penguins.tmp / 'spark.rejects.csv'}" in out
    assert "rows/s" in out
    assert "Traceback" not in penguins.run.stderr and " INFO " not in penguins.run.stderr


def test_spark_and_the_local_engine_write_the_same_rows_in_input_order(penguins):
    spark, local = _scored(penguins.spark), _scored(penguins.local.out)
    pd.testing.assert_frame_equal(spark, local)
    good = [str(p) for p in range(len(penguins.frame)) if p not in PENGUIN_BAD]
    assert spark["row"].tolist() == good
    assert spark["note"].tolist() == [penguins.frame.loc[int(p), "note"] for p in good]  # quotes and commas intact
    assert spark.columns.tolist() == [
        *penguins.frame.columns,
        "prediction",
        "proba_Adelie",
        "proba_Chinstrap",
        "proba_Gentoo",
    ]


def test_bad_rows_are_rejected_with_the_reason_and_never_scored(penguins):
    rejects = pd.read_csv(penguins.tmp / "spark.rejects.csv", dtype=str, keep_default_na=False)
    assert rejects.columns.tolist() == [*penguins.frame.columns, "error"]
    assert rejects["row"].tolist() == [str(p) for p in PENGUIN_BAD]
    for (_, row), (column, cell, message) in zip(rejects.iterrows(), PENGUIN_BAD.values(), strict=True):
        assert row[column] == cell and row["error"].startswith(message)


def test_the_parquet_file_names_the_model(penguins):
    assert pq.read_schema(penguins.spark).metadata[b"tabserve.model"] == penguins.tag.encode()


@pytest.mark.served
def test_spark_answers_as_predict_batch_does(penguins, server):
    good = penguins.frame.drop(index=list(PENGUIN_BAD))

    def value(name: str, cell: str):
        cell = cell.strip()
        if cell in MISSING_MARKERS:
            return None
        return float(cell) if name in (*PENGUIN_NUMBERS, "year") else cell

    names = ["island", *PENGUIN_NUMBERS, "sex", "year"]
    records = [{name: value(name, row[name]) for name in names} for _, row in good.iterrows()]
    response = requests.post(f"{server.url}/predict_batch", json={"records": records}, timeout=300)
    assert response.status_code == 200, response.text[:500]
    _results_equal(_scored(penguins.spark), response.json()["predictions"], ["Adelie", "Chinstrap", "Gentoo"])


@pytest.mark.served
def test_spark_writes_the_columns_and_cells_predict_csv_writes(penguins, server):
    """/predict_csv?on_error=skip on the same rows (its own columns only): the same prediction and
    proba_<class> cells, as text, and the same `error` for the bad rows."""
    upload = penguins.frame.drop(columns=["row", "note"]).to_csv(index=False).encode()
    response = requests.post(
        f"{server.url}/predict_csv?on_error=skip", files={"file": ("p.csv", upload, "text/csv")}, timeout=300
    )
    assert response.status_code == 200, response.text[:500]
    served = pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)
    results = ["prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    spark = _scored(penguins.spark)
    good = served[served["error"] == ""]
    assert len(good) == len(spark)
    assert good[results].values.tolist() == [[rows.cell(v) for v in row] for row in spark[results].values.tolist()]
    rejects = pd.read_csv(penguins.tmp / "spark.rejects.csv", dtype=str, keep_default_na=False)
    assert served.loc[served["error"] != "", "error"].tolist() == rejects["error"].tolist()


def test_spark_writes_the_local_engines_reason_columns_with_explain(penguins):
    """--explain 3 to a CSV: Spark's file is the local engine's byte for byte (reason_1 … reason_3 after the
    prediction columns, the same text), and so are the rejects (no reason columns)."""
    out = penguins.tmp / "explained-spark.csv"
    run = run_score("--data", str(penguins.data), "--out", str(out), "--model", penguins.tag, "--explain", "3", *SPARK)
    assert run.returncode == 0, run.stderr[-3000:]
    local = batch.score(penguins.data, penguins.tmp / "explained-local.csv", penguins.tag, engine="local", explain=3)
    assert out.read_bytes() == local.out.read_bytes()
    assert (penguins.tmp / "explained-spark.rejects.csv").read_bytes() == local.rejects.read_bytes()
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert scored.columns.tolist()[len(penguins.frame.columns) :] == [
        "prediction",
        "proba_Adelie",
        "proba_Chinstrap",
        "proba_Gentoo",
        "reason_1",
        "reason_2",
        "reason_3",
    ]
    assert len(scored) == len(penguins.frame) - len(PENGUIN_BAD) and (scored["reason_3"] != "").all()


# --- A real data set with dates, booleans and missing values, as typed Parquet ---------------------


@pytest.fixture(scope="module")
def raw(bentoml_home, tmp_path_factory):
    from tabserve.training import trainer

    tmp = tmp_path_factory.mktemp("spark-raw")
    tag = str(trainer.train(raw_penguins_csv(), "Sex", name="scoring-raw", choices=HGB_ONLY).model.tag)
    typed = raw_penguins_typed()
    data = tmp / "raw.parquet"
    typed.to_parquet(data, row_group_size=400, index=False)  # several row groups: several partitions
    run = run_score("--data", str(data), "--out", str(tmp / "spark.parquet"), "--model", tag, *SPARK)
    assert run.returncode == 0, run.stderr[-3000:]
    # The same rows as CSV text, as R or a spreadsheet writes them, through the local engine.
    text = pd.concat([pd.read_csv(raw_penguins_csv(), dtype=str, keep_default_na=False)] * 8, ignore_index=True)
    text.insert(0, "row", [str(i) for i in range(len(text))])
    for position, island in RAW_BAD_ISLAND.items():
        text.loc[position, "Island"] = island
    text.to_csv(tmp / "raw.csv", index=False)
    return SimpleNamespace(
        tag=tag,
        typed=typed,
        data=data,
        run=run,
        spark=tmp / "spark.parquet",
        tmp=tmp,
        local=batch.score(data, tmp / "local.parquet", tag, engine="local"),
        text=batch.score(tmp / "raw.csv", tmp / "text.parquet", tag, engine="local"),
    )


def test_typed_parquet_on_spark_and_locally_and_as_csv_text_gives_the_same_predictions(raw):
    spark, local, text = _scored(raw.spark), _scored(raw.local.out), _scored(raw.text.out)
    pd.testing.assert_frame_equal(spark, local)  # every column: the input's types are kept
    results = ["prediction", "proba_FEMALE", "proba_MALE"]
    pd.testing.assert_frame_equal(spark[results], text[results])
    good = [p for p in range(len(raw.typed)) if p not in RAW_BAD_ISLAND]
    assert spark["row"].tolist() == good and text["row"].tolist() == [str(p) for p in good]
    assert spark["Date Egg"].dtype.kind == "M" and spark["Clutch Completion"].dtype == bool
    assert pq.read_schema(raw.spark).metadata[b"tabserve.model"] == raw.tag.encode()


def test_rows_with_an_unknown_category_are_rejected_by_name(raw):
    rejects = pd.read_csv(raw.tmp / "spark.rejects.csv", dtype=str, keep_default_na=False)
    assert rejects["row"].tolist() == [str(p) for p in RAW_BAD_ISLAND]
    assert rejects["error"].tolist() == ["Island: Input should be 'Biscoe', 'Dream' or 'Torgersen'"] * len(
        RAW_BAD_ISLAND
    )
    assert "rejected           2" in raw.run.stdout


@pytest.mark.served
def test_typed_rows_on_spark_answer_as_predict_batch_does(raw):
    card = batch.load_model(raw.tag).card
    good = raw.typed.drop(index=list(RAW_BAD_ISLAND))
    records = [{name: json_value(row[name]) for name in card.schema.names} for _, row in good.iterrows()]
    assert any(r["Date Egg"] for r in records) and any(r["Delta 15 N (o/oo)"] is None for r in records)
    with Server(env={"MODEL_TAG": raw.tag}, name="scoring-raw") as server:
        response = requests.post(f"{server.url}/predict_batch", json={"records": records}, timeout=300)
    assert response.status_code == 200, response.text[:500]
    _results_equal(_scored(raw.spark), response.json()["predictions"], ["FEMALE", "MALE"])
    assert not math.isnan(_scored(raw.spark)["proba_MALE"].sum())
