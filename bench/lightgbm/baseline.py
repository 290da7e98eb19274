"""The LightGBM scenario's hand-written baseline: FastAPI, the booster file, `booster.predict`, nothing else.

    LGBM_MODEL_FILE=model.txt OMP_NUM_THREADS=1 python bench/uvicorn_nodelay.py bench.lightgbm.baseline:app --workers 2

What a user would write around a LightGBM booster they already have, as the penguins baseline
(bench/baseline_fastapi.py) is for a scikit-learn pipeline, in the same configuration (2 uvicorn processes on
their own SO_REUSEPORT listeners, one OpenMP thread, the model called inline in the `async` endpoint, no access
log). Everything comes from the booster file itself: the feature names and order, which columns are categories
and their categories (the pandas categories LightGBM keeps in the file), and each numeric feature's training
range. The record type is the project's shape: one JSON object keyed by feature name, numbers as finite numbers
(strings refused), a category as its text (one of the trained ones), unknown fields refused.

- `POST /predict`: a record -> `{"prediction": 0|1, "probabilities": {"0": p, "1": p}, "warnings": [...],
  "model": name}`; probabilities rounded to 6 places, `warnings` names numbers outside the training range;
- `POST /predict_batch`: `{"records": [...]}` (1-10,000) -> `{"predictions": [...], "model": name}`, one
  `booster.predict` for all of them;
- `GET /readyz`.

(No `__init__.py` in bench/lightgbm/ on purpose: as a regular package it would shadow the real `lightgbm`
wherever bench/ is on sys.path, as it is for bench/run.py and bench/uvicorn_nodelay.py.)
"""

# No `from __future__ import annotations`: FastAPI must see the record types built in create_app as types.
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import lightgbm as lgb
import numpy as np
from fastapi import FastAPI
from pydantic import ConfigDict, Field, create_model


class BoosterInputs:
    """The booster's input as its file describes it: features, categories (code = position), numeric ranges."""

    def __init__(self, booster: lgb.Booster):
        self.features = booster.feature_name()
        indices = [int(i) for i in booster.params.get("categorical_feature", [])]
        self.categories = {
            self.features[i]: list(cats) for i, cats in zip(indices, booster.pandas_categorical or [], strict=False)
        }
        self.codes = [
            {c: float(k) for k, c in enumerate(self.categories[name])} if name in self.categories else None
            for name in self.features
        ]
        infos = booster.dump_model(num_iteration=1)["feature_infos"]  # the ranges; one tree is enough
        self.ranges = {
            name: (infos[name]["min_value"], infos[name]["max_value"])
            for name in self.features
            if name not in self.categories and name in infos
        }

    def record_type(self):
        number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
        fields: dict[str, Any] = {}
        for name in self.features:
            fields[name] = (Literal[tuple(self.categories[name])], ...) if name in self.categories else (number, ...)
        return create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)

    def row(self, values: list) -> list[float]:
        return [v if codes is None else codes[v] for v, codes in zip(values, self.codes, strict=False)]

    def out_of_range(self, record: dict[str, Any]) -> list[str]:
        out = []
        for name, (low, high) in self.ranges.items():
            value = record[name]
            if value < low or value > high:
                out.append(f"{name}: {value} is outside the training range [{low}, {high}]")
        return out


def create_app(model_file: str | Path, name: str = "lightgbm") -> FastAPI:
    booster = lgb.Booster(model_file=str(model_file))
    inputs = BoosterInputs(booster)
    Record = inputs.record_type()
    Batch = create_model(
        "BatchRequest",
        __config__=ConfigDict(extra="forbid"),
        records=(Annotated[list[Record], Field(min_length=1, max_length=10_000)], ...),
    )
    app = FastAPI(title="baseline (FastAPI, booster.predict)")

    def answer(p: float, record: dict[str, Any]) -> dict[str, Any]:
        p = float(p)
        return {
            "prediction": 1 if p > 0.5 else 0,
            "probabilities": {"0": round(1 - p, 6), "1": round(p, 6)},
            "warnings": inputs.out_of_range(record),
        }

    @app.post("/predict")
    async def predict(record: Record) -> dict[str, Any]:  # type: ignore[valid-type]
        values = record.__dict__
        [p] = booster.predict(np.array([inputs.row(list(values.values()))], dtype=np.float64))
        return {**answer(p, values), "model": name}

    @app.post("/predict_batch")
    async def predict_batch(body: Batch) -> dict[str, Any]:  # type: ignore[valid-type]
        values = [r.__dict__ for r in body.records]
        x = np.array([inputs.row(list(v.values())) for v in values], dtype=np.float64)
        return {"predictions": [answer(p, v) for p, v in zip(booster.predict(x), values, strict=False)], "model": name}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    app.state.booster, app.state.inputs = booster, inputs
    return app


# bench/run.py --scenario lightgbm starts it with LGBM_MODEL_FILE set; importing the module without it builds nothing.
app = (
    create_app(os.environ["LGBM_MODEL_FILE"], os.environ.get("LGBM_MODEL_NAME", "lightgbm"))
    if os.environ.get("LGBM_MODEL_FILE")
    else None
)
