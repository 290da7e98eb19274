"""The training report: one self-contained HTML page saying what train.py tried, what it chose and how well the
chosen model did, for a person to read instead of the log.

The page (template: tabserve/training/templates/training_report.html): the leaderboard of candidates, the data
summary, then plots of the out-of-fold predictions (classification: confusion matrix, ROC and precision-recall
curves, calibration; regression: predicted against actual, residuals) and the permutation importance. Plots
are matplotlib PNGs inside the page (tabserve/core/plots.py): no scripts, no external files. Every text is
escaped (column names and labels come from the user's file).

Curves use the full arrays; scatter plots a seeded sample, so 300,000 rows draw in a few seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tabserve.core import plots
from tabserve.core.schema import label_text

TEMPLATES = Path(__file__).resolve().parent / "templates"  # training_report.html

MAX_CURVES = 10  # one-vs-rest curves: the most frequent classes
MAX_FEATURES = 25  # importance bars: the most important features
MAX_POINTS = 5_000  # scatter plots: a seeded sample of the rows
MAX_CURVE_POINTS = 2_000  # a curve's points drawn (its area is computed on all of them)
MAX_ANNOTATED_CLASSES = 20  # a confusion matrix with more classes shows colours without counts
SEED = 0

CHOSEN = "chosen"  # the leaderboard status of the saved model
COLOURS = ("#3b7dd8", "#e0782b", "#3a9d5d", "#c8413b", "#8a63c2", "#8c5a4a", "#d16ba5", "#6f7782", "#b3a22a", "#2fb3c2")
DPI = 110


@dataclass(frozen=True)
class ReportInputs:
    title: str  # e.g. "penguins:abc123" (the model version's tag)
    task: str  # "classification" or "regression"
    target: str
    classes: list | None  # classification: labels in order (probability columns follow this order)
    data_lines: list[str]  # the data summary exactly as the CLI prints it
    # One per candidate, best first: model, status (chosen | evaluated | skipped), score_mean, score_std,
    # metrics ({name: mean over folds}), fit_s (per fold fit), predict_ms (per record), reason (why skipped).
    leaderboard: list[dict]
    metric: str  # the chosen metric's name: log_loss, roc_auc, accuracy, f1_macro, rmse, mae, r2
    greater_is_better: bool
    evaluation: str  # one sentence: how it was measured
    y_true: np.ndarray  # out-of-fold targets: class indices 0..K-1, or floats
    predicted: np.ndarray  # out-of-fold predictions: class indices, or floats
    probabilities: np.ndarray | None  # (n, K) out-of-fold class probabilities (classification)
    importance: dict[str, tuple[float, float]]  # feature -> (mean drop in the metric when permuted, std)
    importance_note: str  # one sentence: how importance was measured


@dataclass
class Plot:
    """One figure of the page: its image, or a note saying why it could not be drawn."""

    id: str
    title: str
    alt: str = ""
    uri: str | None = None
    caption: str = ""
    wide: bool = False


def render(inputs: ReportInputs) -> str:
    """The whole HTML page."""
    from tabserve.core import html

    _check(inputs)
    environment = html.environment(TEMPLATES)  # escaped: the title, columns, labels, reasons are the user's
    if inputs.task == "classification":
        performance = classification_plots(inputs)
    else:
        performance = regression_plots(inputs)
    columns, rows = leaderboard_table(inputs)
    chosen = next((row for row in rows if row["status"] == CHOSEN), None)
    return environment.get_template("training_report.html").render(
        title=inputs.title,
        task=inputs.task,
        target=inputs.target,
        evaluation=inputs.evaluation,
        metric=inputs.metric,
        direction="higher is better" if inputs.greater_is_better else "lower is better",
        chosen=chosen,
        columns=columns,
        rows=rows,
        rows_evaluated=len(inputs.y_true),
        classes=[_label(c) for c in _classes(inputs)] if inputs.task == "classification" else None,
        data_lines=inputs.data_lines,
        performance=performance,
        importance=importance_plot(inputs.importance, inputs.metric),
        importance_note=inputs.importance_note,
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def write(inputs: ReportInputs, path: Path) -> Path:
    """Render and write the page (UTF-8); the path written."""
    path = Path(path)
    path.write_text(render(inputs), encoding="utf-8")
    return path


def _check(inputs: ReportInputs) -> None:
    """Wrong shapes fail here, with the shapes, not deep inside matplotlib."""
    if inputs.task not in ("classification", "regression"):
        raise ValueError(f"task {inputs.task!r}: classification or regression")
    n = len(inputs.y_true)
    if not n:
        raise ValueError("no out-of-fold targets to draw")
    if len(inputs.predicted) != n:
        raise ValueError(f"{n} out-of-fold targets but {len(inputs.predicted)} predictions")
    if inputs.task == "classification":
        k = len(_classes(inputs))
        for name, values in (("targets", inputs.y_true), ("predictions", inputs.predicted)):
            if np.min(values) < 0 or np.max(values) >= k:
                raise ValueError(f"out-of-fold {name} must be class indices 0..{k - 1}")
    if inputs.probabilities is not None:
        shape = np.shape(inputs.probabilities)
        width = len(inputs.classes) if inputs.classes is not None else shape[-1]
        if len(shape) != 2 or shape != (n, width):
            raise ValueError(
                f"probabilities of shape {shape}, expected ({n}, {width}): a row per target, a column per class"
            )


# --- the leaderboard -----------------------------------------------------------------------------------


def leaderboard_table(inputs: ReportInputs) -> tuple[list[str], list[dict[str, Any]]]:
    """The other metrics' names (the chosen one has its own column, mean ± std) and the rows as text."""
    columns: list[str] = []
    for entry in inputs.leaderboard:
        columns += [name for name in entry.get("metrics") or {} if name != inputs.metric and name not in columns]
    rows = []
    for entry in inputs.leaderboard:
        metrics = entry.get("metrics") or {}
        rows.append(
            {
                "model": entry["model"],
                "status": entry["status"],
                "score": _mean_std(entry.get("score_mean"), entry.get("score_std")),
                "metrics": [_number(metrics.get(name)) for name in columns],
                "fit_s": _number(entry.get("fit_s"), digits=3),
                "predict_ms": _number(entry.get("predict_ms"), digits=3),
                "reason": entry.get("reason") or "",
            }
        )
    return columns, rows


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return _number(mean) if std is None else f"{_number(mean)} ± {_number(std, digits=2)}"


