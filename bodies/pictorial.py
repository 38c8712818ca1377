"""Pictorial structures (notes §13.1): exact MAP of a tree of parts with quadratic springs, by max-product
dynamic programming and generalised distance transforms (Felzenszwalb & Huttenlocher 2005), and its mixture
of parts (Yang & Ramanan 2011).

The score of a configuration ``L = (l_1 .. l_K)`` with types ``M = (m_1 .. m_K)`` on a score grid is

    S(I, L, M) = sum_i phi_i^{m_i}(l_i) + sum_{(i, j) in E} [psi_ij^{m_i m_j}(l_i, l_j) + b_ij^{m_i m_j}],
    psi_ij(l_i, l_j) = -(w_x dx^2 + w_x1 dx + w_y dy^2 + w_y1 dy),  (dx, dy) = l_i - l_j - mu_ij,

with ``j = parents[i]``, unaries ``phi`` already weighted (the notes' ``alpha_i``) and springs already scaled
(``beta_ij``); the single-type model is the case of one type with ``b = 0``. Grids are ``[H, W]`` arrays
indexed ``[y, x]``; a location is the integer cell ``(x, y)`` (column, row), i.e. the cell whose centre is
at ``(x + 0.5, y + 0.5)`` in grid units (image pixels ``((x + 0.5) s, (y + 0.5) s)`` for a grid of stride ``s``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from bodies.skeleton import KEYPOINT_PARENTS
from bodies.skeleton import depth_levels as tree_levels  # parts by depth, any order, cycles rejected

__all__ = [
    "BatchMAP", "PoseMAP", "brute_force_map", "configuration_score", "dense_transform", "distance_transform",
    "distance_transform_1d", "pictorial_map", "pictorial_map_batch", "tree_levels",
]

Method = Literal["distance_transform", "brute_force"]


class PoseMAP(NamedTuple):
    """The best configuration of one image: locations ``(x, y)`` in grid cells, types, and its score ``S``."""

    locations: np.ndarray  # [K, 2] int
    types: np.ndarray  # [K] int (all 0 for a single-type model)
    score: float


class BatchMAP(NamedTuple):
    """``PoseMAP`` of a batch of images."""

    locations: np.ndarray  # [N, K, 2] int
    types: np.ndarray  # [N, K] int
    scores: np.ndarray  # [N]


# ----------------------------------------------------------------------------------------------------------
# generalised distance transforms: D(p) = max_q f(q) - psi(q - p - mu)


def _spring(d: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 1D spring cost ``a d^2 + b d``, written the one way every code path evaluates it."""
    return d * (a * d + b)


def distance_transform_1d(
    f: np.ndarray,  # [R, n]
    a: np.ndarray,  # [R] quadratic weights, >= 0
    b: np.ndarray,  # [R] linear weights
    mu: np.ndarray,  # [R] mean offsets
) -> tuple[np.ndarray, np.ndarray]:  # values [R, n], argmax [R, n]
    """``D(p) = max_q f(q) - (a d^2 + b d)`` with ``d = q - p - mu`` for ``p, q = 0 .. n-1``, row by row, in O(n).

    Felzenszwalb & Huttenlocher's lower envelope of parabolas, on the minimisation form: with
    ``c(q) = (b q - f(q)) / a + q^2`` the parabola of ``q`` beats the one of ``u < q`` right of
    ``s = (c(q) - c(u)) / (2 (q - u))``. All rows advance through ``q`` together (one vectorised step per
    ``q``, plus one per parabola popped off a row's envelope); the envelope is then read at ``s = p + mu``.
    Rows with ``a = 0`` have one maximiser for all ``p``. Values are re-evaluated at the maximiser.
    """
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"f must be [R, n], got {f.shape}")
    R, n = f.shape
    a, b, mu = (np.broadcast_to(np.asarray(x, dtype=np.float64), (R,)) for x in (a, b, mu))
    if np.any(a < 0):
        raise ValueError("the quadratic spring weights must be >= 0 (a concave psi)")
    if not np.isfinite(f).all():
        raise ValueError("scores must be finite")
    q = np.arange(n, dtype=np.float64)
    argmax = np.empty((R, n), dtype=np.int64)
    flat = a == 0
    if flat.any():  # max_q f(q) - b q does not depend on p
        argmax[flat] = np.argmax(f[flat] - b[flat, None] * q, axis=1)[:, None]
    curved = np.flatnonzero(~flat)
    if curved.size:
        argmax[curved] = _lower_envelope(f[curved], a[curved], b[curved], mu[curved])
    d = argmax - (q[None] + mu[:, None])  # [R, n]
    values = f.ravel()[argmax + n * np.arange(R)[:, None]] - _spring(d, a[:, None], b[:, None])
    return values, argmax


