"""Numbers as spreadsheets and exports write them: `$90,000.00`, `14.07%`, `1,234`, `36 months`, `12,50 €`.

A column is read as numbers when every value reads with one `NumberText`: the same currency sign or unit
on every value that has one (values without it are fine: `90000` in a `$` column), thousands separators
in groups of three, the file's decimal mark, a minus sign or accounting parentheses for negatives. The
number is what is written: `14.07%` is 14.07, not 0.1407 (so the API takes the number a person reads).

    >>> text = detect(["$90,000.00", "$28,000", "$1,500.50"], ".")
    >>> text.parse("$28,000", "."), text.describe("$28,000")
    (28000.0, "currency '$': $28,000 → 28000; thousands separator ','")
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

CURRENCIES = ("$", "€", "£", "¥", "₹", "USD", "EUR", "GBP", "CHF", "JPY")
# Thousands separators per decimal mark: "," with ".", and "." or a (narrow) no-break space or space with ",".
THOUSANDS = {".": (",", "\u00a0", "\u202f", " ", "'"), ",": (".", "\u00a0", "\u202f", " ")}
_CURRENCY = "|".join(re.escape(c) for c in sorted(CURRENCIES, key=len, reverse=True))
# sign? currency? sign? digits-and-separators, then a percent sign, a currency or a unit word (one or two words).
_SHAPE = re.compile(
    rf"^(?P<sign>[-+−])?\s*(?P<prefix>{_CURRENCY})?\s*(?P<sign2>[-+−])?\s*"
    r"(?P<digits>\d[\d.,'\u00a0\u202f ]*?)\s*"
    rf"(?P<suffix>%|{_CURRENCY}|[A-Za-z][A-Za-z]*(?: [A-Za-z]+)?)?$"
)
MAX_UNIT = 20  # a longer "unit" is words, not a unit


@dataclass(frozen=True)
class NumberText:
    """How one column writes its numbers: stripped on reading, named in the training summary."""

    prefix: str = ""  # a currency sign before the number: "$"
    suffix: str = ""  # "%", a currency after the number ("€"), or a unit ("months")
    thousands: str = ""  # the thousands separator seen: "," (or "." with a decimal comma, a space)

    def parse(self, text: str, decimal: str = ".") -> float | None:
        """The number in `text` written this way (with or without the sign or unit), else None."""
        return _read(text.strip(), decimal, self)

    def describe(self, example: str = "", decimal: str = ".") -> str:
        """What is stripped, for the summary: "percent: 14.07% → 14.07", "currency '$'; thousands separator ','"."""
        number = self.parse(example, decimal) if example else None
        shown = f": {example} → {number:.15g}" if number is not None else ""
        parts = []
        if self.suffix == "%":
            parts.append(f"percent{shown}")
        elif self.prefix or self.suffix in CURRENCIES:
            parts.append(f"currency {self.prefix or self.suffix!r}{shown}")
        elif self.suffix:
            parts.append(f"unit {self.suffix!r}{shown}")
        elif shown:
            parts.append(f"written{shown}")
        if self.thousands:
            parts.append(f"thousands separator {self.thousands!r}")
        return "; ".join(parts)

    @property
    def is_money_or_percent(self) -> bool:
        """A target written this way is an amount: a regression, whatever its number of distinct values."""
        return bool(self.prefix) or self.suffix == "%" or self.suffix in CURRENCIES

    def to_dict(self, example: str = "", decimal: str = ".") -> dict[str, str]:
        """As the schema keeps it (JSON, no empty values), with a value as the file wrote it and its decimal mark."""
        extra = {"example": example, "decimal": decimal if decimal != "." else ""}
        return {k: v for k, v in {**asdict(self), **extra}.items() if v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumberText:
        return _from_dict(tuple(sorted((k, v) for k, v in data.items() if k in FIELDS)))


FIELDS = ("prefix", "suffix", "thousands")


@lru_cache(maxsize=256)  # a CSV's cells are parsed one by one: one NumberText per column, not per cell
def _from_dict(items: tuple[tuple[str, str], ...]) -> NumberText:
    return NumberText(**dict(items))


def detect(values: Iterable[str], decimal: str = ".") -> NumberText | None:
    """The one way of writing that reads every (non-missing, stripped) value, when it strips something; else None.

    None when any value does not read, when values disagree on the sign or unit, or when nothing needs
    stripping (plain numbers are read as numbers before this is asked)."""
    prefixes: set[str] = set()
    suffixes: set[str] = set()
    thousands: set[str] = set()
    for text in set(values):
        shape = _SHAPE.match(_unparenthesize(text))
        if shape is None or (shape["sign"] and shape["sign2"]):
            return None
        suffix = shape["suffix"] or ""
        if len(suffix) > MAX_UNIT:
            return None
        separator = _thousands_of(shape["digits"], decimal)
        if separator is None:
            return None
        if shape["prefix"]:
            prefixes.add(shape["prefix"])
        if suffix:
            suffixes.add(_singular(suffix))
        if separator:
            thousands.add(separator)
    if len(prefixes) > 1 or len(suffixes) > 1 or len(thousands) > 1 or (prefixes and suffixes - {""}):
        return None
    if not (prefixes or suffixes or thousands):
        return None
    suffix = next(iter(suffixes), "")
    if suffix and suffix not in ("%", *CURRENCIES):  # a unit keeps the spelling most values use: "months"
        suffix = _common_spelling(values, suffix)
    return NumberText(next(iter(prefixes), ""), suffix, next(iter(thousands), ""))


def _read(text: str, decimal: str, how: NumberText) -> float | None:
    negative = False
    inner = _unparenthesize(text)
    if inner != text:
        negative, text = True, inner
    shape = _SHAPE.match(text)
    if shape is None or (shape["sign"] and shape["sign2"]):
        return None
    if shape["prefix"] and shape["prefix"] != how.prefix:
        return None
    suffix = shape["suffix"] or ""
    if suffix and _singular(suffix) != _singular(how.suffix):
        return None
    digits = shape["digits"]
    separator = _thousands_of(digits, decimal)
    if separator is None or (separator and separator != how.thousands):
        return None
    if separator:
        digits = digits.replace(separator, "")
    if decimal == ",":
        digits = digits.replace(",", ".")
    try:
        number = float(digits)
    except ValueError:
        return None
    if (shape["sign"] or shape["sign2"]) in ("-", "−"):
        negative = not negative
    number = -number if negative else number
    return number if math.isfinite(number) else None


def _thousands_of(digits: str, decimal: str) -> str | None:
    """The thousands separator `digits` uses ("" for none), or None when they are not one well-formed number."""
    whole, _, fraction = digits.partition(decimal)
    if fraction and not fraction.isdigit():
        return None
    if whole.isdigit():
        return ""
    for separator in THOUSANDS[decimal]:
        groups = whole.split(separator)
        if (
            len(groups) > 1
            and 1 <= len(groups[0]) <= 3
            and all(g.isdigit() for g in groups)
            and all(len(g) == 3 for g in groups[1:])
        ):
            return separator
    return None


def _unparenthesize(text: str) -> str:
    """Accounting negatives: "(1,234.00)" → "1,234.00" (the caller negates)."""
    return text[1:-1].strip() if len(text) > 2 and text[0] == "(" and text[-1] == ")" else text


def _singular(unit: str) -> str:
    lowered = unit.lower()
    return lowered[:-1] if len(lowered) > 2 and lowered.endswith("s") and unit not in CURRENCIES else lowered


def _common_spelling(values: Iterable[str], unit: str) -> str:
    spellings: dict[str, int] = {}
    for text in values:
        shape = _SHAPE.match(_unparenthesize(text))
        if shape and shape["suffix"]:
            spellings[shape["suffix"]] = spellings.get(shape["suffix"], 0) + 1
    return max(spellings, key=lambda s: (spellings[s], s)) if spellings else unit  # a tie: the plural
