"""Shadow scoring: every champion answer is also predicted by the challenger, off the answer's path.

`ShadowScorer.observe` only appends to a queue (the answer is already computed and is sent without
waiting); one background task per entry worker takes up to MAX_BATCH_SIZE queued records at a time and
scores them in one call to the model service with the challenger's tag, so shadow records are batched
like the champion's. A challenger that raises or times out is counted ("failed") and logged once per
failure streak; it never reaches an answer. A queue longer than MAX_PENDING drops new records
("skipped"), so a slow challenger cannot grow memory without bound.

Agreement: for classification the predicted labels; for regression the relative difference
|a - b| / max(|a|, |b|) within REGRESSION_TOLERANCE. Counters are Prometheus counters (every worker's
add up); GET /v1/models/{challenger}/comparison reads the totals of every worker from BentoML's
multiprocess directory, and the last disagreements that every worker keeps in a small file beside it
(inputs redacted by the payload log's rule, PAYLOAD_LOG_REDACT with PAYLOAD_LOG_SALT).
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tabserve.core.card import ModelCard
from tabserve.serving.observe import metrics

logger = logging.getLogger("tabserve")
MAX_PENDING = 10_000
RECENT = 5  # disagreements kept per worker
REGRESSION_TOLERANCE = 0.05
Score = Callable[[ModelCard, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


class ShadowScorer:
    def __init__(
        self, score: Score, batch_size: int, directory: Path, redact: Callable[[dict[str, Any]], dict[str, Any]] = dict
    ) -> None:
        self._score = score  # (challenger card, records) -> the challenger's answers
        self.batch_size = batch_size
        self.directory = directory
        self._redact = redact
        self._pending: deque[tuple[ModelCard, ModelCard, dict[str, Any], dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._failing = False
        self._written_at = 0.0

    def observe(
        self,
        champion: ModelCard,
        challenger: ModelCard | None,
        values: list[dict[str, Any]],
        answers: list[dict[str, Any]],
    ) -> None:
        """Queue a champion call's records for the challenger (the request path: no waiting, no raising)."""
        if challenger is None or challenger.tag == champion.tag or not values:
            return
        room = MAX_PENDING - len(self._pending)
        if room < len(values):
            metrics.version_metrics()["shadow"].labels(champion.tag, challenger.tag, "skipped").inc(
                len(values) - max(room, 0)
            )
            values, answers = values[: max(room, 0)], answers[: max(room, 0)]
        self._pending.extend((champion, challenger, v, a) for v, a in zip(values, answers, strict=True))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tabserve-shadow")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
                await self._compare(batch)

    async def _compare(self, batch: list[tuple[ModelCard, ModelCard, dict[str, Any], dict[str, Any]]]) -> None:
        champion, challenger = batch[0][0], batch[0][1]
        counters = metrics.version_metrics()
        try:
            theirs = await self._score(challenger, [values for _, _, values, _ in batch])
            if len(theirs) != len(batch):  # counted as failed, like any other broken answer
                raise RuntimeError(f"the challenger returned {len(theirs)} results for {len(batch)} records")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the challenger never fails a request
            counters["shadow"].labels(champion.tag, challenger.tag, "failed").inc(len(batch))
            if not self._failing:
                logger.warning(
                    "challenger %s failed to score its shadow predictions (counted as failed, answers unaffected): %s",
                    challenger.tag,
                    " ".join(str(exc).split())[:300],
                )
            self._failing = True
            return
        if self._failing:
            logger.info("challenger %s scores its shadow predictions again", challenger.tag)
        self._failing = False
        for (champ, chall, values, ours), other in zip(batch, theirs, strict=True):
            agree, difference = compare(ours, other)
            counters["shadow"].labels(champ.tag, chall.tag, "agree" if agree else "disagree").inc()
            if ours.get("probabilities") is not None and other.get("probabilities") is not None:
                counters["difference"].labels(champ.tag, chall.tag).observe(difference)
            else:
                counters["absolute"].labels(champ.tag, chall.tag).inc(difference)
            if not agree:
                self._recent.append(
                    {
                        "time": time.time(),
                        "champion": champ.tag,
                        "challenger": chall.tag,
                        "inputs": self._redact(values),
                        "champion_answer": _answer(ours),
                        "challenger_answer": _answer(other),
                    }
                )
        if self._recent and time.monotonic() - self._written_at > 1:
            self._written_at = time.monotonic()
            await asyncio.to_thread(self._save_recent)

    def _save_recent(self) -> None:
        path = self.directory / f"tabserve-disagreements-{os.getpid()}.json"
        tmp = path.with_name("." + path.name)
        tmp.write_text(json.dumps(list(self._recent), default=str))
        os.replace(tmp, path)


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[bool, float]:
    """(agree, difference): classification: same label, largest probability difference; regression:
    within REGRESSION_TOLERANCE relative, absolute difference."""
    a, b = ours.get("probabilities"), theirs.get("probabilities")
    if a is not None and b is not None:
        difference = max((abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)), default=0.0)
        return ours["prediction"] == theirs["prediction"], difference
    x, y = float(ours["prediction"]), float(theirs["prediction"])
    difference = abs(x - y)
    return difference <= REGRESSION_TOLERANCE * max(abs(x), abs(y)), difference


