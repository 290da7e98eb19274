"""The HTTP service: an entry service (validation, response shaping) in front of a model service
(batched inference), both in one Bento.

    bentoml serve                      # serves service:PredictionService, as bentofile.yaml says
    MODEL_TAG=my_model bentoml serve   # another model from the store

The request and response types are built at import from the served model's feature schema,
so Swagger (/) documents exactly the fields, categories and ranges the model was trained on.
"""

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from bentoml.validators import ContentType
from starlette.responses import JSONResponse

from tabserve import config, contract, http, pipeline, store
from tabserve.errors import InvalidInput, error_body

logger = logging.getLogger("tabserve")

MODEL = bentoml.models.BentoModel(config.MODEL_TAG)
if MODEL.stored is None:  # fail at start with one line, not a traceback at the first request
    sys.exit(f"error: model {config.MODEL_TAG!r} is not in the BentoML model store; run `make train` first")
CARD = store.ModelCard.from_model(MODEL.stored)
TYPES = contract.ApiTypes.from_card(CARD, max_records=config.MAX_BATCH_RECORDS)
Record, Prediction = TYPES.record, TYPES.prediction
BatchRequest, BatchResponse = TYPES.batch_request, TYPES.batch_response


class ModelUnavailable(Exception):
    """The model service could not be reached or refused the work (answered as 503/429)."""

    def __init__(self, message: str, status: int = 503):
        super().__init__(message)
        self.status = status


@bentoml.service(
    workers=config.MODEL_WORKERS,
    threads=config.MODEL_THREADS,
    traffic={"timeout": config.REQUEST_TIMEOUT_S},
)
class ModelService:
    """Runs the pipeline. Concurrent single-record calls are merged into one pipeline call."""

    model = MODEL

    def __init__(self) -> None:
        self.pipeline = store.load_pipeline(self.model)
        self.schema = CARD.schema

    @bentoml.api(batchable=True, max_batch_size=config.MAX_BATCH_SIZE, max_latency_ms=config.MAX_LATENCY_MS)
    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return pipeline.predict_records(self.pipeline, self.schema, records)

    @bentoml.api
    def predict_bulk(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Already a batch (from /predict_batch or /predict_csv): no queueing needed."""
        return pipeline.predict_records(self.pipeline, self.schema, records)


@bentoml.service(
    workers=config.API_WORKERS,
    traffic={"timeout": config.REQUEST_TIMEOUT_S, "max_concurrency": config.MAX_CONCURRENCY},
    labels={"model": CARD.tag, "task": CARD.task},
)
class PredictionService:
    """Typed prediction endpoints for the model named by MODEL_TAG."""

    model_service = bentoml.depends(ModelService)

    @bentoml.api(route="/predict")
    async def predict(self, record: Record, /) -> Prediction:
        """Predict one record. The body is the record itself."""
        values = record.model_dump()
        try:
            [result] = await self._infer("predict" if config.ADAPTIVE_BATCHING else "predict_bulk", [values])
        except ModelUnavailable as exc:
            return _error_response(exc.status, str(exc))
        return Prediction(**contract.shape(result, values, CARD), model=CARD.tag)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, records: BatchRequest, /) -> BatchResponse:
        """Predict 1 to MAX_BATCH_RECORDS records in one call; answers keep the input order."""
        values = [r.model_dump() for r in records.records]
        try:
            results = await self._infer("predict_bulk", values)
        except ModelUnavailable as exc:
            return _error_response(exc.status, str(exc))
        return BatchResponse(predictions=[contract.shape(r, v, CARD) for r, v in zip(results, values)], model=CARD.tag)

    @bentoml.api(route="/predict_csv")
    async def predict_csv(self, file: Path) -> Annotated[str, ContentType("text/csv")]:
        """Upload a CSV (multipart field `file`); get it back with prediction and proba_<class> columns."""
        try:
            table, values = contract.records_from_csv(file.read_bytes(), CARD, Record, config.MAX_CSV_ROWS)
            results = await self._infer("predict_bulk", values)
        except InvalidInput as exc:
            return _error_response(400, exc.message, exc.detail)
        except ModelUnavailable as exc:
            return _error_response(exc.status, str(exc))
        return contract.csv_with_predictions(table, results, CARD)

    async def _infer(self, api: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        service = self.model_service
        if not hasattr(service, "to_async"):  # in-process instance (no server): call it directly
            return getattr(service, api)(records)
        for attempt in (1, 2):
            try:
                return await getattr(service.to_async, api)(records)
            except BentoMLException as exc:
                status = int(getattr(exc, "error_code", 500))
                if status in (429, 503):
                    raise ModelUnavailable("the model service is overloaded; retry shortly", status) from None
                logger.error("model service failed: %s", exc)
                raise ModelUnavailable("the model service failed to answer") from None
            except Exception as exc:  # connection-level: the idempotent inference is retried once
                logger.warning("model service call failed (attempt %d): %r", attempt, exc)
        raise ModelUnavailable("the model service is unavailable")


def _error_response(status: int, message: str, detail: list | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, detail), status_code=status)


PredictionService.add_asgi_middleware(
    http.ErrorContract, json_routes=("/predict", "/predict_batch"), upload_routes=("/predict_csv",),
    max_upload_bytes=config.MAX_UPLOAD_BYTES
)
