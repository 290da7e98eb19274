"""The hand-written baseline: plain FastAPI + uvicorn, one record per request, no batching.

Honest on purpose: the same pipeline loaded from the same BentoML model store, the same pydantic
Record type (built from the model card) validating every request, the same response shape.

    MODEL_TAG=penguins:latest python bench/uvicorn_nodelay.py bench.baseline_fastapi:app --workers 2

(not `uvicorn --workers 2`, which stalls each answer ~40 ms; see bench/uvicorn_nodelay.py). The runner (bench/run.py)
starts it with its best measured configuration; see bench/README.md.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from pydantic import ConfigDict, create_model

from tabserve.core import pipeline, store
from tabserve.core.card import ModelCard
from tabserve.serving.api import contract as contract

MODEL_TAG = os.environ.get("MODEL_TAG", "").strip() or "penguins:latest"
# "inline": the sync pipeline call runs on the event loop (one request at a time per worker, no thread hop);
# "threadpool": FastAPI's usual `def` endpoint, run in its thread pool.
MODE = os.environ.get("BASELINE_MODE", "inline")

_model = bentoml.models.get(MODEL_TAG)
CARD = ModelCard.from_model(_model)
TYPES = contract.ApiTypes.from_card(CARD, max_records=10_000)
Record, Prediction = TYPES.record, TYPES.prediction
PIPELINE = store.load_pipeline(_model)

app = FastAPI(title="baseline (FastAPI, no batching)")


def _predict(values: dict[str, Any]) -> dict[str, Any]:
    [result] = pipeline.predict_records(PIPELINE, CARD.schema, [values])
    return contract.shape(result, CARD.schema.out_of_range(values), CARD.tag)


@app.post("/predict", response_model=Prediction)
async def predict(record: Record) -> dict[str, Any]:  # type: ignore[valid-type]
    values = record.model_dump()
    if MODE == "threadpool":
        item = await run_in_threadpool(_predict, values)
    else:
        item = _predict(values)
    return item


BatchRequest = create_model("BatchRequest", __config__=ConfigDict(extra="forbid"), records=(TYPES.record_list, ...))


@app.post("/predict_batch")
async def predict_batch(body: BatchRequest) -> dict[str, Any]:  # type: ignore[valid-type]
    values = [r.model_dump() for r in body.records]
    results = pipeline.predict_records(PIPELINE, CARD.schema, values)
    items = [contract.shape(r, CARD.schema.out_of_range(v), CARD.tag) for r, v in zip(results, values, strict=False)]
    return {
        "predictions": [{k: v for k, v in item.items() if k != "model"} for item in items],
        "model": CARD.tag,
    }  # named once, as the project does


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}
