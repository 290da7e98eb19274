"""Feature schema: derived from data, stored as JSON-safe metadata, turned into strict API types."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tabserve import data
from tabserve.errors import DataError
from tabserve.schema import CATEGORICAL, MAX_CATEGORIES, NUMERIC, FeatureSchema


@pytest.fixture(scope="module")
def penguins_schema():
    frame = data.read_csv(data.PENGUINS_CSV).drop(columns=["species"])
    return FeatureSchema.infer(frame)


def test_penguins_schema_types_categories_and_ranges(penguins_schema):
    assert penguins_schema.names == ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
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
    assert example == {"island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181,
                       "body_mass_g": 3750, "sex": "male", "year": 2007}
    penguins_schema.record_model().model_validate(example)


def test_schema_round_trips_through_metadata_without_nulls(penguins_schema):
    stored = penguins_schema.to_dict()
    assert "None" not in repr(stored)  # BentoML metadata cannot hold None
    assert FeatureSchema.from_dict(stored) == penguins_schema


def test_regression_csv_schema(regression_csv):
    frame = data.read_csv(regression_csv).drop(columns=["price", "id"])
    schema = FeatureSchema.infer(frame)
    assert schema["a"].kind == NUMERIC and not schema["a"].nullable
    assert schema["b"].nullable and schema["colour"].categories == ["blue", "green", "red"]


def test_nulls_booleans_and_categories(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("flag,size,colour,y\nTrue,1.5,red,a\nFalse,,blue,b\nTrue,2.5,,a\n")
    schema = FeatureSchema.infer(data.read_csv(path).drop(columns=["y"]))
    assert schema["flag"].kind == CATEGORICAL and schema["flag"].categories == ["False", "True"]
    assert schema["size"].nullable and schema["colour"].nullable and not schema["flag"].nullable


def test_identifier_like_text_column_is_refused():
    frame = pd.DataFrame({"name": [f"user{i}" for i in range(MAX_CATEGORIES + 1)]})
    with pytest.raises(DataError, match="--drop name"):
        FeatureSchema.infer(frame)


def test_all_null_column_is_refused():
    with pytest.raises(DataError, match="no values"):
        FeatureSchema.infer(pd.DataFrame({"x": [np.nan, np.nan], "y": [1.0, 2.0]}))


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
    assert penguins_schema.out_of_range(record) == {"bill_length_mm": "bill_length_mm=99 is outside the training range [32.1, 59.6]"}
    assert penguins_schema.out_of_range(penguins_schema.example()) == {}


def test_openapi_schema_documents_categories_ranges_and_example(penguins_schema):
    schema = penguins_schema.record_model().model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert "32.1 to 59.6" in str(schema["properties"]["bill_length_mm"])
    assert schema["example"]["island"] == "Torgersen"
    assert set(schema["required"]) == {"island", "year"}
