"""The training report (tabserve/training/report.py): real out-of-fold predictions of quick scikit-learn models on
public data (the penguins, scikit-learn's breast cancer and diabetes sets), drawn into one self-contained page.
In process, no training through train.py, no server (Chromium renders it elsewhere)."""

from __future__ import annotations

import base64
import dataclasses
import html
import re
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_validate, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabserve.core.data import PENGUINS_CSV
from tabserve.training import report
from tabserve.training.report import ReportInputs

PNG = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION_PLOTS = ["confusion-matrix", "roc-curves", "precision-recall-curves", "calibration"]
REGRESSION_PLOTS = ["predicted-vs-actual", "residuals-vs-predicted", "residual-histogram"]
SKIPPED = {
    "model": "xgboost",
    "status": "skipped",
    "score_mean": None,
    "score_std": None,
    "metrics": {},
    "fit_s": None,
    "predict_ms": None,
    "reason": "xgboost is not installed (pip install 'tabserve[models]')",
}
# The metrics as scikit-learn scores them (greater is better); "neg_" ones are turned back to the metric.
CLASSIFICATION_SCORING = {"log_loss": "neg_log_loss", "accuracy": "accuracy", "f1_macro": "f1_macro"}
REGRESSION_SCORING = {"rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error", "r2": "r2"}


def leaderboard(models: dict, x, y, cv, scoring: dict[str, str], metric: str, greater_is_better: bool) -> list[dict]:
    """The candidates measured as the trainer measures them (cross-validated means), best first, one skipped."""
    rows = []
    for name, model in models.items():
        scores = cross_validate(model, x, y, cv=cv, scoring=scoring)
        means = {m: float(scores[f"test_{m}"].mean()) * (-1 if s.startswith("neg_") else 1) for m, s in scoring.items()}
        rows.append(
            {
                "model": name,
                "status": "evaluated",
                "score_mean": means[metric],
                "score_std": float(scores[f"test_{metric}"].std()),
                "metrics": means,
                "fit_s": float(scores["fit_time"].mean()),
                "predict_ms": float(scores["score_time"].mean()) / (len(y) / cv.get_n_splits()) * 1000,
                "reason": "",
            }
        )
    rows.sort(key=lambda r: -r["score_mean"] if greater_is_better else r["score_mean"])
    rows[0]["status"] = "chosen"
    return [*rows, SKIPPED]


def held_out_importance(model, x, y, scoring: str) -> dict[str, tuple[float, float]]:
    """Permutation importance of each input column on a held-out quarter."""
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    result = permutation_importance(
        model.fit(x_train, y_train), x_test, y_test, scoring=scoring, n_repeats=3, random_state=0
    )
    means, stds = result.importances_mean, result.importances_std
    return {c: (float(m), float(s)) for c, m, s in zip(x.columns, means, stds, strict=True)}


def penguin_model():
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]), (StandardScaler(), numeric)
    )
    return make_pipeline(encode, LogisticRegression(max_iter=2000))


@pytest.fixture(scope="module")
def penguins() -> ReportInputs:
    frame = pd.read_csv(PENGUINS_CSV).dropna()
    species = pd.Categorical(frame.pop("species"))
    y = species.codes.astype(int)
    cv = StratifiedKFold(5, shuffle=True, random_state=42)
    forest = make_pipeline(
        penguin_model().steps[0][1], RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1)
    )
    board = leaderboard(
        {"linear": penguin_model(), "forest": forest}, frame, y, cv, CLASSIFICATION_SCORING, "log_loss", False
    )
    chosen = penguin_model() if board[0]["model"] == "linear" else forest
    probabilities = cross_val_predict(chosen, frame, y, cv=cv, method="predict_proba")
    return ReportInputs(
        title="penguins:abc123",
        task="classification",
        target="species",
        classes=list(species.categories),
        data_lines=[
            f"read {PENGUINS_CSV.name}: utf-8, separator ',', {len(frame)} rows",
            "target species: classification (3 classes)",
            "island: category (3 values)",
        ],
        leaderboard=board,
        metric="log_loss",
        greater_is_better=False,
        evaluation=f"5-fold stratified cross-validation, seed 42; the saved model is refit on all {len(frame)} rows",
        y_true=y,
        predicted=probabilities.argmax(axis=1),
        probabilities=probabilities,
        importance=held_out_importance(chosen, frame, y, "neg_log_loss"),
        importance_note="Shuffled 3 times on 84 held-out rows, measured with log_loss.",
    )


