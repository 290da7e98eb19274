"""Reading CSVs and workbooks: training files and uploads, their encodings, and the one-line errors for
unusable ones."""

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest

from tabserve.core import data
from tabserve.core.columns import infer_schema, read_csv
from tabserve.core.errors import DataError, TooLarge
from tabserve.core.schema import FeatureSchema
from tests.spreadsheets import METRO_FR, french_excel_csv, metro, penguins_raw, pets, unicode_text, workbook

HEADER = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"


@pytest.fixture(scope="module")
def schema():
    raw = data.read_table(data.PENGUINS_CSV).raw.drop(columns=["species"])
    return FeatureSchema(infer_schema(raw).features, {"row_id": "identifier"})


def test_penguins_csv_ships_with_the_repo():
    frame = read_csv(data.PENGUINS_CSV)
    assert frame.shape == (344, 8)
    assert frame["sex"].isna().sum() == 11  # "NA" cells are missing values, not a category


@pytest.mark.parametrize(
    "text, sep, decimal",
    [
        ("a,b\n1.5,x\n", ",", "."),
        ("a;b\n1,5;x\n2,25;y\n", ";", ","),
        ("a;b\n1.5;x\n", ";", "."),
        ("a\tb\n1,5\tx\n", "\t", ","),
        ("a|b|c\n1|2|3\n", "|", "."),
        ("only\n1\n2\n", ",", "."),
    ],
)
def test_separator_and_decimal_mark_are_detected(text, sep, decimal):
    table = data.parse_text(text)
    assert (table.sep, table.decimal) == (sep, decimal)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"a,b\n", "no data rows"),
        ("a,b\nCafé,1\nRésumé,2\n".encode() + "Noël,3\n".encode("cp1252"), "mixes UTF-8 with another encoding"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "old Excel .xls workbook.*save it as .xlsx or CSV"),
        (b"PK\x03\x04not really a zip", "zip archive but not a readable .xlsx workbook"),
        (b'a,b\n"1,2\n', "not a readable CSV"),
        (b"a,a\n1,2\n", "repeats column name"),
        (b"a,b\n1,2\x00\n", "binary"),
    ],
)
def test_unreadable_training_csvs(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        data.read_table(path)


def test_load_training_data_checks_the_target(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,x,y\n1,1.0,a\n2,2.0,b\n3,3.0,\n")
    with pytest.raises(DataError, match="target column 'nope' is not in t.csv; columns are: id, x, y"):
        data.load_training_data(path, "nope")
    path.write_text("x,y\n1,NA\n2,\n")
    with pytest.raises(DataError, match="target column 'y' has no values"):
        data.load_training_data(path, "y")


def test_parse_upload_accepts_bom_any_column_order_the_target_and_ids(schema):
    content = (
        "\ufeffyear,species,row_id," + HEADER.replace(",year", "") + "\n2007,Adelie,17,Dream,39,18,180,3700,male\n"
    ).encode()
    upload = data.parse_upload(content, schema, max_rows=10, passthrough=("species",))
    assert list(upload.table.raw.columns)[0] == "year" and upload.table.raw.loc[0, "island"] == "Dream"
    assert upload.passthrough == ["species", "row_id"]


def test_parse_upload_reads_a_semicolon_file_with_decimal_commas(schema):
    content = (HEADER.replace(",", ";") + "\nDream;39,5;18,1;180;3700;male;2007\n").encode()
    upload = data.parse_upload(content, schema, max_rows=10)
    assert (upload.table.sep, upload.table.decimal) == (";", ",")
    assert schema.parse_row(upload.table.raw.iloc[0].to_dict(), upload.table.decimal)["bill_length_mm"] == 39.5


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (HEADER.encode() + b"\n", "no data rows"),
        (b"island,year\nDream,2007\n", "lacks column"),
        ((HEADER + ",colour\nDream,1,1,1,1,male,2007,red\n").encode(), "unknown column"),
        ((HEADER + "\nDream,1,1\n").encode(), "row 1 has 3 cells"),
        (b"\x00\x01\x02binary", "binary"),
        ((HEADER + "\nBiscöe,1,1,1,1,male,2007\n" * 3).encode() + b"Bisc\xf6e,1,1,1,1,male,2007\n", "mixes UTF-8"),
    ],
)
def test_parse_upload_refuses_bad_files(schema, content, message):
    with pytest.raises(DataError, match=message):
        data.parse_upload(content, schema, max_rows=10)


