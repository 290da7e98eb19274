"""Choosing the model: every candidate family cross-validated on the same folds within a time budget, a
leaderboard, the best by the task's metric (ties to the simpler, faster family), and what the report needs.

Nothing is measured on rows a model was fitted on: each fold's model scores only its held-out rows, and the
out-of-fold predictions (every labelled row scored once, by a model that never saw it) feed the report and
the drift reference. The saved model is the winner refitted on every labelled row (trainer.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabserve.core.errors import DataError
from tabserve.core.pipeline import CLASSIFICATION
from tabserve.core.schema import DATE, DATETIME, FeatureSchema
from tabserve.training import fit
from tabserve.training.candidates import Family

DEFAULT_BUDGET_S = 120.0
# Two scores this close are a tie, and the tie goes to the family tried first (simpler and faster).
TIE_TOLERANCE = 5e-4
PROGRESS_ROWS = 100_000  # from this many labelled rows, each fold's progress is shown
IMPORTANCE_ROWS, IMPORTANCE_REPEATS = 2_000, 5


@dataclass(frozen=True)
class Labelled:
    """The labelled rows: the model's input frame, and the target as class indices (classification, into
    `classes`, the sorted labels) or floats."""

    features: pd.DataFrame
    target: pd.Series
    task: str
    classes: list[Any] | None
    codes: np.ndarray
    record: dict[str, Any]  # one row as the API takes it: the lone-record timing's input

    @classmethod
    def of(cls, typed: pd.DataFrame, features: pd.DataFrame, target: pd.Series, task: str) -> Labelled:
        features, target = features.reset_index(drop=True), target.reset_index(drop=True)
        record = {name: value for name, value in typed.iloc[0].items() if not _missing(value)}
        if task != CLASSIFICATION:
            return cls(features, target, task, None, target.to_numpy(dtype=float), record)
        classes = sorted(set(target.tolist()), key=lambda v: (str(type(v)), v))
        index = {label: i for i, label in enumerate(classes)}
        codes = target.map(index).to_numpy(dtype=int)
        return cls(features, target, task, [_plain(c) for c in classes], codes, record)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT


def _plain(label):
    return label.item() if hasattr(label, "item") else label


@dataclass(frozen=True)
class Folds:
    """Each fold's (training rows, held-out rows), as positions; what they are, in words."""

    splits: list[tuple[np.ndarray, np.ndarray]]
    description: str
    rare: dict = field(default_factory=dict)  # classification: {label: rows} trained on in every fold, never scored
    unscored: int = 0  # rows in no fold's held-out rows (rare classes; a time column's missing values)

    @property
    def scored(self) -> np.ndarray:
        return np.concatenate([held for _, held in self.splits])


