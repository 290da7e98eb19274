"""The HTTP service: an entry service (validation, cache, response shaping, /v1 routes) in front of
a model service (batched inference), both in one Bento.

    bentoml serve                      # serves service:PredictionService, as bentofile.yaml says
    MODEL_TAG=my_model bentoml serve   # another model from the store

The request and response types are built at import from the served model's feature schema,
so Swagger (/) documents exactly the fields, categories and ranges the model was trained on.
"""

import asyncio
import gc
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

# One OpenMP/BLAS thread per process, set before numpy/scikit-learn load and inherited by the workers
# `bentoml serve` starts: with 2 threads on 2 shared cores every small predict_proba call pays OpenMP
# fork/join and spin-waits, 5-20x slower (bench/README.md, "Findings").
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import bentoml
from bentoml.exceptions import BentoMLException
from bentoml.validators import ContentType
from pydantic import ConfigDict
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

from tabserve.core.card import ModelCard
from tabserve import bentoml_fixes as bentoml_patches
from tabserve.core import config
from tabserve.serving import api_types as contract
from tabserve.serving import http_gate as http
from tabserve.serving import metrics
from tabserve.core import pipeline
from tabserve.core import store
from tabserve.serving import v1_app as web
from tabserve.serving.batching import InFlightBatcher
from tabserve.serving.cache import PredictionCache
from tabserve.core.errors import InvalidInput, ModelCorrupted, ModelUnavailable, error_body

logger = logging.getLogger("tabserve")
http.quiet_client_error_logs()
bentoml_patches.apply()  # a timer leak and per-message tracing spans: see the module

# Fail at start with one line naming the tag, the store's models and the fix (the same line as
# `make serve`), not a traceback at the first request.
from tabserve.core import model_tags  # noqa: E402

if (_missing := model_tags.missing(config.MODEL_TAG)) is not None:
    sys.exit(_missing)
MODEL = bentoml.models.BentoModel(config.MODEL_TAG)
try:
    store.verify(MODEL.stored)
except ModelCorrupted as exc:
    sys.exit(f"error: {exc}")
CARD = ModelCard.from_model(MODEL.stored)
TYPES = contract.ApiTypes.from_card(CARD, max_records=config.MAX_BATCH_RECORDS)
Record, Prediction = TYPES.record, TYPES.prediction
RecordList, BatchResponse = TYPES.record_list, TYPES.batch_response


class BatchRequest(bentoml.IODescriptor):
    """The body of /predict_batch, {"records": [...]}: named, so `client.predict_batch(records=[...])` works."""

    model_config = ConfigDict(extra="forbid")  # a misspelt top-level key is refused, not ignored
    records: RecordList
# Under a burst of new connections the entry->model link sometimes drops one (ServerDisconnected,
# upstream BentoML issues #3669/#4238); inference is idempotent, so such a call is tried again.
MODEL_CALL_ATTEMPTS = 3
SETTINGS = {
    "adaptive_batching": config.ADAPTIVE_BATCHING,
    "max_batch_size": config.MAX_BATCH_SIZE,
    "max_latency_ms": config.MAX_LATENCY_MS,
    "api_workers": config.API_WORKERS,
    "model_workers": config.MODEL_WORKERS,
    "model_threads": config.MODEL_THREADS,
    "prediction_cache_size": config.PREDICTION_CACHE_SIZE,
    "api_key_required": bool(config.API_KEY),
}