def test_parse_upload_row_limit(schema):
    content = (HEADER + "\n" + "Dream,1,1,1,1,male,2007\n" * 11).encode()
    with pytest.raises(DataError, match="11 rows; the limit is 10"):
        data.parse_upload(content, schema, max_rows=10)


def test_parse_row_parses_numbers_and_missing(schema):
    row = dict(zip(HEADER.split(","), ["Dream", "39.5", "NA", "", "abc", "male", "inf"], strict=True))
    typed = schema.parse_row(row)
    assert typed["bill_length_mm"] == 39.5 and typed["bill_depth_mm"] is None and typed["flipper_length_mm"] is None
    assert typed["body_mass_g"] == "abc" and typed["year"] == "inf"  # left for validation to report


# --- Encodings and workbooks: real data as spreadsheet tools save it (tests/spreadsheets.py) -----------


def test_the_committed_french_export_is_gt_metro_as_excel_saves_it(tmp_path):
    assert french_excel_csv(metro(), tmp_path / "m.csv").read_bytes() == METRO_FR.read_bytes()


def test_a_french_excel_csv_is_read_as_cp1252_though_the_detector_guesses_another_code_page():
    """charset-normalizer takes this file for another code page (cp1250: 'Le Kremlin-Bicętre'); the rule on top
    of it (a single-byte Latin guess, bytes that decode as cp1252: cp1252) reads it right."""
    from charset_normalizer import from_bytes

    assert from_bytes(METRO_FR.read_bytes()).best().encoding != "cp1252"
    table = data.read_table(METRO_FR)
    assert (table.encoding, table.sep, table.decimal, table.sheet) == ("cp1252", ";", ",", None)
    expected = metro()
    assert table.raw["name"].tolist() == expected["name"].tolist()  # Champs-Élysées—Clemenceau, Châtelet, ...
    assert "Sacré-Cœur" in table.raw["caption"].tolist() and "Le Kremlin-Bicêtre" in table.raw["location"].tolist()
    assert table.raw.loc[0, "latitude"] == "48,875278"


def _utf8_table(frame):
    return data.parse_text(frame.to_csv(sep="\t", index=False))


@pytest.mark.parametrize(
    "encoding, codec",
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),  # Excel's "CSV UTF-8"
        ("utf-16", "utf-16"),  # Excel's "Unicode Text": little-endian with a byte-order mark
        ("utf-16-be-bom", "utf-16"),
        ("utf-32", "utf-32"),
        ("cp1252", "cp1252"),  # "O’Teeffe": ’ is byte 0x92, a character only Windows-1252 has there
    ],
)
def test_each_encoding_reads_as_the_same_table(tmp_path, encoding, codec):
    frame = pets()
    path = tmp_path / "pets.txt"
    if encoding == "utf-16-be-bom":
        path.write_bytes(b"\xfe\xff" + frame.to_csv(sep="\t", index=False, lineterminator="\r\n").encode("utf-16-be"))
    else:
        unicode_text(frame, path, encoding)
    table = data.read_table(path)
    assert (table.encoding, table.sep) == (codec, "\t")
    pd.testing.assert_frame_equal(table.raw, _utf8_table(frame).raw)
    assert {"Benjamón", "Georgia O’Teeffe"} <= set(table.raw["animal_name"])


def test_encoding_given_overrides_the_detection():
    as_latin1 = data.read_table(METRO_FR, encoding="latin-1")  # 0x9C is a control character in Latin-1, not œ
    assert as_latin1.encoding == "iso8859-1" and "Sacré-C\x9cur" in as_latin1.raw["caption"].tolist()
    assert data.read_table(METRO_FR, encoding="windows-1252").encoding == "cp1252"


