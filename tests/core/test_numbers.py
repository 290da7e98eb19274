"""Numbers written as spreadsheets and exports write them (tabserve/core/numbers.py)."""

import pytest

from tabserve.core.numbers import NumberText, detect


@pytest.mark.parametrize(
    "values, decimal, written, numbers",
    [
        (["$90,000.00", "$28,000", "$652.53"], ".", NumberText("$", "", ","), [90000.0, 28000.0, 652.53]),
        (["14.07%", "6.72%", "-1.5%"], ".", NumberText("", "%", ""), [14.07, 6.72, -1.5]),
        (["36 months", "60 months"], ".", NumberText("", "months", ""), [36.0, 60.0]),
        (["1 year", "10 years", "2 years"], ".", NumberText("", "years", ""), [1.0, 10.0, 2.0]),
        (["1,234", "12", "3,456.78"], ".", NumberText("", "", ","), [1234.0, 12.0, 3456.78]),
        (["12,50 €", "1.234,00 €"], ",", NumberText("", "€", "."), [12.5, 1234.0]),
        (["1 234,5", "12"], ",", NumberText("", "", " "), [1234.5, 12.0]),
        (["($1,234.00)", "$5", "-$7"], ".", NumberText("$", "", ","), [-1234.0, 5.0, -7.0]),
        (["USD 1,200", "USD 30"], ".", NumberText("USD", "", ","), [1200.0, 30.0]),
    ],
)
def test_spreadsheet_numbers_read_as_the_number_a_person_reads(values, decimal, written, numbers):
    found = detect(values, decimal)
    assert found == written
    assert [found.parse(v, decimal) for v in values] == numbers


@pytest.mark.parametrize(
    "values, decimal",
    [
        (["5", "6.5"], "."),  # plain numbers: nothing to strip (read before this is asked)
        (["$5", "€6"], "."),  # two currencies
        (["5 kg", "6 lb"], "."),  # two units
        (["10+ years", "< 1 year"], "."),  # ranges are categories
        (["A1", "B2"], "."),  # codes
        (["1,5", "2"], "."),  # not a thousands grouping with a decimal point
        (["1.2.3"], "."),  # a version
        (["2013-01-01"], "."),  # a date
        (["12,34 %", "1,5 %"], "."),  # a decimal comma where the file says "."
        (["$5 per month long words here"], "."),  # words, not a unit
    ],
)
def test_text_that_is_not_one_way_of_writing_numbers_is_left_alone(values, decimal):
    assert detect(values, decimal) is None


def test_parse_takes_the_number_without_its_sign_or_unit_and_refuses_another_one():
    dollars = detect(["$90,000.00", "$28,000"], ".")
    assert dollars.parse("28000", ".") == 28000.0 and dollars.parse("$28,000", ".") == 28000.0
    assert dollars.parse("€28,000", ".") is None and dollars.parse("28,00", ".") is None
    percent = detect(["14.07%"], ".")
    assert percent.parse("14.07 %", ".") == 14.07 and percent.parse("14.07", ".") == 14.07


def test_the_summary_says_what_was_stripped():
    assert detect(["14.07%"], ".").describe("14.07%") == "percent: 14.07% → 14.07"
    money = detect(["$90,000.00"], ".")
    assert money.describe("$90,000.00") == "currency '$': $90,000.00 → 90000; thousands separator ','"
    assert detect(["36 months"], ".").describe("36 months") == "unit 'months': 36 months → 36"


def test_the_schema_keeps_it_as_json_and_reads_it_back():
    written = detect(["12,50 €", "1.234,00 €"], ",")
    kept = written.to_dict("1.234,00 €", ",")
    assert kept == {"suffix": "€", "thousands": ".", "example": "1.234,00 €", "decimal": ","}
    assert NumberText.from_dict(kept) == written