def _lower_envelope(f: np.ndarray, a: np.ndarray, b: np.ndarray, mu: np.ndarray) -> np.ndarray:  # [R, n] argmax
    R, n = f.shape
    q = np.arange(n, dtype=np.float64)
    c = ((b[:, None] * q - f) / a[:, None] + q**2).T.copy()  # [n, R]: c(q) of every row, one q per line
    # each row's envelope is a stack; slot j of row r lives at flat index j * R + r of these [n (+1), R] arrays
    v = np.zeros(n * R, dtype=np.int64)  # the q of the parabola in the slot
    cv = np.empty(n * R)  # its c(q)
    cv[:R] = c[0]
    z = np.full((n + 1) * R, np.inf)  # where it starts to be the lowest; slot 0 from -inf
    z[:R] = -np.inf
    top = np.arange(R)  # flat index of each row's top slot
    for qi in range(1, n):
        cq = c[qi]
        s = (cq - cv[top]) / (2.0 * (qi - v[top]))
        pop = (s <= z[top]).nonzero()[0]
        while pop.size:  # drop the parabolas that the new one hides, on the rows that have some
            t = top[pop] - R
            top[pop] = t
            sp = (cq[pop] - cv[t]) / (2.0 * (qi - v[t]))
            s[pop] = sp
            pop = pop[sp <= z[t]]
        top += R
        v[top], cv[top], z[top] = qi, cq, s  # slots above the top are stale; the read-out below ignores them
    k = top // R  # the last slot of each row
    v = v.reshape(n, R).T
    z = z.reshape(n + 1, R).T[:, 1:].copy()  # boundaries between envelope parabolas
    z[np.arange(n)[None] >= k[:, None]] = np.inf
    # the parabola serving p is the number of boundaries left of s = p + mu: z - mu < p  <=>  p >= floor(z - mu) + 1
    first = np.clip(np.floor(z - mu[:, None]) + 1, 0, n).astype(np.int64)  # [R, n]
    counts = np.bincount((np.arange(R)[:, None] * (n + 1) + first).ravel(), minlength=R * (n + 1))
    j = np.cumsum(counts.reshape(R, n + 1)[:, :n], axis=1)  # [R, n]
    return v[np.arange(R)[:, None], j]