# --- classification ------------------------------------------------------------------------------------


def _classes(inputs: ReportInputs) -> list:
    if inputs.classes is not None:
        return list(inputs.classes)
    width = np.shape(inputs.probabilities)[1] if inputs.probabilities is not None else 0
    seen = max(int(np.max(inputs.y_true, initial=-1)), int(np.max(inputs.predicted, initial=-1))) + 1
    return list(range(max(width, seen)))


def _label(label: Any) -> str:
    """A class label as the API spells it (true, 1, Adelie)."""
    return label_text(label.item() if isinstance(label, np.generic) else label)


def _mpl_text(text: str, limit: int = 32) -> str:
    """Text matplotlib shows as it is: '$' is not maths, a leading '_' does not hide a legend entry."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def classification_plots(inputs: ReportInputs) -> list[Plot]:
    labels = [_label(c) for c in _classes(inputs)]
    y_true = np.asarray(inputs.y_true).astype(int)
    predicted = np.asarray(inputs.predicted).astype(int)
    confusion = confusion_plot(y_true, predicted, labels)
    if inputs.probabilities is None:
        note = "not drawn: the model gives no class probabilities"
        return [
            confusion,
            Plot("roc-curves", "ROC curves", caption=note),
            Plot("precision-recall-curves", "Precision-recall curves", caption=note),
            Plot("calibration", "Calibration", caption=note),
        ]
    probabilities = np.asarray(inputs.probabilities, dtype=float)
    return [
        confusion,
        curves_plot("roc", y_true, probabilities, labels),
        curves_plot("precision-recall", y_true, probabilities, labels),
        calibration_plot(y_true, predicted, probabilities, labels),
    ]


def confusion_plot(y_true: np.ndarray, predicted: np.ndarray, labels: list[str]) -> Plot:
    """Counts in the cells; colour is the row's share, so a rare class's errors show as clearly as a common one's."""
    k = len(labels)
    counts = np.bincount(y_true * k + predicted, minlength=k * k).reshape(k, k)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = min(12.0, max(4.6, 0.42 * k + 2.4))
    with plots.subplots(figsize=(side + 1.0, side), dpi=DPI) as (fig, ax):
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ticks = [_mpl_text(label, 20) for label in labels]
        fontsize = 9 if k <= 10 else 7
        ax.set_xticks(
            range(k), ticks, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=fontsize
        )
        ax.set_yticks(range(k), ticks, fontsize=fontsize)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        if k <= MAX_ANNOTATED_CLASSES:
            for (i, j), count in np.ndenumerate(counts):
                colour = "white" if shares[i, j] > 0.55 else "#222222"
                ax.text(j, i, f"{count:,}", ha="center", va="center", color=colour, fontsize=fontsize)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the actual class (row)")
        fig.tight_layout()
        uri = plots.png_data_uri(fig)
    accuracy = np.trace(counts) / max(1, counts.sum())
    return Plot(
        "confusion-matrix",
        "Confusion matrix",
        alt=f"Confusion matrix of {k} classes, actual in rows, predicted in columns; {accuracy:.1%} on the diagonal",
        uri=uri,
        caption=f"Out-of-fold predictions of {counts.sum():,} rows: counts, coloured by the share of each actual class"
        f" (row); {accuracy:.1%} correct."
        + ("" if k <= MAX_ANNOTATED_CLASSES else f" With {k} classes the cells show colours only."),
        wide=k > 8,  # its labels need more than half the page
    )


