"""scikit-learn's tree ensembles as the arrays TreeSHAP walks (explaining/treeshap.py): HistGradientBoosting
(its per-iteration predictors, categorical splits included) and random forests / extra trees.

Read from the fitted model's attributes (HistGradientBoosting's are private: `_predictors`, `_bin_mapper`,
`_baseline_prediction`), so explaining/explainers.py uses an ensemble only after its leaves, routed here,
sum to the model's own raw output on probe rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tabserve.explaining.treeshap import Ensemble


@dataclass
class Tree:
    """One tree: children (-1 at a leaf), the feature split on, the training cover per node, the leaf values,
    and which output (class) the tree adds to."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    cover: np.ndarray
    value: np.ndarray
    output: int = 0


def flatten(trees: list[Tree], outputs: int, features: int, baseline: Any, route: Any) -> Ensemble:
    """The trees as one Ensemble, nodes numbered across trees in order (as `route` numbers them)."""
    leaves: list[tuple] = []  # (output, value, path nodes, went left, slot per split, z per slot, features)
    offset = 0
    for tree in trees:
        stack: list[tuple[int, list[int], list[bool]]] = [(0, [], [])]
        while stack:
            node, path, went_left = stack.pop()
            if tree.left[node] < 0:
                features_on_path: list[int] = []
                shares: list[float] = []  # z: the cover share following the path, per distinct feature
                slots = []
                for parent, goes_left in zip(path, went_left, strict=True):
                    child = tree.left[parent] if goes_left else tree.right[parent]
                    share = float(tree.cover[child]) / float(tree.cover[parent]) if tree.cover[parent] > 0 else 0.0
                    f = int(tree.feature[parent])
                    if f not in features_on_path:
                        features_on_path.append(f)
                        shares.append(1.0)
                    slot = features_on_path.index(f)
                    shares[slot] *= share
                    slots.append(slot)
                path_here = [p + offset for p in path]
                leaves.append((tree.output, float(tree.value[node]), path_here, went_left, slots, shares, features_on_path))
                continue
            stack.append((int(tree.left[node]), [*path, node], [*went_left, True]))
            stack.append((int(tree.right[node]), [*path, node], [*went_left, False]))
        offset += len(tree.left)
    n = len(leaves)
    depth = max((len(leaf[2]) for leaf in leaves), default=0) or 1
    K = max((len(leaf[6]) for leaf in leaves), default=0) or 1
    ensemble = Ensemble(
        route=route,
        outputs=outputs,
        features=features,
        baseline=np.asarray(baseline, dtype=float).reshape(outputs),
        output=np.array([leaf[0] for leaf in leaves], dtype=np.int64),
        value=np.array([leaf[1] for leaf in leaves], dtype=float),
        path_nodes=np.full((n, depth), -1, dtype=np.int64),
        path_left=np.ones((n, depth), dtype=bool),
        path_slot=np.full((n, depth), -1, dtype=np.int64),
        leaf_features=np.full((n, K), -1, dtype=np.int64),
        leaf_z=np.ones((n, K)),
    )
    for i, (_, _, path, went_left, slots, shares, on_path) in enumerate(leaves):
        ensemble.path_nodes[i, : len(path)] = path
        ensemble.path_left[i, : len(path)] = went_left
        ensemble.path_slot[i, : len(path)] = slots
        ensemble.leaf_features[i, : len(on_path)] = on_path
        ensemble.leaf_z[i, : len(shares)] = shares
    return ensemble