def make_folds(labelled: Labelled, seed: int, time_column: str | None = None, moments: pd.Series | None = None):
    """Stratified k-fold for classification (rare classes, with fewer rows than folds, in every fold's training
    rows), shuffled k-fold for regression, or time-ordered folds on a date column (each fold trained only on
    rows no later than the ones it scores)."""
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    n, k = len(labelled.codes), fit.FOLDS
    if n < 2 * k:
        raise DataError(f"only {n} labelled rows; at least {2 * k} are needed to cross-validate ({k} folds)")
    rare, common = {}, np.ones(n, dtype=bool)
    if labelled.task == CLASSIFICATION:
        counts = np.bincount(labelled.codes, minlength=len(labelled.classes))
        if len(counts) < 2:
            raise DataError(
                f"target {labelled.target.name!r} has only one class ({labelled.classes[0]!r}); nothing to learn"
            )
        rare = {labelled.classes[i]: int(c) for i, c in enumerate(counts) if c < fit.MIN_CLASS_ROWS}
        if len(rare) == len(counts):
            raise DataError(
                f"every class of {labelled.target.name!r} has fewer than {fit.MIN_CLASS_ROWS} labelled rows, so no "
                f"row can be held out to measure the model; more rows per class are needed"
            )
        common = ~np.isin(labelled.codes, [labelled.classes.index(label) for label in rare])
    if time_column is not None:
        usable = np.flatnonzero(moments.notna().to_numpy())
        order = usable[np.argsort(moments.to_numpy()[usable], kind="stable")]
        if len(order) < 2 * k:
            raise DataError(f"--cv-time {time_column!r} has only {len(order)} labelled rows with a date")
        splits = [(order[train], order[held]) for train, held in TimeSeriesSplit(n_splits=k).split(order)]
        description = (
            f"{k} time-ordered folds on {time_column!r} (each fold trained on earlier rows only, then scored on the "
            f"next {len(splits[0][1])}-odd rows)"
        )
        return Folds(splits, description, {}, n - sum(len(h) for _, h in splits))
    positions = np.flatnonzero(common)
    if labelled.task == CLASSIFICATION:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(positions, labelled.codes[positions])
        description = f"{k}-fold stratified cross-validation (seed {seed})"
    else:
        parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(positions)
        description = f"{k}-fold cross-validation (seed {seed})"
    always = np.flatnonzero(~common)  # the rare classes' rows: trained on in every fold
    splits = [(np.sort(np.concatenate([positions[train], always])), positions[held]) for train, held in parts]
    return Folds(splits, description, rare, len(always))


def moments_of(schema: FeatureSchema, typed: pd.DataFrame, column: str) -> pd.Series:
    """--cv-time's column as moments (NaT where missing); DataError unless it is a date feature."""
    feature = schema[column] if column in schema.names else None
    if feature is None or feature.kind not in (DATE, DATETIME):
        dates = [f.name for f in schema.features if f.kind in (DATE, DATETIME)]
        if column in schema.other_columns:  # a date column read as an identifier (an hourly timestamp)
            raise DataError(
                f"--cv-time {column!r} is not a feature ({schema.other_columns[column]}); "
                f"--date {column} makes it a date feature"
            )
        what = "not a feature" if feature is None else f"a {feature.type_name} column"
        raise DataError(
            f"--cv-time {column!r} is {what}, not a date; "
            + (f"name a date column: {', '.join(dates)}" if dates else "this file has no date column (--date COL)")
        )
    moments = pd.to_datetime(typed[column].reset_index(drop=True), errors="coerce", utc=True)
    return moments.dt.tz_convert(None) if moments.dt.tz is not None else moments


