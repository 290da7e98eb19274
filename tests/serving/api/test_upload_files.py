"""/predict_csv with files as spreadsheet tools save them (tests/spreadsheets.py, real data), in process
(tests.conftest.in_process_service): a French Excel CSV in Windows-1252, Excel's "Unicode Text" (UTF-16, tabs)
and an .xlsx workbook are each answered for every row, in UTF-8, their text intact; past MAX_CSV_ROWS the 413
says how to score the file instead."""

from __future__ import annotations

import csv
import io

import pytest

from tabserve.serving import settings
from tabserve.serving.edge.limits import XLSX_TYPE
from tabserve.training import trainer
from tests.conftest import HGB_ONLY, in_process_service
from tests.spreadsheets import METRO_FR, metro, pets, unicode_text, workbook


def _upload(client, content: bytes, name: str = "in.csv", kind: str = "text/csv"):
    return client.post("/predict_csv", files={"file": (name, content, kind)})


def _rows(response, sep: str) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv") and response.headers["x-failed-rows"] == "0"
    return list(csv.reader(io.StringIO(response.content.decode("utf-8")), delimiter=sep))


def test_a_french_excel_csv_is_answered_in_utf8_with_its_accents(bentoml_home):
    tag = str(trainer.train(METRO_FR, "passengers", name="upload-metro", choices=HGB_ONLY).model.tag)
    with in_process_service(tag) as client:
        header, *rows = _rows(_upload(client, METRO_FR.read_bytes()), ";")
    expected = metro()
    assert header == [*expected.columns, "prediction"] and len(rows) == 308
    assert [row[0] for row in rows] == expected["name"].tolist()  # Champs-Élysées—Clemenceau, Châtelet, ...
    assert "Sacré-Cœur" in [row[1] for row in rows]
    assert all(row[-1] and "," in row[-1] for row in rows)  # every row predicted, with the upload's decimal comma


@pytest.fixture(scope="module")
def pets_service(bentoml_home, tmp_path_factory):
    frame = pets()
    path = unicode_text(frame, tmp_path_factory.mktemp("pets") / "pets.txt")
    tag = str(trainer.train(path, "species", name="upload-pets", choices=HGB_ONLY).model.tag)
    with in_process_service(tag) as client:
        yield client, frame, path, tag


def test_excel_unicode_text_and_a_workbook_are_answered_for_every_row(pets_service, tmp_path):
    client, frame, path, _ = pets_service
    header, *as_text = _rows(_upload(client, path.read_bytes(), "pets.txt", "text/plain"), "\t")
    names = frame["animal_name"].fillna("").tolist()
    assert len(as_text) == len(frame) and [row[header.index("animal_name")] for row in as_text] == names
    assert {"Benjamón", "Georgia O’Teeffe"} <= set(names)
    sheet = workbook(tmp_path / "pets.xlsx", pets=frame).read_bytes()
    header_x, *as_sheet = _rows(_upload(client, sheet, "pets.xlsx", XLSX_TYPE), ",")
    assert header_x == header and len(as_sheet) == len(frame)
    assert [row[header.index("prediction")] for row in as_sheet] == [row[header.index("prediction")] for row in as_text]
    assert [row[header.index("animal_name")] for row in as_sheet] == names


def test_past_the_row_limit_the_413_says_how_to_score_the_file(pets_service, monkeypatch):
    client, frame, path, tag = pets_service
    monkeypatch.setattr(settings, "MAX_CSV_ROWS", 1000)
    for content, kind in (
        (path.read_bytes(), "text/plain"),
        (workbook(path.with_suffix(".xlsx"), p=frame).read_bytes(), XLSX_TYPE),
    ):
        response = _upload(client, content, kind=kind)
        assert response.status_code == 413, response.text
        message = response.json()["error"]
        assert message.endswith(
            f"the limit is 1,000; score a file this size with score.py (python score.py --data FILE --out OUT.csv"
            f" --model {tag}) or raise MAX_CSV_ROWS"
        ), message
    assert message.startswith("the workbook has more than 1,000 rows")
