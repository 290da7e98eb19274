"""Feature schema: derived from data, stored as JSON-safe metadata, turned into strict API types."""

import pytest
from pydantic import ValidationError

from tabserve.core import data
from tabserve.core.columns import infer_schema
from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, NUMERIC, Feature, FeatureSchema, label_text


def schema_of(path, *drop) -> FeatureSchema:
    table = data.read_table(path)
    return infer_schema(table.raw.drop(columns=list(drop)), decimal=table.decimal, sep=table.sep)


@pytest.fixture(scope="module")
def penguins_schema():
    return schema_of(data.PENGUINS_CSV, "species")


def test_penguins_schema_types_categories_and_ranges(penguins_schema):
    assert penguins_schema.names == [
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    island = penguins_schema["island"]
    assert island.kind == CATEGORICAL and island.categories == ["Biscoe", "Dream", "Torgersen"] and not island.nullable
    sex = penguins_schema["sex"]
    assert sex.kind == CATEGORICAL and sex.categories == ["female", "male"] and sex.nullable
    bill = penguins_schema["bill_length_mm"]
    assert bill.kind == NUMERIC and bill.nullable and (bill.min, bill.max) == (32.1, 59.6)
    year = penguins_schema["year"]
    assert year.kind == NUMERIC and not year.nullable and year.integer and (year.min, year.max) == (2007, 2009)


def test_example_is_a_complete_training_row(penguins_schema):
    example = penguins_schema.example()
    assert example == {
        "island": "Torgersen",
        "bill_length_mm": 39.1,
        "bill_depth_mm": 18.7,
        "flipper_length_mm": 181,
        "body_mass_g": 3750,
        "sex": "male",
        "year": 2007,
    }
    penguins_schema.record_model().model_validate(example)


def test_schema_round_trips_through_metadata_without_nulls(penguins_schema):
    stored = penguins_schema.to_dict()
    assert "None" not in repr(stored)  # BentoML metadata cannot hold None
    assert FeatureSchema.from_dict(stored) == penguins_schema


def test_regression_csv_schema(regression_csv):
    schema = schema_of(regression_csv, "price")
    assert schema["a"].kind == NUMERIC and not schema["a"].nullable
    assert schema["b"].nullable and schema["colour"].categories == ["blue", "green", "red"]
    assert "id" in schema.other_columns and "id" not in schema.names  # a row number is not a feature


def test_cells_parse_like_json_values():
    flag = Feature("flag", BOOLEAN, True)
    assert [flag.parse_cell(c) for c in ["true", "False", "YES", "no", "1", "0", "NA", "maybe"]] == [
        True,
        False,
        True,
        False,
        True,
        False,
        None,
        "maybe",
    ]
    size = Feature("size", NUMERIC, True)
    assert (
        size.parse_cell("1,5", decimal=",") == 1.5 and size.parse_cell("?") is None and size.parse_cell("inf") == "inf"
    )
    assert size.parse_cell("1_000") == "1_000"  # float() would take it; a CSV cell with it is not a number
    day = Feature("day", DATE, False, date_format="%d.%m.%Y")
    assert str(day.parse_cell("31.01.2024")) == "2024-01-31" and str(day.parse_cell("2024-01-31")) == "2024-01-31"
    coded = Feature("origin", CATEGORICAL, False, categories=[1, 2, 3])
    assert coded.parse_cell("2") == 2 and coded.parse_cell("x") == "x"


def test_label_text_is_the_json_spelling():
    assert [label_text(v) for v in [True, False, 1, "Adelie"]] == ["true", "false", "1", "Adelie"]


def test_dates_booleans_and_coded_categories_in_the_api_types():
    schema = FeatureSchema(
        (
            Feature(
                "day", DATE, False, example="2024-01-31", date_format="%d.%m.%Y", first="2024-01-01", last="2024-12-31"
            ),
            Feature(
                "at",
                DATETIME,
                True,
                example="2024-01-31T10:00:00",
                first="2024-01-01T00:00:00",
                last="2024-12-31T00:00:00",
            ),
            Feature("flag", BOOLEAN, False, example=True),
            Feature("origin", CATEGORICAL, False, categories=[1, 2, 3], example=1),
        )
    )
    strict, lax = schema.record_model(), schema.record_model("Query", strict=False)
    record = strict.model_validate({"day": "2030-02-01", "flag": True, "origin": 2}).model_dump()
    assert str(record["day"]) == "2030-02-01"  # a date never seen in training is fine
    for bad in [{"day": 20240131}, {"day": "someday"}, {"flag": "true"}, {"flag": 1}, {"origin": "2"}, {"origin": 4}]:
        with pytest.raises(ValidationError):
            strict.model_validate({"day": "2024-01-31", "flag": True, "origin": 1, **bad})
    assert lax.model_validate({"day": "31.01.2024", "flag": "yes", "origin": "3"}).model_dump()["origin"] == 3
    properties = strict.model_json_schema()["properties"]
    assert properties["day"]["format"] == "date" and properties["flag"]["type"] == "boolean"
    assert properties["at"]["anyOf"][0]["format"] == "date-time" and properties["origin"]["enum"] == [1, 2, 3]


def test_reserved_names_become_aliases():
    schema = FeatureSchema(
        (Feature("_score", NUMERIC, False, example=1.0), Feature("model_year", NUMERIC, False, example=2.0))
    )
    record = schema.record_model()
    assert record.model_validate({"_score": 1.0, "model_year": 2.0}).model_dump() == {"_score": 1.0, "model_year": 2.0}
    assert set(record.model_json_schema()["properties"]) == {"_score", "model_year"}


@pytest.mark.parametrize(
    "change, error_type",
    [
        ({"island": "Mars"}, "literal_error"),
        ({"bill_length_mm": "39.1"}, "float_type"),  # numbers as strings are refused
        ({"bill_length_mm": True}, "float_type"),  # and booleans as numbers
        ({"bill_length_mm": float("nan")}, "finite_number"),
        ({"year": None}, "float_type"),  # year was never missing in training: not nullable
        ({"colour": "red"}, "extra_forbidden"),
    ],
)
def test_record_model_is_strict(penguins_schema, change, error_type):
    record = {**penguins_schema.example(), **change}
    with pytest.raises(ValidationError) as caught:
        penguins_schema.record_model().model_validate(record)
    assert caught.value.errors()[0]["type"] == error_type


def test_unknown_category_message_lists_allowed_values(penguins_schema):
    with pytest.raises(ValidationError, match="'Biscoe', 'Dream' or 'Torgersen'"):
        penguins_schema.record_model().model_validate({**penguins_schema.example(), "island": "Mars"})


def test_nullable_fields_may_be_omitted_required_may_not(penguins_schema):
    model = penguins_schema.record_model()
    assert model.model_validate({"island": "Dream", "year": 2008}).sex is None
    with pytest.raises(ValidationError, match="year"):
        model.model_validate({"island": "Dream"})


def test_out_of_range_warnings(penguins_schema):
    record = {**penguins_schema.example(), "bill_length_mm": 99.0, "body_mass_g": None}
    assert penguins_schema.out_of_range(record) == {
        "bill_length_mm": "bill_length_mm=99 is outside the training range [32.1, 59.6]"
    }
    assert penguins_schema.out_of_range(penguins_schema.example()) == {}


def test_openapi_schema_documents_categories_ranges_and_example(penguins_schema):
    schema = penguins_schema.record_model().model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert "32.1 to 59.6" in str(schema["properties"]["bill_length_mm"])
    assert schema["example"]["island"] == "Torgersen"
    assert set(schema["required"]) == {"island", "year"}