# --- evaluating candidates ------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One family's cross-validation: its leaderboard entry and, when evaluated, its out-of-fold answers."""

    family: Family
    status: str = "evaluated"  # evaluated | skipped | chosen
    reason: str = ""
    fold_scores: dict[str, list[float]] = field(default_factory=dict)
    fit_seconds: list[float] = field(default_factory=list)
    predict_ms: float | None = None
    predicted: np.ndarray | None = None  # out-of-fold, at every scored row (class indices or values)
    probabilities: np.ndarray | None = None
    last_fold: Any = None  # (fitted pipeline, its held-out positions): permutation importance is measured there

    def mean(self, metric: str) -> float | None:
        values = self.fold_scores.get(metric)
        return None if not values or np.all(np.isnan(values)) else float(np.nanmean(values))

    def std(self, metric: str) -> float | None:
        values = self.fold_scores.get(metric)
        return None if not values or np.all(np.isnan(values)) else float(np.nanstd(values))

    def entry(self, metric: str) -> dict[str, Any]:
        """Its leaderboard row, as the card keeps it and the report shows it."""
        done = self.status != "skipped"
        return {
            "model": self.family.name,
            "status": self.status,
            "score_mean": _round(self.mean(metric)) if done else None,
            "score_std": _round(self.std(metric)) if done else None,
            "metrics": {name: _round(self.mean(name)) for name in self.fold_scores} if done else {},
            "fit_s": round(float(np.mean(self.fit_seconds)), 3) if done and self.fit_seconds else None,
            "predict_ms": round(self.predict_ms, 4) if done and self.predict_ms is not None else None,
            "reason": self.reason,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class Selection:
    metric: fit.Metric
    folds: Folds
    candidates: list[Candidate]
    budget_s: float
    seconds: float

    @property
    def best(self) -> Candidate:
        return next(c for c in self.candidates if c.status == "chosen")

    def leaderboard(self) -> list[dict[str, Any]]:
        """Evaluated candidates best first, then the skipped ones."""
        done = [c for c in self.candidates if c.status != "skipped"]
        done.sort(key=lambda c: _sort_key(c, self.metric))
        return [c.entry(self.metric.name) for c in done + [c for c in self.candidates if c.status == "skipped"]]


def _sort_key(candidate: Candidate, metric: fit.Metric) -> float:
    value = candidate.mean(metric.name)
    if value is None:
        return float("inf")
    return -value if metric.greater_is_better else value


def select(
    labelled: Labelled,
    folds: Folds,
    families: list[Family],
    metric: fit.Metric,
    seed: int,
    class_weight: str | None,
    budget_s: float,
    schema: FeatureSchema,
    progress: Progress,
) -> Selection:
    """Cross-validate each family on the same folds, in order, within the budget; mark the best as chosen.
    A family whose first fold shows its folds cannot end within what is left of the budget stops and is
    reported as skipped, as is one whose library is missing or that the budget never reached. DataError when
    none could be evaluated."""
    started = time.perf_counter()
    layout = fit.layout(schema, len(labelled.codes))
    candidates = []
    for family in families:
        candidate = Candidate(family)
        candidates.append(candidate)
        left = budget_s - (time.perf_counter() - started)
        if not family.installed:
            candidate.status, candidate.reason = (
                "skipped",
                f"{family.library} is not installed ({family.requirements[0]})",
            )
        elif left <= 0:
            candidate.status, candidate.reason = (
                "skipped",
                f"the time budget ({budget_s:g} s) was spent before it started",
            )
        else:
            _cross_validate(candidate, labelled, folds, layout, seed, class_weight, schema, started, budget_s, progress)
    done = [c for c in candidates if c.status != "skipped"]
    if not done:
        timed = [c for c in candidates if c.fit_seconds]
        if timed:
            quickest = min(timed, key=lambda c: c.fit_seconds[0])
            raise DataError(
                f"the time budget of {budget_s:g} s is too small: {quickest.family.name} needed "
                f"{quickest.fit_seconds[0]:.1f} s for one fold of {len(folds.splits)}; raise --time-budget "
                f"(about {len(folds.splits) * quickest.fit_seconds[0] * 1.2:.0f} s)"
            )
        raise DataError("no model could be evaluated: " + "; ".join(f"{c.family.name}: {c.reason}" for c in candidates))
    best = min(done, key=lambda c: _sort_key(c, metric))
    for candidate in done:  # ties (within TIE_TOLERANCE) go to the family tried first: simpler, faster
        a, b = candidate.mean(metric.name), best.mean(metric.name)
        if a is not None and b is not None and abs(a - b) <= TIE_TOLERANCE * max(1.0, abs(a), abs(b)):
            best = candidate
            break
    best.status = "chosen"
    return Selection(metric, folds, candidates, budget_s, time.perf_counter() - started)


def _cross_validate(candidate, labelled, folds, layout, seed, class_weight, schema, started, budget_s, progress):
    family, task = candidate.family, labelled.task
    n = len(labelled.codes)
    classes = len(labelled.classes or [])
    candidate.predicted = np.full(n, np.nan)
    candidate.probabilities = np.full((n, classes), np.nan) if task == CLASSIFICATION else None
    measured = sorted(set(labelled.codes[folds.scored].tolist())) if task == CLASSIFICATION else None
    with progress.candidate(family.name, len(folds.splits)) as step:
        for number, (train, held) in enumerate(folds.splits, start=1):
            y_train = labelled.codes[train]
            one_row_class = task == CLASSIFICATION and _min_count(y_train) < 2
            pipeline = fit.build(schema, task, one_row_class, family.name, seed, class_weight, len(train))
            target, present = y_train, None
            if task == CLASSIFICATION:  # a time fold may lack a class: fit on the present ones' local indices
                present = np.unique(y_train)
                target = np.searchsorted(present, y_train)
            x_train, x_held = labelled.features.iloc[train], labelled.features.iloc[held]
            began = time.perf_counter()
            pipeline.fit(x_train, target, **family.fit_params(layout, target, class_weight))
            candidate.fit_seconds.append(time.perf_counter() - began)
            family.for_serving(pipeline[-1])
            family.remember_training(pipeline, x_train)
            if task == CLASSIFICATION:
                local = pipeline.predict_proba(x_held)
                probabilities = np.zeros((len(held), classes))
                probabilities[:, present] = local
                predicted = probabilities.argmax(axis=1)
                candidate.probabilities[held] = probabilities
            else:
                predicted, probabilities = pipeline.predict(x_held).astype(float), None
            candidate.predicted[held] = predicted
            scores = fit.measure(task, labelled.codes[held], predicted, probabilities, measured)
            for name, value in scores.items():
                candidate.fold_scores.setdefault(name, []).append(value)
            if candidate.predict_ms is None:
                candidate.predict_ms = _lone_record_ms(pipeline, schema, labelled.record)
            candidate.last_fold = (pipeline, held, present)
            step(number, candidate.fit_seconds[-1])
            elapsed, remaining = time.perf_counter() - started, len(folds.splits) - number
            if remaining and elapsed + np.mean(candidate.fit_seconds) * remaining > budget_s:
                need = np.mean(candidate.fit_seconds) * len(folds.splits)
                candidate.status = "skipped"
                candidate.reason = (
                    f"one fold took {candidate.fit_seconds[0]:.1f} s: {len(folds.splits)} folds need about "
                    f"{need:.0f} s, and {max(0.0, budget_s - elapsed + sum(candidate.fit_seconds)):.0f} s of the "
                    f"{budget_s:g} s budget was left when it started (--time-budget)"
                )
                candidate.predicted = candidate.probabilities = candidate.last_fold = None
                candidate.fold_scores = {}
                return


def _min_count(codes: np.ndarray) -> int:
    counts = np.bincount(codes)
    return int(counts[counts > 0].min())


def _lone_record_ms(fitted, schema: FeatureSchema, record: dict[str, Any]) -> float:
    """One record's time through the service's own call (tabserve/core/pipeline.py predict_records: the
    encoder, then the model, or HistGradientBoosting's trees directly), the median of a few calls."""
    from tabserve.core.pipeline import predict_records

    predict_records(fitted, schema, [record])  # warm: builds the encoder once, as the service does at start
    times = []
    for _ in range(9):
        began = time.perf_counter()
        predict_records(fitted, schema, [record])
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1000)


