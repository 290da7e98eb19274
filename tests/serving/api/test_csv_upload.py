"""Scoring an uploaded CSV in-process (tabserve/serving/api/csv_upload.py): the cap on the rows a 400
lists. A file with more than MAX_REPORTED_ROWS bad rows is refused with the errors of the first
MAX_REPORTED_ROWS bad rows only (every error of each of those rows), and a message counting all of them.
(The same through a real server: tests/served/test_endpoints.py.)"""

import bentoml
import pytest

from tabserve.core.card import ModelCard
from tabserve.core.errors import InvalidInput
from tabserve.serving.api import csv_upload as csv_scoring
from tabserve.serving.api.csv_upload import MAX_REPORTED_ROWS

HEADER = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"
GOOD = "Dream,40,18,190,3700,male,2007"
ONE_ERROR = "Mars,40,18,190,3700,male,2007"  # island
TWO_ERRORS = "Mars,x,18,190,3700,male,2007"  # island and bill_length_mm


@pytest.fixture(scope="module")
def card(penguins_model):
    return ModelCard.from_model(bentoml.models.get(penguins_model.tag))


def upload(rows: list[str]) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def mixed(total: int) -> tuple[list[str], list[int]]:
    """`total` rows: every 4th good, the others bad (one error, or two every 4th row); the bad positions."""
    rows = [GOOD if p % 4 == 0 else TWO_ERRORS if p % 4 == 1 else ONE_ERROR for p in range(total)]
    return rows, [p for p in range(total) if p % 4]


def refusal(card, content: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        csv_scoring.records_from_csv(content, card, card.schema.record_model("Record"), max_rows=10_000)
    return refused.value


def listed_rows(detail: list[dict]) -> list[str]:
    return list(dict.fromkeys(d["loc"][0] for d in detail))


def test_more_bad_rows_than_the_cap_lists_the_first_ones_and_counts_all(card):
    rows, bad = mixed(160)  # 120 bad rows
    assert len(bad) > MAX_REPORTED_ROWS
    refused = refusal(card, upload(rows))
    assert refused.status == 400
    assert refused.message == (
        f"{len(bad)} of {len(rows)} CSV rows failed validation (first: row 2); nothing was predicted"
        " (add ?on_error=skip to predict the good rows)"
    )
    assert listed_rows(refused.detail) == [f"row {p + 1}" for p in bad[:MAX_REPORTED_ROWS]]
    # Every error of a listed row is there: two for the rows with two.
    listed = set(bad[:MAX_REPORTED_ROWS])
    expected_problems = sum(2 if p % 4 == 1 else 1 for p in listed)
    assert len(refused.detail) == expected_problems
    assert [d["loc"][1:] for d in refused.detail[:2]] == [["island"], ["bill_length_mm"]]  # row 2: both errors


def test_exactly_the_cap_lists_every_bad_row(card):
    rows = [ONE_ERROR] * MAX_REPORTED_ROWS + [GOOD]
    refused = refusal(card, upload(rows))
    assert listed_rows(refused.detail) == [f"row {p + 1}" for p in range(MAX_REPORTED_ROWS)]
    assert refused.message.startswith(
        f"{MAX_REPORTED_ROWS} of {MAX_REPORTED_ROWS + 1} CSV rows failed validation (first: row 1)"
    )


def test_skipping_bad_rows_reports_every_one_of_them(card):
    """With on_error=skip nothing is refused: every bad row gets its reason (the `error` column), past the cap too."""
    rows, bad = mixed(160)
    scoring = csv_scoring.records_from_csv(
        upload(rows), card, card.schema.record_model("Record"), max_rows=10_000, skip_bad_rows=True
    )
    assert sorted(scoring.row_errors) == bad and scoring.failed == len(bad)
    assert scoring.good_rows == [p for p in range(len(rows)) if p % 4 == 0] and len(scoring.records) == len(
        scoring.good_rows
    )
    assert scoring.row_errors[bad[-1]].startswith("island: Input should be")
    assert scoring.row_errors[1].startswith("island: ") and "; bill_length_mm: " in scoring.row_errors[1]
