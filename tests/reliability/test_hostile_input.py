"""A corpus of hostile input against every prediction endpoint: each gets a documented 4xx with a
clear message (never a 5xx, a stack trace or a hang), and the server keeps answering."""

import json

import pytest
import requests

from tests.conftest import PENGUIN

pytestmark = pytest.mark.served
JSON = {"Content-Type": "application/json"}
HEADER = ",".join(PENGUIN)
ROW = ",".join(str(v) for v in PENGUIN.values())
RECORD_TEXT = json.dumps(PENGUIN)


def raw(text: str) -> dict:
    return {"data": text.encode() if isinstance(text, str) else text, "headers": JSON}


def as_record(fragment: str) -> str:
    """PENGUIN as JSON text with one member replaced by raw JSON text (for NaN, duplicates, ...)."""
    return RECORD_TEXT[:-1] + ", " + fragment + "}" if fragment else RECORD_TEXT


def as_batch(record_text: str) -> str:
    return '{"records": [' + record_text + "]}"


# (name, raw JSON body of a record or None, the record as a dict, fragment expected in the error)
RECORD_CASES = [
    ("empty-body", "", None, "the request body is empty"),
    ("null", "null", None, ""),
    ("array-for-object", "[" + RECORD_TEXT + "]", None, ""),
    ("nan", RECORD_TEXT.replace("48.6", "NaN"), None, "finite number"),
    ("infinity", RECORD_TEXT.replace("48.6", "Infinity"), None, "finite number"),
    ("1e309", RECORD_TEXT.replace("48.6", "1e309"), None, "finite number"),
    ("number-as-string", None, {**PENGUIN, "bill_length_mm": "48.6"}, "bill_length_mm"),
    ("bool-for-number", None, {**PENGUIN, "body_mass_g": False}, "body_mass_g"),
    ("nested-object", None, {**PENGUIN, "island": {"name": "Biscoe"}}, "island"),
    ("long-category", None, {**PENGUIN, "island": "B" * 1000}, "island"),
    ("unicode-category", None, {**PENGUIN, "island": "Bíscoe 🐧"}, "island"),
    ("control-characters", None, {**PENGUIN, "sex": "ma\u0000le\u001b[31m"}, "sex"),
    ("control-in-key", None, {**PENGUIN, "ye\u0007ar": 2008}, "Extra inputs"),
    ("duplicate-keys", RECORD_TEXT[:-1] + ', "island": "Dream"}', None, "appears twice"),
    ("deeply-nested", "[" * 5000 + "]" * 5000, None, ""),
]


def record_request(case, batch: bool) -> dict:
    _, text, record, _ = case
    if text is None:
        text = json.dumps(record)
    if batch:
        text = as_batch(text) if text else ""
    return raw(text)


@pytest.mark.parametrize("case", RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
@pytest.mark.parametrize("path", ["/predict", "/predict_batch"])
def test_hostile_json(server, path, case):
    response = requests.post(f"{server.url}{path}", timeout=60, **record_request(case, batch=path == "/predict_batch"))
    assert_clear_4xx(response, {400}, case[3])


QUERY_CASES = [
    ("nan", {**PENGUIN, "bill_length_mm": "NaN"}, "finite number"),
    ("infinity", {**PENGUIN, "bill_length_mm": "Infinity"}, "finite number"),
    ("1e309", {**PENGUIN, "bill_length_mm": "1e309"}, "finite number"),
    ("word-for-number", {**PENGUIN, "year": "twenty"}, "year"),
    ("long-category", {**PENGUIN, "island": "B" * 1000}, "island"),
    ("unicode-category", {**PENGUIN, "island": "Bíscoe 🐧"}, "island"),
    ("control-characters", {**PENGUIN, "sex": "ma\u0000le"}, "sex"),
    ("duplicate-parameter", list(PENGUIN.items()) + [("island", "Dream")], "more than once: island"),
]


@pytest.mark.parametrize("case", QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
def test_hostile_query(server, case):
    response = requests.get(f"{server.url}/v1/predict", params=case[1], timeout=60)
    assert_clear_4xx(response, {400}, case[2])


CSV_CASES = [
    ("empty", b"", {400}, "empty"),
    ("header-only", (HEADER + "\n").encode(), {400}, "no data rows"),
    (
        "missing-column",
        (HEADER.replace(",year", "") + "\n" + ROW.rsplit(",", 1)[0] + "\n").encode(),
        {400},
        "lacks column(s): year",
    ),
    ("extra-column", (HEADER + ",colour\n" + ROW + ",red\n").encode(), {400}, "unknown column(s): colour"),
    # Read as cp1252 (tabserve/core/data.py): "Biscöe" is then an island the model does not know.
    ("latin-1", (HEADER + "\n" + ROW.replace("Biscoe", "Bisc\u00f6e") + "\n").encode("latin-1"), {400}, "island"),
    ("10MB-single-line", (HEADER + "\n" + "Biscoe" + "9" * (10 * 1024 * 1024) + "\n").encode(), {400, 413}, ""),
    ("binary-garbage", bytes(range(256)) * 64, {400}, "binary"),
    ("ragged-row", (HEADER + "\n" + ROW + ",1\n").encode(), {400}, "row 1 has 8 cells"),
    ("100001-rows", (HEADER + "\n" + (ROW + "\n") * 100_001).encode(), {413}, ""),
]


@pytest.mark.parametrize("case", CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_hostile_csv(server, case):
    _, content, statuses, fragment = case
    response = requests.post(f"{server.url}/predict_csv", files={"file": ("in.csv", content, "text/csv")}, timeout=120)
    assert_clear_4xx(response, statuses, fragment)


def test_csv_with_a_bom_is_read_correctly(server):
    content = ("\ufeff" + HEADER + "\n" + ROW + "\n").encode()
    response = requests.post(f"{server.url}/predict_csv", files={"file": ("in.csv", content, "text/csv")}, timeout=60)
    assert response.status_code == 200 and response.text.startswith("island,") and "Gentoo" in response.text


@pytest.mark.parametrize("path", ["/predict", "/predict_batch"])
def test_50_megabyte_body(server, path):
    body = b'{"records": [' + b",".join([RECORD_TEXT.encode()] * 400_000) + b"]}"
    response = requests.post(f"{server.url}{path}", data=body, headers=JSON, timeout=120)
    assert_clear_4xx(response, {413}, "limit")


def test_100001_records(server):
    response = requests.post(f"{server.url}/predict_batch", json={"records": [PENGUIN] * 100_001}, timeout=120)
    assert_clear_4xx(response, {400, 413}, "")


def test_still_ready_after_the_corpus(server):
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
    assert requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30).json()["prediction"] == "Gentoo"


def assert_clear_4xx(response, statuses, fragment):
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] and "\n" not in body["error"]
    assert fragment in json.dumps(body, ensure_ascii=False), body
    assert "Traceback" not in response.text
