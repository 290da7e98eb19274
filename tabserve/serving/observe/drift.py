"""Drift on live traffic, against the reference profile train.py keeps in the model card.

Counting: every answer the model gives (the entry service's `_answers`: /predict, /predict_batch,
/predict_csv, /v1/predict, the form, /v2 infer) and every cache hit passes its inputs and predictions to
`DriftMonitor.observe`, which bins them with the reference's bins (tabserve/core/profile.py, numpy for a
batch) and increments each (feature, bin) counter once per call by its count. Prometheus counters
add up across workers, processes and replicas.

The window: BentoML runs every worker with PROMETHEUS_MULTIPROC_DIR, where each process writes its
counters. Any worker can read the totals of all of them from there (prometheus_client's
MultiProcessCollector.merge over the counter files), so GET /v1/drift is right whichever worker answers.
A background task in each worker samples those totals every DRIFT_REFRESH_S seconds into a ring; the
window is the totals now minus the newest sample at least DRIFT_WINDOW_S old (DRIFT_WINDOW_S=0: since the
server started, i.e. the totals themselves). The same task refreshes the PSI gauges on /metrics.

GET /v1/drift (`drift_router`, mounted in the /v1 app, so the gate's key and quotas apply) answers per
feature the PSI, status and every bin's live and reference share, the prediction distribution's PSI, the
window (records, from, to) and an overall status; a model trained before references were kept answers
status "no reference" with a sentence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, Field

from tabserve.core import profile
from tabserve.core.card import ModelCard
from tabserve.core.profile import PREDICTION, Thresholds
from tabserve.serving.observe import metrics

logger = logging.getLogger("tabserve")
RING_SIZE = 720  # samples kept at most: a long window is sampled every DRIFT_WINDOW_S / 720 seconds
OFF = "off"  # the /v1/drift status with DRIFT_COUNTING=0
DEFAULT_THRESHOLDS = Thresholds()  # frozen: one instance serves as every monitor's default


@dataclass(frozen=True)
class Snapshot:
    time: float  # Unix time
    counts: dict[str, np.ndarray]  # per feature (and PREDICTION): totals per bin, over every worker
    since: float  # when the counters began (the earliest worker's start)


class DriftMonitor:
    """Counts one model's live traffic into its reference's bins and compares a window with the reference."""

    def __init__(
        self,
        card: ModelCard,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        window_s: float = 0,
        refresh_s: float = 5.0,
        counting: bool = True,
    ):
        self.card = card
        self.counting = counting  # DRIFT_COUNTING=0: nothing counted, /v1/drift says so
        self.reference = card.reference if counting else None
        self.thresholds = thresholds
        self.window_s = window_s
        self.refresh_s = refresh_s
        self.step_s = max(refresh_s, window_s / RING_SIZE)
        self.started = time.time()
        self.ring: deque[Snapshot] = deque()
        self._children: dict[str, list[Any]] = {}
        self._task: asyncio.Task | None = None
        self._failed = False
        if self.reference is not None:
            self._distributions = {**self.reference.features}
            if self.reference.prediction is not None:
                self._distributions[PREDICTION] = self.reference.prediction

    # --- counting (the request path) ------------------------------------------------------------

    def observe(self, values: list[dict[str, Any]], answers: list[dict[str, Any]]) -> None:
        """Count a call's records and answers. Never fails the prediction: a problem is logged once."""
        if self.reference is None or not values:
            return
        try:
            if len(values) == 1:  # the single-record path, without numpy
                record, prediction = values[0], answers[0]["prediction"]
                for name, dist in self._distributions.items():
                    value = prediction if name == PREDICTION else record.get(name)
                    self._child(name, dist.binning.index_one(value)).inc()
                return
            counts = self.reference.count(values, [a["prediction"] for a in answers])
            for name, per_bin in counts.items():
                for i in np.flatnonzero(per_bin):
                    self._child(name, int(i)).inc(int(per_bin[i]))
        except Exception:  # noqa: BLE001 - counting must not cost an answer
            if not self._failed:
                self._failed = True
                logger.exception("drift counting failed; predictions go on uncounted")

    def _child(self, name: str, index: int) -> Any:
        children = self._children.get(name)
        if children is None:
            children = self._children[name] = [None] * self._distributions[name].binning.size
        child = children[index]
        if child is None:
            label = self._distributions[name].binning.labels[index]
            drift = metrics.drift_metrics()
            if name == PREDICTION:
                child = drift["predicted_values"].labels(model=self.card.tag, bin=label)
            else:
                child = drift["feature_values"].labels(model=self.card.tag, feature=name, bin=label)
            children[index] = child
        return child

    # --- reading the totals of every worker -----------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The counters' totals over every worker (from the multiprocess directory), now."""
        now = time.time()
        counts = {name: np.zeros(d.binning.size) for name, d in self._distributions.items()} if self.reference else {}
        index = (
            {name: {label: i for i, label in enumerate(d.binning.labels)} for name, d in self._distributions.items()}
            if self.reference
            else {}
        )
        since = self.started
        for family in _families():
            if family.name == metrics.FEATURE_VALUES or family.name == metrics.PREDICTED_VALUES:
                for sample in family.samples:
                    if not sample.name.endswith("_total") or sample.labels.get("model") != self.card.tag:
                        continue
                    name = PREDICTION if family.name == metrics.PREDICTED_VALUES else sample.labels.get("feature")
                    i = index.get(name, {}).get(sample.labels.get("bin"))
                    if i is not None:
                        counts[name][i] += sample.value
            elif family.name == metrics.DRIFT_SINCE:
                for sample in family.samples:
                    if sample.labels.get("model") == self.card.tag and sample.value > 0:
                        since = min(since, sample.value)
        return Snapshot(now, counts, since)

    def _keep(self, snap: Snapshot) -> None:
        """Add a sample to the ring (one per step) and drop those the window no longer needs."""
        if self.window_s <= 0:
            return
        if not self.ring or snap.time - self.ring[-1].time >= self.step_s:
            self.ring.append(snap)
        start = snap.time - self.window_s
        while len(self.ring) >= 2 and self.ring[1].time <= start:
            self.ring.popleft()

    def window(self, now: Snapshot) -> tuple[dict[str, np.ndarray], float]:
        """(counts in the window, the window's start): totals now minus those at the window's start."""
        start = now.time - self.window_s
        if self.window_s <= 0 or start <= now.since:
            return now.counts, now.since
        older = [s for s in self.ring if s.time <= start]
        base = older[-1] if older else (self.ring[0] if self.ring else now)  # a young worker: a shorter window
        counts = {name: np.maximum(total - base.counts.get(name, 0), 0) for name, total in now.counts.items()}
        return counts, base.time

    # --- comparing --------------------------------------------------------------------------------

    def report(self, now: Snapshot | None = None) -> dict[str, Any]:
        """The /v1/drift answer."""
        settings = {
            "window_s": self.window_s,
            "warn_psi": self.thresholds.warn,
            "alert_psi": self.thresholds.alert,
            "min_records": self.thresholds.min_records,
        }
        if not self.counting:
            return {
                "model": self.card.tag,
                "status": OFF,
                "message": "drift counting is off (DRIFT_COUNTING=0); unset it to watch drift",
                "window": None,
                "settings": settings,
                "features": [],
                "prediction": None,
            }
        if self.reference is None:
            return {
                "model": self.card.tag,
                "status": profile.NO_REFERENCE,
                "message": f"model {self.card.tag} has no drift reference: it was trained before train.py kept one; "
                "train it again with train.py to watch drift",
                "window": None,
                "settings": settings,
                "features": [],
                "prediction": None,
            }
        now = now or self.snapshot()
        counts, start = self.window(now)
        compared = profile.compare(self.reference, counts, self.thresholds, self.card.schema)
        self._set_gauges(compared)
        records = compared["records"]
        return {
            "model": self.card.tag,
            "status": compared["status"],
            "message": _message(compared, self.thresholds),
            "window": {
                "records": records,
                "from": _iso(start),
                "to": _iso(now.time),
                "seconds": round(now.time - start, 1),
                "kind": f"the last {self.window_s:g} s" if self.window_s > 0 else "since the server started",
            },
            "settings": settings,
            "features": compared["features"],
            "prediction": compared["prediction"],
        }

    def _set_gauges(self, compared: dict[str, Any]) -> None:
        drift = metrics.drift_metrics()
        enough = compared["records"] >= self.thresholds.min_records
        for feature in compared["features"]:
            if "psi" in feature:
                drift["feature_psi"].labels(model=self.card.tag, feature=feature["name"]).set(
                    feature["psi"] if enough else math.nan
                )
        if compared["prediction"] is not None:
            drift["prediction_psi"].labels(model=self.card.tag).set(
                compared["prediction"]["psi"] if enough else math.nan
            )
        drift["window_records"].labels(model=self.card.tag).set(compared["records"])

    async def report_now(self) -> dict[str, Any]:
        """The report from the totals read now (the file reads off the event loop)."""
        if self.reference is None:
            return self.report()
        snap = await asyncio.to_thread(self.snapshot)
        self._keep(snap)
        return self.report(snap)

    # --- the background sampler -------------------------------------------------------------------

    def start(self) -> None:
        """In each entry worker, at start: note when counting began and sample every refresh_s."""
        if self.reference is None or self._task is not None:
            return
        metrics.drift_metrics()["since"].labels(model=self.card.tag).set(self.started)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tabserve-drift-sampler")

    async def _run(self) -> None:
        while True:
            try:
                await self.report_now()  # samples into the ring and refreshes the gauges
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep sampling; say it once
                if not self._failed:
                    self._failed = True
                    logger.exception("drift sampling failed; retrying every %s s", self.refresh_s)
            await asyncio.sleep(self.refresh_s)