def distance_transform(
    score: np.ndarray,  # [R, H, W]
    weights: np.ndarray,  # [R, 4] (w_x, w_x1, w_y, w_y1)
    offsets: np.ndarray,  # [R, 2] (mu_x, mu_y)
) -> tuple[np.ndarray, np.ndarray]:  # values [R, H, W], argmax [R, H, W, 2] (x, y)
    """The message ``D(l_j) = max_{l_i} score(l_i) + psi(l_i, l_j)`` for every parent cell ``l_j`` in O(HW): the
    spring is separable, so a 1D transform along x (every row) then along y (every column) is exact."""
    score, weights, offsets = _check_transform(score, weights, offsets)
    R, H, W = score.shape
    w = np.repeat(weights, H, axis=0)  # per-(r, y) parameters of the pass along x
    mu = np.repeat(offsets, H, axis=0)
    g, ax = distance_transform_1d(score.reshape(R * H, W), w[:, 0], w[:, 1], mu[:, 0])
    g, ax = g.reshape(R, H, W), ax.reshape(R, H, W)  # [r, y_i, x_j]
    w = np.repeat(weights, W, axis=0)  # per-(r, x) parameters of the pass along y
    mu = np.repeat(offsets, W, axis=0)
    values, ay = distance_transform_1d(g.transpose(0, 2, 1).reshape(R * W, H), w[:, 2], w[:, 3], mu[:, 1])
    values = values.reshape(R, W, H).transpose(0, 2, 1)  # [r, y_j, x_j]
    ay = ay.reshape(R, W, H).transpose(0, 2, 1)  # y_i*
    x_j = np.broadcast_to(np.arange(W), (R, H, W))
    ax = ax[np.arange(R)[:, None, None], ay, x_j]  # x_i* on row y_i*
    return values, np.stack([ax, ay], axis=-1)


