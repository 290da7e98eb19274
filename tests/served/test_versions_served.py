"""Model versions on real `bentoml serve` processes: two versions trained on different data (the second
with Adelie and Gentoo swapped, so their answers differ on known records), versioned routes, the shadow
challenger (its answers compared, its failure and its wait never seen by clients), promotion through the
admin route, and a hot swap under load while train.py saves a new version."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from tabserve.core import pipeline as pipelines
from tabserve.core import store
from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.training import trainer
from tests.conftest import HGB_ONLY, PENGUIN, ROOT, Server
from tests.served.metrics_text import metric, samples
from tests.served.penguin_data import penguin_records
from tests.served.shadow_steps import hold

pytestmark = pytest.mark.served
ADMIN = "admin-secret"
RECORDS = [r for r in penguin_records() if None not in r.values()][::12]  # ~28 complete penguins, all species


def swapped_csv(directory: Path) -> Path:
    """The penguins with Adelie and Gentoo swapped: a version whose answers differ on the same records."""
    frame = pd.read_csv(PENGUINS_CSV)
    frame["species"] = frame["species"].map({"Adelie": "Gentoo", "Gentoo": "Adelie", "Chinstrap": "Chinstrap"})
    path = directory / "penguins swapped.csv"
    frame.to_csv(path, index=False)
    return path


def expected(model, records: list[dict]) -> list[str]:
    """What a version predicts for the records, in-process."""
    card = ModelCard.from_model(model)
    return [r["prediction"] for r in pipelines.predict_records(store.load_pipeline(model), card.schema, records)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("versions")


@pytest.fixture(scope="module")
def versions(data_dir):
    """(first, second): the penguins, then the swapped penguins, as two versions of "rollout"."""
    first = trainer.train(PENGUINS_CSV, "species", name="rollout", choices=HGB_ONLY).model
    second = trainer.train(swapped_csv(data_dir), "species", name="rollout", choices=HGB_ONLY).model
    assert expected(first, [PENGUIN]) != expected(second, [PENGUIN])
    return first, second


@pytest.fixture(scope="module")
def held(versions):
    """The second version as champion, the first as challenger, promotion enabled, two entry workers."""
    first, second = versions
    env = {"MODEL_TAG": str(second.tag), "CHALLENGER_TAG": str(first.tag), "ADMIN_KEY": ADMIN, "API_WORKERS": "2"}
    with Server(env=env, name="versions") as running:
        yield running


def post(server: Server, path: str, body: dict, **headers: str) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def test_every_held_version_is_listed_with_its_role(held, versions):
    first, second = versions
    listing = requests.get(f"{held.url}/v1/models", timeout=10).json()
    assert [(v["tag"], v["role"], v["compatible"]) for v in listing] == [
        (str(second.tag), "champion", True),
        (str(first.tag), "challenger", True),
    ]
    assert all(v["task"] == "classification" and "accuracy" in v["metrics"] and v["created"] for v in listing)
    card = requests.get(f"{held.url}/v1/models/{first.tag.version}", timeout=10).json()
    assert (
        card["tag"] == str(first.tag)
        and card["role"] == "challenger"
        and [f["name"] for f in card["features"]][0] == "island"
    )


def test_versioned_routes_answer_with_that_version(held, versions):
    first, second = versions
    records = RECORDS[:10]
    for model in (first, second):
        for version in (str(model.tag), model.tag.version):  # the full tag or the version alone
            answers = [post(held, f"/v1/models/{version}/predict", r).json() for r in records[:3]]
            assert [a["model"] for a in answers] == [str(model.tag)] * 3
            assert [a["prediction"] for a in answers] == expected(model, records[:3])
        query = requests.get(f"{held.url}/v1/models/{model.tag.version}/predict", params=PENGUIN, timeout=10).json()
        assert (query["model"], query["prediction"]) == (str(model.tag), expected(model, [PENGUIN])[0])
    # The unversioned routes answer with the champion.
    answers = [post(held, "/predict", r).json() for r in records]
    assert {a["model"] for a in answers} == {str(second.tag)} and [a["prediction"] for a in answers] == expected(
        second, records
    )
    batch = post(held, "/predict_batch", {"records": records}).json()
    assert batch["model"] == str(second.tag) and [p["prediction"] for p in batch["predictions"]] == expected(
        second, records
    )


def test_an_unknown_version_is_404_listing_the_held_ones(held, versions):
    for response in (
        post(held, "/v1/models/v999/predict", PENGUIN),
        requests.get(f"{held.url}/v1/models/v999", timeout=10),
        requests.get(f"{held.url}/v1/models/v999/predict", params=PENGUIN, timeout=10),
    ):
        assert response.status_code == 404, response.text
        assert "unknown model version 'v999'" in response.json()["error"] and all(
            str(m.tag) in response.json()["error"] for m in versions
        )
    wrong = post(held, f"/v1/models/{versions[0].tag.version}/predict", {**PENGUIN, "island": "Atlantis"})
    assert wrong.status_code == 400 and "island" in wrong.json()["error"]


def settled(server: Server, results: tuple[str, ...]) -> dict[str, float]:
    """The shadow counters once shadow predictions still under way from earlier requests are counted."""
    now = {}
    for _ in range(60):
        then, now = now, {r: metric(server.url, "tabserve_shadow_predictions_total", result=r) for r in results}
        if now == then:
            return now
        time.sleep(0.5)
    raise AssertionError(f"the shadow counters never settled: {now}")


def test_the_challenger_is_compared_in_the_shadow_of_every_champion_answer(held, versions):
    first, second = versions
    records = RECORDS[10:]
    before = settled(held, ("agree", "disagree"))
    answers = [post(held, "/predict", r).json() for r in records]
    assert {a["model"] for a in answers} == {str(second.tag)}
    disagreeing = sum(a != b for a, b in zip(expected(first, records), expected(second, records), strict=True))
    assert 0 < disagreeing < len(records)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the shadow predictions are made after the answers were sent
        after = {r: metric(held.url, "tabserve_shadow_predictions_total", result=r) for r in ("agree", "disagree")}
        if sum(after.values()) - sum(before.values()) >= len(records):
            break
        time.sleep(0.3)
    assert after["disagree"] - before["disagree"] == disagreeing
    assert after["agree"] - before["agree"] == len(records) - disagreeing
    comparison = requests.get(f"{held.url}/v1/models/{first.tag.version}/comparison", timeout=10).json()
    assert (comparison["champion"], comparison["challenger"]) == (str(second.tag), str(first.tag))
    assert comparison["compared"] == sum(after.values()) and comparison["failed"] == 0
    assert 0 < comparison["mean_probability_difference"] <= 1
    recent = comparison["recent_disagreements"]
    assert recent and all(r["champion_answer"]["prediction"] != r["challenger_answer"]["prediction"] for r in recent)
    assert all(set(r["inputs"]) == set(PENGUIN) for r in recent)
    not_challenger = requests.get(f"{held.url}/v1/models/{second.tag.version}/comparison", timeout=10)
    assert not_challenger.status_code == 409 and "not the challenger" in not_challenger.json()["error"]


def test_promotion_needs_the_admin_key_and_reaches_every_worker(held, versions):
    first, second = versions
    body = {"version": first.tag.version}
    assert post(held, "/v1/admin/promote", body).status_code == 403
    assert post(held, "/v1/admin/promote", body, Authorization="Bearer wrong").status_code == 403
    assert post(held, "/v1/admin/promote", {"version": "v999"}, Authorization=f"Bearer {ADMIN}").status_code == 404
    promoted = post(held, "/v1/admin/promote", body, Authorization=f"Bearer {ADMIN}")
    assert (
        promoted.status_code == 200
        and promoted.json()["champion"] == str(first.tag)
        and promoted.json()["previous"] == str(second.tag)
    )
    try:
        # Both entry workers follow within a second; /metrics counts the workers answering with each version.
        def workers_serving() -> dict[str, float]:
            return {s.labels["model"]: s.value for s in samples(held.url) if s.name == "tabserve_champion_workers"}

        deadline = time.monotonic() + 10
        while workers_serving() != {str(first.tag): 2, str(second.tag): 0} and time.monotonic() < deadline:
            time.sleep(0.3)
        assert workers_serving() == {str(first.tag): 2, str(second.tag): 0}
        models = {requests.post(f"{held.url}/predict", json=PENGUIN, timeout=10).json()["model"] for _ in range(12)}
        assert models == {str(first.tag)}
        roles = {v["tag"]: v["role"] for v in requests.get(f"{held.url}/v1/models", timeout=10).json()}
        assert roles[str(first.tag)] == "champion"
    finally:  # roll back: the previous champion is still held
        back = post(held, "/v1/admin/promote", {"version": str(second.tag)}, Authorization=f"Bearer {ADMIN}")
        assert back.status_code == 200


def test_the_promotion_route_does_not_exist_without_an_admin_key(server):
    response = requests.post(
        f"{server.url}/v1/admin/promote", json={"version": "x"}, headers={"Authorization": "Bearer x"}, timeout=10
    )
    assert response.status_code == 404


# --- a challenger that waits, then fails -------------------------------------------------------------


@pytest.fixture(scope="module")
def held_back(versions, tmp_path_factory):
    """The first version as champion; as challenger, the second with a step in front that holds its
    answers until the test opens a gate file (tests/served/shadow_steps.py)."""
    first, second = versions
    fitted = store.load_pipeline(second)
    gated = Pipeline([("hold", FunctionTransformer(hold)), *fitted.steps])
    challenger = store.save("rollout-gated", gated, {}, ModelCard.from_model(second))
    gate = tmp_path_factory.mktemp("gate") / "open"
    env = {
        "MODEL_TAG": str(first.tag),
        "CHALLENGER_TAG": str(challenger.tag),
        "TABSERVE_TEST_SHADOW_GATE": str(gate),
        "API_WORKERS": "1",
    }  # one worker: its shadow queue sees every answer, and it logs the failure once
    with Server(env=env, name="versions-gated") as running:
        yield running, gate, challenger


def test_answers_never_wait_for_the_challenger_nor_see_it_fail(held_back, versions):
    server, gate, challenger = held_back
    first, _ = versions
    # The challenger is held: the answer arrives, and no shadow prediction has been counted yet.
    answer = requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30)
    assert answer.status_code == 200 and answer.json()["model"] == str(first.tag)
    counted = lambda result: metric(server.url, "tabserve_shadow_predictions_total", result=result)  # noqa: E731
    assert sum(counted(r) for r in ("agree", "disagree", "failed")) == 0
    gate.write_text("raise")  # released, and failing from now on
    answers = [requests.post(f"{server.url}/predict", json=r, timeout=30) for r in RECORDS[:12]]
    assert [a.status_code for a in answers] == [200] * 12
    assert [a.json()["prediction"] for a in answers] == expected(first, RECORDS[:12])
    deadline = time.monotonic() + 30
    while counted("failed") < 13 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert counted("failed") == 13 and counted("agree") + counted("disagree") == 0
    comparison = requests.get(f"{server.url}/v1/models/{challenger.tag.version}/comparison", timeout=10).json()
    assert comparison["failed"] == 13 and comparison["compared"] == 0
    assert server.log_path.read_text().count("failed to score its shadow predictions") == 1  # said once, not per record


# --- hot swap under load ---------------------------------------------------------------------------------

WATCH_S = 1
MARGIN_S = 10  # the watcher's period, the new version's check and warm-up, and a busy machine


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the load did not get there in time"
        time.sleep(0.1)


def test_a_new_version_is_swapped_in_under_load_without_a_failed_or_stale_answer(data_dir):
    """32 clients post while train.py saves a new version of the served name mid-run. Every request is
    answered 200 by one version, with that version's answer (the cache never serves the old one's), and
    answers switch to the new version within MODEL_WATCH_S plus a margin."""
    first = trainer.train(PENGUINS_CSV, "species", name="hotswap", choices=HGB_ONLY).model
    env = {"MODEL_TAG": "hotswap:latest", "MODEL_WATCH_S": str(WATCH_S), "API_WORKERS": "2"}
    with Server(env=env, name="versions-hot") as server:
        results: list[tuple[float, int, int, str, str]] = []  # (sent at, record, status, model, prediction)
        stop = threading.Event()

        def client(seed: int) -> None:
            session = requests.Session()
            i = seed
            while not stop.is_set():
                i = (i + 7) % len(RECORDS)
                sent = time.monotonic()
                try:
                    response = session.post(f"{server.url}/predict", json=RECORDS[i], timeout=30)
                    body = response.json() if response.status_code == 200 else {}
                    results.append(
                        (
                            sent,
                            i,
                            response.status_code,
                            body.get("model", ""),
                            body.get("prediction", response.text[:200]),
                        )
                    )
                except requests.RequestException as exc:
                    results.append((sent, i, 0, "", repr(exc)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(results) >= 200)  # every client is answered steadily by the first version
            trained = subprocess.run(
                [
                    sys.executable,
                    "train.py",
                    "--data",
                    str(swapped_csv(data_dir)),
                    "--target",
                    "species",
                    "--name",
                    "hotswap",
                    "--model",
                    "hgb",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
            saved_at = time.monotonic()
            # Until 200 answers were sent after the window the new version has to take over in.
            wait_until(lambda: sum(r[0] > saved_at + WATCH_S + MARGIN_S for r in results[-400:]) >= 200, 60)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert trained.returncode == 0, trained.stderr
        second_tag = trained.stdout.strip().splitlines()[-1].split()[-1]
        assert second_tag.startswith("hotswap:") and second_tag != str(first.tag)

        failures = [r for r in results if r[2] != 200]
        assert not failures, failures[:5]
        assert {r[3] for r in results} == {str(first.tag), second_tag}
        import bentoml

        truth = {
            str(first.tag): expected(first, RECORDS),
            second_tag: expected(bentoml.models.get(second_tag), RECORDS),
        }
        wrong = [r for r in results if truth[r[3]][r[1]] != r[4]]
        assert not wrong, wrong[:5]  # each answer is its version's own: no mixed or stale (cached) answers
        late = [r for r in results if r[0] > saved_at + WATCH_S + MARGIN_S]
        assert late and {r[3] for r in late} == {second_tag}
        assert any(r[3] == str(first.tag) for r in results if r[0] < saved_at)

        # A new version with other columns is refused: the server keeps serving the second, and says why.
        refused_before = metric(server.url, "tabserve_model_swaps_total", result="refused")
        dropped = subprocess.run(
            [sys.executable, "train.py", "--drop", "year", "--name", "hotswap", "--model", "hgb"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert dropped.returncode == 0, dropped.stderr
        deadline = time.monotonic() + WATCH_S + MARGIN_S
        while (
            metric(server.url, "tabserve_model_swaps_total", result="refused") == refused_before
            and time.monotonic() < deadline
        ):
            time.sleep(0.3)
        assert metric(server.url, "tabserve_model_swaps_total", result="refused") == refused_before + 1
        assert {requests.post(f"{server.url}/predict", json=PENGUIN, timeout=10).json()["model"] for _ in range(6)} == {
            second_tag
        }
        lines = [line for line in server.log_path.read_text().splitlines() if "is not swapped in" in line]
        assert len(lines) == 1 and "removed year" in lines[0] and "restart" in lines[0]


def test_the_versioned_routes_are_documented(held):
    paths = requests.get(f"{held.url}/docs.json", timeout=30).json()["paths"]
    predict = paths["/v1/models/{version}/predict"]
    assert {"get", "post"} <= set(predict) and {"200", "404", "409"} <= set(predict["post"]["responses"])
    assert "/v1/models" in paths and "/v1/models/{version}/comparison" in paths
    assert {"200", "400", "403", "404"} <= set(paths["/v1/admin/promote"]["post"]["responses"])
    assert "422" not in paths["/v1/admin/promote"]["post"]["responses"]


def test_a_canary_share_is_answered_by_the_challenger_the_same_way_for_the_same_record(versions):
    first, second = versions
    env = {
        "MODEL_TAG": str(first.tag),
        "CHALLENGER_TAG": str(second.tag),
        "CANARY_PERCENT": "50",
        "PREDICTION_CACHE_SIZE": "0",
    }
    with Server(env=env, name="versions-canary") as server:
        records = penguin_records()[:120]
        answered = [requests.post(f"{server.url}/predict", json=r, timeout=30).json()["model"] for r in records]
        again = [
            requests.get(
                f"{server.url}/v1/predict", params={k: v for k, v in r.items() if v is not None}, timeout=30
            ).json()["model"]
            for r in records[:30]
        ]
        batch = requests.post(f"{server.url}/predict_batch", json={"records": records[:20]}, timeout=30).json()
    assert set(answered) == {str(first.tag), str(second.tag)} and 30 <= answered.count(str(second.tag)) <= 90
    assert again == answered[:30]  # a stable hash of the record: the same record always goes the same way
    assert batch["model"] == str(first.tag)  # batches go to the champion whole
