"""Records sampled from the training CSV, as the API takes them (missing values as null)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

DATA = Path(os.environ.get("BENCH_DATA", Path(__file__).resolve().parent.parent / "data" / "penguins.csv"))
FEATURES = ("island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year")
NUMERIC = {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"}


def _cell(name: str, raw: str):
    if raw in ("", "NA", "NaN", "nan"):
        return None
    if name in NUMERIC:
        value = float(raw)
        return None if math.isnan(value) else value
    return raw


def load_records(path: Path = DATA) -> list[dict]:
    with path.open(newline="") as handle:
        return [{name: _cell(name, row[name]) for name in FEATURES} for row in csv.DictReader(handle)]
