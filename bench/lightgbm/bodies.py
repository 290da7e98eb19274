"""The LightGBM scenario's request bodies, shared by its Locust users (bench/lightgbm/locustfile.py) and the
runner's agreement check (bench/lightgbm/scenario.py), which must not import locust (it patches the process
with gevent). Standard library only."""

from __future__ import annotations

import json
import random
from pathlib import Path


def load(directory: Path) -> tuple[list[dict], dict]:
    """The held-out records (as the API takes them) and the schema generate.py wrote beside them."""
    records = json.loads((directory / "records.json").read_text())["records"]
    return records, json.loads((directory / "schema.json").read_text())


def jitter(record: dict, rng: random.Random) -> dict:
    """The record with each number moved by up to 1 % (categories unchanged)."""
    return {k: v if isinstance(v, str) else round(v * (1 + rng.uniform(-0.01, 0.01)), 6) for k, v in record.items()}


def v2_request(records: list[dict], schema: dict) -> dict:
    """Records as one V2 inference request for MLServer's LightGBM runtime: one FP64 input [rows, features],
    row-major, in the booster's feature order, a category as its code (its position among the booster's
    categories, as LightGBM codes a pandas category)."""
    codes = {name: {c: i for i, c in enumerate(cats)} for name, cats in schema["categorical"].items()}
    features = schema["features"]
    data = [float(codes[n][r[n]]) if n in codes else r[n] for r in records for n in features]
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [len(records), len(features)], "data": data}]}