@pytest.fixture(scope="module")
def cancer() -> ReportInputs:
    """Binary, with bool labels (the API spells them true and false)."""
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x = x.iloc[:, :12]
    cv = StratifiedKFold(5, shuffle=True, random_state=42)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probabilities = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
    scoring = {"roc_auc": "roc_auc", "log_loss": "neg_log_loss", "accuracy": "accuracy"}
    return ReportInputs(
        title="cancer:v1",
        task="classification",
        target="benign",
        classes=[False, True],
        data_lines=[f"read breast_cancer: {len(y)} rows", "target benign: classification (2 classes)"],
        leaderboard=leaderboard({"linear": model}, x, y, cv, scoring, "roc_auc", True),
        metric="roc_auc",
        greater_is_better=True,
        evaluation="5-fold stratified cross-validation, seed 42",
        y_true=y.to_numpy(),
        predicted=probabilities.argmax(axis=1),
        probabilities=probabilities,
        importance=held_out_importance(model, x, y, "roc_auc"),
        importance_note="Shuffled 3 times on 143 held-out rows, measured with roc_auc.",
    )


@pytest.fixture(scope="module")
def diabetes() -> ReportInputs:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    from sklearn.model_selection import KFold

    cv = KFold(5, shuffle=True, random_state=42)
    model = Ridge(alpha=0.1)
    return ReportInputs(
        title="diabetes:v1",
        task="regression",
        target="progression",
        classes=None,
        data_lines=[f"read diabetes: {len(y)} rows", "target progression: regression"],
        leaderboard=leaderboard({"linear": model}, x, y, cv, REGRESSION_SCORING, "rmse", False),
        metric="rmse",
        greater_is_better=False,
        evaluation="5-fold cross-validation, seed 42",
        y_true=y.to_numpy(),
        predicted=cross_val_predict(model, x, y, cv=cv),
        probabilities=None,
        importance=held_out_importance(model, x, y, "neg_root_mean_squared_error"),
        importance_note="Shuffled 3 times on 111 held-out rows, measured with rmse.",
    )


def figures(page: str) -> dict[str, str]:
    """Each <figure class="plot"> of the page by its id: what it holds."""
    found = re.findall(r'<figure class="plot[^"]*" id="([^"]+)">(.*?)</figure>', page, re.DOTALL)
    ids = [i for i, _ in found]
    assert len(ids) == len(set(ids)), ids
    return dict(found)


def png(figure: str) -> bytes:
    """The figure's image, decoded: a PNG."""
    (encoded,) = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="[^"]+">', figure)
    image = base64.b64decode(encoded, validate=True)
    assert image[:8] == PNG
    return image


def alt(figure: str) -> str:
    return html.unescape(re.search(r' alt="([^"]*)"', figure).group(1))


def leaderboard_rows(page: str) -> list[tuple[str, str, list[str]]]:
    """(model, status, its cells' text) per row of the leaderboard table."""
    rows = re.findall(r'<tr class="[a-z]+" data-model="([^"]+)" data-status="([a-z]+)">(.*?)</tr>', page, re.DOTALL)
    return [
        (m, s, [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.DOTALL)]) for m, s, cells in rows
    ]


def self_contained(page: str) -> None:
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert "<link" not in page and "url(" not in page


def test_multiclass_page_has_every_plot_the_leaderboard_and_the_data(penguins):
    page = report.render(penguins)
    self_contained(page)
    shown = figures(page)
    assert list(shown) == [*CLASSIFICATION_PLOTS, "permutation-importance"]
    assert all(len(png(figure)) > 5_000 for figure in shown.values())

    # The curves' areas in the alt text are those scikit-learn gives the same out-of-fold arrays.
    y, p = penguins.y_true, penguins.probabilities
    roc = alt(shown["roc-curves"])
    pr = alt(shown["precision-recall-curves"])
    for k, name in enumerate(penguins.classes):
        assert f"{name} AUC {roc_auc_score(y == k, p[:, k]):.3f}" in roc, roc
        assert f"{name} AP {average_precision_score(y == k, p[:, k]):.3f}" in pr, pr
    accuracy = (penguins.predicted == y).mean()
    assert f"{accuracy:.1%} on the diagonal" in alt(shown["confusion-matrix"])

    rows = leaderboard_rows(page)
    assert [(m, s) for m, s, _ in rows] == [(r["model"], r["status"]) for r in penguins.leaderboard]
    assert rows[0][1] == "chosen" and rows[-1][:2] == ("xgboost", "skipped")
    assert rows[-1][2][-1] == SKIPPED["reason"] and rows[-1][2][2] == "—"
    best = penguins.leaderboard[0]
    assert rows[0][2][2] == f"{best['score_mean']:.4g} ± {best['score_std']:.2g}"
    assert f'<tr class="chosen" data-model="{best["model"]}"' in page
    assert f'<div class="value" id="chosen-model">{best["model"]}</div>' in page
    headers = re.findall(r'<th class="num">([^<]+)</th>', page)
    assert headers == ["log_loss (mean ± std)", "accuracy", "f1_macro", "fit s / fold", "predict ms / record"]
    summary = re.search(r'<pre id="data-summary">(.*?)</pre>', page, re.DOTALL).group(1)
    assert html.unescape(summary) == "\n".join(penguins.data_lines)
    assert penguins.evaluation in page and penguins.importance_note in page
    top = max(penguins.importance, key=lambda f: penguins.importance[f][0])
    assert alt(shown["permutation-importance"]).startswith(
        f"Bar chart of permutation importance, the most important first: {top} "
    )


