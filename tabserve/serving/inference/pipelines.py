"""The model side: the runtimes of the held versions (train.py's pipelines, models imported from elsewhere:
tabserve/models/), and the call that runs them.

The same code runs in both layouts (SERVICE_LAYOUT, tabserve/serving/settings.py): inside the model service's
workers (`services`: ModelService in service.py wraps it), or inside each entry worker (`monolith`:
`InProcessModel` below calls it on a thread). The entry's side, validation and shaping, stays in the rest
of tabserve/serving/, so the split is in the code even where it is not a process boundary.

Each item names the version that predicts it ({"model": tag, "record": {...}}): the entry chose it when
the request started. A version is loaded on first use, its checksum verified, and kept, so a request in
flight while the champion changes finishes on its version.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import Any

from tabserve.core import store
from tabserve.serving.observe import metrics


class Pipelines:
    def __init__(self, preload: Iterable[str] = ()) -> None:
        self._held: dict[str, Any] = {}
        self._loading = threading.Lock()
        for tag in preload:
            self.pipeline(tag)

    def pipeline(self, tag: str) -> Any:
        """The runtime of a version (tabserve/models/base.py): loaded once, checksum verified (ModelCorrupted
        otherwise)."""
        held = self._held.get(tag)
        if held is None:
            import bentoml

            with self._loading:
                if tag not in self._held:
                    stored = bentoml.models.get(tag)
                    store.verify(stored)
                    self._held[tag] = store.load_runtime(stored)
                held = self._held[tag]
        return held

    def predict(self, api: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per item, in order; `api` ("predict": merged single records, "predict_bulk": a batch
        already) labels the pipeline-call metrics. An item with "explain" (a class label, or true for the
        predicted class) gets its explanation too: explained and unexplained items share the model call, and the
        explained ones of a version share one explainer call."""
        metrics.observe_pipeline_call(api, len(items))
        tags = {item["model"] for item in items}
        if len(tags) == 1:  # the usual case: one version
            return self._predict(self.pipeline(tags.pop()), items)
        results: list[Any] = [None] * len(items)
        for tag in tags:  # a batch merged across versions (a challenger, a versioned route): one call per version
            where = [i for i, item in enumerate(items) if item["model"] == tag]
            answered = self._predict(self.pipeline(tag), [items[i] for i in where])
            for i, result in zip(where, answered, strict=True):  # one result per record
                results[i] = result
        return results

    @staticmethod
    def _predict(runtime: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = runtime.predict_records([item["record"] for item in items])
        explained = [i for i, item in enumerate(items) if item.get("explain") is not None]
        if explained:
            from tabserve.explaining.explainers import NotExplainable

            targets = [
                (results[i]["prediction"] if items[i]["explain"] is True else items[i]["explain"])
                if runtime.classes is not None
                else None
                for i in explained
            ]
            try:
                explanations = runtime.explain_records([items[i]["record"] for i in explained], targets)
            except NotExplainable as exc:  # the entry checks the card first: this is a model that failed its check
                explanations = [{"error": exc.message}] * len(explained)
            for i, explanation in zip(explained, explanations, strict=True):
                results[i] = {**results[i], "explanation": explanation}
        return results


class InProcessModel:
    """The monolith's stand-in for ModelLink (tabserve/serving/inference/link.py): the same `call` and `is_up`,
    running the pipelines on a thread of this worker, so the event loop keeps reading requests meanwhile."""

    def __init__(self, pipelines: Pipelines) -> None:
        self.pipelines = pipelines

    async def call(self, api: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(self.pipelines.predict, api, items)
        finally:
            metrics.observe_model_call(api, time.perf_counter() - started)

    async def is_up(self) -> bool:
        return True  # loaded in this process before it took requests