def permutation_importance(selection: Selection, labelled: Labelled, schema: FeatureSchema, seed: int):
    """Each input feature's importance for the chosen model: how much the metric worsens when the feature's
    columns (a date's parts together) are shuffled in the held-out rows of its last fold, whose model never
    saw them. (mean, std) over repeats, and a sentence saying how."""
    best, metric = selection.best, selection.metric
    pipeline, held, present = best.last_fold
    rng = np.random.default_rng(seed)
    held = importance_rows(held, rng)
    frame = labelled.features.iloc[held].reset_index(drop=True)
    true = labelled.codes[held]
    measured = sorted(set(true.tolist())) if labelled.task == CLASSIFICATION else None

    def score(x: pd.DataFrame) -> float:
        if labelled.task == CLASSIFICATION:
            probabilities = np.zeros((len(x), len(labelled.classes)))
            probabilities[:, present] = pipeline.predict_proba(x)
            value = metric.score(true, probabilities.argmax(axis=1), probabilities, measured)
        else:
            value = metric.score(true, pipeline.predict(x).astype(float), None, measured)
        return value if metric.greater_is_better else -value

    baseline = score(frame)
    importance = {}
    for feature in schema.features:
        columns = [c for c in frame.columns if c == feature.name or c.startswith(f"{feature.name}.")]
        if not columns:
            continue
        drops = []
        for _ in range(IMPORTANCE_REPEATS):
            shuffled = frame.copy()
            order = rng.permutation(len(frame))
            shuffled[columns] = frame[columns].to_numpy()[order]
            drops.append(baseline - score(shuffled))
        importance[feature.name] = (round(float(np.mean(drops)), 5), round(float(np.std(drops)), 5))
    note = (
        f"the worsening of {metric.title} when one feature's values are shuffled ({IMPORTANCE_REPEATS} times) in "
        f"{len(held)} held-out rows of the last fold, scored by that fold's {best.family.name} model"
    )
    return dict(sorted(importance.items(), key=lambda kv: -kv[1][0])), note