def hist_gradient_boosting(model: Any) -> Ensemble:
    """A fitted HistGradientBoosting model's trees, routed as its own `_predict_one_from_raw_data` routes
    (NaN and negative or unknown categories by the split's missing direction; categories by the split's
    bitset), on the matrix its predictors take (categories as the model's own indices)."""
    outputs = int(model.n_trees_per_iteration_)
    known_bitsets, feature_map = model._bin_mapper.make_known_categories_bitsets()
    trees, nodes_of = [], []
    for iteration in model._predictors:
        for output, predictor in enumerate(iteration):
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            trees.append(
                Tree(
                    left=np.where(leaf, -1, nodes["left"].astype(np.int64)),
                    right=np.where(leaf, -1, nodes["right"].astype(np.int64)),
                    feature=nodes["feature_idx"].astype(np.int64),
                    cover=nodes["count"].astype(float),
                    value=nodes["value"].astype(float),
                    output=output,
                )
            )
            nodes_of.append((nodes, predictor.raw_left_cat_bitsets))
    feature = np.concatenate([nodes["feature_idx"] for nodes, _ in nodes_of]).astype(np.intp)
    threshold = np.concatenate([nodes["num_threshold"] for nodes, _ in nodes_of]).astype(float)
    missing_left = np.concatenate([nodes["missing_go_to_left"] for nodes, _ in nodes_of]).astype(bool)
    categorical = np.flatnonzero(np.concatenate([nodes["is_categorical"] for nodes, _ in nodes_of]).astype(bool))
    # Per categorical split: which of the 256 category indices go left, and which the model knows.
    goes_left = np.zeros((len(categorical), 256), dtype=bool)
    known = np.zeros((len(categorical), 256), dtype=bool)
    codes = np.arange(256)
    starts = np.cumsum([0] + [len(nodes) for nodes, _ in nodes_of])
    for row, node in enumerate(categorical):
        tree = int(np.searchsorted(starts, node, side="right") - 1)
        nodes, bitsets = nodes_of[tree]
        own = nodes[node - starts[tree]]
        goes_left[row] = (bitsets[own["bitset_idx"]][codes >> 5] >> (codes & 31)) & 1 == 1
        known[row] = (known_bitsets[feature_map[own["feature_idx"]]][codes >> 5] >> (codes & 31)) & 1 == 1
    missing_left_cat = missing_left[categorical]

    def route(X: np.ndarray) -> np.ndarray:
        values = X[:, feature]
        left = np.where(np.isnan(values), missing_left[None, :], values <= threshold[None, :])
        if len(categorical):
            cats = values[:, categorical]
            unusable = np.isnan(cats) | (cats < 0)
            index = np.where(unusable, 0, cats).astype(np.int64) & 255  # the model casts to uint8
            rows = np.arange(len(categorical))[None, :]
            left[:, categorical] = np.where(
                unusable | ~(goes_left[rows, index] | known[rows, index]),
                missing_left_cat[None, :],
                goes_left[rows, index],
            )
        return left

    return flatten(trees, outputs, int(model.n_features_in_), model._baseline_prediction.ravel(), route)


def forest(model: Any) -> Ensemble:
    """A random forest or extra-trees model (classifier: each class's probability, the mean over trees of the
    leaf's class shares; regressor: the mean of the leaf values). Routed as sklearn's trees route: x <= threshold
    to the left, NaN by the split's missing direction."""
    estimators = model.estimators_
    classifier = hasattr(model, "classes_")
    outputs = len(model.classes_) if classifier else 1
    trees, features, thresholds, missing = [], [], [], []
    for estimator in estimators:
        t = estimator.tree_
        leaf = t.children_left < 0
        values = t.value[:, 0, :]
        if classifier:  # shares per class, whether the tree stores counts or shares
            values = values / np.maximum(values.sum(axis=1, keepdims=True), 1e-300)
        for output in range(outputs):
            trees.append(
                Tree(
                    left=np.where(leaf, -1, t.children_left).astype(np.int64),
                    right=np.where(leaf, -1, t.children_right).astype(np.int64),
                    feature=t.feature.astype(np.int64),
                    cover=t.weighted_n_node_samples.astype(float),
                    value=values[:, output] / len(estimators),
                    output=output,
                )
            )
            features.append(np.where(leaf, 0, t.feature))
            thresholds.append(t.threshold)
            missing.append(getattr(t, "missing_go_to_left", np.zeros(len(leaf), dtype=np.uint8)))
    feature = np.concatenate(features).astype(np.intp)
    threshold = np.concatenate(thresholds).astype(float)
    missing_left = np.concatenate(missing).astype(bool)

    def route(X: np.ndarray) -> np.ndarray:
        values = X[:, feature].astype(np.float32)  # sklearn's trees compare float32 inputs
        return np.where(np.isnan(values), missing_left[None, :], values <= threshold[None, :])

    return flatten(trees, outputs, int(model.n_features_in_), np.zeros(outputs), route)