def test_binary_page_with_bool_labels(cancer):
    page = report.render(cancer)
    self_contained(page)
    shown = figures(page)
    assert list(shown) == [*CLASSIFICATION_PLOTS, "permutation-importance"]
    for figure in shown.values():
        png(figure)
    positive = cancer.probabilities[:, 1]
    assert alt(shown["roc-curves"]) == (
        f"ROC curve of class true against false: AUC {roc_auc_score(cancer.y_true, positive):.3f}"
    )
    assert alt(shown["precision-recall-curves"]).endswith(f"AP {average_precision_score(cancer.y_true, positive):.3f}")
    assert "Positive class true" in shown["roc-curves"]
    assert "probability of true" in alt(shown["calibration"])
    assert "(2 classes)" in page and "roc_auc (higher is better)" in page


def test_regression_page(diabetes):
    page = report.render(diabetes)
    self_contained(page)
    shown = figures(page)
    assert list(shown) == [*REGRESSION_PLOTS, "permutation-importance"]
    for figure in shown.values():
        png(figure)
    assert f"all {len(diabetes.y_true):,} rows" in shown["predicted-vs-actual"]
    residuals = diabetes.y_true - diabetes.predicted
    assert f"mean {residuals.mean():.4g}, standard deviation {residuals.std():.4g}" in alt(shown["residual-histogram"])
    assert [m for m, _, _ in leaderboard_rows(page)] == ["linear", "xgboost"]
    assert "rmse (lower is better)" in page


def test_a_class_absent_from_the_targets_has_no_curve_and_breaks_nothing(penguins):
    """Class labels as ints, a fourth class the folds never held (a probability column of its own)."""
    p = np.hstack([penguins.probabilities * 0.98, np.full((len(penguins.y_true), 1), 0.02)])
    inputs = dataclasses.replace(penguins, classes=[10, 20, 30, 40], probabilities=p)
    shown = figures(report.render(inputs))
    assert list(shown) == [*CLASSIFICATION_PLOTS, "permutation-importance"]
    for figure in shown.values():
        png(figure)
    assert [label for label in re.findall(r"(\d+) AUC", alt(shown["roc-curves"]))] == ["10", "20", "30"]
    assert "No curve for 40: not among the out-of-fold targets." in shown["roc-curves"]
    assert "No curve for 40" in shown["precision-recall-curves"]


def test_a_binary_fold_of_one_class_says_why_its_curves_are_missing(cancer):
    one_class = cancer.y_true == 1
    inputs = dataclasses.replace(
        cancer,
        y_true=cancer.y_true[one_class],
        predicted=cancer.predicted[one_class],
        probabilities=cancer.probabilities[one_class],
    )
    shown = figures(report.render(inputs))
    for name in ("roc-curves", "precision-recall-curves"):
        assert "<img" not in shown[name] and "not drawn: the out-of-fold targets hold a single class" in shown[name]
    png(shown["confusion-matrix"])
    png(shown["calibration"])


def test_many_classes_draw_the_ten_most_frequent(diabetes):
    """The diabetes target cut into 12 classes, the lowest and the top kept small: curves for the 10 others."""
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    edges = np.quantile(y, np.linspace(0, 1, 13)[1:-1])
    codes = np.searchsorted(edges, y)  # 12 classes of about 37 rows
    codes[np.flatnonzero(codes == 0)[12:]] = 1
    codes[np.flatnonzero(codes == 11)[15:]] = 10
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    probabilities = cross_val_predict(model, x, codes, cv=StratifiedKFold(3), method="predict_proba")
    labels = ["_lowest $"] + [f"≤ {e:.0f}" for e in edges[1:]] + ["top"]
    inputs = dataclasses.replace(
        diabetes,
        task="classification",
        classes=labels,
        y_true=codes,
        predicted=probabilities.argmax(axis=1),
        probabilities=probabilities,
    )
    assert report.curve_classes(codes, 12) == (list(range(1, 11)), [])
    shown = figures(report.render(inputs))
    roc = alt(shown["roc-curves"])
    assert re.findall(r"(\S+ \S+) AUC", roc) == labels[1:11], roc
    assert "the 10 most frequent of 12 classes." in shown["roc-curves"]
    for figure in shown.values():
        png(figure)


