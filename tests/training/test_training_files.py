"""train.py on files as spreadsheet tools save them (tests/spreadsheets.py, real data): a French Excel CSV in
Windows-1252, Excel's "Unicode Text" (UTF-16, tabs) and an .xlsx workbook; what the summary and the card say about
how each was read, and the one-line refusals of --encoding and --sheet. Run in process (train.main)."""

from __future__ import annotations

import bentoml
import pytest

from tabserve.core.card import ModelCard
from tests.conftest import train_main
from tests.spreadsheets import METRO_FR, penguins_raw, pets, unicode_text, workbook


def card_of(name: str) -> ModelCard:
    return ModelCard.from_model(bentoml.models.get(f"{name}:latest"))


def test_a_french_excel_csv_trains_with_its_accents_intact(bentoml_home):
    code, out, err = train_main("--data", str(METRO_FR), "--target", "passengers", "--name", "files-metro")
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "read as cp1252 (detected; --encoding to override)",
        "read with separator ';' and decimal mark ','",
    ]
    card = card_of("files-metro")
    assert card.training_data["encoding"] == "cp1252" and "sheet" not in card.training_data
    assert {"Saint-Mandé, Vincennes", "Le Kremlin-Bicêtre", "Créteil"} <= set(card.schema["location"].categories)
    assert card.schema["latitude"].type_name == "number"  # 48,875278: decimal commas


def test_encoding_given_is_said_so(bentoml_home):
    code, out, err = train_main(
        "--data", str(METRO_FR), "--target", "passengers", "--name", "files-metro-given", "--encoding", "windows-1252"
    )
    assert code == 0, err
    assert out.splitlines()[0] == "read as cp1252 (--encoding)"


def test_excel_unicode_text_trains(bentoml_home, tmp_path):
    path = unicode_text(pets(), tmp_path / "pets.txt")
    code, out, err = train_main("--data", str(path), "--target", "species", "--name", "files-pets")
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "read as UTF-16 (byte-order mark)",
        "read with separator 'tab' and decimal mark '.'",
    ]
    card = card_of("files-pets")
    assert card.training_data["encoding"] == "utf-16" and card.classes == ["Cat", "Dog"]
    assert card.schema["license_issue_date"].type_name == "date"
    assert card.metrics["accuracy"] > 0.9


def test_a_workbook_trains_from_the_sheet_named(bentoml_home, tmp_path):
    import pandas as pd

    notes = pd.DataFrame({"note": ["Palmer Station LTER, 2007-2009"]})
    path = workbook(tmp_path / "penguins-raw.xlsx", notes=notes, penguins=penguins_raw())
    code, out, err = train_main(
        "--data", str(path), "--target", "Species", "--name", "files-xlsx", "--sheet", "penguins"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "read sheet 'penguins' of penguins-raw.xlsx" and not lines[1].startswith("read with separator")
    card = card_of("files-xlsx")
    assert (card.training_data["encoding"], card.training_data["sheet"]) == ("xlsx", "penguins")
    assert card.schema["Date Egg"].type_name == "date" and card.schema["Culmen Length (mm)"].type_name == "number"
    assert card.metrics["accuracy"] > 0.9


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("--data", str(METRO_FR), "--encoding", "utf-8"),
            f"error: {METRO_FR} is not utf-8 text (byte 269 is invalid); leave --encoding out to detect it, or give"
            " the right one\n",
        ),
        (("--data", str(METRO_FR), "--encoding", "klingon"), "error: --encoding 'klingon' is not a text encoding"),
        (("--data", str(METRO_FR), "--sheet", "Sheet1"), f"error: --sheet is for .xlsx workbooks; {METRO_FR} is CSV"),
        (("--data", "{d}/w.xlsx", "--sheet", "nope"), "error: {d}/w.xlsx has no sheet 'nope'; its sheets are: 'data'"),
    ],
)
def test_bad_file_options_are_one_line_exit_2_and_save_nothing(bentoml_home, tmp_path, args, message):
    import pandas as pd

    workbook(tmp_path / "w.xlsx", data=pd.DataFrame({"x": [1, 2], "passengers": [3, 4]}))
    before = sorted(str(m.tag) for m in bentoml.models.list())
    argv = [a.format(d=tmp_path) for a in args]
    code, out, err = train_main(*argv, "--target", "passengers", "--name", "files-refused")
    assert (code, out) == (2, "") and err.startswith(message.format(d=tmp_path)) and err.count("\n") == 1, err
    assert sorted(str(m.tag) for m in bentoml.models.list()) == before
