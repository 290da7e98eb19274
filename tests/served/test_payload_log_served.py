"""The payload log on a real `bentoml serve` with two entry workers: one line per predicted record over every
prediction path (cache hits too), the documented fields, the answer's X-BentoML-Request-ID in its lines,
redaction; an unwritable PAYLOAD_LOG_DIR answers every prediction and counts on /metrics; an unknown
PAYLOAD_LOG_REDACT name stops the server with one line. Then the drift report of that log in headless
Chromium, its screenshot in artifacts/drift-report.png (docs/drift-report.png is a copy)."""

import json
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import ARTIFACTS, ROOT, Server
from tests.served.chromium import headless_chromium
from tests.served.metrics_text import samples
from tests.served.penguin_data import FEATURES, penguin_records, shifted

pytestmark = pytest.mark.served
FIELDS = [
    "timestamp",
    "request_id",
    "trace_id",
    "model",
    "route",
    "latency_ms",
    "inputs",
    "prediction",
    "probabilities",
    "warnings",
    "redacted",
]
ONE = {
    "island": "Dream",
    "bill_length_mm": 40.1,
    "bill_depth_mm": 18.9,
    "flipper_length_mm": 190,
    "body_mass_g": 3900,
    "sex": "female",
    "year": 2008,
}


def log_lines(directory) -> list[dict]:
    """Every line written, each with the name of its file (one file per worker) under "file"."""
    return [
        {**json.loads(line), "file": path.name}
        for path in sorted(directory.glob("*/data/data.*.log"))
        for line in path.read_text().splitlines()
    ]


SENTINEL_DEPTH = 99.5  # a bill depth no traffic here sends: marks the lines of wait_for_lines' last requests


def wait_for_lines(url: str, directory, expected: int, timeout: float = 60) -> list[dict]:
    """The traffic's lines, once all are written. Each worker writes its lines in the order it answered, from one
    queue: so once a request sent after the traffic has its line in every worker's file, no traffic line is still
    to come. Those last requests (one bill depth, distinct masses) are left out of what this returns."""
    deadline, sent = time.monotonic() + timeout, 0
    while True:
        lines = log_lines(directory)
        files = {line["file"] for line in lines}
        last = [line for line in lines if line["inputs"]["bill_depth_mm"] == SENTINEL_DEPTH]
        marked = {line["file"] for line in last}
        traffic = [line for line in lines if line["inputs"]["bill_depth_mm"] != SENTINEL_DEPTH]
        if len(traffic) >= expected and files and marked == files and len(last) == sent:
            return [{k: v for k, v in line.items() if k != "file"} for line in traffic]
        assert time.monotonic() < deadline, f"{len(traffic)} of {expected} lines; last requests in {marked} of {files}"
        if len(traffic) >= expected and sent < 50:  # until every worker answered one (the kernel picks the worker)
            sent += 1
            record = {**ONE, "bill_depth_mm": SENTINEL_DEPTH, "body_mass_g": 3000 + sent}
            assert requests.post(f"{url}/predict", json=record, timeout=30).status_code == 200
        time.sleep(0.1)