@pytest.mark.parametrize(
    "encoding, message",
    [
        ("klingon", "--encoding 'klingon' is not a text encoding Python knows; use e.g. utf-8, cp1252"),
        ("base64", "--encoding 'base64' is not a text encoding"),
        ("utf-8", r"metro_fr.csv is not utf-8 text \(byte 269 is invalid\); leave --encoding out to detect it"),
    ],
)
def test_an_encoding_that_does_not_read_the_file_is_one_line_naming_the_option(encoding, message):
    with pytest.raises(DataError, match=message):
        data.read_table(METRO_FR, encoding=encoding)


@pytest.mark.parametrize(
    "content, codec",
    [
        ("x;y\n1;Москва\n2;Санкт-Петербург\n3;Новосибирск\n".encode("cp1251"), "cp1251"),  # another script: its page
        ("x;y\n1;東京都\n2;大阪府\n3;北海道\n".encode("shift_jis"), "cp932"),
        ("x\nSüd\nöffentlich\n".encode("latin-1"), "cp1252"),  # latin-1's letters: the same text in cp1252
    ],
)
def test_a_legacy_code_page_of_another_script_is_detected(content, codec):
    assert data.decode(content)[1] == codec


def test_binary_checks_come_after_the_byte_order_mark():
    """UTF-16 text is half NUL bytes: with its mark it is text; without one, or with NULs in the text, binary."""
    assert data.decode("a\tb\n1\t2\n".encode("utf-16"))[0] == "a\tb\n1\t2\n"
    for content in ("a\tb\n1\t2\n".encode("utf-16-le"), "a,b\n1,\x00\n".encode("utf-16")):
        with pytest.raises(DataError, match="binary, not CSV text"):
            data.decode(content)


def _numbers_equal(left: str, right: str) -> bool:
    try:
        return float(left) == float(right)
    except ValueError:
        return False


def test_a_workbook_reads_as_the_same_text_as_the_csv(tmp_path):
    """penguins-raw as an .xlsx (dates as date cells, numbers as numbers, missing as empty cells) is the text
    table its CSV is: dates ISO, whole numbers without ".0", the same numbers (R wrote 8.3945900000000009)."""
    path = workbook(tmp_path / "penguins.xlsx", penguins=penguins_raw())
    table = data.read_table(path)
    assert (table.encoding, table.sheet, table.sep, table.decimal) == ("xlsx", "penguins", ",", ".")
    import palmerpenguins

    csv_table = data.read_table(Path(palmerpenguins.__file__).resolve().parent / "data" / "penguins-raw.csv")
    expected = csv_table.raw.replace("NA", "")
    assert list(table.raw.columns) == list(expected.columns) and len(table.raw) == 344
    assert table.raw.dtypes.tolist() == expected.dtypes.tolist()
    differing = [(a, b) for col in expected for a, b in zip(table.raw[col], expected[col], strict=True) if a != b]
    assert differing and all(_numbers_equal(a, b) for a, b in differing), differing[:5]
    assert table.raw.loc[0, "Date Egg"] == "2007-11-11" and table.raw.loc[0, "Sample Number"] == "1"


def test_workbook_cells_as_text():
    assert [data.xlsx_cell(v) for v in (None, True, False, 7, 36.0, 39.1, -0.5, 1e20, " Dream ")] == [
        "",
        "true",
        "false",
        "7",
        "36",
        "39.1",
        "-0.5",
        "1e+20",
        "Dream",
    ]
    assert data.xlsx_cell(2.5, ",") == "2,5" and data.xlsx_cell(1e-7) == "1e-07"
    assert data.xlsx_cell(dt.datetime(2013, 1, 1)) == "2013-01-01"
    assert data.xlsx_cell(dt.datetime(2013, 1, 1, 5, 30)) == "2013-01-01 05:30:00"
    assert data.xlsx_cell(dt.date(2013, 1, 1)) == "2013-01-01" and data.xlsx_cell(dt.time(5, 30)) == "05:30:00"