def dense_transform(
    score: np.ndarray,  # [R, H, W]
    weights: np.ndarray,  # [R, 4]
    offsets: np.ndarray,  # [R, 2]
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:  # values [R, H, W], argmax [R, H, W, 2]
    """The reference for ``distance_transform``: every (child cell, parent cell) pair evaluated, O((HW)^2)."""
    score, weights, offsets = _check_transform(score, weights, offsets)
    R, H, W = score.shape
    ys, xs = np.divmod(np.arange(H * W), W)
    values = np.empty((R, H * W))
    best = np.empty((R, H * W), dtype=np.int64)
    for r in range(R):
        wx, wx1, wy, wy1 = weights[r]
        u = score[r].ravel()
        for start in range(0, H * W, chunk):  # parent cells of this chunk x all child cells
            dx = xs[None, :] - (xs[start : start + chunk, None] + offsets[r, 0])
            dy = ys[None, :] - (ys[start : start + chunk, None] + offsets[r, 1])
            total = (u[None, :] - _spring(dx, wx, wx1)) - _spring(dy, wy, wy1)  # [chunk, H * W]
            i = np.argmax(total, axis=1)
            best[r, start : start + chunk] = i
            values[r, start : start + chunk] = total[np.arange(len(i)), i]
    argmax = np.stack([xs[best], ys[best]], axis=-1)
    return values.reshape(R, H, W), argmax.reshape(R, H, W, 2)


def _check_transform(score, weights, offsets):
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 3:
        raise ValueError(f"score must be [R, H, W], got {score.shape}")
    weights = np.asarray(weights, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    if weights.shape != (score.shape[0], 4):
        raise ValueError(f"weights must be [R, 4] = {(score.shape[0], 4)}, got {weights.shape}")
    if offsets.shape != (score.shape[0], 2):
        raise ValueError(f"offsets must be [R, 2] = {(score.shape[0], 2)}, got {offsets.shape}")
    if np.any(weights[:, [0, 2]] < 0):
        raise ValueError("the quadratic spring weights w_x, w_y must be >= 0")
    return score, weights, offsets


# ----------------------------------------------------------------------------------------------------------
# max-product dynamic programming on the tree


def _as_mixture(unaries, weights, offsets, bias):
    """Promote the single-type arrays ``[N, K, H, W], [K, 4], [K, 2]`` to one-type mixtures and check shapes."""
    unaries = np.asarray(unaries, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    if weights.ndim == 2:  # single-type model
        if unaries.ndim != 4:
            raise ValueError(f"unaries must be [N, K, H, W] with [K, 4] weights, got {unaries.shape}")
        unaries, weights, offsets = unaries[:, :, None], weights[:, None, None], offsets[:, None, None]
    if unaries.ndim != 5:
        raise ValueError(f"unaries must be [N, K, T, H, W], got {unaries.shape}")
    K, T = unaries.shape[1:3]
    if weights.shape != (K, T, T, 4):
        raise ValueError(f"weights must be [K, T, T, 4] = {(K, T, T, 4)}, got {weights.shape}")
    if offsets.shape != (K, T, T, 2):
        raise ValueError(f"offsets must be [K, T, T, 2] = {(K, T, T, 2)}, got {offsets.shape}")
    bias = np.zeros((K, T, T)) if bias is None else np.asarray(bias, dtype=np.float64)
    if bias.shape != (K, T, T):
        raise ValueError(f"bias must be [K, T, T] = {(K, T, T)}, got {bias.shape}")
    return unaries, weights, offsets, bias


def pictorial_map_batch(
    unaries: np.ndarray,  # [N, K, H, W], or [N, K, T, H, W] for a mixture of T types per part
    weights: np.ndarray,  # [K, 4], or [K, T, T, 4] indexed [i, m_i, m_parent]; row of a root unused
    offsets: np.ndarray,  # [K, 2], or [K, T, T, 2]: mean of l_i - l_parent(i)
    parents: tuple[int, ...] | np.ndarray = KEYPOINT_PARENTS,
    bias: np.ndarray | None = None,  # [K, T, T] co-occurrence b_i^{m_i m_parent}
    method: Method = "distance_transform",
) -> BatchMAP:
    """Exact ``argmax_{L, M} S(I, L, M)`` per image by max-product dynamic programming (notes §13.1).

    The notes say the best configuration minimises the score; with appearance scores it is the maximiser, as here.
    Messages go from the leaves to the roots, a whole tree level at a time: part ``i`` sends its parent
    ``max_{m_i} [b^{m_i m_j} + max_{l_i} (phi_i^{m_i}(l_i) + messages_i(m_i, l_i) + psi^{m_i m_j}(l_i, l_j))]``,
    remembering the maximisers, which are read back from the roots' best cells. ``method="brute_force"``
    maximises over ``l_i`` densely (``dense_transform``), the reference.
    """
    u, w, mu, b = _as_mixture(unaries, weights, offsets, bias)
    N, K, T, H, W = u.shape
    levels = tree_levels(parents)
    if sum(len(level) for level in levels) != K:
        raise ValueError(f"parents must have K = {K} entries, got {len(parents)}")
    transform = {"distance_transform": distance_transform, "brute_force": dense_transform}[method]
    parents = np.asarray(parents)
    total = u.copy()  # [N, K, T, H, W]: phi plus the messages received so far
    best_type, best_loc = {}, {}  # part -> [N, T(parent), H, W] and [N, T(parent), H, W, 2]
    for level in reversed(levels[1:]):
        L = len(level)
        score = np.broadcast_to(total[:, level, :, None], (N, L, T, T, H, W)).reshape(-1, H, W)
        rw = np.broadcast_to(w[level], (N, L, T, T, 4)).reshape(-1, 4)
        ro = np.broadcast_to(mu[level], (N, L, T, T, 2)).reshape(-1, 2)
        values, arg = transform(score, rw, ro)
        values = values.reshape(N, L, T, T, H, W) + b[level][None, :, :, :, None, None]  # [n, i, m_i, m_j, y, x]
        arg = arg.reshape(N, L, T, T, H, W, 2)
        if T == 1:
            m_i, message, loc = np.zeros((N, L, 1, H, W), dtype=np.int64), values[:, :, 0], arg[:, :, 0]
        else:
            m_i = np.argmax(values, axis=2)  # [N, L, T, H, W]
            message = np.take_along_axis(values, m_i[:, :, None], 2)[:, :, 0]
            loc = np.take_along_axis(arg, m_i[:, :, None, ..., None], 2)[:, :, 0]
        for li, i in enumerate(level):
            total[:, parents[i]] += message[:, li]
            best_type[i], best_loc[i] = m_i[:, li], loc[:, li]
    types = np.zeros((N, K), dtype=np.int64)
    locations = np.zeros((N, K, 2), dtype=np.int64)
    n = np.arange(N)
    for r in levels[0]:
        m, y, x = np.unravel_index(np.argmax(total[:, r].reshape(N, -1), axis=1), (T, H, W))
        types[:, r], locations[:, r] = m, np.stack([x, y], -1)
    for level in levels[1:]:
        for i in level:
            j = parents[i]
            at = (n, types[:, j], locations[:, j, 1], locations[:, j, 0])
            types[:, i], locations[:, i] = best_type[i][at], best_loc[i][at]
    scores = configuration_score(u, w, mu, locations, parents, types, b)
    return BatchMAP(locations, types, scores)


def pictorial_map(
    unaries: np.ndarray,  # [K, H, W] or [K, T, H, W]
    weights: np.ndarray,  # [K, 4] or [K, T, T, 4]
    offsets: np.ndarray,  # [K, 2] or [K, T, T, 2]
    parents: tuple[int, ...] | np.ndarray = KEYPOINT_PARENTS,
    bias: np.ndarray | None = None,  # [K, T, T]
    method: Method = "distance_transform",
) -> PoseMAP:
    """``pictorial_map_batch`` for one image: the MAP locations ``(x, y)`` (grid cells), types and score."""
    result = pictorial_map_batch(np.asarray(unaries)[None], weights, offsets, parents, bias, method)
    return PoseMAP(result.locations[0], result.types[0], float(result.scores[0]))


def brute_force_map(
    unaries: np.ndarray,
    weights: np.ndarray,
    offsets: np.ndarray,
    parents: tuple[int, ...] | np.ndarray = KEYPOINT_PARENTS,
    bias: np.ndarray | None = None,
) -> PoseMAP:
    """The reference MAP: the same dynamic programme with every message maximised densely, O((HW)^2) per edge."""
    return pictorial_map(unaries, weights, offsets, parents, bias, method="brute_force")


def configuration_score(
    unaries: np.ndarray,  # [N, K, H, W] or [N, K, T, H, W]
    weights: np.ndarray,  # [K, 4] or [K, T, T, 4]
    offsets: np.ndarray,  # [K, 2] or [K, T, T, 2]
    locations: np.ndarray,  # [N, K, 2] int (x, y)
    parents: tuple[int, ...] | np.ndarray = KEYPOINT_PARENTS,
    types: np.ndarray | None = None,  # [N, K] int
    bias: np.ndarray | None = None,  # [K, T, T]
) -> np.ndarray:  # [N]
    """``S(I, L, M)`` of given configurations, evaluated term by term (notes §13.1)."""
    u, w, mu, b = _as_mixture(unaries, weights, offsets, bias)
    N, K = u.shape[:2]
    locations = np.asarray(locations, dtype=np.int64)
    if locations.shape != (N, K, 2):
        raise ValueError(f"locations must be [N, K, 2] = {(N, K, 2)}, got {locations.shape}")
    types = np.zeros((N, K), dtype=np.int64) if types is None else np.asarray(types, dtype=np.int64)
    n = np.arange(N)
    scores = np.zeros(N)
    for i in range(K):
        scores = scores + u[n, i, types[:, i], locations[:, i, 1], locations[:, i, 0]]
    for i in range(K):
        j = int(parents[i])
        if j < 0:
            continue
        m_i, m_j = types[:, i], types[:, j]
        wx, wx1, wy, wy1 = w[i, m_i, m_j].T
        dx = locations[:, i, 0] - (locations[:, j, 0] + mu[i, m_i, m_j, 0])
        dy = locations[:, i, 1] - (locations[:, j, 1] + mu[i, m_i, m_j, 1])
        scores = scores - _spring(dx, wx, wx1) - _spring(dy, wy, wy1) + b[i, m_i, m_j]
    return scores
