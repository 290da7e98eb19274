"""The drift reference profile (tabserve/core/profile.py): building it on real data, binning, PSI, statuses."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from tabserve.core import profile
from tabserve.core.data import PENGUINS_CSV
from tabserve.core.profile import EPSILON, PREDICTION, Thresholds
from tabserve.core.schema import CATEGORICAL, DATE, NUMERIC, Feature, FeatureSchema

PENGUIN_SCHEMA = FeatureSchema(
    (
        Feature("island", CATEGORICAL, False, categories=["Biscoe", "Dream", "Torgersen"]),
        Feature("bill_length_mm", NUMERIC, True),
        Feature("bill_depth_mm", NUMERIC, True),
        Feature("flipper_length_mm", NUMERIC, True, integer=True),
        Feature("body_mass_g", NUMERIC, True, integer=True),
        Feature("sex", CATEGORICAL, True, categories=["female", "male"]),
        Feature("year", NUMERIC, False, integer=True),
    )
)


@pytest.fixture(scope="module")
def penguins():
    frame = pd.read_csv(PENGUINS_CSV)  # NA -> NaN
    return frame.astype(object).where(frame.notna(), None)


@pytest.fixture(scope="module")
def reference(penguins):
    return profile.build_reference(
        PENGUIN_SCHEMA, penguins, penguins["species"].tolist(), classes=["Adelie", "Chinstrap", "Gentoo"]
    )


def test_penguins_profile(reference, penguins):
    assert list(reference.features) == PENGUIN_SCHEMA.names and reference.not_profiled == {}
    assert reference.rows == 344 and reference.prediction_rows == 344
    for name, dist in reference.features.items():
        assert sum(dist.shares) == pytest.approx(1, abs=1e-5), name
        assert dist.binning.labels[-1] == "missing"
    bill = reference.features["bill_length_mm"]
    values = penguins["bill_length_mm"].dropna().astype(float)
    assert len(bill.binning.edges) == 9 and set(bill.binning.edges) <= set(values)  # edges are observed values
    assert (
        bill.binning.labels[0] == f"≤ {bill.binning.edges[0]:g}"
        and bill.binning.labels[-2] == f"> {bill.binning.edges[-1]:g}"
    )
    assert bill.shares[-1] == pytest.approx(2 / 344, abs=1e-6)  # two rows without measurements
    assert all(0.07 < share < 0.13 for share in bill.shares[:-1])  # ten quantile bins of a continuous feature
    island = reference.features["island"]
    assert island.binning.labels == ("Biscoe", "Dream", "Torgersen", "unseen", "missing")
    assert island.shares == pytest.approx((168 / 344, 124 / 344, 52 / 344, 0, 0), abs=1e-6)
    assert reference.features["sex"].shares[-1] == pytest.approx(11 / 344, abs=1e-6)
    year = reference.features["year"]  # discrete: one bin per value, deduplicated edges
    assert year.binning.edges == (2007, 2008, 2009)
    assert year.binning.labels == ("≤ 2007", "2008", "2009", "> 2009", "missing")
    assert year.shares[3:] == (0, 0)
    prediction = reference.prediction
    assert prediction.binning.labels == ("Adelie", "Chinstrap", "Gentoo", "unseen") and not prediction.binning.missing
    assert prediction.shares[:3] == pytest.approx((152 / 344, 68 / 344, 124 / 344), abs=1e-6)


def test_profile_round_trips_as_json_without_nulls(reference):
    stored = json.loads(json.dumps(reference.to_dict()))
    assert "null" not in json.dumps(stored)
    assert profile.Reference.from_dict(stored) == reference


def test_replaying_the_data_counts_what_the_reference_holds(reference, penguins):
    counts = reference.count(penguins.to_dict("records"), penguins["species"].tolist())
    for name, dist in reference.features.items():
        assert counts[name].sum() == 344
        assert profile.shares(counts[name]) == pytest.approx(dist.shares, abs=1e-5)
    assert counts[PREDICTION].tolist()[:3] == [152, 68, 124]
    report = profile.compare(reference, counts, Thresholds(min_records=100))
    assert report["status"] == "ok" and report["records"] == 344
    assert all(f["psi"] < 1e-6 for f in report["features"])


def test_a_known_shift_alerts_exactly_the_shifted_features(reference, penguins):
    shifted = penguins.copy()
    shifted["body_mass_g"] = shifted["body_mass_g"].map(lambda v: None if v is None else v * 1.3)
    shifted["island"] = shifted["island"].replace("Torgersen", "Biscoe")
    report = profile.compare(reference, reference.count(shifted), Thresholds(min_records=100))
    statuses = {f["name"]: f["status"] for f in report["features"]}
    assert {name for name, s in statuses.items() if s != "ok"} == {"body_mass_g", "island"}
    assert statuses["body_mass_g"] == statuses["island"] == "alert" and report["status"] == "alert"
    island = next(f for f in report["features"] if f["name"] == "island")
    live, ref = (168 + 52) / 344, 168 / 344  # Torgersen's share moved to Biscoe
    expected = (live - ref) * math.log(live / ref) + (EPSILON - 52 / 344) * math.log(EPSILON / (52 / 344))
    assert island["psi"] == pytest.approx(expected, abs=1e-3)
    assert report["prediction"] is None  # no predictions given


# --- binning ------------------------------------------------------------------------------------


def test_numeric_bins_missing_edges_and_values_beyond_training():
    binning = profile.numeric_binning([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert binning.edges == (1, 2, 3, 4, 5, 6, 7, 8, 9)
    values = [None, float("nan"), np.nan, 0.5, 1.0, 1.5, 9.0, 9.5, 1e9, -1e9]
    labels = [binning.labels[i] for i in binning.index(values)]
    assert labels == ["missing", "missing", "missing", "≤ 1", "≤ 1", "1–2", "8–9", "> 9", "> 9", "≤ 1"]
    assert [binning.labels[binning.index_one(v)] for v in values] == labels  # the single-record path agrees


def test_discrete_numerics_get_a_bin_per_value():
    flag = profile.numeric_binning([0] * 70 + [1] * 30, integer=True)
    assert flag.edges == (0, 1) and flag.labels == ("≤ 0", "1", "> 1", "missing")
    constant = profile.numeric_binning([5.5] * 10)
    assert constant.labels == ("≤ 5.5", "> 5.5", "missing")
    empty = profile.numeric_binning([None, None])
    assert empty.labels == ("any value", "missing") and empty.counts([3.0, None]).tolist() == [1, 1]
    wide = profile.numeric_binning(
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110], integer=True
    )
    assert "10–30" in wide.labels  # a whole-number bin of several numbers: low < value ≤ high


def test_close_edges_get_labels_that_tell_them_apart():
    binning = profile.numeric_binning(np.linspace(1000.0001, 1000.0009, 9).tolist() + [1000.001])
    assert len(set(binning.labels)) == len(binning.labels) == len(binning.edges) + 2


def test_categories_unseen_missing_and_booleans():
    binning = profile.categorical_binning(["a", "b"])
    assert binning.counts(["a", "a", None, "zz", float("nan"), "b"]).tolist() == [2, 1, 1, 2]
    assert binning.index_one("zz") == 2 and binning.index_one(None) == 3
    clash = profile.categorical_binning(["missing", "unseen"])  # categories named like the special bins
    assert clash.labels == ("missing", "unseen", "(unseen)", "(missing)")
    assert clash.counts(["missing", None]).tolist() == [1, 0, 0, 1]
    booleans = profile.feature_binning(Feature("ok", "boolean", True), [])
    assert booleans.labels == ("false", "true", "unseen", "missing")
    assert booleans.counts([True, True, False, None]).tolist() == [1, 2, 0, 1]
    coded = profile.categorical_binning([1, 2, 3])  # coded categories: whole numbers
    assert coded.labels[:3] == ("1", "2", "3") and coded.counts([1, 2.0, 3, 4]).tolist() == [1, 1, 1, 1, 0]


def test_dates_are_not_profiled_and_say_why():
    schema = FeatureSchema(
        (Feature("day", DATE, False, first="2024-01-01", last="2024-12-31"), Feature("x", NUMERIC, False))
    )
    frame = pd.DataFrame({"day": pd.to_datetime(["2024-01-01", "2024-06-01"]).date, "x": [1.0, 2.0]})
    reference = profile.build_reference(schema, frame, [1.5, 2.5])
    assert list(reference.features) == ["x"] and "dates move by nature" in reference.not_profiled["day"]
    assert reference.prediction.binning.kind == "numeric" and not reference.prediction.binning.missing
    report = profile.compare(
        reference, reference.count(frame.to_dict("records"), [1.5, 2.5]), Thresholds(min_records=1), schema
    )
    assert [f["name"] for f in report["features"]] == ["day", "x"]
    assert report["features"][0] == {"name": "day", "status": "not profiled", "reason": reference.not_profiled["day"]}


def test_vectorised_and_single_record_binning_agree_on_random_values():
    rng = np.random.default_rng(1)
    binning = profile.numeric_binning(rng.normal(size=500))
    values = rng.normal(scale=2, size=300).tolist() + [None] * 5
    assert (
        binning.counts(values).tolist()
        == np.bincount([binning.index_one(v) for v in values], minlength=binning.size).tolist()
    )


# --- PSI and statuses ---------------------------------------------------------------------------


def test_psi_values():
    assert profile.psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0
    assert profile.psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert profile.psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(profile.psi([0.5, 0.5], [0.25, 0.75]))  # symmetric
    empty = profile.psi([1.0, 0.0], [0.5, 0.5])  # an empty live bin counts as EPSILON
    assert empty == pytest.approx(0.5 * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5))
    assert profile.psi([0.0, 1.0, 0.0], [0.0, 1.0, 0.0]) == 0  # bins empty on both sides add nothing
    with pytest.raises(ValueError, match="bins"):
        profile.psi([0.5, 0.5], [1.0])


def test_statuses_and_thresholds():
    t = Thresholds(warn=0.1, alert=0.25, min_records=100)
    assert [profile.status(v, 100, t) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "ok",
        "ok",
        "warn",
        "warn",
        "alert",
        "alert",
    ]
    assert profile.status(5.0, 99, t) == "too few"
    assert profile.overall(["ok", "warn", "not profiled"], 100, t) == "warn"
    assert profile.overall(["ok", "alert", "warn"], 100, t) == "alert"
    assert profile.overall([], 100, t) == "ok" and profile.overall(["alert"], 10, t) == "too few"


def test_compare_reports_bins_with_live_and_reference_shares(reference):
    counts = {name: np.zeros(d.binning.size) for name, d in reference.features.items()}
    counts["island"] = np.array([0, 0, 30, 0, 0])
    report = profile.compare(reference, counts, Thresholds(min_records=100))
    assert report["status"] == "too few" and report["records"] == 30  # no prediction counts: records from the features
    island = next(f for f in report["features"] if f["name"] == "island")
    assert island["bins"][2] == {"bin": "Torgersen", "live": 1.0, "reference": round(52 / 344, 4), "count": 30}
    assert island["status"] == "too few" and island["psi"] > 1
