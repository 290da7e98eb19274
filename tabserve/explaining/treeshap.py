"""Exact TreeSHAP (path-dependent, Lundberg et al. 2018) for tree ensembles given as arrays, in numpy.

Why our own: scikit-learn's trees have no contributions API, and the `shap` package reads a
HistGradientBoosting model's categorical splits as numeric thresholds (its sums miss the model's own output
by 0.56 log-odds on iris with one categorical feature), imports numba (~3 s of a worker's start) and is not
in the Bento. LightGBM and XGBoost compute their own (explaining/explainers.py).

How: in path-dependent TreeSHAP each leaf is a game on the distinct features of its path, f(S) =
v · Π_{j∈S} o_j · Π_{j∉S} z_j, where z_j is the share of training cover that follows the path at the
splits on j and o_j is 1 when the record follows them all. Its Shapley values depend only on which of
the path's features the record follows (a bit mask), so at load every leaf gets a table: one row of
contributions per mask, computed in closed form (elementary symmetric polynomials of the z's). Explaining a
record is then a routing of the record at every split, a mask per leaf, a table lookup and a sum per
feature: vectorised over records and leaves, no per-node Python. Where the tables would not fit
TABLE_LIMIT, the same closed form runs at explain time instead (slower, same numbers).

Padding a leaf's features to a common K with z = o = 1 adds dummy players: a dummy changes no other
player's Shapley value, so one K serves every leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

TABLE_LIMIT = 4_000_000  # table cells (8 bytes each) kept per model: ~32 MB at most
CHUNK_CELLS = 4_000_000  # records x leaves x depth cells at a time: bounds the memory of a batch's masks


@dataclass
class Ensemble:
    """Trees as flat arrays. Nodes of every tree share one index space; `route(X)` says, for every record and
    every node, whether the record goes to the node's left child (bool, records x nodes).

    Per leaf: `output` (which output it adds to: a class's raw score), `value`, `path_nodes`/`path_left`
    (the splits above it, padded with -1), and `path_slot` (which of its distinct features each split is on).
    `leaf_features` (leaves x K, -1 padded) and `leaf_z` (leaves x K, 1 padded) per distinct feature."""

    route: object  # callable (X) -> bool array (records, nodes)
    outputs: int
    features: int
    baseline: np.ndarray  # (outputs,) added to every record's sum of leaf values
    output: np.ndarray
    value: np.ndarray
    path_nodes: np.ndarray
    path_left: np.ndarray
    path_slot: np.ndarray
    leaf_features: np.ndarray
    leaf_z: np.ndarray


class TreeShap:
    """Contributions (records x outputs x features), the expected value per output, and the raw output."""

    def __init__(self, ensemble: Ensemble) -> None:
        e = self.ensemble = ensemble
        leaves, self.K = e.leaf_z.shape
        self.slots = (e.leaf_features >= 0).sum(axis=1)  # distinct features per leaf
        # Expected value of each output: every leaf's value times the cover share reaching it.
        self.expected = e.baseline + np.bincount(e.output, weights=e.value * e.leaf_z.prod(axis=1), minlength=e.outputs)
        # Sums as sparse products: each leaf's K contributions into column output * features + feature (pads
        # nowhere), and each leaf's value into its output.
        from scipy import sparse

        leaves_k = np.flatnonzero(e.leaf_features.ravel() >= 0)
        columns = (e.output[:, None] * e.features + e.leaf_features).ravel()[leaves_k]
        self._to_features = sparse.csr_array(
            (np.ones(len(leaves_k)), (leaves_k, columns)), shape=(leaves * self.K, e.outputs * e.features)
        )
        self._to_outputs = sparse.csr_array(
            (e.value.astype(float), (np.arange(leaves), e.output)), shape=(leaves, e.outputs)
        )
        bits = np.where(e.path_nodes >= 0, 1 << np.where(e.path_slot >= 0, e.path_slot, 0), 0)
        self._bits = bits.astype(np.int32 if self.K < 31 else np.int64)  # per split: its feature's bit in the mask
        self._nodes = np.where(e.path_nodes >= 0, e.path_nodes, 0)  # padding reads node 0, whose bit is 0
        self._full = (1 << self.slots.astype(np.int64)) - 1
        cells = int(((1 << self.slots.astype(np.int64)) * self.K).sum())
        self.tables = None
        if cells <= TABLE_LIMIT:
            self.offsets = np.concatenate([[0], np.cumsum(1 << self.slots.astype(np.int64))[:-1]])
            self.tables = self._build_tables()

    def _build_tables(self) -> np.ndarray:
        """One (2^k, K) block per leaf of k distinct features, stacked: its contributions for every mask."""
        e = self.ensemble
        out = np.empty((int((1 << self.slots.astype(np.int64)).sum()), self.K))
        for k in np.unique(self.slots):
            leaves = np.flatnonzero(self.slots == k)
            masks = np.arange(1 << int(k))
            follows = np.ones((len(masks), self.K), dtype=bool)
            follows[:, :k] = (masks[:, None] >> np.arange(k)) & 1 == 1
            phi = shapley(e.leaf_z[leaves][:, None, :], follows[None, :, :], e.value[leaves][:, None])
            rows = (self.offsets[leaves][:, None] + masks[None, :]).ravel()
            out[rows] = phi.reshape(-1, self.K)
        return out

    def masks(self, X: np.ndarray) -> np.ndarray:
        """(records, leaves): the bits of the leaf's distinct features whose splits the record follows."""
        e = self.ensemble
        left = e.route(X)  # (records, nodes)
        missed = np.zeros((X.shape[0], len(e.value)), dtype=self._bits.dtype)
        for depth in range(e.path_nodes.shape[1]):  # one split level at a time: (records, leaves) arrays only
            wrong = left[:, self._nodes[:, depth]] != e.path_left[None, :, depth]
            missed |= wrong * self._bits[None, :, depth]
        return self._full[None, :] & ~missed

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contributions: records x outputs x features, raw output: records x outputs)."""
        e = self.ensemble
        n = X.shape[0]
        phi = np.zeros((n, e.outputs * e.features))
        raw = np.tile(e.baseline.astype(float), (n, 1))
        chunk = max(1, CHUNK_CELLS // max(1, e.path_nodes.size, len(e.value) * self.K))
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            masks = self.masks(X[rows])
            if self.tables is not None:
                per_leaf = self.tables[self.offsets[None, :] + masks]  # (records, leaves, K)
            else:
                follows = (masks[:, :, None] >> np.arange(self.K)) & 1 == 1
                follows |= np.arange(self.K)[None, None, :] >= self.slots[None, :, None]
                per_leaf = shapley(e.leaf_z[None], follows, e.value[None, :])
            phi[rows] = per_leaf.reshape(per_leaf.shape[0], -1) @ self._to_features
            reached = masks == self._full[None, :]  # a record reaches the leaf when it follows every split
            raw[rows] += reached.astype(float) @ self._to_outputs
        return phi.reshape(n, e.outputs, e.features), raw


def shapley(z: np.ndarray, follows: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Shapley values of the leaf games f(S) = v · Π_{j∈S} o_j · Π_{j∉S} z_j over K players (last axis).

    For a player i the record follows (o_i = 1), with A the players it follows and a = |A|:
        φ_i = v (1 - z_i) Π_{j∉A} z_j Σ_{m<a} w(a-1-m) e_m(z over A without i)
    and for a player it does not follow:
        φ_i = -v Π_{j∉A} z_j Σ_{m≤a} w(a-m) e_m(z over A)
    where w(s) = s! (K-s-1)! / K! and e_m are the elementary symmetric polynomials. Broadcasts over the
    leading axes; `value` has those axes only."""
    K = z.shape[-1]
    z, follows = np.broadcast_arrays(z, follows)
    weight = np.array([factorial(s) * factorial(K - s - 1) / factorial(K) for s in range(K)] + [0.0])
    a = follows.sum(axis=-1)
    z_in = np.where(follows, z, 0.0)
    outside = np.where(follows, 1.0, z).prod(axis=-1)
    # e_m(z over A), m = 0..K: the coefficients of Π_{j∈A} (1 + z_j t)
    e = np.zeros((*z.shape[:-1], K + 1))
    e[..., 0] = 1.0
    for j in range(K):
        e[..., 1:] = e[..., 1:] + z_in[..., j, None] * e[..., :-1]
    m = np.arange(K + 1)
    index = a[..., None] - m  # s = a - m
    absent = (np.where((index >= 0) & (index < K), weight[np.clip(index, 0, K)], 0.0) * e).sum(axis=-1)
    # e_m(z over A without i) for every i at once: divide the polynomial by (1 + z_i t)
    q = np.zeros((*z.shape, K + 1))
    q[..., 0] = 1.0
    for step in range(1, K + 1):
        q[..., step] = e[..., None, step] - z_in * q[..., step - 1]
    index = (a - 1)[..., None, None] - m  # s = a - 1 - m
    present = (np.where((index >= 0) & (index < K), weight[np.clip(index, 0, K)], 0.0) * q).sum(axis=-1)
    v = np.asarray(value, dtype=float)[..., None] * outside[..., None]
    return v * np.where(follows, (1.0 - z) * present, -absent[..., None])