def curve_classes(y_true: np.ndarray, k: int) -> tuple[list[int], list[int]]:
    """The classes to draw one-vs-rest curves for (the MAX_CURVES most frequent), and those absent from y_true.

    A class that is every row has no negatives and no curve either: it is counted with the absent ones.
    """
    frequency = np.bincount(y_true, minlength=k)
    present = [c for c in range(k) if 0 < frequency[c] < len(y_true)]
    missing = [c for c in range(k) if c not in present]
    present.sort(key=lambda c: (-frequency[c], c))
    return sorted(present[:MAX_CURVES]), missing


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_CURVE_POINTS points of a curve, its ends kept: the same line, fewer segments to draw."""
    if len(x) <= MAX_CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, MAX_CURVE_POINTS).round().astype(int))
    return x[keep], y[keep]


def curves_plot(kind: str, y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> Plot:
    """ROC or precision-recall: binary, the positive class (the second); else one-vs-rest per class."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    roc = kind == "roc"
    plot = Plot(f"{kind}-curves", "ROC curves" if roc else "Precision-recall curves")
    k = len(labels)
    binary = k == 2
    drawn, missing = curve_classes(y_true, k)
    if binary:
        drawn, missing = ([1], []) if len(drawn) == 2 else ([], [1])
    if not drawn:
        plot.caption = "not drawn: the out-of-fold targets hold a single class, so there is nothing to tell apart"
        return plot
    summary = []
    legend_below = len(drawn) > 3  # more would hide the curves
    size = (5.6, 4.6 + 0.16 * ((len(drawn) + 1) // 2) if legend_below else 4.6)
    with plots.subplots(figsize=size, dpi=DPI, layout="constrained") as (fig, ax):
        for n, c in enumerate(drawn):
            positive = y_true == c
            score = probabilities[:, c]
            name = labels[c]
            if roc:
                x, y, _ = roc_curve(positive, score)
                value = auc(x, y)
            else:
                y, x, _ = precision_recall_curve(positive, score, drop_intermediate=True)
                value = average_precision_score(positive, score)
            x, y = _thin(x, y)
            legend = f"AUC {value:.3f}" if roc else f"AP {value:.3f}"
            colour = COLOURS[n % len(COLOURS)]
            ax.plot(x, y, color=colour, linewidth=1.6, label=legend if binary else f"{_mpl_text(name, 24)} ({legend})")
            if not roc and binary:
                ax.axhline(positive.mean(), color="#9aa5b1", linestyle="--", linewidth=1, label="chance")
            summary.append((name, legend))
        if roc:
            ax.plot([0, 1], [0, 1], color="#9aa5b1", linestyle="--", linewidth=1, label="chance")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.02)
        ax.grid(alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
        if legend_below:
            fig.legend(fontsize=8, frameon=False, loc="outside lower center", ncols=2)
        else:
            ax.legend(fontsize=8, frameon=False, loc="lower right" if roc else "lower left")
        plot.uri = plots.png_data_uri(fig)
    what = "ROC curve" if roc else "Precision-recall curve"
    if binary:
        plot.alt = f"{what} of class {labels[1]} against {labels[0]}: {summary[0][1]}"
        plot.caption = f"Positive class {labels[1]}, scored by its out-of-fold probability."
    else:
        plot.alt = f"{what}s, one class against the rest: " + ", ".join(f"{label} {area}" for label, area in summary)
        plot.caption = "One class against the rest, scored by its out-of-fold probability"
        plot.caption += f"; the {len(drawn)} most frequent of {k} classes." if len(drawn) + len(missing) < k else "."
    if missing:  # with a curve drawn, a class without one is absent from the targets
        plot.caption += f" No curve for {', '.join(labels[c] for c in missing)}: not among the out-of-fold targets."
    if not roc:
        plot.caption += " AP: average precision."
    return plot


def calibration_plot(y_true: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> Plot:
    """Whether the probabilities mean what they say: binary, the positive class's; else the predicted class's
    probability (the model's confidence) against whether it was right."""
    from sklearn.calibration import calibration_curve

    plot = Plot("calibration", "Calibration")
    binary = len(labels) == 2
    if binary:
        outcome = y_true == 1
        score = probabilities[:, 1]
        xlabel, ylabel = f"predicted probability of {_mpl_text(labels[1])}", f"share that is {_mpl_text(labels[1])}"
    else:
        outcome = predicted == y_true
        score = probabilities[np.arange(len(predicted)), predicted]
        xlabel, ylabel = "probability of the predicted class (confidence)", "share predicted right"
    finite = np.isfinite(score)
    outcome, score = outcome[finite], np.clip(score[finite], 0, 1)
    if not len(score):
        plot.caption = "not drawn: no out-of-fold probabilities"
        return plot
    observed, mean_predicted = calibration_curve(outcome, score, n_bins=10, strategy="uniform", pos_label=True)
    with plots.subplots(2, 1, figsize=(5.6, 4.6), dpi=DPI, sharex=True, height_ratios=(3, 1)) as (fig, (top, bottom)):
        top.plot([0, 1], [0, 1], color="#9aa5b1", linestyle="--", linewidth=1, label="perfectly calibrated")
        top.plot(mean_predicted, observed, marker="o", color=COLOURS[0], linewidth=1.6, label="model (10 bins)")
        top.set_ylabel(ylabel)
        top.set_ylim(-0.02, 1.02)
        top.grid(alpha=0.25)
        top.legend(fontsize=8, frameon=False, loc="upper left")
        bottom.hist(score, bins=20, range=(0, 1), color=COLOURS[0], alpha=0.6)
        bottom.set_ylabel("rows", fontsize=8)
        bottom.set_xlabel(xlabel)
        bottom.tick_params(axis="y", labelsize=7)
        for ax in (top, bottom):
            ax.spines[["top", "right"]].set_visible(False)
        top.set_xlim(-0.01, 1.01)
        fig.tight_layout()
        plot.uri = plots.png_data_uri(fig)
    if binary:
        plot.alt = f"Calibration curve of the predicted probability of {labels[1]} against the observed share"
        plot.caption = f"Out-of-fold probability of {labels[1]} in 10 equal bins against the share that was {labels[1]}"
    else:
        plot.alt = "Calibration curve of the predicted class's probability against the share predicted right"
        plot.caption = "The predicted class's out-of-fold probability in 10 equal bins against the share it was right"
    plot.caption += "; below, how many rows each probability has. On the dashed line, a probability means what it says."
    return plot


# --- regression ----------------------------------------------------------------------------------------


def _sample(n: int) -> np.ndarray:
    """At most MAX_POINTS row indices, the same for the same n (seeded), in order."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(SEED).choice(n, MAX_POINTS, replace=False))


def regression_plots(inputs: ReportInputs) -> list[Plot]:
    actual = np.asarray(inputs.y_true, dtype=float)
    predicted = np.asarray(inputs.predicted, dtype=float)
    finite = np.isfinite(actual) & np.isfinite(predicted)
    actual, predicted = actual[finite], predicted[finite]
    if not len(actual):
        note = "not drawn: no finite out-of-fold predictions"
        return [
            Plot("predicted-vs-actual", "Predicted against actual", caption=note),
            Plot("residuals-vs-predicted", "Residuals against predicted", caption=note),
            Plot("residual-histogram", "Residuals", caption=note),
        ]
    residuals = actual - predicted
    shown = _sample(len(actual))
    sampled = (
        f"a seeded sample of {len(shown):,} of the {len(actual):,} rows"
        if len(shown) < len(actual)
        else f"all {len(actual):,} rows"
    )
    alpha = 0.6 if len(shown) <= 500 else 0.3
    target = _mpl_text(inputs.target)

    with plots.subplots(figsize=(5.6, 4.6), dpi=DPI) as (fig, ax):
        ax.scatter(actual[shown], predicted[shown], s=8, alpha=alpha, color=COLOURS[0], linewidths=0)
        low = float(min(actual.min(), predicted.min()))
        high = float(max(actual.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="#c8413b", linestyle="--", linewidth=1, label="predicted = actual")
        ax.set_xlabel(f"actual {target}")
        ax.set_ylabel(f"predicted {target}")
        ax.grid(alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False, loc="upper left")
        fig.tight_layout()
        scatter = plots.png_data_uri(fig)

    with plots.subplots(figsize=(5.6, 4.6), dpi=DPI) as (fig, ax):
        ax.scatter(predicted[shown], residuals[shown], s=8, alpha=alpha, color=COLOURS[0], linewidths=0)
        ax.axhline(0, color="#c8413b", linestyle="--", linewidth=1)
        ax.set_xlabel(f"predicted {target}")
        ax.set_ylabel("residual (actual − predicted)")
        ax.grid(alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        spread = plots.png_data_uri(fig)

    with plots.subplots(figsize=(5.6, 4.6), dpi=DPI) as (fig, ax):
        ax.hist(residuals, bins=50, color=COLOURS[0], alpha=0.8)
        ax.axvline(0, color="#c8413b", linestyle="--", linewidth=1)
        ax.set_xlabel("residual (actual − predicted)")
        ax.set_ylabel("rows")
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        histogram = plots.png_data_uri(fig)

    mean, std = float(residuals.mean()), float(residuals.std())
    skipped = int((~finite).sum())
    left_out = f" {skipped:,} rows without a finite value left out." if skipped else ""
    return [
        Plot(
            "predicted-vs-actual",
            "Predicted against actual",
            alt=f"Scatter plot of the out-of-fold predicted {inputs.target} against the actual, with the line y = x",
            uri=scatter,
            caption=f"Out-of-fold predictions, {sampled}. On the dashed line, the prediction is exact.{left_out}",
        ),
        Plot(
            "residuals-vs-predicted",
            "Residuals against predicted",
            alt=f"Scatter plot of the residuals (actual − predicted) against the predicted {inputs.target}",
            uri=spread,
            caption=f"Actual − predicted, {sampled}: a pattern or a widening band is an error the model repeats.",
        ),
        Plot(
            "residual-histogram",
            "Residuals",
            alt=f"Histogram of the residuals of all {len(actual):,} rows: mean {mean:.4g}, standard deviation"
            f" {std:.4g}",
            uri=histogram,
            caption=f"Actual − predicted, all {len(actual):,} rows: mean {_number(mean)}, standard deviation"
            f" {_number(std)}.",
        ),
    ]


# --- importance ----------------------------------------------------------------------------------------


def importance_plot(importance: dict[str, tuple[float, float]], metric: str) -> Plot:
    """Horizontal bars, the most important on top, error bars one standard deviation over the repeats."""
    plot = Plot("permutation-importance", "Permutation importance", wide=True)
    ranked = sorted(importance.items(), key=lambda item: (not np.isfinite(item[1][0]), -item[1][0], item[0]))
    if not ranked:
        plot.caption = "not measured"
        return plot
    shown = ranked[:MAX_FEATURES]
    names = [_mpl_text(name, 40) for name, _ in shown]
    means = [float(mean) for _, (mean, _) in shown]
    stds = [float(std) if np.isfinite(std) else 0.0 for _, (_, std) in shown]
    with plots.subplots(figsize=(10.8, 0.32 * len(shown) + 1.3), dpi=DPI) as (fig, ax):
        positions = np.arange(len(shown))
        colours = [COLOURS[0] if m > 0 else "#9aa5b1" for m in means]
        ax.barh(positions, means, xerr=stds, color=colours, ecolor="#444444", capsize=2, height=0.65)
        ax.set_yticks(positions, names, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="#444444", linewidth=0.8)
        ax.set_xlabel(f"how much worse {_mpl_text(metric)} gets when the feature's values are shuffled")
        ax.grid(axis="x", alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        plot.uri = plots.png_data_uri(fig)
    top = ", ".join(f"{name} {_number(float(mean), 3)}" for name, (mean, _) in shown[:5])
    plot.alt = f"Bar chart of permutation importance, the most important first: {top}"
    notes = [f"The {len(shown)} most important of {len(ranked)} features."] if len(ranked) > len(shown) else []
    if any(not mean > 0 for mean in means):
        notes.append("Grey: shuffling it did not make the model worse.")
    plot.caption = " ".join(notes)
    return plot
