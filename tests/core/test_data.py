"""Reading CSVs: training files and uploads, and the one-line errors for unusable ones."""

import pytest

from tabserve.core import data
from tabserve.core.columns import infer_schema, read_csv
from tabserve.core.errors import DataError
from tabserve.core.schema import FeatureSchema

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
        (b"a,b\n1,2\n\xff\xfe,3\n", "not UTF-8"),
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
        ((HEADER + "\nDr\xe9am,1,1,1,1,male,2007\n").encode("latin-1"), "not UTF-8"),
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
