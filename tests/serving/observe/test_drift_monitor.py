"""Drift counting and the /v1/drift answer, in-process (one process: prometheus_client's own registry)."""

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.core.profile import PREDICTION, Thresholds
from tabserve.serving.observe import drift, metrics
from tabserve.serving.observe.drift import DriftMonitor, Snapshot

_tags = itertools.count()


@pytest.fixture(scope="module")
def card(penguins_model):
    return ModelCard.from_model(penguins_model)


@pytest.fixture
def fresh(card):
    """A card with a tag of its own: the registry is shared by every test of the session."""
    return dataclasses.replace(card, tag=f"penguins:drift-test-{next(_tags)}")


@pytest.fixture(scope="module")
def records():
    frame = pd.read_csv(PENGUINS_CSV)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def answers(records):
    return [{"prediction": r["species"], "probabilities": None, "warnings": []} for r in records]


def features_only(records):
    return [{k: v for k, v in r.items() if k != "species"} for r in records]


def test_counting_batches_and_single_records_alike(fresh, records):
    monitor = DriftMonitor(fresh, Thresholds(min_records=100))
    values = features_only(records)
    monitor.observe(values[:200], answers(records[:200]))
    for value, answer in zip(values[200:], answers(records[200:]), strict=True):
        monitor.observe([value], [answer])  # the single-record path (cache hits, /predict)
    report = monitor.report()
    assert report["status"] == "ok" and report["window"]["records"] == 344
    assert report["window"]["kind"] == "since the server started"
    assert all(f["psi"] < 1e-6 and f["records"] == 344 for f in report["features"])
    assert report["prediction"]["records"] == 344
    assert report["message"] == "no drift: every PSI is below 0.1"
    # The counters on /metrics: one series per (feature, bin) seen, adding up to the records.
    import prometheus_client

    samples = [
        s
        for f in prometheus_client.REGISTRY.collect()
        if f.name == metrics.FEATURE_VALUES
        for s in f.samples
        if s.name.endswith("_total") and s.labels["model"] == fresh.tag
    ]
    assert sum(s.value for s in samples if s.labels["feature"] == "island") == 344
    assert {s.labels["bin"] for s in samples if s.labels["feature"] == "year"} == {"≤ 2007", "2008", "2009"}


def test_gauges_are_set_and_nan_under_the_minimum(fresh, records):
    import prometheus_client

    monitor = DriftMonitor(fresh, Thresholds(min_records=100))
    monitor.observe(features_only(records[:10]), answers(records[:10]))
    assert monitor.report()["status"] == "too few"

    def gauge(name, **labels):
        return next(
            s.value
            for f in prometheus_client.REGISTRY.collect()
            for s in f.samples
            if s.name == name and s.labels == {"model": fresh.tag, **labels}
        )

    assert (
        math.isnan(gauge("tabserve_feature_drift_psi", feature="island"))
        and gauge("tabserve_drift_window_records") == 10
    )
    monitor.observe(features_only(records[10:]), answers(records[10:]))
    monitor.report()
    assert gauge("tabserve_feature_drift_psi", feature="island") < 0.1 and gauge("tabserve_prediction_drift_psi") < 0.1


def test_a_shift_alerts_the_shifted_features(fresh, records):
    monitor = DriftMonitor(fresh, Thresholds(min_records=100))
    shifted = [
        {
            **r,
            "body_mass_g": None if r["body_mass_g"] is None else r["body_mass_g"] * 1.3,
            "island": "Biscoe" if r["island"] == "Torgersen" else r["island"],
        }
        for r in features_only(records)
    ]
    monitor.observe(shifted, answers(records))
    report = monitor.report()
    assert {f["name"] for f in report["features"] if f["status"] != "ok"} == {"body_mass_g", "island"}
    assert report["status"] == "alert" and report["message"].startswith("drift in ")
    assert "island (alert" in report["message"] and "body_mass_g (alert" in report["message"]


def test_the_window_is_a_difference_of_samples(fresh):
    monitor = DriftMonitor(fresh, Thresholds(min_records=1), window_s=10, refresh_s=1)
    size = fresh.reference.features["island"].binning.size

    def snap(t, biscoe):
        counts = {
            name: np.zeros(d.binning.size)
            for name, d in {**fresh.reference.features, PREDICTION: fresh.reference.prediction}.items()
        }
        counts["island"] = np.array([biscoe] + [0] * (size - 1), dtype=float)
        return Snapshot(time=t, counts=counts, since=0.0)

    for t in range(0, 31):
        monitor._keep(snap(1000 + t, biscoe=t * 5))
    now = snap(1030.5, biscoe=200)
    counts, start = monitor.window(now)
    assert start == 1020 and counts["island"][0] == 200 - 100  # the newest sample at least 10 s old
    assert len(monitor.ring) <= 12  # older samples dropped
    young = DriftMonitor(fresh, Thresholds(min_records=1), window_s=10, refresh_s=1)
    counts, start = young.window(dataclasses.replace(now, since=1025.0))  # the server is younger than the window
    assert start == 1025.0 and counts["island"][0] == 200


def test_counting_never_fails_a_prediction(fresh, caplog):
    monitor = DriftMonitor(fresh)
    monitor.observe([{"bill_length_mm": "not a number"}, {}], [{"prediction": "Adelie"}, {"prediction": "Adelie"}])
    assert "drift counting failed" in caplog.text


def test_route_without_a_reference_answers_200_with_a_sentence(card):
    old = dataclasses.replace(card, reference=None, tag="penguins:old-card")
    app = FastAPI()
    app.include_router(drift.drift_router(lambda: old))
    response = TestClient(app).get("/drift")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "no reference" and "trained before" in body["message"] and body["features"] == []
    assert old.reference is None and drift.monitor(old).reference is None


def test_route_answers_the_report(fresh, records):
    app = FastAPI()
    app.include_router(drift.drift_router(lambda: fresh))
    drift.monitor(fresh).observe(features_only(records), answers(records))
    body = TestClient(app).get("/drift").json()
    assert (
        body["model"] == fresh.tag
        and body["window"]["records"] == 344
        and set(body["window"]) == {"records", "from", "to", "seconds", "kind"}
    )
    island = next(f for f in body["features"] if f["name"] == "island")
    assert [b["bin"] for b in island["bins"]] == [
        "Biscoe",
        "Dream",
        "Torgersen",
        "unseen",
        "missing",
    ] and "reason" not in island
    assert body["settings"]["min_records"] == drift.monitor(fresh).thresholds.min_records


def test_counting_off_counts_nothing_and_says_so(fresh, records):
    """DRIFT_COUNTING=0 (the benchmark's "drift off"): no counter moves, the route answers status off."""
    monitor = DriftMonitor(fresh, counting=False)
    monitor.observe(features_only(records), answers(records))
    assert DriftMonitor(fresh).report()["window"]["records"] == 0
    report = monitor.report()
    assert report["status"] == "off" and "DRIFT_COUNTING=0" in report["message"] and report["features"] == []
