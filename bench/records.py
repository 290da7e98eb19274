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


# ---------------------------------------------------------------- the same records for the peers

V2_MODEL = "penguins"  # the model's name on MLServer (bench/peers/mlserver/model-settings.json)
V2_PATH = f"/v2/models/{V2_MODEL}/infer"


def v2_request(records: list[dict]) -> dict:
    """Records as one V2 (Open Inference Protocol) request for MLServer's PandasCodec: one input per column,
    shape [rows, 1], numbers as FP64 and text as BYTES with content type "str", missing values as null."""
    inputs = []
    for name in FEATURES:
        values = [record[name] for record in records]
        if name in NUMERIC:
            inputs.append({"name": name, "datatype": "FP64", "shape": [len(values), 1], "data": values})
        else:
            inputs.append(
                {
                    "name": name,
                    "datatype": "BYTES",
                    "shape": [len(values), 1],
                    "data": values,
                    "parameters": {"content_type": "str"},
                }
            )
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def v2_answers(response: dict) -> list[dict]:
    """An MLServer answer (outputs `label` and one FP64 output per class) as the project's /predict answers."""
    columns = {output["name"]: output["data"] for output in response["outputs"]}
    labels = columns.pop("label")
    return [
        {"prediction": label, "probabilities": {key: values[i] for key, values in columns.items()}}
        for i, label in enumerate(labels)
    ]
