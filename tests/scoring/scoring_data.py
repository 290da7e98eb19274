"""Data for the batch scoring tests: real rows, repeated and perturbed, with bad rows planted where
we know what the service says about them; and running score.py as a user does."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import ROOT

PENGUIN_NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# Planted bad rows of the penguins file: position -> (column, cell, the start of the service's message).
PENGUIN_BAD = {
    7: ("island", "Mars", "island: Input should be 'Biscoe', 'Dream' or 'Torgersen'"),
    1001: ("bill_length_mm", "long", "bill_length_mm: Input should be a valid number"),
    2500: ("sex", "unknown", "sex: Input should be 'female' or 'male'"),
}


def penguins_frame(copies: int = 9, seed: int = 0) -> pd.DataFrame:
    """data/penguins.csv `copies` times as text: numbers perturbed, a few missing markers and padded cells,
    a `row` number and a free-text `note` with commas and quotes (both passed through), bad rows planted."""
    from tabserve.core.data import PENGUINS_CSV

    rng = np.random.default_rng(seed)
    base = pd.read_csv(PENGUINS_CSV, dtype=str, keep_default_na=False)
    frame = pd.concat([base] * copies, ignore_index=True)
    for name in PENGUIN_NUMBERS:
        values = pd.to_numeric(frame[name], errors="coerce")
        scale = values.std() * 0.05
        perturbed = (values + rng.normal(0, scale, len(values))).round(1)
        frame[name] = [("NA" if math.isnan(v) else repr(float(v))) for v in perturbed]
    frame.loc[rng.choice(len(frame), 30, replace=False), "bill_depth_mm"] = "?"  # another missing marker
    frame.loc[rng.choice(len(frame), 30, replace=False), "sex"] = ""
    frame.loc[rng.choice(len(frame), 20, replace=False), "island"] = " Dream "  # padded: stripped, like an upload
    frame.insert(0, "row", [str(i) for i in range(len(frame))])
    frame["note"] = [f'seen "{i % 7}", ok' if i % 5 == 0 else "" for i in range(len(frame))]
    for position, (column, cell, _) in PENGUIN_BAD.items():
        frame.loc[position, column] = cell
    return frame


def raw_penguins_csv() -> Path:
    """palmerpenguins' penguins-raw.csv: dates, Yes/No booleans, NA, an id, names with spaces and brackets."""
    import palmerpenguins

    return Path(palmerpenguins.__file__).resolve().parent / "data" / "penguins-raw.csv"


RAW_BAD_ISLAND = {11: "Atlantis", 1500: "Atlantis"}


def raw_penguins_typed(copies: int = 8) -> pd.DataFrame:
    """penguins-raw as typed columns, as a Parquet file holds them: datetimes, booleans, floats with NaN,
    text with None; repeated, a `row` number first, two rows with an island never seen."""
    base = pd.read_csv(raw_penguins_csv())
    frame = pd.concat([base] * copies, ignore_index=True)
    frame["Date Egg"] = pd.to_datetime(frame["Date Egg"])
    frame["Clutch Completion"] = frame["Clutch Completion"].map({"Yes": True, "No": False})
    frame.insert(0, "row", np.arange(len(frame), dtype="int64"))
    for position, island in RAW_BAD_ISLAND.items():
        frame.loc[position, "Island"] = island
    return frame


def json_value(value):
    """A typed cell as the JSON a client would send: null for missing, ISO text for dates."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def run_score(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "score.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


# Spark on two worker processes, and a small file split in two partitions (the split size otherwise has a 4 MB floor).
SPARK = (
    "--engine",
    "spark",
    "--master",
    "local[2]",
    "--conf",
    "spark.sql.files.openCostInBytes=4096",
    "--conf",
    "spark.sql.files.maxPartitionBytes=65536",
)
