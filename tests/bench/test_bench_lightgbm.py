"""The LightGBM bench scenario's pieces, in process (bench/lightgbm/; `bench/run.py --scenario lightgbm` runs them
against real servers): the data set and the booster are the same on every run, every request format carries the
numbers booster.predict answers for, the FastAPI baseline answers what booster.predict does, the runner takes
the scenario's options, and the report's ratios and profile summaries are computed as documented. No server is
started and no virtualenv installed here; no timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LGBM = ROOT / "bench" / "lightgbm"
SMALL = {"rows": 1500, "train_rows": 1200, "trees": 15}  # the real scenario: 20,000 rows, 300 trees


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generate():
    return load(LGBM / "generate.py", "bench_lightgbm_generate_test")


@pytest.fixture(scope="module")
def bodies():
    return load(LGBM / "bodies.py", "bench_lightgbm_bodies_test")


@pytest.fixture(scope="module")
def made(generate, tmp_path_factory):
    """The scenario's files, made twice with the same seed (small: 1,500 rows, 15 trees)."""
    first, second = tmp_path_factory.mktemp("lgbm-a"), tmp_path_factory.mktemp("lgbm-b")
    summary = generate.make(first, **SMALL)
    generate.make(second, **SMALL)
    return first, second, summary


@pytest.fixture(scope="module")
def booster(made):
    import lightgbm

    return lightgbm.Booster(model_file=str(made[0] / "model.txt"))


@pytest.fixture(scope="module")
def run():
    module = load(ROOT / "bench" / "run.py", "bench_run")  # defines the runner; starts nothing
    yield module
    sys.modules.pop("bench_run", None)


@pytest.fixture(scope="module")
def scenario(run):
    return run.lightgbm_scenario()


