"""Column types inferred from a file's text, with the reasons the training summary prints, and overrides."""

import pandas as pd
import pytest

from tabserve.core import data
from tabserve.core.columns import MAX_CATEGORIES, Overrides, infer_schema
from tabserve.core.errors import DataError
from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, NUMERIC
from tests.conftest import DATA


def infer(name: str, target: str, **overrides):
    table = data.read_table(DATA / name)
    return infer_schema(table.raw.drop(columns=[target]), Overrides(**overrides), table.decimal, table.sep)


def kinds(schema) -> dict[str, str]:
    return {f.name: f.kind for f in schema.features}


def test_every_row_counts_unlabelled_ones_too():
    schema = infer("unlabelled_rows.csv", "churned")
    assert "platinum" in schema["plan"].categories  # seen only in a row without a target
    assert schema["tenure_months"].nullable  # missing only in a row without a target


def test_booleans_in_any_spelling():
    schema = infer("booleans.csv", "bought")
    assert kinds(schema) == {"active": BOOLEAN, "smoker": BOOLEAN, "age": NUMERIC}
    assert schema["smoker"].reason == "boolean: values No/Yes" and isinstance(schema["active"].example, bool)


def test_european_separator_decimal_comma_and_day_first_dates():
    table = data.read_table(DATA / "european.csv")
    assert (table.sep, table.decimal) == (";", ",")
    schema = infer("european.csv", "umsatz")
    assert kinds(schema) == {"datum": DATE, "region": CATEGORICAL, "preis": NUMERIC, "menge": NUMERIC}
    assert schema["datum"].date_format == "%d.%m.%Y" and schema["preis"].min > 10  # 98,54 read as 98.54
    assert "Süd" in schema["region"].categories


def test_missing_markers_keep_numbers_numeric():
    schema = infer("missing_markers.csv", "mpg")
    assert kinds(schema) == {"horsepower": NUMERIC, "weight": NUMERIC}
    assert schema["horsepower"].nullable and "'-', '?'" in schema["horsepower"].reason


def test_dates_and_date_times():
    schema = infer("dates.csv", "visitors")
    assert schema["day"].kind == DATE and schema["last_order_at"].kind == DATETIME
    assert schema["day"].first <= schema["day"].example <= schema["day"].last and len(schema["day"].first) == 10


def test_identifiers_are_not_features():
    schema = infer("ids.csv", "score")
    assert schema.names == ["x", "segment"]
    assert set(schema.other_columns) == {"row", "customer_id", "name"}
    assert "row number" in schema.other_columns["row"] and "--keep name" in schema.other_columns["name"]
    kept = infer("ids.csv", "score", keep=("row",), id=("segment",))
    assert kept.names == ["row", "x"] and kept["row"].kind == NUMERIC and "--id" in kept.other_columns["segment"]


def test_coded_categories_on_request():
    assert infer("coded.csv", "visits")["origin"].kind == NUMERIC
    schema = infer("coded.csv", "visits", categorical=("origin",))
    assert schema["origin"].kind == CATEGORICAL and schema["origin"].categories == [1, 2, 3]


def test_numeric_on_request_reads_other_text_as_missing():
    raw = pd.DataFrame({"size": ["1", "2", "unknown", "3"] * 5, "y": ["a", "b"] * 10})
    assert infer_schema(raw.drop(columns=["y"]))["size"].kind == CATEGORICAL
    size = infer_schema(raw.drop(columns=["y"]), Overrides(numeric=("size",)))["size"]
    assert size.kind == NUMERIC and size.missing_markers == ["unknown"] and size.parse_cell("unknown") is None


def test_date_on_request_names_a_bad_value():
    raw = pd.DataFrame({"when": ["2024-01-01", "soon"]})
    with pytest.raises(DataError, match="'soon' is not a date"):
        infer_schema(raw, Overrides(date=("when",)))


def test_many_distinct_texts_are_identifiers_and_empty_columns_are_ignored():
    raw = pd.DataFrame(
        {
            "user": [f"user{i}" for i in range(MAX_CATEGORIES + 1)],
            "empty": [""] * (MAX_CATEGORIES + 1),
            "x": [str(i % 7) for i in range(MAX_CATEGORIES + 1)],
        }
    )
    schema = infer_schema(raw)
    assert (
        schema.names == ["x"]
        and "201 distinct" in schema.other_columns["user"]
        and "empty" in schema.other_columns["empty"]
    )


def test_no_features_left_is_refused():
    with pytest.raises(DataError, match="no feature columns left"):
        infer_schema(pd.DataFrame({"id": [str(i) for i in range(30)]}))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"numeric": ("nope",)}, "--numeric names unknown column 'nope'"),
        ({"date": ("y",)}, "--date names the target column"),
        ({"numeric": ("x",), "date": ("x",)}, "given to both --numeric and --date"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(DataError, match=message):
        Overrides(**overrides).check(["x", "y"], "y")
