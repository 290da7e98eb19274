"""The HTTP service: an entry service (validation, cache, response shaping, /v1 and /v2 routes) in front of
a model service (batched inference), both in one Bento.

    bentoml serve                      # serves service:PredictionService, as bentofile.yaml says
    MODEL_TAG=my_model bentoml serve   # another model from the store
    CHALLENGER_TAG=penguins:v2 bentoml serve   # and a challenger scored in its shadow (tabserve/serving/rollout/versions.py)
    SERVICE_LAYOUT=monolith bentoml serve      # the model in each entry worker: no model service, no hop
    bentoml serve service:ModelService --port 3001   # the model service alone; the entry finds it at MODEL_SERVICE_URL

The request and response types are built at import from the served model's feature schema,
so Swagger (/) documents exactly the fields, categories and ranges the model was trained on.
"""

import asyncio
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

# One OpenMP/BLAS thread per process, set before numpy/scikit-learn load and inherited by the workers
# `bentoml serve` starts: with 2 threads on 2 shared cores every small predict_proba call pays OpenMP
# fork/join and spin-waits, 5-20x slower (bench/README.md, "Findings").
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import bentoml
from bentoml.validators import ContentType

from tabserve import bentoml_fixes
from tabserve.core import config, store
from tabserve.core.card import ModelCard
from tabserve.core.errors import InvalidInput, ModelUnavailable, TabserveError
from tabserve.serving import settings
from tabserve.serving.api import csv_upload as csv_scoring
from tabserve.serving.api import entities, oip
from tabserve.serving.api import v1 as v1_app
from tabserve.serving.api.contract import ApiTypes, batch_answer, error_response, record_values, shape
from tabserve.serving.edge import gate
from tabserve.serving.inference.batching import InFlightBatcher
from tabserve.serving.inference.cache import PredictionCache, open_cache
from tabserve.serving.inference.link import ModelLink
from tabserve.serving.inference.pipelines import InProcessModel, Pipelines
from tabserve.serving.observe import drift, metrics, payload_log
from tabserve.serving.rollout.shadow import ShadowScorer
from tabserve.serving.rollout.versions import ModelVersions, is_watchable

logger = logging.getLogger("tabserve")
bentoml_fixes.apply()  # what this project changes in BentoML's internals, each with a version guard
bentoml_fixes.template_endpoint_labels(metrics.endpoint_label)  # /metrics: route templates, not one series per id

# Fail at start with one line naming the tag and the fix, not a traceback at the first request.
try:
    MODEL, CARD = store.served_model(config.MODEL_TAG)  # the champion: every unversioned route answers with it
    CHALLENGER, CHALLENGER_CARD = store.served_model(config.CHALLENGER_TAG) if config.CHALLENGER_TAG else (None, None)
    EXTRAS = [store.served_model(tag) for tag in config.EXTRA_MODEL_TAGS]  # answered on /v1/models/{version}/predict
except TabserveError as exc:
    sys.exit(f"error: {exc}")
if CHALLENGER_CARD is not None and (problem := CARD.incompatibility(CHALLENGER_CARD)):
    sys.exit(
        f"error: CHALLENGER_TAG={CHALLENGER_CARD.tag} cannot be scored on the champion's records: {problem}; train it on the same columns"
    )
if settings.MODEL_WATCH_S and not is_watchable(config.MODEL_TAG):
    sys.exit(
        f"error: MODEL_WATCH_S needs MODEL_TAG to name a model that can move (name or name:latest), not the fixed version {config.MODEL_TAG!r}"
    )
# The API's types come from the model's feature schema: Swagger documents exactly what it was trained on.
TYPES = ApiTypes.from_card(CARD, max_records=settings.MAX_BATCH_RECORDS)
Record, Prediction, BatchRequest, BatchResponse = (
    TYPES.record,
    TYPES.prediction,
    TYPES.batch_request,
    TYPES.batch_response,
)


HELD_MODELS = [MODEL, CHALLENGER, *(model for model, _ in EXTRAS)]  # declared on a class: `bentoml build` packs them
PRELOAD = [
    card.tag for card in (CARD, CHALLENGER_CARD) if card is not None
]  # loaded at start; other versions on first use