@pytest.fixture(scope="module")
def logged(penguins_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("payload-log-served")
    env = {
        "MODEL_TAG": str(penguins_model.tag),
        "API_WORKERS": "2",
        "PAYLOAD_LOG": "1",
        "PAYLOAD_LOG_DIR": str(directory),
        "PAYLOAD_LOG_REDACT": "sex",
        "PAYLOAD_LOG_SALT": "served-test-salt",
    }
    with Server(env=env, name="payload-log") as running:
        running.payload_dir = directory
        yield running


@pytest.fixture(scope="module")
def traffic(logged, penguins_model):
    """Every prediction path once or more; the shifted penguins twice through /predict_batch on both workers.
    Returns {route: records sent} and the request ids the answers carried."""
    url, ids = logged.url, {}
    singles = 0
    # Each entry worker has its own cache: the same record until one answers from its cache (at most 10).
    while "/predict hit" not in ids and singles < 10:
        answer = requests.post(f"{url}/predict", json=ONE, timeout=30)
        singles += 1
        assert answer.status_code == 200, answer.text
        ids.setdefault(f"/predict {answer.headers['X-Cache']}", answer.headers.get("X-BentoML-Request-ID"))
    assert {"/predict miss", "/predict hit"} <= set(ids), ids
    assert requests.get(f"{url}/v1/predict", params={**ONE, "year": 2009}, timeout=30).status_code == 200
    form = requests.post(f"{url}/v1/form", data={**ONE, "year": 2007}, timeout=30)
    assert form.status_code == 200, form.text
    csv_text = ",".join(FEATURES) + "\n" + "\n".join(",".join(str(ONE[f]) for f in FEATURES) for _ in range(3)) + "\n"
    answer = requests.post(f"{url}/predict_csv", files={"file": ("p.csv", csv_text, "text/csv")}, timeout=30)
    assert answer.status_code == 200, answer.text
    name = str(penguins_model.tag).split(":")[0]
    for rows in (1, 2):
        inputs = [
            {
                "name": f,
                "shape": [rows],
                "datatype": "BYTES" if isinstance(ONE[f], str) else "FP64",
                "data": [ONE[f]] * rows,
            }
            for f in FEATURES
        ]
        assert requests.post(f"{url}/v2/models/{name}/infer", json={"inputs": inputs}, timeout=30).status_code == 200
    records = shifted(penguin_records())
    chunks = [records[i : i + 8] for i in range(0, len(records), 8)] * 2

    def send(chunk):
        answer = requests.post(f"{url}/predict_batch", json={"records": chunk}, timeout=60)
        return answer.status_code, answer.headers.get("X-BentoML-Request-ID"), len(chunk)

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(send, chunks))
    assert {status for status, _, _ in batches} == {200}
    ids["/predict_batch"] = batches[0][1]
    sent = {
        "/predict": singles,
        "/v1/predict": 1,
        "/v1/form": 1,
        "/predict_csv": 3,
        "/v2/models/{model}/infer": 3,
        "/predict_batch": 2 * len(records),
    }
    lines = wait_for_lines(url, logged.payload_dir, sum(sent.values()))
    return sent, ids, lines, {n for _, rid, n in batches if rid == ids["/predict_batch"]}


