"""The HTTP service: typed prediction endpoints for the model MODEL_TAG names, made from its feature schema.

    bentoml serve                                 # service:PredictionService, as bentofile.yaml says
    MODEL_TAG=my_model bentoml serve              # another model from the store
    SERVICE_LAYOUT=services bentoml serve         # an entry service in front of a model service

Two layouts, wired at the bottom of this file: the monolith (default) runs the model in each worker and merges
concurrent /predict records into one call itself (serving/inference/batching.py); services put ModelService, with
BentoML's adaptive batching, behind the entry (docs/architecture.md measures both). Every route calls one request
path (serving/inference/path.py): version → cache → batch → model → answer shaped → observed.
"""

import gc
import os
from pathlib import Path
from typing import Annotated, Any

# One OpenMP/BLAS thread per process, set before numpy loads and inherited by the workers: with 2 threads on
# 2 shared cores every small prediction pays OpenMP fork/join and spin-waits, 5-20x slower (bench/README.md).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import bentoml  # noqa: E402
from bentoml.validators import ContentType  # noqa: E402

from tabserve import bentoml_fixes  # noqa: E402
from tabserve.serving import settings  # noqa: E402
from tabserve.serving.api import oip, v1  # noqa: E402
from tabserve.serving.api.contract import ApiTypes, record_values  # noqa: E402
from tabserve.serving.api.entities import EntityLookup  # noqa: E402
from tabserve.serving.edge import gate  # noqa: E402
from tabserve.serving.inference.link import ModelLink  # noqa: E402
from tabserve.serving.inference.path import RequestPath  # noqa: E402
from tabserve.serving.inference.pipelines import InProcessModel, Pipelines  # noqa: E402
from tabserve.serving.observe import metrics, payload_log  # noqa: E402
from tabserve.serving.rollout.held import held_models  # noqa: E402

bentoml_fixes.apply()  # what this project changes in BentoML's internals, each with a version guard
bentoml_fixes.template_endpoint_labels(metrics.endpoint_label)  # /metrics: route templates, not one series per id

HELD = held_models()  # the champion, a challenger, extra versions; a problem stops here with one line
TYPES = ApiTypes.from_card(HELD.card, max_records=settings.MAX_BATCH_RECORDS)
Record, Prediction = TYPES.record, TYPES.prediction
BatchRequest, BatchResponse = TYPES.batch_request, TYPES.batch_response


