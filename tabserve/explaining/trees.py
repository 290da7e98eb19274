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
                leaves.append(
                    (tree.output, float(tree.value[node]), path_here, went_left, slots, shares, features_on_path)
                )
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


XGBOOST_LOGIT = ("binary:logistic", "reg:logistic")
XGBOOST_LOG = ("count:poisson", "reg:gamma", "reg:tweedie", "survival:cox")


def xgboost_booster(booster: Any) -> Ensemble:
    """An XGBoost booster's trees from its JSON model, summed in float64 (XGBoost sums in float32). Routed as
    XGBoost routes: float32 x < split condition to the left, missing by the split's default, a categorical split
    sends the categories it lists to the right. `sum_hessian` is the cover, as in XGBoost's own TreeSHAP.
    The baseline is the model's intercept (base_score) in margin space."""
    import json

    learner = json.loads(booster.save_raw("json"))["learner"]
    model = learner["gradient_booster"]["model"]
    if learner["gradient_booster"].get("name", "gbtree") not in ("gbtree", "dart"):
        raise ValueError(f"booster {learner['gradient_booster'].get('name')} has no trees")
    outputs = max(1, int(float(learner["learner_model_param"].get("num_class", "0"))))
    base = np.atleast_1d(np.asarray(json.loads(learner["learner_model_param"]["base_score"]), dtype=float))
    objective = learner["objective"]["name"]
    if objective in XGBOOST_LOGIT:
        base = np.log(base / (1.0 - base))
    elif objective in XGBOOST_LOG:
        base = np.log(base)
    baseline = np.broadcast_to(base, (outputs,)).copy() if base.size in (1, outputs) else None
    if baseline is None:
        raise ValueError(f"base_score has {base.size} values for {outputs} outputs")
    trees, numeric, categorical_nodes = [], [], []
    offset = 0
    for tree, output in zip(model["trees"], model["tree_info"], strict=True):
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise ValueError("vector-leaf trees (multi_strategy) are not read here")
        left = np.asarray(tree["left_children"], dtype=np.int64)
        trees.append(
            Tree(
                left=left,
                right=np.asarray(tree["right_children"], dtype=np.int64),
                feature=np.asarray(tree["split_indices"], dtype=np.int64),
                cover=np.asarray(tree["sum_hessian"], dtype=float),
                value=np.asarray(tree["split_conditions"], dtype=np.float32).astype(float),  # a leaf's value
                output=int(output),
            )
        )
        numeric.append(
            (
                np.asarray(tree["split_indices"], dtype=np.intp),
                np.asarray(tree["split_conditions"], dtype=np.float32),
                np.asarray(tree["default_left"], dtype=bool),
            )
        )
        segments, sizes, codes = tree["categories_segments"], tree["categories_sizes"], tree["categories"]
        for node, start, size in zip(tree["categories_nodes"], segments, sizes, strict=True):
            categorical_nodes.append((offset + int(node), [int(c) for c in codes[start : start + size]]))
        offset += len(left)
    feature = np.concatenate([f for f, _, _ in numeric])
    condition = np.concatenate([c for _, c, _ in numeric])
    default_left = np.concatenate([d for _, _, d in numeric])
    cat_nodes = np.array([node for node, _ in categorical_nodes], dtype=np.intp)
    width = max([max(codes, default=0) for _, codes in categorical_nodes], default=0) + 2
    goes_right = np.zeros((len(cat_nodes), width), dtype=bool)
    for row, (_, codes) in enumerate(categorical_nodes):
        goes_right[row, codes] = True

    def route(X: np.ndarray) -> np.ndarray:
        values = X[:, feature].astype(np.float32)
        left = np.where(np.isnan(values), default_left[None, :], values < condition[None, :])
        if len(cat_nodes):
            cats = values[:, cat_nodes]
            missing = np.isnan(cats)
            index = np.clip(np.where(missing, 0, cats), 0, width - 1).astype(np.intp)
            rows = np.arange(len(cat_nodes))[None, :]
            left[:, cat_nodes] = np.where(missing, default_left[cat_nodes][None, :], ~goes_right[rows, index])
        return left

    return flatten(trees, outputs, int(booster.num_features()), baseline, route)