_monitor: DriftMonitor | None = None


def monitor(card: ModelCard) -> DriftMonitor:
    """This process's monitor of the served model (the champion: a new one after a swap, whose sampler
    replaces the old one's), with the settings of tabserve/serving/settings.py."""
    global _monitor
    if _monitor is None or _monitor.card is not card:
        from tabserve.serving import settings

        if _monitor is not None and _monitor._task is not None:
            _monitor._task.cancel()

        thresholds = Thresholds(
            warn=settings.DRIFT_WARN_PSI, alert=settings.DRIFT_ALERT_PSI, min_records=settings.DRIFT_MIN_RECORDS
        )
        _monitor = DriftMonitor(
            card,
            thresholds,
            window_s=settings.DRIFT_WINDOW_S,
            refresh_s=settings.DRIFT_REFRESH_S,
            counting=settings.DRIFT_COUNTING,
        )
    return _monitor


def _families() -> Any:
    """The metric families of every process (counters and "min" gauges: the drift counters and when they began)."""
    return metrics.every_worker("counter", "gauge_min")


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="seconds")


def _message(compared: dict[str, Any], thresholds: Thresholds) -> str:
    records = compared["records"]
    if compared["status"] == profile.TOO_FEW:
        return (
            f"{records} record{'s' if records != 1 else ''} in the window, "
            f"fewer than DRIFT_MIN_RECORDS={thresholds.min_records}: too few to judge drift"
        )
    drifted = [(f["name"], f) for f in compared["features"] if f["status"] in (profile.WARN, profile.ALERT)]
    if compared["prediction"] is not None and compared["prediction"]["status"] in (profile.WARN, profile.ALERT):
        drifted.append(("the prediction", compared["prediction"]))
    if not drifted:
        return f"no drift: every PSI is below {thresholds.warn:g}"
    drifted.sort(key=lambda item: -item[1]["psi"])
    return "drift in " + ", ".join(f"{name} ({f['status']}, PSI {f['psi']:g})" for name, f in drifted)


