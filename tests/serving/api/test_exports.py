"""Amounts in everyday exports ("$17,600.00", "60 months"), in process (tests.conftest.in_process_service): a
client may send them as numbers or as the file wrote them (tests/served/test_any_csv.py scores the same file row for
row; tests/serving/api/test_rich_categories.py: categories that take any value)."""

import csv
import io

import pytest

from tabserve.training import trainer
from tests.conftest import DATA, HGB_ONLY, in_process_service


@pytest.fixture(scope="module")
def loan_book(bentoml_home):
    """openintro's loans as a loan book exports them ("$17,600.00", "60 months"), served in process."""
    tag = str(trainer.train(DATA / "loans.csv", "interest_rate", name="exports-loans", choices=HGB_ONLY).model.tag)
    with in_process_service(tag) as client:
        yield client


LOAN = {
    "emp_length": 10.0,
    "state": "NJ",
    "homeownership": "OWN",
    "annual_income": 90000.0,
    "debt_to_income": 12.07,
    "loan_purpose": "debt_consolidation",
    "loan_amount": 17600.0,
    "term": 60,
    "installment": 381.79,
    "grade": "B",
}


def test_amounts_are_accepted_as_numbers_and_as_the_file_wrote_them(loan_book):
    as_numbers = loan_book.post("/predict", json=LOAN)
    as_written = loan_book.post(
        "/predict",
        json={**LOAN, "annual_income": "$90,000.00", "loan_amount": "$17,600.00", "term": "60 months"},
    )
    assert as_numbers.status_code == 200 and as_written.status_code == 200, as_written.text
    assert as_written.json()["prediction"] == as_numbers.json()["prediction"]
    query = "&".join(f"{k}={v}" for k, v in {**LOAN, "loan_amount": "$17,600.00"}.items()).replace("$", "%24")
    assert loan_book.get(f"/v1/predict?{query}").json()["prediction"] == as_numbers.json()["prediction"]


def test_an_amount_written_another_way_is_refused_naming_the_field_and_the_form(loan_book):
    refused = loan_book.post("/predict", json={**LOAN, "loan_amount": "€17,600"})
    assert refused.status_code == 400
    [detail] = refused.json()["detail"]
    assert detail["loc"] == ["loan_amount"] and "'$17,600.00'" in detail["msg"], detail


def test_the_docs_say_how_amounts_may_be_written(loan_book):
    features = {f["name"]: f for f in loan_book.get("/v1/features").json()}
    assert features["loan_amount"]["written_as"] == "$17,600.00"
    described = loan_book.get("/docs.json").json()["components"]["schemas"]["Record"]["properties"]["loan_amount"]
    assert "'$17,600.00'" in described["description"]


def test_a_scored_file_keeps_its_amounts_as_written(loan_book):
    content = (DATA / "loans.csv").read_bytes()
    scored = list(csv.DictReader(io.StringIO(loan_book.post("/predict_csv", files={"file": ("l.csv", content)}).text)))
    assert scored[0]["loan_amount"] == "$7,000.00" and scored[0]["interest_rate"] == "21.45%"  # passed through
    assert float(scored[0]["prediction"]) > 0 and len(scored) == 500