def test_one_line_per_predicted_record_on_every_path(logged, traffic, penguins_model):
    sent, _, lines, _ = traffic
    assert Counter(line["route"] for line in lines) == Counter(sent)
    assert all(list(line) == FIELDS and line["model"] == str(penguins_model.tag) for line in lines)
    files = sorted(p.name for p in logged.payload_dir.glob(f"{penguins_model.tag.name}/data/data.*.log"))
    assert files == ["data.1.log", "data.2.log"], files  # a file per entry worker, both took some
    assert all(line["latency_ms"] > 0 for line in lines)
    singles = [line for line in lines if line["route"] == "/predict"]
    assert {s["inputs"]["island"] for s in singles} == {"Dream"} and len({s["prediction"] for s in singles}) == 1
    assert all(set(line["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"} for line in lines)


def test_the_answers_request_id_is_in_its_lines(traffic):
    _, ids, lines, batch_sizes = traffic
    by_id = Counter(line["request_id"] for line in lines)
    assert ids["/predict miss"] and len(ids["/predict miss"]) == 16, ids
    for key in ("/predict miss", "/predict hit"):
        assert (
            by_id[ids[key]] == 1
            and next(line for line in lines if line["request_id"] == ids[key])["route"] == "/predict"
        )
    assert by_id[ids["/predict_batch"]] == batch_sizes.pop()  # every record of the request
    assert len(by_id) == len({line["request_id"] for line in lines}) and None not in by_id


def test_redacted_features_are_hashes(traffic):
    _, _, lines, _ = traffic
    sexes = Counter(line["inputs"]["sex"] for line in lines)
    assert all(value.startswith("hmac-sha256:") for value in sexes) and 2 <= len(sexes) <= 3, (
        sexes
    )  # female, male, missing
    assert all(line["redacted"] == ["sex"] for line in lines)
    singles = [line["inputs"]["sex"] for line in lines if line["route"] in ("/predict", "/v1/predict", "/predict_csv")]
    assert len(set(singles)) == 1  # "female" each time, on either worker
    assert all(line["inputs"]["island"] in ("Biscoe", "Dream", "Torgersen") for line in lines)


def test_an_unwritable_directory_answers_every_prediction_and_counts(penguins_model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file: nothing can be made under it")
    # One entry worker: "logged once" is per worker.
    env = {
        "MODEL_TAG": str(penguins_model.tag),
        "PAYLOAD_LOG": "1",
        "PAYLOAD_LOG_DIR": str(blocker / "payload"),
        "API_WORKERS": "1",
    }
    with Server(env=env, name="payload-log-unwritable") as server:
        for i in range(5):
            assert (
                requests.post(f"{server.url}/predict", json={**ONE, "bill_length_mm": 40 + i}, timeout=30).status_code
                == 200
            )
        batch = requests.post(f"{server.url}/predict_batch", json={"records": [ONE] * 4}, timeout=30)
        assert batch.status_code == 200

        def counted():
            return sum(
                s.value
                for s in samples(server.url)
                if s.name == "tabserve_payload_log_errors_total" and s.labels["reason"] == "write"
            )

        deadline = time.monotonic() + 30
        while counted() < 9 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert counted() == 9
        log = server.log()
    said = [line for line in log.splitlines() if "payload log: cannot write to" in line]
    assert len(said) == 1 and "Traceback" not in log, log[-3000:]


def test_an_unknown_redacted_name_stops_the_server_with_one_line(penguins_model, tmp_path):
    env = {
        "MODEL_TAG": str(penguins_model.tag),
        "PAYLOAD_LOG": "1",
        "PAYLOAD_LOG_DIR": str(tmp_path),
        "PAYLOAD_LOG_REDACT": "sex,colour",
        "PAYLOAD_LOG_SALT": "s",
    }
    code, output = Server(env=env, name="payload-log-bad-redact").wait_exit()
    assert code != 0
    line = (
        f"error: PAYLOAD_LOG_REDACT names 'colour', not a feature of model {penguins_model.tag};"
        f" its features: {', '.join(FEATURES)}"
    )
    assert line in output.splitlines(), output[-2000:]


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium("1000,1500", "--allow-file-access-from-files")


@pytest.mark.browser
def test_the_drift_report_of_the_served_log_in_chromium(logged, traffic, browser, penguins_model, tmp_path):
    from selenium.webdriver.common.by import By

    out = tmp_path / "drift-report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tabserve.serving.observe.drift_report",
            "--log",
            str(logged.payload_dir),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    records = len(log_lines(logged.payload_dir))  # every line: each record sent, on every path, and the last ones
    assert records > sum(traffic[0].values())
    assert (
        done.stdout.startswith(f"wrote {out}: {penguins_model.tag}, {records} records, ")
        and "status alert" in done.stdout
    ), done.stdout
    browser.get(out.as_uri())
    assert browser.title == f"Drift report: {penguins_model.tag}"
    assert browser.find_element(By.ID, "status").text == "alert"
    assert browser.find_element(By.ID, "records").text == str(records)
    rows = browser.find_elements(By.CSS_SELECTOR, "#features tr[data-feature]")
    assert {r.get_attribute("data-feature") for r in rows[:2]} == {"island", "body_mass_g"}
    assert [r.find_element(By.CSS_SELECTOR, ".status").text for r in rows[:2]] == ["alert", "alert"]
    assert "sex" in browser.find_element(By.ID, "redacted").text
    images = browser.find_elements(By.CSS_SELECTOR, "section.feature img")
    assert len(images) == len(rows) + 1 and all(
        browser.execute_script("return arguments[0].naturalWidth", i) > 300 for i in images
    )
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "drift-report.png"))
    assert (ARTIFACTS / "drift-report.png").stat().st_size > 10_000