class ModelService:
    """The held versions' runtimes. Concurrent single-record calls are merged into one model call."""

    def __init__(self) -> None:
        self.pipelines = Pipelines(HELD.preload)
        gc.freeze()  # see PredictionService.__init__

    @bentoml.api(batchable=True, max_batch_size=settings.MAX_BATCH_SIZE, max_latency_ms=settings.MAX_LATENCY_MS)
    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.pipelines.predict("predict", items)

    @bentoml.api
    def predict_bulk(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Already a batch (from /predict_batch or /predict_csv): no queueing needed."""
        return self.pipelines.predict("predict_bulk", items)


class PredictionService:
    """Typed prediction endpoints for the champion (MODEL_TAG) and the other held versions."""

    def __init__(self) -> None:
        if settings.MONOLITH:  # the runtimes in this worker, called on a thread
            link = InProcessModel(Pipelines(HELD.preload))
        else:  # the model service, beside this one or at MODEL_SERVICE_URL
            link = ModelLink(lambda: self.model_service, timeout_s=settings.MODEL_TIMEOUT_S)
        self.path = RequestPath(HELD, link, Record)
        gc.freeze()  # startup's objects live forever: out of the full collections (~100 ms each under load)

    async def __is_ready__(self) -> bool:
        return await self.path.is_ready()

    @bentoml.on_startup
    async def start_background_tasks(self) -> None:
        self.path.start()

    @bentoml.api(route="/predict")
    async def predict(self, record: Record, /, ctx: bentoml.Context) -> Prediction:
        """Predict one record. The body is the record itself. X-Cache says whether the cache answered.
        ?explain=true adds why (each feature's contribution); explain_class=LABEL explains another class."""
        answer = await self.path.answer_record(record.model_dump(), ctx)
        return Prediction(**answer) if isinstance(answer, dict) else answer

    @bentoml.api(route="/predict_batch", input_spec=BatchRequest)
    async def predict_batch(self, records: list[Record], ctx: bentoml.Context) -> BatchResponse:
        """Predict 1 to MAX_BATCH_RECORDS records in one call (body {"records": [...]}); answers keep input order.
        ?explain=true (explain_class=LABEL) explains each record."""
        return await self.path.answer_batch([record_values(r) for r in records], ctx)

    @bentoml.api(route="/predict_csv")
    async def predict_csv(self, file: Path, ctx: bentoml.Context) -> Annotated[str, ContentType("text/csv")]:
        """Upload a CSV (multipart field `file`); get it back with prediction and proba_<class> columns. Id
        columns pass through. One bad row refuses the file (400 listing the rows) unless `?on_error=skip` (or
        header X-On-Error: skip): then an `error` column names each bad row's problem. X-Model: the version."""
        return await self.path.answer_csv(file.read_bytes(), ctx)


def holding_models(cls: type) -> type:
    """The held versions as class attributes: BentoML packs the models declared on a service's class."""
    for i, model in enumerate(HELD.models):
        setattr(cls, "model" if i == 0 else f"model_{i}", model)
    return cls


# The layouts, in one place: which services exist, and which of them holds the models.
MODEL_SERVICE = dict(
    workers=settings.MODEL_WORKERS,
    threads=settings.MODEL_THREADS,
    traffic={"timeout": settings.REQUEST_TIMEOUT_S},
    logging={"access": {"enabled": False}},  # internal hop: the entry service logs each request already
    # BentoML's client replaces its connection pool every 100 requests and closes the old one under calls in
    # flight (ServerDisconnected, bentoml/BentoML#3669, #4238): one pool for the life of the process.
    runner_connection={"max_requests": 2**62, "max_age": 10.0**12},
)
ENTRY_SERVICE = dict(
    workers=settings.API_WORKERS,
    traffic={"timeout": settings.REQUEST_TIMEOUT_S + 5},  # the gate answers 504 first; BentoML's is a backstop
    runner_probe={"enabled": False},  # /readyz asks __is_ready__: BentoML's probe can hang on a dead model worker
    labels=HELD.labels,  # the roles, kept in a built Bento: it serves its versions in them with no setting
)
if settings.MONOLITH:  # one service; the model runs in each of its workers
    ModelService = bentoml.service(**MODEL_SERVICE)(ModelService)  # unused here; `bentoml serve` can still name it
    PredictionService = bentoml.service(**ENTRY_SERVICE)(holding_models(PredictionService))
else:  # the entry service in front of the model service (beside it, or a server of its own at MODEL_SERVICE_URL)
    ModelService = bentoml.service(**MODEL_SERVICE)(holding_models(ModelService))
    PredictionService.model_service = bentoml.depends(ModelService, url=settings.MODEL_SERVICE_URL or None)
    PredictionService = bentoml.service(**ENTRY_SERVICE)(PredictionService)

# The routes BentoML's POST APIs cannot express, through the same request path: GET /v1/... (model card, form,
# versions, promotion, predict by entity id, drift) and the Open Inference Protocol V2 at /v2.
path = lambda: bentoml.get_current_service().path  # noqa: E731
PredictionService.mount_asgi_app(
    v1.create_app(HELD.card, Record, Prediction, settings.serving_settings(), predictor=path,
                  entities=EntityLookup.from_config(HELD.card.schema), admin_key=settings.ADMIN_KEY),
    path="/v1",
)  # fmt: skip
PredictionService.mount_asgi_app(
    oip.create_app(HELD.card, Record, predictor=path, max_records=settings.MAX_BATCH_RECORDS), path="/v2"
)
PredictionService.add_asgi_middleware(oip.ServerRoot)  # GET /v2 itself, not only /v2/
payload_log.install(PredictionService, HELD.card)  # PAYLOAD_LOG=1: checks its settings, notes each request's route
gate.install(PredictionService)  # in front of every route: keys, quotas, limits, the one error shape; CORS
# New connections to the worker holding fewest, where a service has more than one (bentoml_fixes, touchpoint 8).
workers = {PredictionService.name: settings.API_WORKERS, ModelService.name: settings.MODEL_WORKERS}
bentoml_fixes.accept_by_load(shared=lambda: workers.get(bentoml.server_context.service_name, 1) > 1)