@bentoml.service(
    workers=config.MODEL_WORKERS,
    threads=config.MODEL_THREADS,
    traffic={"timeout": config.REQUEST_TIMEOUT_S},
    logging={"access": {"enabled": False}},  # internal hop: the entry service logs each request already
    # BentoML's client to this service replaces its connection pool every 100 requests (and every
    # 300 s) and closes the old one under calls still in flight, which fail with ServerDisconnected.
    # One pool for the life of the process avoids that.
    runner_connection={"max_requests": 2**62, "max_age": 10.0**12},
)
class ModelService:
    """Runs the pipeline. Concurrent single-record calls are merged into one pipeline call."""

    model = MODEL

    def __init__(self) -> None:
        self.pipeline = store.load_pipeline(self.model)
        self.schema = CARD.schema
        gc.freeze()  # see PredictionService.__init__

    @bentoml.api(batchable=True, max_batch_size=config.MAX_BATCH_SIZE, max_latency_ms=config.MAX_LATENCY_MS)
    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        metrics.observe_pipeline_call("predict", len(records))
        return pipeline.predict_records(self.pipeline, self.schema, records)

    @bentoml.api
    def predict_bulk(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Already a batch (from /predict_batch or /predict_csv): no queueing needed."""
        metrics.observe_pipeline_call("predict_bulk", len(records))
        return pipeline.predict_records(self.pipeline, self.schema, records)


V1 = web.create_app(CARD, Record, Prediction, SETTINGS, predictor=bentoml.get_current_service)


@bentoml.asgi_app(V1, path="/v1")
@bentoml.service(
    workers=config.API_WORKERS,
    # The gate in tabserve/http.py answers 504 at REQUEST_TIMEOUT_S; BentoML's own timeout is a backstop.
    traffic={"timeout": config.REQUEST_TIMEOUT_S + 5},
    # /readyz asks __is_ready__ below instead: BentoML's own probe of the model service can hang
    # when the model worker is gone but its socket still listens.
    runner_probe={"enabled": False},
    labels={"model": CARD.tag, "task": CARD.task},
)
class PredictionService:
    """Typed prediction endpoints for the model named by MODEL_TAG."""

    model_service = bentoml.depends(ModelService)

    def __init__(self) -> None:
        self.cache = PredictionCache(config.PREDICTION_CACHE_SIZE)
        # Concurrent /predict records cross to the model service together (tabserve/batching.py).
        self.batcher = InFlightBatcher(lambda records: self._infer("predict", records), config.MAX_BATCH_SIZE)
        self._model_suspect_until = 0.0  # after a model timeout, check it is up before each call
        # The objects of startup (modules, the app, the model) live forever: keep them out of the full
        # garbage collections, which otherwise rescan them every second or so under load (~100 ms each).
        gc.freeze()
        if not config.API_KEY:
            logger.warning("API_KEY is not set: the prediction endpoints are open to anyone who can reach this port")

    async def __is_ready__(self) -> bool:
        service = self.model_service
        return await _is_up(service) if hasattr(service, "to_async") else True

    @bentoml.api(route="/predict")
    async def predict(self, record: Record, /, ctx: bentoml.Context) -> Prediction:
        """Predict one record. The body is the record itself. X-Cache says whether the cache answered."""
        try:
            item, hit = await self.predict_one(record.model_dump())
        except ModelUnavailable as exc:
            return _error_response(ctx, exc.status, str(exc))
        ctx.response.headers["X-Cache"] = "hit" if hit else "miss"
        return Prediction(**item, model=CARD.tag)

    @bentoml.api(route="/predict_batch", input_spec=BatchRequest)
    async def predict_batch(self, records: RecordList) -> BatchResponse:
        """Predict 1 to MAX_BATCH_RECORDS records in one call (body {"records": [...]}); answers keep the input order."""
        values = [r.model_dump() for r in records]
        try:
            results = await self._infer("predict_bulk", values)
        except ModelUnavailable as exc:
            return _error_response(None, exc.status, str(exc))
        return BatchResponse(predictions=self._answers(results, values), model=CARD.tag)

    @bentoml.api(route="/predict_csv")
    async def predict_csv(self, file: Path, ctx: bentoml.Context) -> Annotated[str, ContentType("text/csv")]:
        """Upload a CSV (multipart field `file`); get it back with prediction and proba_<class> columns.

        Id and dropped columns of the training file pass through. One bad row refuses the file (400
        listing the rows) unless `?on_error=skip` (or header X-On-Error: skip): then the good rows are
        predicted and an `error` column names each bad row's problem (X-Failed-Rows counts them).
        """
        on_error = ctx.request.query_params.get("on_error") or ctx.request.headers.get("x-on-error") or "fail"
        if on_error not in ("fail", "skip"):
            return _error_response(ctx, 400, f"invalid input: on_error must be 'fail' or 'skip', not {on_error!r}")
        try:
            scoring = contract.records_from_csv(file.read_bytes(), CARD, Record, config.MAX_CSV_ROWS, skip_bad_rows=on_error == "skip")
            results = await self._infer("predict_bulk", scoring.records) if scoring.records else []
        except InvalidInput as exc:
            return _error_response(ctx, exc.status, exc.message, exc.detail)
        except ModelUnavailable as exc:
            return _error_response(ctx, exc.status, str(exc))
        ctx.response.headers["X-Failed-Rows"] = str(scoring.failed)
        return contract.csv_with_predictions(scoring, self._answers(results, scoring.records), CARD)

    async def predict_one(self, values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """One record through the cache, then the batched model service: (answer, cache hit)."""
        key = PredictionCache.key(CARD.tag, values)
        cached = self.cache.get(key)
        if self.cache.max_size:
            metrics.observe_cache(hit=cached is not None)
        if cached is not None:
            metrics.observe_predictions(CARD.tag, [cached], [CARD.schema.out_of_range(values)])
            return cached, True
        if config.ADAPTIVE_BATCHING:
            result = await self.batcher.submit(values)
        else:
            [result] = await self._infer("predict_bulk", [values])
        [answer] = self._answers([result], [values])
        self.cache.put(key, answer)
        return answer, False

    def _answers(self, results: list[dict[str, Any]], values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Model results as API items (with warnings), counted on /metrics."""
        flagged = [CARD.schema.out_of_range(v) for v in values]
        answers = [contract.shape(r, f) for r, f in zip(results, flagged)]
        metrics.observe_predictions(CARD.tag, answers, flagged)
        return answers

    async def _infer(self, api: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        service = self.model_service
        if not hasattr(service, "to_async"):  # in-process instance (no server): call it directly
            return getattr(service, api)(records)
        if time.monotonic() < self._model_suspect_until and not await _is_up(service):
            raise ModelUnavailable("the model service is down; retry shortly")  # fail fast, don't queue
        for attempt in range(1, MODEL_CALL_ATTEMPTS + 1):
            if attempt > 1:
                await asyncio.sleep(0.05 * attempt)
            try:
                return await asyncio.wait_for(getattr(service.to_async, api)(records), config.MODEL_TIMEOUT_S)
            except asyncio.TimeoutError:
                self._model_suspect_until = time.monotonic() + 5
                raise ModelUnavailable(f"the model service did not answer within {config.MODEL_TIMEOUT_S} s") from None
            except BentoMLException as exc:
                status = int(getattr(exc, "error_code", 500))
                if status in (429, 503):
                    raise ModelUnavailable("the model service is overloaded; retry shortly", status) from None
                logger.error("model service failed: %s", exc)
                raise ModelUnavailable("the model service failed to answer") from None
            except Exception as exc:  # connection-level: the idempotent inference is retried
                logger.info("model service call failed (attempt %d of %d): %r", attempt, MODEL_CALL_ATTEMPTS, exc)
        logger.warning("model service call failed %d times; answering 503", MODEL_CALL_ATTEMPTS)
        raise ModelUnavailable("the model service is unavailable")


async def _is_up(service: Any) -> bool:
    """A quick readiness probe of the model service that never raises."""
    try:
        return bool(await asyncio.wait_for(service.is_ready(1), 2))
    except Exception:  # timeouts and connection errors of aiohttp/httpx alike mean "not up"
        return False


def _error_response(ctx: Any, status: int, message: str, detail: list | None = None) -> JSONResponse:
    if ctx is not None:  # BentoML copies the context's status onto the response
        ctx.response.status_code = status
    return JSONResponse(error_body(message, detail), status_code=status)


if config.CORS_ORIGINS:
    PredictionService.add_asgi_middleware(
        CORSMiddleware, allow_origins=config.CORS_ORIGINS, allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "X-On-Error"], expose_headers=["X-Cache", "X-Failed-Rows"],
    )
PredictionService.add_asgi_middleware(
    http.ErrorContract,
    gate=http.Gate(
        json_routes=("/predict", "/predict_batch"),
        upload_routes=("/predict_csv",),
        form_routes=("/v1/form",),
        protected_prefixes=("/v1",),
        api_key=config.API_KEY,
        max_body_bytes=config.MAX_BODY_BYTES,
        max_concurrency=config.MAX_CONCURRENCY,
        timeout_s=config.REQUEST_TIMEOUT_S,
    ),
)