# --- progress -------------------------------------------------------------------------------------------------


class Progress:
    """From PROGRESS_ROWS labelled rows: a tqdm bar per candidate on a terminal, else one line per step
    (CI logs); on stderr, so the summary on stdout stays as it is. Quiet on smaller files."""

    def __init__(self, rows: int, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.shown = rows >= PROGRESS_ROWS
        self.terminal = self.shown and hasattr(self.stream, "isatty") and self.stream.isatty()

    @contextmanager
    def candidate(self, name: str, folds: int) -> Iterator:
        if not self.shown:
            yield lambda number, seconds: None
            return
        if self.terminal:
            from tqdm import tqdm

            with tqdm(total=folds, desc=f"cross-validating {name}", unit="fold", file=self.stream) as bar:
                yield lambda number, seconds: bar.update(1)
            return
        yield lambda number, seconds: self.line(
            f"cross-validating {name}: fold {number}/{folds} fitted in {seconds:.1f} s"
        )

    def line(self, text: str) -> None:
        if self.shown:
            print(text, file=self.stream, flush=True)


def contribution_importance(selection: Selection, labelled: Labelled, schema: FeatureSchema, seed: int):
    """The card's explanation summary: each feature's mean absolute contribution, on the same held-out rows of the
    last fold as the permutation importance, explained with that fold's model. Empty when the family has no
    explanations (the service then answers explain=true with a 400 saying why)."""
    from tabserve.explaining.explainers import NotExplainable, explanations, for_trained, summary

    best = selection.best
    pipeline, held, present = best.last_fold
    held = importance_rows(held, np.random.default_rng(seed))  # the permutation importance's rows
    try:
        explainer = for_trained(pipeline, schema)
    except NotExplainable:
        return {}
    X = pipeline[0].transform(labelled.features.iloc[held])
    if labelled.task == CLASSIFICATION:
        classes = list(range(len(pipeline[-1].classes_)))  # the fold's own classes, as indices
        targets = pipeline.predict_proba(labelled.features.iloc[held]).argmax(axis=1).tolist()
    else:
        classes, targets = None, [None] * len(held)
    found = explanations(explainer, np.asarray(X, dtype=float), classes, targets)
    where = f"held-out rows of the last fold, explained with that fold's {best.family.name} model"
    return summary(explainer, found, where, classifier=classes is not None)


def importance_rows(held: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most IMPORTANCE_ROWS of the last fold's held-out positions, in order."""
    return np.sort(rng.choice(held, IMPORTANCE_ROWS, replace=False)) if len(held) > IMPORTANCE_ROWS else held