def test_the_same_seed_makes_the_same_files_byte_for_byte(made):
    first, second, _ = made
    for name in ("model.txt", "sample.csv", "records.json", "schema.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_the_data_set_has_50_features_six_of_them_categories_in_the_booster(made, booster, generate):
    first, _, summary = made
    schema = json.loads((first / "schema.json").read_text())
    assert len(schema["features"]) == summary["features"] == 50 == booster.num_feature()
    assert schema["features"] == booster.feature_name()
    declared = {name: categories for name, categories in generate.CATEGORICAL.values()}
    assert schema["categorical"] == declared  # the booster keeps the declared order, not an alphabetical one
    assert summary["trees"] == booster.num_trees() == SMALL["trees"]
    header = (first / "sample.csv").read_text().splitlines()[0].split(",")
    assert header == schema["features"] + [generate.TARGET]
    assert len((first / "sample.csv").read_text().splitlines()) == SMALL["train_rows"] + 1
    saved = json.loads((first / "records.json").read_text())
    assert len(saved["records"]) == len(saved["expected"]) == SMALL["rows"] - SMALL["train_rows"]
    assert all(isinstance(saved["records"][0][name], str) for name in declared)


def test_records_as_codes_predict_what_the_booster_predicts_on_its_frame(made, booster, generate):
    first = made[0]
    saved = json.loads((first / "records.json").read_text())
    schema = json.loads((first / "schema.json").read_text())
    got = booster.predict(generate.matrix(saved["records"], schema))
    assert np.allclose(got, saved["expected"], rtol=0, atol=1e-9)


def test_the_v2_request_carries_the_same_numbers(made, booster, generate, bodies):
    first = made[0]
    records, schema = bodies.load(first)
    request = bodies.v2_request(records[:7], schema)
    [tensor] = request["inputs"]
    assert tensor["datatype"] == "FP64" and tensor["shape"] == [7, 50] and len(tensor["data"]) == 7 * 50
    x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    assert np.array_equal(x, generate.matrix(records[:7], schema))
    plan = schema["features"].index("plan")
    assert x[0, plan] == schema["categorical"]["plan"].index(records[0]["plan"])


def test_jitter_moves_numbers_by_at_most_one_percent_and_keeps_categories(made, bodies):
    records, schema = bodies.load(made[0])
    rng = random.Random("0-single")
    for record in records[:50]:
        moved = bodies.jitter(record, rng)
        assert moved.keys() == record.keys()
        for name, value in record.items():
            if name in schema["categorical"]:
                assert moved[name] == value
            else:
                assert abs(moved[name] - value) <= 0.01 * abs(value) + 1e-6
    a, b = random.Random("s"), random.Random("s")  # the same seed, the same bodies (every server gets them)
    assert [bodies.jitter(r, a) for r in records[:20]] == [bodies.jitter(r, b) for r in records[:20]]


def test_the_baseline_answers_what_booster_predict_does(made, booster):
    from starlette.testclient import TestClient

    baseline = load(LGBM / "baseline.py", "bench_lightgbm_baseline_test")
    first = made[0]
    saved = json.loads((first / "records.json").read_text())
    records, expected = saved["records"], saved["expected"]
    with TestClient(baseline.create_app(first / "model.txt", "bench")) as client:
        one = client.post("/predict", json=records[0])
        assert one.status_code == 200
        body = one.json()
        assert body["model"] == "bench" and body["warnings"] == []
        assert body["probabilities"]["1"] == pytest.approx(expected[0], abs=1e-6)
        assert body["probabilities"]["0"] == pytest.approx(1 - expected[0], abs=1e-6)
        assert body["prediction"] == int(expected[0] > 0.5)
        many = client.post("/predict_batch", json={"records": records})
        assert many.status_code == 200
        answers = many.json()["predictions"]
        assert len(answers) == len(records)
        assert np.allclose([a["probabilities"]["1"] for a in answers], expected, rtol=0, atol=1e-6)
        assert [a["prediction"] for a in answers] == [int(p > 0.5) for p in expected]
        # The project's record shape: a known category, a number as a number, no unknown field.
        for bad in (
            {**records[0], "plan": "gold"},
            {**records[0], "x00": "1.5"},
            {**records[0], "extra": 1},
            {k: v for k, v in records[0].items() if k != "x00"},
        ):
            assert client.post("/predict", json=bad).status_code == 422
        assert client.post("/predict_batch", json={"records": []}).status_code == 422
        low, high = baseline.BoosterInputs(booster).ranges["x00"]
        flagged = client.post("/predict", json={**records[0], "x00": high + 1.0}).json()["warnings"]
        assert len(flagged) == 1 and flagged[0].startswith("x00:")
        assert client.get("/readyz").status_code == 200


def test_the_scenario_options(run):
    from harness.servers import LIGHTGBM_SERVERS, SERVER_NAMES  # bench/ is on sys.path once run.py is loaded

    args = run.parse_args(["--scenario", "lightgbm"])
    assert args.servers == ",".join(LIGHTGBM_SERVERS) == "shipped,fastapi,mlserver_lightgbm,mlserver_lightgbm_nobatch"
    assert args.levels == [1, 32] and args.out == ROOT / "bench" / "results" / "lightgbm"
    assert args.peer_batch_wait_ms == 2.0 and args.bulk_size == 1000 and args.rounds == 2 and not args.profile
    args = run.parse_args(["--scenario", "lightgbm", "--no-peers", "--profile", "--peer-batch-wait-ms", "10"])
    assert args.servers == "shipped,fastapi" and args.profile and args.peer_batch_wait_ms == 10.0
    penguins = run.parse_args([])  # the default scenario is as before
    assert penguins.scenario == "penguins" and penguins.out == ROOT / "bench" / "results"
    assert penguins.levels == [1, 8, 32, 64] and penguins.peer_batch_wait_ms == 10.0
    assert penguins.servers == ",".join(SERVER_NAMES)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--scenario", "lightgbm", "--servers", "litserve"], "unknown --servers ['litserve']"),
        (
            ["--scenario", "lightgbm", "--candidate", f"mine={ROOT}"],
            "--candidate and --candidate-env are for --scenario penguins",
        ),
        (["--servers", "mlserver_lightgbm"], "unknown --servers ['mlserver_lightgbm']"),
        (["--scenario", "xgboost"], "invalid choice: 'xgboost'"),
    ],
)
def test_a_wrong_scenario_option_is_one_line_and_exit_2(run, argv, fragment, capsys):
    with pytest.raises(SystemExit) as exited:
        run.parse_args(argv)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and fragment in error