def _answer(item: dict[str, Any]) -> dict[str, Any]:
    return {"prediction": item["prediction"], "probabilities": item.get("probabilities")}


def comparison(champion: ModelCard, challenger: ModelCard, directory: Path, families: Any) -> dict[str, Any]:
    """GET /v1/models/{challenger}/comparison: the totals of every worker for this pair, and recent disagreements."""
    counts: dict[str, float] = {}
    histogram_count = histogram_sum = absolute = 0.0
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if labels.get("champion") != champion.tag or labels.get("challenger") != challenger.tag:
                continue
            if sample.name == f"{metrics.SHADOW_PREDICTIONS}_total":
                counts[labels["result"]] = counts.get(labels["result"], 0) + sample.value
            elif sample.name == f"{metrics.SHADOW_DIFFERENCE}_count":
                histogram_count += sample.value
            elif sample.name == f"{metrics.SHADOW_DIFFERENCE}_sum":
                histogram_sum += sample.value
            elif sample.name == f"{metrics.SHADOW_ABS_DIFFERENCE}_total":
                absolute += sample.value
    agree, disagree = int(counts.get("agree", 0)), int(counts.get("disagree", 0))
    compared = agree + disagree
    recent: list[dict[str, Any]] = []
    for path in glob.glob(str(directory / "tabserve-disagreements-*.json")):
        try:
            recent.extend(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            continue
    recent = sorted(
        (r for r in recent if r.get("champion") == champion.tag and r.get("challenger") == challenger.tag),
        key=lambda r: -r["time"],
    )[:RECENT]
    regression = champion.task != "classification"
    answer = {
        "champion": champion.tag,
        "challenger": challenger.tag,
        "compared": compared,
        "agree": agree,
        "disagree": disagree,
        "agreement": round(agree / compared, 6) if compared else None,
        "failed": int(counts.get("failed", 0)),
        "skipped": int(counts.get("skipped", 0)),
        ("mean_absolute_difference" if regression else "mean_probability_difference"): (
            round(absolute / compared, 6) if compared else None
        )
        if regression
        else (round(histogram_sum / histogram_count, 6) if histogram_count else None),
        "recent_disagreements": recent,
    }
    rule = f"within {REGRESSION_TOLERANCE:.0%} of each other" if regression else "the same label"
    answer["message"] = (
        "no shadow predictions compared yet"
        if not compared
        else f"the challenger agreed with the champion ({rule}) "
        f"on {agree} of {compared} records ({agree / compared:.1%})"
    )
    return answer
