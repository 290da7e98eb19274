"""Exact TreeSHAP in numpy (tabserve/explaining/treeshap.py, trees.py) against independent truths, on small real
models built from Palmer Penguins: the Shapley values of the path-dependent game computed by brute force over
every subset of features, the `shap` package's TreeExplainer (numeric splits, where it reads a model exactly),
and XGBoost's own contributions (float32)."""

from __future__ import annotations

import itertools
import json
from math import factorial

import numpy as np
import pytest

from tabserve.explaining import trees, treeshap
from tabserve.explaining.treeshap import TreeShap

FEATURES = ["island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]


@pytest.fixture(scope="module")
def penguins():
    """Penguins as a matrix: island and sex as category codes (NaN when missing), the numbers as they are."""
    from palmerpenguins import load_penguins

    frame = load_penguins()
    X = np.column_stack(
        [
            frame["island"].astype("category").cat.codes.replace(-1, np.nan).to_numpy(float),
            frame["sex"].astype("category").cat.codes.replace(-1, np.nan).to_numpy(float),
            *(frame[name].to_numpy(float) for name in FEATURES[2:]),
        ]
    )
    y = frame["species"].astype("category").cat.codes.to_numpy()
    return X, y


def brute_force(ensemble, x: np.ndarray) -> np.ndarray:
    """Shapley values (outputs x features) of f(S) = Σ trees E[tree | the features in S take x's values], where a
    split on a feature outside S averages its children by training cover: every subset, no shortcuts."""
    left = ensemble.route(x[None, :])[0]
    n_features = ensemble.features
    used = sorted({int(f) for f in ensemble.leaf_features.ravel() if f >= 0})
    # The leaves' paths say the same as the trees: rebuild each tree's expectation from its leaves.
    nodes, went_left, slots = ensemble.path_nodes, ensemble.path_left, ensemble.path_slot

    def f(subset: set[int]) -> np.ndarray:
        out = ensemble.baseline.astype(float).copy()
        for leaf in range(len(ensemble.value)):
            weight = 1.0
            for depth in range(nodes.shape[1]):
                node = nodes[leaf, depth]
                if node < 0:
                    break
                feature = ensemble.leaf_features[leaf, slots[leaf, depth]]
                if feature in subset:
                    weight *= float(left[node] == went_left[leaf, depth])
            # the cover share of the splits on features outside S
            for slot, feature in enumerate(ensemble.leaf_features[leaf]):
                if feature >= 0 and feature not in subset:
                    weight *= ensemble.leaf_z[leaf, slot]
            out[ensemble.output[leaf]] += weight * ensemble.value[leaf]
        return out

    phi = np.zeros((ensemble.outputs, n_features))
    k = len(used)
    for i in used:
        others = [j for j in used if j != i]
        for size in range(k):
            weight = factorial(size) * factorial(k - size - 1) / factorial(k)
            for subset in itertools.combinations(others, size):
                phi[:, i] += weight * (f({*subset, i}) - f(set(subset)))
    return phi


def hgb(X, y, **options):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        categorical_features=[True, True] + [False] * 5, max_iter=8, max_leaf_nodes=8, random_state=0, **options
    ).fit(X, y)


def test_hist_gradient_boosting_with_categorical_splits_matches_brute_force(penguins):
    X, y = penguins
    model = hgb(X, y)
    assert any(p.nodes["is_categorical"].any() for iteration in model._predictors for p in iteration)
    explainer = TreeShap(trees.hist_gradient_boosting(model))
    internal = model._preprocessor.transform(X) if model._preprocessor is not None else X
    rows = [0, 3, 150, 300]  # an Adelie, a row with every measurement missing, a Gentoo, a Chinstrap
    phi, raw = explainer.explain(internal[rows])
    assert np.allclose(raw, model._raw_predict(X[rows]), rtol=0, atol=1e-12)
    for r, row in enumerate(rows):
        assert np.allclose(phi[r], brute_force(explainer.ensemble, internal[row]), rtol=0, atol=1e-9)


def test_a_forest_and_its_class_probabilities_match_brute_force(penguins):
    from sklearn.ensemble import RandomForestClassifier

    X, y = penguins
    model = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(X, y)
    explainer = TreeShap(trees.forest(model))
    phi, raw = explainer.explain(X[[0, 3, 200]])
    assert np.allclose(raw, model.predict_proba(X[[0, 3, 200]]), rtol=0, atol=1e-12)
    assert np.allclose(phi[1], brute_force(explainer.ensemble, X[3]), rtol=0, atol=1e-9)


def test_xgboost_categorical_trees_match_brute_force_and_its_own_contributions(penguins):
    import xgboost

    X, y = penguins
    types = ["c", "c"] + ["q"] * 5
    model = xgboost.XGBClassifier(
        n_estimators=6, max_depth=3, enable_categorical=True, feature_types=types, tree_method="hist"
    ).fit(X, y)
    booster = model.get_booster()
    saved = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]
    assert any(tree["categories_nodes"] for tree in saved["trees"])  # categorical splits are in the trees
    explainer = TreeShap(trees.xgboost_booster(booster))
    data = xgboost.DMatrix(X, feature_types=types, enable_categorical=True)
    phi, raw = explainer.explain(X)
    assert np.allclose(raw, booster.predict(data, output_margin=True), rtol=1e-5, atol=1e-5)  # XGBoost: float32
    native = booster.predict(data, pred_contribs=True)
    assert np.allclose(phi, native[:, :, :-1], rtol=1e-5, atol=1e-5)
    assert np.allclose(phi[150], brute_force(explainer.ensemble, X[150]), rtol=0, atol=1e-9)


def test_numeric_trees_agree_with_the_shap_package(penguins):
    shap = pytest.importorskip("shap")
    X, y = penguins
    numeric = X[:, 2:]
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(numeric, y)
    phi, _ = TreeShap(trees.hist_gradient_boosting(model)).explain(numeric)
    theirs = np.asarray(shap.TreeExplainer(model).shap_values(numeric))  # records x features x classes
    assert np.allclose(phi, theirs.transpose(0, 2, 1), rtol=0, atol=1e-6)


def test_the_closed_form_at_explain_time_equals_the_tables(penguins, monkeypatch):
    X, y = penguins
    model = hgb(X, y, max_depth=6)
    ensemble = trees.hist_gradient_boosting(model)
    internal = model._preprocessor.transform(X) if model._preprocessor is not None else X
    with_tables = TreeShap(ensemble)
    assert with_tables.tables is not None
    monkeypatch.setattr(treeshap, "TABLE_LIMIT", 0)  # as a model too large for tables is explained
    without = TreeShap(ensemble)
    assert without.tables is None
    assert np.allclose(with_tables.explain(internal)[0], without.explain(internal)[0], rtol=0, atol=1e-12)


def test_contributions_add_up_to_every_records_raw_output(penguins):
    X, y = penguins
    model = hgb(X, y)
    explainer = TreeShap(trees.hist_gradient_boosting(model))
    internal = model._preprocessor.transform(X) if model._preprocessor is not None else X
    phi, raw = explainer.explain(internal)
    assert np.abs(explainer.expected[None, :] + phi.sum(axis=2) - raw).max() < 1e-9