def test_ratios_are_the_median_of_per_round_ratios_and_mlserver_is_its_better_configuration(scenario):
    def server(name, single, bulk):
        return {
            "name": name,
            "levels": {"32": {"ok_rps_by_round": single, "errors": 0}},
            "bulk": {"ok_rps_by_round": bulk, "errors": 0},
        }

    results = {
        "config": {"levels": [32], "bulk_users": 4},
        "servers": [
            server("shipped", [300.0, 400.0], [10.0, 12.0]),
            server("fastapi", [200.0, 500.0], [10.0, 10.0]),
            server("mlserver_lightgbm", [250.0, 100.0], [20.0, 20.0]),
            server("mlserver_lightgbm_nobatch", [100.0, 200.0], [30.0, 10.0]),
        ],
    }
    by = {s["name"]: s for s in results["servers"]}
    assert scenario.ratios(by, "shipped", "fastapi", "32") == {"value": 1.15, "by_round": [1.5, 0.8]}
    assert scenario.ratios(by, "shipped", "mlserver", "32")["by_round"] == [1.2, 2.0]  # 250, then 200
    targets = scenario.targets(results)
    assert targets["users_32_vs_fastapi"]["met"] and targets["users_32_vs_mlserver"]["met"]
    assert targets["bulk_vs_fastapi"] == {"value": 1.1, "by_round": [1.0, 1.2], "met": True}
    assert targets["bulk_vs_mlserver"]["met"] is None  # reported, no target


def test_a_profile_counts_waits_apart_and_groups_the_busy_samples(scenario):
    raw = "\n".join(
        [
            'process 1:"worker";_worker (/usr/lib/python3.11/concurrent/futures/thread.py:81) 40',
            'process 1:"worker";run (/usr/lib/python3.11/asyncio/base_events.py:1);'
            "EpollSelector.select (/usr/lib/python3.11/selectors.py:468) 20",
            'process 1:"worker";predict_records (/x/tabserve/models/lightgbm.py:104);'
            "predict (/v/lib/python3.11/site-packages/lightgbm/basic.py:5) 30",
            'process 1:"worker";predict_records (/x/tabserve/models/lightgbm.py:104);'
            "LightGBMRuntime.matrix (/x/tabserve/models/lightgbm.py:90) 10",
            'process 2:"worker";observe (/x/tabserve/serving/observe/drift.py:7);'
            "inc (/v/lib/python3.11/site-packages/prometheus_client/values.py:1) 20",
            "not a stack line",
        ]
    )
    summary = scenario.profile.summarize(raw)
    assert summary["samples"] == 60 and summary["waiting"] == 0.5
    assert summary["self"][0] == {"function": "predict (lightgbm/basic.py)", "share": 0.5}
    assert summary["self_by_module"] == {
        "lightgbm": 0.5,
        "prometheus_client": 0.3333,
        "tabserve/models/lightgbm.py": 0.1667,
    }
    within = summary["within"]
    assert within["booster.predict (lightgbm)"] == 0.5
    assert within["records -> the booster's matrix (LightGBMRuntime.matrix)"] == 0.1667
    assert within["the model runtime (tabserve/models: matrix, predict, answers)"] == 0.6667
    assert within["drift counting (tabserve/serving/observe/drift.py)"] == within["Prometheus client"] == 0.3333
    assert summary["by_process"] == {'process 1:"worker"': 0.6667, 'process 2:"worker"': 0.3333}
    assert scenario.profile.markdown(summary, "t")[0].startswith("t: 60 busy samples")