def test_every_text_is_escaped(penguins):
    inputs = dataclasses.replace(
        penguins,
        title='<b>penguins</b> & "co"',
        target="<script>alert(1)</script>",
        data_lines=[*penguins.data_lines, "column <img src=x onerror=alert(1)>: text"],
        leaderboard=[*penguins.leaderboard[:-1], {**SKIPPED, "reason": "needs <i>libgomp</i> & more"}],
        evaluation="5 folds <b>bold</b>",
        importance={**penguins.importance, "$price$ <u>": (0.01, 0.001), "_hidden": (0.02, 0.0)},
    )
    page = report.render(inputs)
    self_contained(page)
    for raw in ["<b>penguins</b>", "<script>alert", "<img src=x", "<i>libgomp</i>", "<b>bold</b>"]:
        assert raw not in page
    assert "Training report: &lt;b&gt;penguins&lt;/b&gt; &amp; &#34;co&#34;" in page
    assert "column &lt;img src=x onerror=alert(1)&gt;: text" in page
    assert "needs &lt;i&gt;libgomp&lt;/i&gt; &amp; more" in page
    png(figures(page)["permutation-importance"])


def test_three_hundred_thousand_rows_render_in_seconds(penguins, diabetes):
    rng = np.random.default_rng(0)
    repeats = -(-300_000 // len(penguins.y_true))
    noisy = np.tile(penguins.probabilities, (repeats, 1)) + rng.normal(0, 0.05, (repeats * len(penguins.y_true), 3))
    noisy = np.clip(noisy, 0, None)
    big = dataclasses.replace(
        penguins,
        y_true=np.tile(penguins.y_true, repeats),
        predicted=noisy.argmax(axis=1),
        probabilities=noisy / noisy.sum(axis=1, keepdims=True),
    )
    repeats = -(-300_000 // len(diabetes.y_true))
    wide = dataclasses.replace(
        diabetes,
        y_true=np.tile(diabetes.y_true, repeats) + rng.normal(0, 5, repeats * len(diabetes.y_true)),
        predicted=np.tile(diabetes.predicted, repeats),
    )
    for inputs in (big, wide):
        start = time.perf_counter()
        page = report.render(inputs)
        elapsed = time.perf_counter() - start
        assert elapsed < 15, f"{len(inputs.y_true):,} rows took {elapsed:.1f} s"
        for figure in figures(page).values():
            png(figure)
    assert f"a seeded sample of 5,000 of the {len(wide.y_true):,} rows" in figures(page)["predicted-vs-actual"]


def test_write_returns_the_utf8_file(diabetes, tmp_path):
    inputs = dataclasses.replace(diabetes, target="Progression µ")
    path = report.write(inputs, tmp_path / "report.html")
    assert path == tmp_path / "report.html"
    assert "Progression µ" in path.read_bytes().decode("utf-8")


def test_a_classifier_without_probabilities_says_so(penguins):
    shown = figures(report.render(dataclasses.replace(penguins, probabilities=None)))
    png(shown["confusion-matrix"])
    for name in ("roc-curves", "precision-recall-curves", "calibration"):
        assert "<img" not in shown[name] and "not drawn: the model gives no class probabilities" in shown[name]


def test_every_figure_is_closed(penguins, diabetes):
    """pyplot keeps each figure until it is closed: a trainer rendering many reports must not grow."""
    from tabserve.core import plots

    report.render(penguins)
    report.render(diabetes)
    assert plots.pyplot().get_fignums() == []


def test_inputs_that_do_not_fit_together_are_refused(penguins):
    with pytest.raises(ValueError, match="333 out-of-fold targets but 10 predictions"):
        report.render(dataclasses.replace(penguins, predicted=penguins.predicted[:10]))
    with pytest.raises(ValueError, match=r"probabilities of shape \(333, 3\), expected \(333, 4\)"):
        report.render(dataclasses.replace(penguins, classes=[*penguins.classes, "Emperor"]))
    with pytest.raises(ValueError, match=r"out-of-fold predictions must be class indices 0\.\.2"):
        report.render(dataclasses.replace(penguins, predicted=penguins.predicted + 1))