def _sheet(path, rows, title="data", before=()):
    """A workbook whose sheets are `before` (empty ones) and then `title`, holding `rows` from row 1."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name in before:
        book.create_sheet(name).append(["note"])
    sheet = book.create_sheet(title)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_the_header_is_the_first_non_empty_row_and_empty_rows_and_columns_are_left_out(tmp_path):
    rows = [[], [None, None], ["island", "mass", None, "year"], ["Dream", 3700.0, None, 2007], [], ["Biscoe", None]]
    table = data.read_table(_sheet(tmp_path / "w.xlsx", rows))
    assert list(table.raw.columns) == ["island", "mass", "Unnamed: 2", "year"]  # as pandas names a blank header
    assert table.raw.values.tolist() == [["Dream", "3700", "", "2007"], ["Biscoe", "", "", ""]]


def test_the_first_sheet_unless_one_is_named(tmp_path):
    path = workbook(tmp_path / "w.xlsx", first=pd.DataFrame({"a": [1]}), second=pd.DataFrame({"b": ["é"]}))
    assert data.read_table(path).raw.columns.tolist() == ["a"] and data.read_table(path).sheet == "first"
    assert data.read_table(path, sheet="second").raw.values.tolist() == [["é"]]
    with pytest.raises(DataError, match=r"w.xlsx has no sheet 'third'; its sheets are: 'first', 'second'"):
        data.read_table(path, sheet="third")


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [["a", "b"], [1, 2, 3]],
            r"sheet 'data' of .*w.xlsx: row 2 has a value in column C, right of the header "
            r"\(columns A-B\); give that column a name or clear it",
        ),
        ([["a", "a"], [1, 2]], "sheet 'data' of .*w.xlsx repeats column name"),
        ([["a", "b"]], "has a header but no data rows"),
        ([[None], []], "sheet 'data' of .*w.xlsx is empty"),
    ],
)
def test_unreadable_sheets_are_one_line(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        data.read_table(_sheet(tmp_path / "w.xlsx", rows))


def test_encoding_and_sheet_are_each_for_their_kind_of_file(tmp_path):
    path = workbook(tmp_path / "w.xlsx", data=pd.DataFrame({"a": [1]}))
    with pytest.raises(DataError, match=r"--encoding is for CSV text; .*w.xlsx is an .xlsx workbook"):
        data.read_table(path, encoding="cp1252")
    with pytest.raises(DataError, match=r"--sheet is for .xlsx workbooks; .*metro_fr.csv is CSV text"):
        data.read_table(METRO_FR, sheet="data")


def test_an_upload_reads_the_same_encodings_and_workbooks(tmp_path, schema):
    frame = pd.read_csv(data.PENGUINS_CSV, dtype=str, keep_default_na=False).drop(columns=["species"])
    plain = data.parse_upload(frame.to_csv(index=False).encode(), schema, max_rows=1000)
    as_text = unicode_text(frame, tmp_path / "p.txt").read_bytes()
    as_sheet = workbook(tmp_path / "p.xlsx", penguins=frame).read_bytes()
    for content, encoding, sep in ((as_text, "utf-16", "\t"), (as_sheet, "xlsx", ",")):
        upload = data.parse_upload(content, schema, max_rows=1000)
        assert (upload.table.encoding, upload.table.sep) == (encoding, sep)
        pd.testing.assert_frame_equal(upload.table.raw, plain.table.raw)
    with pytest.raises(TooLarge, match="the workbook has more than 100 rows; the limit is 100"):
        data.parse_upload(as_sheet, schema, max_rows=100)
    with pytest.raises(DataError, match="the workbook lacks column"):
        data.parse_upload(workbook(tmp_path / "q.xlsx", s=frame.drop(columns=["year"])).read_bytes(), schema, 1000)


def test_an_uploaded_workbook_that_unzips_to_far_more_than_its_size_is_refused(schema):
    """A zip bomb would keep a worker parsing for long: refused from the sizes its parts declare."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("xl/worksheets/sheet1.xml", b"<row>" + b" " * (20 << 20) + b"</row>")
    with pytest.raises(DataError, match="the uploaded workbook unzips to more than 100 times its size; send it as CSV"):
        data.parse_upload(buffer.getvalue(), schema, max_rows=10)
    assert data.xlsx_rows(buffer.getvalue()) == 0
