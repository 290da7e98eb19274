"""Drift against the training data: the reference profile kept in the model card, binning values into
its bins (vectorised with numpy), the population stability index (PSI) and the drift statuses.

Pure logic, no I/O: training builds the profile (tabserve/training/trainer.py), serving counts live
traffic into its bins and compares (tabserve/serving/observe/drift.py), and an offline report can do the same
from any table of records.

The profile ("reference"), as stored in the card (JSON, no None anywhere):

    {"version": 1, "rows": 344, "prediction_rows": 69,
     "features": [{"name": "bill_length_mm", "kind": "numeric", "edges": [36.2, 38.6, ...],
                   "labels": ["≤ 36.2", "36.2–38.6", ..., "> 50.1", "missing"], "shares": [0.1, ...]},
                  {"name": "island", "kind": "categorical", "categories": ["Biscoe", "Dream", "Torgersen"],
                   "labels": ["Biscoe", "Dream", "Torgersen", "unseen", "missing"], "shares": [...]}],
     "not_profiled": {"day": "date: dates move by nature ..."},
     "prediction": {"kind": "categorical", "categories": ["Adelie", ...], "labels": [...], "shares": [...]}}

- A numeric feature has up to 10 quantile bins over its non-missing training values. The edges are
  observed values (quantiles with numpy's "inverted_cdf"), deduplicated, so a discrete feature (a year,
  a 0/1 flag) gets one bin per value; the last bin, "> edge", is empty in training and catches values
  above every edge. A bin "a–b" holds a < value ≤ b. For a whole-number feature a bin holding a single
  whole number is labelled by it ("2008" for 2007 < value ≤ 2008).
- A categorical or boolean feature has one bin per category (booleans: "false", "true"), then
  "unseen" (a value training never had: the API refuses those, other data may hold them).
- Every feature has a last bin "missing" (null, None or NaN).
- Date and date-time features are not profiled: dates move by nature (live dates come after the
  training range), so they would always read as drift. They are listed in "not_profiled" with why.
- The prediction's distribution is measured on the held-out split: one bin per class, or for
  regression 10 quantile bins of the predicted values (no "missing" bin).

PSI = Σ (live − ref) · ln(live / ref) over the bins, shares clipped below at EPSILON = 1e-4 (so an
empty bin on either side counts as 0.01 % rather than making the logarithm infinite).

How to use it (an offline report does exactly what /v1/drift does):

    reference = ModelCard.from_model(bentoml.models.get("penguins:latest")).reference
    counts = reference.count(records, predictions)  # records: dicts (or a DataFrame) of typed values
    report = compare(reference, counts, Thresholds())  # {"status", "records", "features": [...], "prediction": {...}}
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, NUMERIC, FeatureSchema, free_label, label_text

VERSION = 1
BINS = 10
EPSILON = 1e-4  # the smallest share PSI uses for a bin: an empty bin counts as 0.01 %
NUMERIC_KIND = "numeric"
CATEGORICAL_KIND = "categorical"
MISSING = "missing"
UNSEEN = "unseen"
PREDICTION = "prediction"  # the key of the prediction's counts in `Reference.count`

# Statuses, per feature and overall.
OK, WARN, ALERT, TOO_FEW = "ok", "warn", "alert", "too few"
NO_REFERENCE, NOT_PROFILED = "no reference", "not profiled"
SEVERITY = {OK: 0, WARN: 1, ALERT: 2}
DATES_NOT_PROFILED = (
    "dates move by nature: live dates come after the training range, so a date would always read as "
    "drift; the model sees its parts (year, month, day, day of week, day of year)"
)


@dataclass(frozen=True)
class Binning:
    """How values fall into bins. Numeric: bin i holds edges[i-1] < v ≤ edges[i] (the first v ≤ edges[0],
    then v > edges[-1]); categorical: one bin per category, then "unseen". Then "missing", when `missing`."""

    kind: str  # NUMERIC_KIND or CATEGORICAL_KIND
    labels: tuple[str, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[Any, ...] = ()
    missing: bool = True  # a last bin for missing values (predictions have none)
    _lookup: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expected = (len(self.edges) + 1 if self.kind == NUMERIC_KIND else len(self.categories) + 1) + self.missing
        if len(self.labels) != expected or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"a {self.kind} binning needs {expected} distinct labels, got {list(self.labels)}")
        if self.kind == CATEGORICAL_KIND:
            self._lookup.update({category: i for i, category in enumerate(self.categories)})
            if self.missing:
                self._lookup[None] = self.missing_index

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def missing_index(self) -> int:
        return self.size - 1 if self.missing else -1

    def index(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """The bin of each value (None and NaN are missing), as an int array."""
        if self.kind == NUMERIC_KIND:
            numbers = np.asarray(values, dtype=float)  # None becomes NaN
            bins = np.searchsorted(np.asarray(self.edges, dtype=float), numbers, side="left")
            absent = np.isnan(numbers)
            if absent.any():
                if not self.missing:
                    raise ValueError("missing values in a binning without a missing bin")
                bins[absent] = self.missing_index
            return bins
        # dict.get over the values at C speed: None -> missing, anything not a category -> unseen.
        unseen = len(self.categories)
        bins = np.fromiter(map(self._lookup.get, values, repeat(unseen)), dtype=np.intp, count=len(values))
        if self.missing:
            for i in np.flatnonzero(bins == unseen):  # rare: NaN (from a DataFrame) is missing, not unseen
                if _absent(values[i]):
                    bins[i] = self.missing_index
        return bins

    def index_one(self, value: Any) -> int:
        """The bin of one value, without numpy (the single-record path)."""
        if _absent(value):
            if not self.missing:
                raise ValueError("a missing value in a binning without a missing bin")
            return self.missing_index
        if self.kind == NUMERIC_KIND:
            return bisect_left(self.edges, value)
        return self._lookup.get(value, len(self.categories))  # None was handled above

    def counts(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """How many values fall into each bin (an int array of `size`)."""
        if len(values) == 1:
            out = np.zeros(self.size, dtype=np.int64)
            out[self.index_one(values[0])] = 1
            return out
        return np.bincount(self.index(values), minlength=self.size)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == NUMERIC_KIND:
            out["edges"] = list(self.edges)
        else:
            out["categories"] = list(self.categories)
        out["labels"] = list(self.labels)
        if not self.missing:
            out["missing"] = False
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Binning:
        return cls(
            kind=data["kind"],
            labels=tuple(data["labels"]),
            edges=tuple(float(e) for e in data.get("edges", ())),
            categories=tuple(data.get("categories", ())),
            missing=bool(data.get("missing", True)),
        )


@dataclass(frozen=True)
class Distribution:
    """A binning with the reference share of each bin (summing to 1)."""

    binning: Binning
    shares: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**self.binning.to_dict(), "shares": list(self.shares)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Distribution:
        return cls(Binning.from_dict(data), tuple(float(s) for s in data["shares"]))


@dataclass(frozen=True)
class Reference:
    """The training data's profile: one distribution per profiled feature and of the predictions."""

    features: dict[str, Distribution]  # in schema order
    prediction: Distribution | None
    not_profiled: dict[str, str] = field(default_factory=dict)  # feature -> why
    rows: int = 0  # rows the features were profiled on
    prediction_rows: int = 0  # held-out rows the predictions were profiled on

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": VERSION,
            "rows": self.rows,
            "prediction_rows": self.prediction_rows,
            "features": [{"name": name, **d.to_dict()} for name, d in self.features.items()],
            "not_profiled": dict(self.not_profiled),
        }
        if self.prediction is not None:
            out["prediction"] = self.prediction.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(
            features={f["name"]: Distribution.from_dict(f) for f in data.get("features", [])},
            prediction=Distribution.from_dict(data["prediction"]) if "prediction" in data else None,
            not_profiled=dict(data.get("not_profiled", {})),
            rows=int(data.get("rows", 0)),
            prediction_rows=int(data.get("prediction_rows", 0)),
        )

    def count(
        self, records: Sequence[Mapping[str, Any]] | Any, predictions: Sequence[Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Counts per bin of every profiled feature (and of the predictions, under PREDICTION, when given)
        in a batch: records as dicts of typed values, or a DataFrame with the feature columns."""
        counts: dict[str, np.ndarray] = {}
        is_frame = hasattr(records, "columns")
        for name, distribution in self.features.items():
            if is_frame:
                column = (
                    records[name].to_numpy() if name in records.columns else np.full(len(records), None, dtype=object)
                )
            else:
                try:
                    column = list(map(itemgetter(name), records))
                except KeyError:  # records that leave out missing values
                    column = [r.get(name) for r in records]
            counts[name] = distribution.binning.counts(column)
        if predictions is not None and self.prediction is not None:
            counts[PREDICTION] = self.prediction.binning.counts(list(predictions))
        return counts


@dataclass(frozen=True)
class Thresholds:
    """When a PSI is worth a look (warn), worth acting on (alert), and how many records make it meaningful.

    A sample of n records from the reference itself reads a PSI of about (bins − 1) / n from noise alone
    (0.1 for 10 bins and 100 records), so below `min_records` the status is "too few"."""

    warn: float = 0.1
    alert: float = 0.25
    min_records: int = 500


# --- building a profile ----------------------------------------------------------------------------


def numeric_binning(values: Iterable[Any], bins: int = BINS, integer: bool = False, missing: bool = True) -> Binning:
    """Quantile bins of the non-missing values: observed values as edges, deduplicated."""
    numbers = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    numbers = numbers[~np.isnan(numbers)]
    if numbers.size:
        quantiles = np.arange(1, bins) / bins
        edges = tuple(float(e) for e in np.unique(np.quantile(numbers, quantiles, method="inverted_cdf")))
    else:
        edges = ()
    return Binning(
        NUMERIC_KIND, _numeric_labels(edges, integer) + ((MISSING,) if missing else ()), edges=edges, missing=missing
    )


def categorical_binning(categories: Sequence[Any], missing: bool = True, unseen: str = UNSEEN) -> Binning:
    """One bin per category (labelled as JSON writes it: true, 1, Adelie), then "unseen" (an open category's
    `other` level: the values it pools), then "missing"."""
    labels = [label_text(c) for c in categories]
    taken = set(labels)
    labels += [free_label(unseen, taken)] + ([free_label(MISSING, taken)] if missing else [])
    return Binning(CATEGORICAL_KIND, tuple(labels), categories=tuple(categories), missing=missing)


def distribution(binning: Binning, values: Sequence[Any] | np.ndarray) -> Distribution:
    """The shares of `values` in `binning`'s bins (rounded to 6 decimals)."""
    return Distribution(binning, tuple(round(float(s), 6) for s in shares(binning.counts(values))))


def feature_binning(feature: Any, values: Sequence[Any] | np.ndarray) -> Binning | None:
    """The binning of one schema feature from its training values; None for dates (not profiled)."""
    if feature.kind == NUMERIC:
        return numeric_binning(values, integer=bool(feature.integer))
    if feature.kind == BOOLEAN:
        return categorical_binning([False, True])
    if feature.kind == CATEGORICAL:
        return categorical_binning(feature.categories or [], unseen=feature.other or UNSEEN)
    if feature.kind in (DATE, DATETIME):
        return None
    raise ValueError(f"unknown feature kind {feature.kind!r}")


def build_reference(
    schema: FeatureSchema, records: Any, predictions: Sequence[Any] | None = None, classes: Sequence[Any] | None = None
) -> Reference:
    """The profile of a training table (a DataFrame of typed values, one column per feature) and of the
    model's predictions on held-out rows: class labels when `classes` is given, else numbers."""
    features: dict[str, Distribution] = {}
    not_profiled: dict[str, str] = {}
    for feature in schema.features:
        column = records[feature.name].to_numpy()
        binning = feature_binning(feature, column)
        if binning is None:
            not_profiled[feature.name] = f"{feature.type_name}: {DATES_NOT_PROFILED}"
            continue
        features[feature.name] = distribution(binning, column)
    prediction = None
    if predictions is not None:
        values = [p.item() if hasattr(p, "item") else p for p in predictions]
        binning = (
            categorical_binning(list(classes), missing=False) if classes else numeric_binning(values, missing=False)
        )
        prediction = distribution(binning, values)
    return Reference(
        features,
        prediction,
        not_profiled,
        rows=len(records),
        prediction_rows=0 if predictions is None else len(predictions),
    )


# --- comparing ---------------------------------------------------------------------------------


def shares(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts as shares of their total (all zeros when the total is 0)."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(live: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of live shares against reference shares, bin by bin:
    Σ (live − ref) · ln(live / ref), each share at least `epsilon`. 0 for identical distributions."""
    p = np.maximum(np.asarray(live, dtype=float), epsilon)
    q = np.maximum(np.asarray(reference, dtype=float), epsilon)
    if p.shape != q.shape:
        raise ValueError(f"live has {p.size} bins, the reference {q.size}")
    return float(np.sum((p - q) * np.log(p / q)))


def status(value: float, records: int, thresholds: Thresholds) -> str:
    """ok below warn, warn from warn, alert from alert; "too few" under the minimum of records."""
    if records < thresholds.min_records:
        return TOO_FEW
    if value >= thresholds.alert:
        return ALERT
    return WARN if value >= thresholds.warn else OK


def overall(statuses: Iterable[str], records: int, thresholds: Thresholds) -> str:
    """The worst of the statuses; "too few" under the minimum of records."""
    if records < thresholds.min_records:
        return TOO_FEW
    return max((s for s in statuses if s in SEVERITY), key=SEVERITY.__getitem__, default=OK)


def compare_one(
    distribution: Distribution, counts: Sequence[float] | np.ndarray, thresholds: Thresholds
) -> dict[str, Any]:
    """One distribution against live counts: PSI, status, records and every bin's live and reference share."""
    counts = np.asarray(counts, dtype=float)
    records = int(counts.sum())
    live = shares(counts)
    value = psi(live, distribution.shares) if records else 0.0
    return {
        "psi": round(value, 4),
        "status": status(value, records, thresholds),
        "records": records,
        "bins": [
            {"bin": label, "live": round(float(s), 4), "reference": round(float(r), 4), "count": int(c)}
            for label, s, r, c in zip(distribution.binning.labels, live, distribution.shares, counts, strict=True)
        ],
    }


def compare(
    reference: Reference,
    counts: Mapping[str, Sequence[float] | np.ndarray],
    thresholds: Thresholds,
    schema: FeatureSchema | None = None,
) -> dict[str, Any]:
    """Live counts (as `Reference.count` gives them, summed over a window) against the reference:
    {"status", "records", "features": [{"name", "psi", "status", "records", "bins"}, ...], "prediction": {...}}.
    Features that are not profiled are listed with status "not profiled" and why."""
    features = []
    for name, dist in reference.features.items():
        features.append({"name": name, **compare_one(dist, counts.get(name, np.zeros(dist.binning.size)), thresholds)})
    names = schema.names if schema is not None else [*reference.features, *reference.not_profiled]
    order = {name: i for i, name in enumerate(names)}
    features += [{"name": name, "status": NOT_PROFILED, "reason": why} for name, why in reference.not_profiled.items()]
    features.sort(key=lambda f: order.get(f["name"], len(order)))
    prediction = None
    if reference.prediction is not None and PREDICTION in counts:  # offline data may come without predictions
        prediction = compare_one(reference.prediction, counts[PREDICTION], thresholds)
    # Every record is counted once per feature and once in the predictions: any of them tells the window's size.
    records = max([f.get("records", 0) for f in features] + ([prediction["records"]] if prediction else []), default=0)
    statuses = [f["status"] for f in features] + ([prediction["status"]] if prediction else [])
    return {
        "status": overall(statuses, records, thresholds),
        "records": records,
        "features": features,
        "prediction": prediction,
    }


# --- helpers -----------------------------------------------------------------------------------


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _numeric_labels(edges: tuple[float, ...], integer: bool) -> tuple[str, ...]:
    if not edges:
        return ("any value",)
    whole = integer and all(float(e).is_integer() for e in edges)
    for precision in range(6, 18):
        text = [_number(e, precision) for e in edges]
        if len(set(text)) == len(text):
            break
    labels = [f"≤ {text[0]}"]
    for i in range(1, len(edges)):
        low, high = edges[i - 1], edges[i]
        if whole and high - low == 1:
            labels.append(text[i])  # (2007, 2008] holds one whole number: 2008
        else:
            labels.append(f"{text[i - 1]}–{text[i]}")
    labels.append(f"> {text[-1]}")
    return tuple(labels)


def _number(value: float, precision: int) -> str:
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{precision}g}"