# --- GET /v1/drift ----------------------------------------------------------------------------------


class DriftBin(BaseModel):
    bin: str = Field(
        description='The bin: "≤ 36.6", "36.6–38.3" (36.6 < value ≤ 38.3), "> 50.8", a category, "unseen" or "missing".'
    )
    live: float = Field(description="Share of the window's records in this bin.")
    reference: float = Field(description="Share of the training data in this bin.")
    count: int = Field(description="Records of the window in this bin.")


class FeatureDrift(BaseModel):
    name: str
    status: Literal["ok", "warn", "alert", "too few", "not profiled"]
    psi: float | None = Field(None, description="Population stability index of the window against the training data.")
    records: int | None = None
    bins: list[DriftBin] | None = None
    reason: str | None = Field(None, description="Why a feature is not profiled (dates).")


class PredictionDrift(BaseModel):
    status: Literal["ok", "warn", "alert", "too few"]
    psi: float
    records: int
    bins: list[DriftBin]


class DriftWindow(BaseModel):
    records: int = Field(description="Records predicted in the window, over every worker.")
    from_: str = Field(alias="from", description="Start of the window (UTC, ISO 8601).")
    to: str = Field(description="End of the window: now.")
    seconds: float
    kind: str = Field(description='"since the server started" (DRIFT_WINDOW_S=0) or "the last N s".')

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class DriftSettings(BaseModel):
    window_s: float = Field(description="DRIFT_WINDOW_S: the window's length in seconds; 0: since the server started.")
    warn_psi: float = Field(description="DRIFT_WARN_PSI")
    alert_psi: float = Field(description="DRIFT_ALERT_PSI")
    min_records: int = Field(description="DRIFT_MIN_RECORDS")


class DriftAnswer(BaseModel):
    model: str = Field(description="Tag of the model version served.")
    status: Literal["ok", "warn", "alert", "too few", "no reference", "off"] = Field(
        description="The worst feature (or prediction) status; too few under DRIFT_MIN_RECORDS; "
        "no reference for a model trained before references were kept; off with DRIFT_COUNTING=0."
    )
    message: str = Field(description="One sentence: what drifted, or why nothing can be said.")
    window: DriftWindow | None = Field(None, description="Absent without a reference.")
    settings: DriftSettings
    features: list[FeatureDrift]
    prediction: PredictionDrift | None = Field(None, description="Absent without a reference.")


def drift_router(champion: Callable[[], ModelCard]) -> APIRouter:
    """GET /drift, for the /v1 app: the traffic against the reference of the champion, as served now."""
    router = APIRouter()

    @router.get(
        "/drift",
        summary="Drift of live traffic against the training data (PSI per feature and of the predictions)",
        response_model=DriftAnswer,
        response_model_exclude_none=True,
    )
    async def drift() -> Any:
        """Per feature: the population stability index (PSI) of the window's inputs against the training data,
        its status (ok below DRIFT_WARN_PSI, warn, alert from DRIFT_ALERT_PSI, too few under DRIFT_MIN_RECORDS
        records) and each bin's live and reference share; the same for the predictions (against the held-out
        split's); the window (DRIFT_WINDOW_S seconds, or since the server started), counted over every worker."""
        return await monitor(champion()).report_now()

    return router