class ModelService:
    """Runs the pipelines (tabserve/serving/inference/pipelines.py). Concurrent single-record calls are merged into
    one pipeline call. Served beside the entry service (SERVICE_LAYOUT=services, the default), or on its
    own: `bentoml serve service:ModelService`, reached through MODEL_SERVICE_URL."""

    def __init__(self) -> None:
        self.pipelines = Pipelines(PRELOAD)
        gc.freeze()  # see PredictionService.__init__

    @bentoml.api(batchable=True, max_batch_size=settings.MAX_BATCH_SIZE, max_latency_ms=settings.MAX_LATENCY_MS)
    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.pipelines.predict("predict", items)

    @bentoml.api
    def predict_bulk(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Already a batch (from /predict_batch or /predict_csv): no queueing needed."""
        return self.pipelines.predict("predict_bulk", items)


def declare_models(cls: type) -> type:
    """The held versions as class attributes (BentoML packs the models declared on a service's class);
    set before the class becomes a service."""
    for i, held in enumerate(m for m in HELD_MODELS if m is not None):
        setattr(cls, "model" if i == 0 else f"model_{i}", held)
    return cls


ModelService = bentoml.service(
    workers=settings.MODEL_WORKERS,
    threads=settings.MODEL_THREADS,
    traffic={"timeout": settings.REQUEST_TIMEOUT_S},
    logging={"access": {"enabled": False}},  # internal hop: the entry service logs each request already
    # BentoML's client to this service replaces its connection pool every 100 requests (and every
    # 300 s) and closes the old one under calls still in flight, which fail with ServerDisconnected.
    # One pool for the life of the process avoids that.
    runner_connection={"max_requests": 2**62, "max_age": 10.0**12},
)(declare_models(ModelService) if not settings.MONOLITH else ModelService)


# GET /v1/entities/{id}/predict reads the features from the feature table (FEATURE_DB_URL), lazily.
@bentoml.asgi_app(
    v1_app.create_app(
        CARD,
        Record,
        Prediction,
        settings.serving_settings(),
        predictor=bentoml.get_current_service,
        entities=entities.EntityLookup.from_config(CARD.schema),
        admin_key=settings.ADMIN_KEY,
    ),
    path="/v1",
)
# The Open Inference Protocol V2 (KServe, Triton, MLServer clients), through the same cache and batching.
@bentoml.asgi_app(
    oip.create_app(CARD, Record, predictor=bentoml.get_current_service, max_records=settings.MAX_BATCH_RECORDS),
    path="/v2",
)
@bentoml.service(
    workers=settings.API_WORKERS,
    # The gate (tabserve/serving/edge/gate.py) answers 504 at REQUEST_TIMEOUT_S; BentoML's own timeout is a backstop.
    traffic={"timeout": settings.REQUEST_TIMEOUT_S + 5},
    # /readyz asks __is_ready__ below instead: BentoML's own probe of the model service can hang
    # when the model worker is gone but its socket still listens.
    runner_probe={"enabled": False},
    # The roles, recorded in a built Bento's bento.yaml: it serves its versions in them with no environment variable.
    labels={
        "model": CARD.tag,
        "task": CARD.task,
        **({"challenger": CHALLENGER_CARD.tag} if CHALLENGER_CARD else {}),
        **({"extra_models": ",".join(card.tag for _, card in EXTRAS)} if EXTRAS else {}),
    },
)
@(declare_models if settings.MONOLITH else lambda cls: cls)  # a monolith packs the models itself
class PredictionService:
    """Typed prediction endpoints for the model named by MODEL_TAG (the champion), and its other held versions."""

    if not settings.MONOLITH:  # the model service: beside this one, or a server of its own at MODEL_SERVICE_URL
        model_service = bentoml.depends(ModelService, url=settings.MODEL_SERVICE_URL or None)

    def __init__(self) -> None:
        if settings.MONOLITH:  # the pipelines in this worker, on a thread (tabserve/serving/inference/pipelines.py)
            self.model_link = InProcessModel(Pipelines(PRELOAD))
        else:
            self.model_link = ModelLink(lambda: self.model_service, timeout_s=settings.MODEL_TIMEOUT_S)
        # Which version answers: the champion, a canary share for the challenger, a version named in the path;
        # the champion can change while serving (MODEL_WATCH_S, POST /v1/admin/promote).
        self.versions = ModelVersions(
            CARD,
            CHALLENGER_CARD,
            [card for _, card in EXTRAS],
            watch=config.MODEL_TAG if settings.MODEL_WATCH_S else "",
            watch_s=settings.MODEL_WATCH_S,
            canary_percent=settings.CANARY_PERCENT,
        )
        # In-process LRU, or Redis shared by every worker and replica when REDIS_URL is set (tabserve/serving/inference/cache.py).
        self.cache = open_cache(
            settings.PREDICTION_CACHE_SIZE, settings.REDIS_URL, settings.CACHE_TTL_S, settings.REDIS_TIMEOUT_MS
        )
        # Concurrent /predict records go to the model together (tabserve/serving/inference/batching.py): across the hop in
        # two calls at a time, or in a monolith one pipeline call at a time while the next batch gathers.
        self.batcher = InFlightBatcher(
            lambda items: self.model_link.call("predict", items),
            settings.MAX_BATCH_SIZE,
            max_in_flight=1 if settings.MONOLITH else 2,
        )
        # The challenger's shadow predictions, off the answer's path (tabserve/serving/rollout/shadow.py).
        self.shadow = ShadowScorer(
            self._score_shadow, settings.MAX_BATCH_SIZE, self.versions.path.parent, redact=payload_log.redacted
        )
        # The objects of startup (modules, the app, the model) live forever: keep them out of the full
        # garbage collections, which otherwise rescan them every second or so under load (~100 ms each).
        gc.freeze()
        if not (settings.API_KEY or settings.API_KEYS_FILE):
            logger.warning(
                "neither API_KEY nor API_KEYS_FILE is set: the prediction endpoints are open to anyone who can reach this port"
            )

    async def __is_ready__(self) -> bool:
        return await self.model_link.is_up()

    @bentoml.on_startup
    async def start_background_tasks(self) -> None:
        """Sample the drift counters of every worker and refresh the PSI gauges (tabserve/serving/observe/drift.py);
        follow the champion's changes (tabserve/serving/rollout/versions.py)."""
        drift.monitor(CARD).start()
        self.versions.on_swap.append(lambda card: drift.monitor(card).start())
        self._follower = asyncio.get_running_loop().create_task(
            self.versions.follow(self._warm), name="tabserve-versions"
        )

    @bentoml.api(route="/predict")
    async def predict(self, record: Record, /, ctx: bentoml.Context) -> Prediction:
        """Predict one record. The body is the record itself. X-Cache says whether the cache answered."""
        try:
            item, hit = await self.predict_one(record.model_dump())
        except ModelUnavailable as exc:
            return error_response(ctx, exc.status, str(exc))
        ctx.response.headers["X-Cache"] = "hit" if hit else "miss"
        return Prediction(**item)

    @bentoml.api(route="/predict_batch", input_spec=BatchRequest)
    async def predict_batch(self, records: list[Record]) -> BatchResponse:
        """Predict 1 to MAX_BATCH_RECORDS records in one call (body {"records": [...]}); answers keep the input order."""
        try:
            predictions = await self.predict_many([record_values(r) for r in records])
        except ModelUnavailable as exc:
            return error_response(None, exc.status, str(exc))
        return batch_answer(predictions, predictions[0]["model"])

    @bentoml.api(route="/predict_csv")
    async def predict_csv(self, file: Path, ctx: bentoml.Context) -> Annotated[str, ContentType("text/csv")]:
        """Upload a CSV (multipart field `file`); get it back with prediction and proba_<class> columns.

        Id and dropped columns of the training file pass through. One bad row refuses the file (400
        listing the rows) unless `?on_error=skip` (or header X-On-Error: skip): then the good rows are
        predicted and an `error` column names each bad row's problem (X-Failed-Rows counts them).
        X-Model names the version that answered.
        """
        on_error = ctx.request.query_params.get("on_error") or ctx.request.headers.get("x-on-error") or "fail"
        if on_error not in ("fail", "skip"):
            return error_response(ctx, 400, f"invalid input: on_error must be 'fail' or 'skip', not {on_error!r}")
        card = self.versions.champion
        try:
            scoring = csv_scoring.records_from_csv(
                file.read_bytes(), CARD, Record, settings.MAX_CSV_ROWS, skip_bad_rows=on_error == "skip"
            )
            results = (
                await self.model_link.call("predict_bulk", tagged(card, scoring.records)) if scoring.records else []
            )
        except InvalidInput as exc:
            return error_response(ctx, exc.status, exc.message, exc.detail)
        except ModelUnavailable as exc:
            return error_response(ctx, exc.status, str(exc))
        ctx.response.headers["X-Failed-Rows"] = str(scoring.failed)
        ctx.response.headers["X-Model"] = card.tag
        return csv_scoring.csv_with_predictions(scoring, self._answers(results, scoring.records, card), CARD)

    async def predict_one(self, values: dict[str, Any], card: ModelCard | None = None) -> tuple[dict[str, Any], bool]:
        """One record through the cache, then the batched model service: (answer, cache hit). `card`: the
        version to answer with; by default the champion (or the challenger, for a canary share)."""
        card = card or self.versions.for_record(values)  # read once: a swap mid-request does not change it
        key = PredictionCache.key(card.tag, values)
        cached = await self.cache.get(key)  # None on a miss, and when Redis fails (counted on /metrics)
        if self.cache.enabled:
            metrics.observe_cache(hit=cached is not None)
        if cached is not None:
            cached.setdefault("model", card.tag)  # an entry cached before answers carried their tag
            self._observe([values], [cached], [CARD.schema.out_of_range(values)], card)
            return cached, True
        if settings.ADAPTIVE_BATCHING:
            result = await self.batcher.submit({"model": card.tag, "record": values})
        else:
            [result] = await self.model_link.call("predict_bulk", tagged(card, [values]))
        [answer] = self._answers([result], [values], card)
        await self.cache.put(key, answer)
        return answer, False

    async def predict_many(self, values: list[dict[str, Any]], card: ModelCard | None = None) -> list[dict[str, Any]]:
        """Records that are already a batch (/predict_batch, /v2 infer) through the model service's bulk API,
        all with one version (the champion by default); answers in order."""
        card = card or self.versions.champion
        results = await self.model_link.call("predict_bulk", tagged(card, values))
        return self._answers(results, values, card)

    def _answers(
        self, results: list[dict[str, Any]], values: list[dict[str, Any]], card: ModelCard
    ) -> list[dict[str, Any]]:
        """Model results as API items (with warnings and the answering version's tag), observed."""
        flagged = [CARD.schema.out_of_range(v) for v in values]
        answers = [shape(r, f, card.tag) for r, f in zip(results, flagged)]
        self._observe(values, answers, flagged, card)
        return answers

    def _observe(
        self,
        values: list[dict[str, Any]],
        answers: list[dict[str, Any]],
        flagged: list[dict[str, str]],
        card: ModelCard,
    ) -> None:
        """Every answer, from the model or the cache: counted on /metrics (per label, out-of-range inputs),
        into the drift reference's bins (/v1/drift), written to the payload log when PAYLOAD_LOG=1, and
        the champion's scored by the challenger in its shadow (CHALLENGER_TAG)."""
        metrics.observe_predictions(card.tag, answers, flagged)
        drift.monitor(self.versions.champion).observe(values, answers)
        payload_log.observe(values, answers)
        if card is self.versions.champion:
            self.shadow.observe(card, self.versions.challenger, values, answers)

    async def _score_shadow(self, challenger: ModelCard, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self.model_link.call("predict_bulk", tagged(challenger, values))

    async def _warm(self, card: ModelCard) -> None:
        """Before a new version becomes champion: the model service loads it (verifying its checksum) and
        predicts the schema's example rows with it."""
        examples = [card.schema.example()]
        results = await self.model_link.call("predict_bulk", tagged(card, examples))
        if len(results) != len(examples):
            raise RuntimeError(f"{len(results)} answers for {len(examples)} example rows")


def tagged(card: ModelCard, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as the model service takes them: each with the tag of the version that predicts it."""
    return [{"model": card.tag, "record": record} for record in records]


# New connections to the worker holding fewest, where a service has more than one (tabserve/bentoml_fixes.py, touchpoint 8).
WORKERS = {PredictionService.name: settings.API_WORKERS, ModelService.name: settings.MODEL_WORKERS}
bentoml_fixes.accept_by_load(shared=lambda: WORKERS.get(bentoml.server_context.service_name, 1) > 1)
PredictionService.add_asgi_middleware(oip.ServerRoot)  # GET /v2 itself, not only /v2/
payload_log.install(
    PredictionService, CARD
)  # PAYLOAD_LOG=1: checks its settings at start, notes each request's route and arrival
gate.install(PredictionService)  # the gate in front of every route, and CORS when configured
