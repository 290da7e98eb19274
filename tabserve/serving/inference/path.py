"""The request path, as one object every route calls (/predict, /predict_batch, /predict_csv, /v1, /v2):

    record validated (by the route's type) → version chosen → cache → batch → model → answer shaped → observed

Observed means counted on /metrics, binned for drift, written to the payload log and, for the champion's
answers, scored by the challenger in its shadow. The model is reached through a link with one interface in
both layouts: the pipelines on a thread of this worker (monolith) or the model service (services).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tabserve.core import config
from tabserve.core.card import ModelCard
from tabserve.core.errors import InvalidInput, ModelUnavailable
from tabserve.explaining.options import explain_target, reason_count
from tabserve.serving import settings
from tabserve.serving.api import csv_upload
from tabserve.serving.api.contract import batch_answer, error_response, shape
from tabserve.serving.inference.batching import InFlightBatcher
from tabserve.serving.inference.cache import PredictionCache, open_cache
from tabserve.serving.observe import drift, metrics, payload_log
from tabserve.serving.rollout.held import HeldModels
from tabserve.serving.rollout.shadow import ShadowScorer
from tabserve.serving.rollout.versions import ModelVersions

logger = logging.getLogger("tabserve")


class RequestPath:
    def __init__(self, held: HeldModels, model_link: Any, record_type: type) -> None:
        self.model_link = model_link  # `call(api, items)` and `is_up()`: InProcessModel or ModelLink
        self.record_type = record_type  # the API's record type, for the rows of an uploaded CSV
        # Which version answers: the champion, a canary share for the challenger, a version named in the path;
        # the champion can change while serving (MODEL_WATCH_S, POST /v1/admin/promote).
        self.versions = ModelVersions(
            held.card,
            held.challenger_card,
            [card for _, card in held.extras],
            watch=config.MODEL_TAG if settings.MODEL_WATCH_S else "",
            watch_s=settings.MODEL_WATCH_S,
            canary_percent=settings.CANARY_PERCENT,
        )
        # In-process LRU, or Redis shared by every worker and replica when REDIS_URL is set.
        self.cache = open_cache(
            settings.PREDICTION_CACHE_SIZE, settings.REDIS_URL, settings.CACHE_TTL_S, settings.REDIS_TIMEOUT_MS
        )
        # Concurrent /predict records go to the model together: across the hop two calls at a time, or in a
        # monolith one pipeline call at a time while the next batch gathers.
        self.batcher = InFlightBatcher(
            lambda items: self.model_link.call("predict", items),
            settings.MAX_BATCH_SIZE,
            max_in_flight=1 if settings.MONOLITH else 2,
        )
        self.shadow = ShadowScorer(
            self._score_shadow, settings.MAX_BATCH_SIZE, self.versions.path.parent, redact=payload_log.redacted
        )
        self._follower: asyncio.Task | None = None

    def start(self) -> None:
        """In the worker's event loop: sample the drift counters of every worker and refresh the PSI gauges;
        follow the champion's changes (a new version in the store, a promotion in another worker)."""
        drift.monitor(self.versions.champion).start()
        self.versions.on_swap.append(lambda card: drift.monitor(card).start())
        self._follower = asyncio.get_running_loop().create_task(
            self.versions.follow(self._warm), name="tabserve-versions"
        )

    async def is_ready(self) -> bool:
        return await self.model_link.is_up()

    # The routes' answers: a typed item or the one error shape.

    async def answer_record(self, values: dict[str, Any], ctx: Any) -> dict[str, Any] | Any:
        """POST /predict: one record's answer item; X-Cache says whether the cache answered. ?explain=true
        (and explain_class=LABEL) add the explanation."""
        try:
            item, hit = await self.predict_one(values, explain=explain_query(ctx))
        except InvalidInput as exc:
            return error_response(ctx, exc.status, exc.message, exc.detail)
        except ModelUnavailable as exc:
            return error_response(ctx, exc.status, str(exc))
        ctx.response.headers["X-Cache"] = "hit" if hit else "miss"
        return item

    async def answer_batch(self, values: list[dict[str, Any]], ctx: Any = None) -> Any:
        """POST /predict_batch: the answers in input order, the answering version named once; ?explain=true
        explains every record."""
        try:
            predictions = await self.predict_many(values, explain=explain_query(ctx))
        except InvalidInput as exc:
            return error_response(ctx, exc.status, exc.message, exc.detail)
        except ModelUnavailable as exc:
            return error_response(ctx, exc.status, str(exc))
        return batch_answer(predictions, predictions[0]["model"])

    async def answer_csv(self, upload: bytes, ctx: Any) -> str | Any:
        """POST /predict_csv: the file back with the predictions, validated against the version that answers."""
        on_error = ctx.request.query_params.get("on_error") or ctx.request.headers.get("x-on-error") or "fail"
        if on_error not in ("fail", "skip"):
            return error_response(ctx, 400, f"invalid input: on_error must be 'fail' or 'skip', not {on_error!r}")
        card = self.versions.champion  # read once: a swap mid-request does not change it
        try:
            reasons = reason_count(card, ctx.request.query_params.get("explain"))
            scoring = csv_upload.records_from_csv(
                upload, card, self.record_type, settings.MAX_CSV_ROWS, skip_bad_rows=on_error == "skip"
            )
            items = tagged(card, scoring.records, True if reasons else None)
            results = (
                checked(await self.model_link.call("predict_bulk", items), bool(reasons)) if scoring.records else []
            )
        except InvalidInput as exc:
            return error_response(ctx, exc.status, exc.message, exc.detail)
        except ModelUnavailable as exc:
            return error_response(ctx, exc.status, str(exc))
        ctx.response.headers["X-Failed-Rows"] = str(scoring.failed)
        ctx.response.headers["X-Model"] = card.tag
        return csv_upload.csv_with_predictions(scoring, self._answers(results, scoring.records, card), card, reasons)

    # The path itself, also called by /v1 and /v2.

    async def predict_one(
        self,
        values: dict[str, Any],
        card: ModelCard | None = None,
        explain: tuple[str | None, str | None] = (None, None),
    ) -> tuple[dict[str, Any], bool]:
        """One record through the cache, then the batched model: (answer, cache hit). `card`: the version to
        answer with; by default the champion (or the challenger, for a canary share). `explain`: the request's
        explain and explain_class (InvalidInput when they are wrong for this version)."""
        card = card or self.versions.for_record(values)  # read once: a swap mid-request does not change it
        target = explain_target(card, *explain)
        key = PredictionCache.key(card.tag, values, target)
        cached = await self.cache.get(key)  # None on a miss, and when Redis fails (counted on /metrics)
        if self.cache.enabled:
            metrics.observe_cache(hit=cached is not None)
        if cached is not None:
            cached.setdefault("model", card.tag)  # an entry cached before answers carried their tag
            self._observe([values], [cached], [card.schema.out_of_range(values)], card)
            return cached, True
        if settings.ADAPTIVE_BATCHING:
            [result] = checked([await self.batcher.submit(tagged(card, [values], target)[0])], target is not None)
        else:
            [result] = checked(
                await self.model_link.call("predict_bulk", tagged(card, [values], target)), target is not None
            )
        [answer] = self._answers([result], [values], card)
        await self.cache.put(key, answer)
        return answer, False

    async def predict_many(
        self,
        values: list[dict[str, Any]],
        card: ModelCard | None = None,
        explain: tuple[str | None, str | None] = (None, None),
    ) -> list[dict[str, Any]]:
        """Records that are already a batch (/predict_batch, /v2 infer) in one bulk call, all with one version
        (the champion by default); answers in order, explained when `explain` asks."""
        card = card or self.versions.champion
        target = explain_target(card, *explain)
        results = checked(await self.model_link.call("predict_bulk", tagged(card, values, target)), target is not None)
        return self._answers(results, values, card)

    def _answers(self, results: list[dict], values: list[dict], card: ModelCard) -> list[dict[str, Any]]:
        """Model results as API items, with the answering version's range warnings and tag, observed."""
        flagged = [card.schema.out_of_range(v) for v in values]
        answers = [shape(r, f, card.tag) for r, f in zip(results, flagged, strict=True)]
        self._observe(values, answers, flagged, card)
        return answers

    def _observe(self, values: list[dict], answers: list[dict], flagged: list[dict[str, str]], card: ModelCard) -> None:
        """Every answer, from the model or the cache: counted on /metrics (per label, out-of-range inputs),
        into the drift reference's bins (/v1/drift), written to the payload log when PAYLOAD_LOG=1, and the
        champion's scored by the challenger in its shadow (CHALLENGER_TAG)."""
        metrics.observe_predictions(card.tag, answers, flagged)
        drift.monitor(self.versions.champion).observe(values, answers)
        payload_log.observe(values, answers)
        if card is self.versions.champion:
            self.shadow.observe(card, self.versions.challenger, values, answers)

    async def _score_shadow(self, challenger: ModelCard, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self.model_link.call("predict_bulk", tagged(challenger, values))

    async def _warm(self, card: ModelCard) -> None:
        """Before a new version becomes champion: the model side loads it (verifying its checksum) and predicts
        the schema's example row with it."""
        examples = [card.schema.example()]
        results = await self.model_link.call("predict_bulk", tagged(card, examples))
        if len(results) != len(examples):
            raise RuntimeError(f"{len(results)} answers for {len(examples)} example rows")


def tagged(card: ModelCard, records: list[dict[str, Any]], explain: Any = None) -> list[dict[str, Any]]:
    """Records as the model side takes them: each with the tag of the version that predicts it, and what to
    explain where asked (true: the predicted class; a label: that class)."""
    if explain is None:
        return [{"model": card.tag, "record": record} for record in records]
    return [{"model": card.tag, "record": record, "explain": explain} for record in records]


def explain_query(ctx: Any) -> tuple[str | None, str | None]:
    """A BentoML route's explain and explain_class query parameters."""
    if ctx is None:
        return None, None
    query = ctx.request.query_params
    return query.get("explain"), query.get("explain_class")


def checked(results: list[dict[str, Any]], explained: bool = True) -> list[dict[str, Any]]:
    """Model results, or InvalidInput where the model side could not explain (its explainer failed its check at
    load: the card promised explanations the loaded model cannot give). Unexplained results pass unread."""
    for result in results if explained else ():
        failed = (result.get("explanation") or {}).get("error")
        if failed:
            raise InvalidInput(failed)
    return results
