"""The penguins data as JSON records, and the shifted copy the drift tests send (body mass × 1.3,
Torgersen's penguins moved to Biscoe)."""

from __future__ import annotations

import pandas as pd

from tabserve.core.data import PENGUINS_CSV

FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


def penguin_records() -> list[dict]:
    frame = pd.read_csv(PENGUINS_CSV)[FEATURES]
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def shifted(records: list[dict]) -> list[dict]:
    return [
        {
            **r,
            "body_mass_g": None if r["body_mass_g"] is None else r["body_mass_g"] * 1.3,
            "island": "Biscoe" if r["island"] == "Torgersen" else r["island"],
        }
        for r in records
    ]
