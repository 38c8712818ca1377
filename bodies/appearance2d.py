"""A learned pictorial-structures model for 2D poses (notes §13.1, "body modelling"): HOG-like part filters for
the unaries ``phi``, Gaussian springs for the deformations ``psi``, and Yang & Ramanan (2011)'s mixture of parts,
all estimated from images with keypoints; inference is ``bodies.pictorial``'s exact MAP.

- Features (Dalal & Triggs 2005, simplified): per pixel, the gradient of the strongest colour channel votes with
  its magnitude into one of ``orientations`` unsigned orientation bins; the votes are summed over a
  ``cell_size`` box around every grid cell (one cell per ``stride`` pixels), L2-normalised (with the log energy
  kept as a feature) and joined by the cell's mean colour.
- Part filters: a ``window x window`` linear filter per part (per part and type for a mixture), the weights of a
  multinomial logistic regression separating the parts' cells and background cells; the unary of a part is its
  log-odds against the background. Background cells are random cells, cells a few cells from a keypoint (they
  teach the filters to localise), and, after a first fit, the highest-scoring wrong cells of every part on the
  training images (Felzenszwalb et al. 2010's hard negatives); the fit is then repeated with all of them.
- Springs: the offset ``l_i - l_parent`` is Gaussian, so ``mu`` is its mean and ``w_x = 1 / (2 var_x)``
  (``w_y`` likewise, no linear terms). Types (mixtures): k-means clusters of each part's offset to its parent,
  as Yang & Ramanan do; springs depend on the child's type (their choice too) and the co-occurrence bias is the
  smoothed ``log P(m_i | m_parent)`` (they learn it discriminatively).

Fitting streams the images in chunks of ``chunk``: only the float32 grid features of all images and the sampled
windows are kept, so 4,000 images of 128 x 128 fit in well under 3 GB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bodies.pictorial import BatchMAP, pictorial_map_batch
from bodies.skeleton import KEYPOINT_PARENTS

__all__ = [
    "PictorialConfig", "PictorialStructures", "cell_features", "filter_responses", "fit_softmax", "hard_negatives",
    "window_features",
]


@dataclass(frozen=True)
class PictorialConfig:
    """Hyperparameters of the learned pictorial-structures model. The defaults are the best variant measured on
    128 x 128 renders of posed bodies (4,000 training images fit in about 5 minutes on one core, under 3 GB)."""

    cell_size: int = 8
    """side of the box over which gradient orientations are histogrammed (pixels)"""
    stride: int = 4
    """pixels between score-grid cells; locations are found to this resolution"""
    orientations: int = 9
    """unsigned gradient-orientation bins"""
    window: int = 7
    """side of a part filter, in grid cells"""
    n_types: int = 4
    """mixture components per part (Yang & Ramanan's types); 1 is the classic single-template model"""
    negatives_per_image: int = 20
    """random background cells per training image"""
    near_negatives_per_image: int = 20
    """background cells per training image drawn ``near_distance`` cells from a random visible keypoint"""
    near_distance: tuple[int, int] = (2, 4)
    """range of the Chebyshev distance (grid cells) of those near negatives from their keypoint"""
    hard_negative_rounds: int = 1
    """refits, each after adding every part's best-scoring wrong cell of every training image as background"""
    C: float = 1.0
    """inverse L2 regularisation of the logistic regression (sklearn's: the loss is summed over examples)"""
    max_iter: int = 200
    """L-BFGS iterations of each logistic-regression fit"""
    min_std: float = 1.0
    """floor on the spring's standard deviation per axis (pixels)"""
    deformation_scale: float = 0.5
    """beta: weight of the springs against the unaries"""
    chunk: int = 128
    """images per chunk of feature extraction and scoring (bounds the memory of the dense intermediates)"""
    seed: int = 0
    """seed of the negative sampling and k-means"""


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3], got {images.shape}")
    return images


def cell_features(images: np.ndarray, cell_size: int, stride: int, orientations: int) -> np.ndarray:
    """HOG-like features on the grid of stride ``stride``: ``[N, H // stride, W // stride, orientations + 4]``
    (float32).

    Grid cell ``(x, y)`` is centred at pixel ``((x + 0.5) stride, (y + 0.5) stride)``; its box is the
    ``cell_size`` square from pixel ``x stride + floor((stride - cell_size) / 2 + 1/2)`` on (cut at the image
    border). The box sums are strided sum-pools (``torch``), the cost of a few passes over the pixels.
    """
    images = _check_images(images)
    N, H, W, _ = images.shape
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W]
    gx, gy = torch.zeros_like(x), torch.zeros_like(x)
    gx[..., 1:-1] = x[..., 2:] - x[..., :-2]
    gy[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    magnitude = torch.hypot(gx, gy)  # [N, 3, H, W]
    magnitude, channel = magnitude.max(1, keepdim=True)  # the strongest colour channel, as Dalal & Triggs
    gx, gy = gx.gather(1, channel), gy.gather(1, channel)
    angle = torch.remainder(torch.atan2(gy, gx), np.pi)  # unsigned, [0, pi)
    bins = (angle / np.pi * orientations).long().clamp_(max=orientations - 1)
    votes = torch.zeros(N, orientations, H, W).scatter_(1, bins, magnitude)  # [N, B, H, W]
    channels = torch.cat([votes, x, torch.ones(1, 1, H, W).expand(N, 1, H, W)], 1)  # [N, B + 4, H, W]
    Hg, Wg = H // stride, W // stride
    start = int(np.floor((stride - cell_size) / 2 + 0.5))  # first pixel of cell 0's box
    right, bottom = (max((n - 1) * stride + start + cell_size - m, 0) for n, m in ((Wg, W), (Hg, H)))
    lead = max(-start, 0)  # zero padding before the image; a positive start crops instead
    padded = torch.nn.functional.pad(channels, (lead, right, lead, bottom))[..., max(start, 0) :, max(start, 0) :]
    box = torch.nn.functional.avg_pool2d(padded, cell_size, stride, divisor_override=1)[:, :, :Hg, :Wg]
    box = box.permute(0, 2, 3, 1).double()  # [N, Hg, Wg, B + 4]: votes, colour sums, pixels in the box
    hist = box[..., :orientations]
    energy = torch.sqrt((hist**2).sum(-1, keepdim=True))
    normalised = torch.clamp(hist / (energy + 1e-3), max=0.2)  # HOG's clipping of dominant bins
    normalised /= torch.sqrt((normalised**2).sum(-1, keepdim=True)) + 1e-6
    colour = box[..., orientations : orientations + 3] / box[..., -1:]
    return torch.cat([normalised, torch.log1p(energy), colour], -1).float().numpy()


def window_features(features: np.ndarray, cells: np.ndarray, window: int) -> np.ndarray:
    """The ``window x window`` block of grid features around given cells, flattened: ``[M, window^2 * C]``.

    ``features`` is ``[N, Hg, Wg, C]``, ``cells`` ``[M, 3]`` rows ``(image, x, y)``; outside the grid is zero.
    The reference for ``filter_responses``; fitting gathers the same blocks without padding a copy.
    """
    r = window // 2
    padded = np.pad(features, ((0, 0), (r, r), (r, r), (0, 0)))
    dy, dx = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    n, x, y = cells[:, 0, None], cells[:, 1, None], cells[:, 2, None]  # [M, 1]
    block = padded[n, y + dy.ravel(), x + dx.ravel()]  # [M, window^2, C]
    return block.reshape(len(cells), -1)


def _gather_windows(features: np.ndarray, cells: np.ndarray, window: int) -> np.ndarray:  # [M, window^2 C] float32
    """``window_features`` without the padded copy of ``features``: blocks read by clipped indices, zeroed outside."""
    Hg, Wg = features.shape[1:3]
    r = window // 2
    dy, dx = (d.ravel() - r for d in np.meshgrid(np.arange(window), np.arange(window), indexing="ij"))
    y, x = cells[:, 2, None] + dy, cells[:, 1, None] + dx  # [M, window^2]
    outside = (y < 0) | (y >= Hg) | (x < 0) | (x >= Wg)
    block = features[cells[:, 0, None], np.clip(y, 0, Hg - 1), np.clip(x, 0, Wg - 1)]  # [M, window^2, C]
    block[outside] = 0.0
    return block.reshape(len(cells), -1).astype(np.float32, copy=False)


def filter_responses(features: np.ndarray, filters: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Correlate linear filters ``[P, window, window, C]`` with grid features ``[N, Hg, Wg, C]``: ``[N, P, Hg, Wg]``
    (a zero-padded 2D correlation, ``torch.conv2d``)."""
    window = filters.shape[1]
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).permute(0, 3, 1, 2)  # [N, C, Hg, Wg]
    w = torch.from_numpy(np.ascontiguousarray(filters, dtype=np.float32)).permute(0, 3, 1, 2)  # [P, C, wy, wx]
    b = torch.from_numpy(np.asarray(bias, dtype=np.float32))
    with torch.no_grad():
        out = torch.nn.functional.conv2d(x, w, b, padding=window // 2)
    return out.numpy().astype(np.float64)


def fit_softmax(X: np.ndarray, y: np.ndarray, n_classes: int, C: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: ``min_{W, b} sum_m -log softmax(W x_m + b)_{y_m} + ||W||^2 / (2 C)``
    (sklearn's objective), by L-BFGS on standardised features; returns ``coef [n_classes, D]``, ``intercept``
    in the original units. ``X`` is ``[M, D]`` float32 and is standardised in place (the caller's copy)."""
    mean = X.mean(0, dtype=np.float64).astype(np.float32)
    X -= mean
    step = 1 << 15  # the variance chunk by chunk: no float64 copy of X
    var = sum(np.square(X[a : a + step], dtype=np.float64).sum(0) for a in range(0, len(X), step)) / len(X)
    std = (np.sqrt(var) + 1e-6).astype(np.float32)
    X /= std
    data, target = torch.from_numpy(X), torch.from_numpy(np.asarray(y, dtype=np.int64))
    W = torch.zeros(n_classes, X.shape[1], requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    optimiser = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, line_search_fn="strong_wolfe")
    scale = 1.0 / len(X)  # the objective divided by M: the same minimiser, better-scaled tolerances

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(data @ W.T + b, target, reduction="sum")
        loss = scale * (loss + (W**2).sum() / (2 * C))
        loss.backward()
        return loss

    optimiser.step(closure)
    coef = W.detach().numpy().astype(np.float64) / std
    return coef, b.detach().numpy().astype(np.float64) - coef @ mean


def hard_negatives(
    scores: np.ndarray,  # [N, P, Hg, Wg] filter responses
    keypoint_cells: np.ndarray,  # [N, K, 2] (x, y) grid cells
    inside: np.ndarray,  # [N, K] bool: the keypoint is visible and in the image
    margin: int = 1,
) -> np.ndarray:  # [N * P, 3] rows (image, x, y)
    """Every filter's best-scoring cell per image among the cells more than ``margin`` cells (Chebyshev) from all
    the image's keypoints: the wrong detections a refit must learn to reject (Felzenszwalb et al. 2010)."""
    N, P, Hg, Wg = scores.shape
    ys, xs = np.mgrid[0:Hg, 0:Wg]
    near = np.zeros((N, Hg, Wg), dtype=bool)
    for k in range(keypoint_cells.shape[1]):
        kx, ky = keypoint_cells[:, k, 0, None, None], keypoint_cells[:, k, 1, None, None]
        near |= (np.maximum(np.abs(xs - kx), np.abs(ys - ky)) <= margin) & inside[:, k, None, None]
    masked = np.where(near[:, None], -np.inf, scores).reshape(N, P, -1)
    best = masked.argmax(-1)  # [N, P]
    y, x = np.divmod(best, Wg)
    return np.stack([np.repeat(np.arange(N), P), x.ravel(), y.ravel()], 1)


class PictorialStructures:
    """Pictorial structures learned from ``(images, keypoints2d, visible)`` (notes §13.1, Felzenszwalb &
    Huttenlocher 2005; Yang & Ramanan 2011 with ``n_types > 1``). Keypoints are image pixels ``[N, K, 2]``
    (x right, y down, origin at the top-left corner), in the order of ``parents`` (default the 14-keypoint tree)."""

    def __init__(self, config: PictorialConfig = PictorialConfig(), parents: tuple[int, ...] = KEYPOINT_PARENTS):
        self.config = config
        self.parents = np.asarray(parents, dtype=np.int64)

    # ---------------------------------------------------------------------------------------------- fitting
    def fit(self, images: np.ndarray, keypoints2d: np.ndarray, visible: np.ndarray) -> PictorialStructures:
        """Springs and types from the keypoints, then the part filters: a fit on the positives and the sampled
        negatives, and ``hard_negative_rounds`` refits each with the wrong detections of the last fit added."""
        cfg = self.config
        images = _check_images(images)
        N, H, W, _ = images.shape
        K = len(self.parents)
        keypoints2d = np.asarray(keypoints2d, dtype=np.float64)
        visible = np.asarray(visible, dtype=bool)
        if keypoints2d.shape != (N, K, 2):
            raise ValueError(f"keypoints2d must be [N, K, 2] = {(N, K, 2)}, got {keypoints2d.shape}")
        if visible.shape != (N, K):
            raise ValueError(f"visible must be [N, K] = {(N, K)}, got {visible.shape}")
        self.image_shape_ = (H, W)
        rng = np.random.default_rng(cfg.seed)
        types = self._fit_springs(keypoints2d, visible)  # [N, K]
        s, T = cfg.stride, cfg.n_types
        features = self._features(images)  # [N, Hg, Wg, C] float32, the one dense array kept
        Hg, Wg = features.shape[1:3]
        cell = np.clip(np.floor(keypoints2d / s).astype(np.int64), 0, [Wg - 1, Hg - 1])  # [N, K, 2]
        inside = visible & (keypoints2d >= 0).all(-1) & (keypoints2d < [W, H]).all(-1)
        n_idx, k_idx = np.nonzero(inside)
        positives = np.stack([n_idx, cell[n_idx, k_idx, 0], cell[n_idx, k_idx, 1]], 1)
        labels = 1 + k_idx * T + types[n_idx, k_idx]  # class 0 the background, 1 + i T + m part i type m
        negatives = self._sample_negatives(rng, cell, inside, Hg, Wg)
        for round_ in range(cfg.hard_negative_rounds + 1):
            cells = np.concatenate([positives, negatives])
            X = _gather_windows(features, cells, cfg.window)  # [M, window^2 C]
            y = np.concatenate([labels, np.zeros(len(negatives), dtype=np.int64)])
            self._fit_filters(X, y, features.shape[-1])
            del X
            if round_ < cfg.hard_negative_rounds:
                negatives = np.concatenate([negatives, self._hard_negatives(features, cell, inside)])
        return self

    def _features(self, images: np.ndarray) -> np.ndarray:  # [N, Hg, Wg, C] float32, extracted chunk by chunk
        cfg = self.config
        first = cell_features(images[:1], cfg.cell_size, cfg.stride, cfg.orientations)
        features = np.empty((len(images), *first.shape[1:]), dtype=np.float32)
        for a in range(0, len(images), cfg.chunk):
            features[a : a + cfg.chunk] = cell_features(images[a : a + cfg.chunk], cfg.cell_size, cfg.stride,
                                                        cfg.orientations)
        return features

    def _fit_springs(self, keypoints2d: np.ndarray, visible: np.ndarray) -> np.ndarray:  # types [N, K]
        """Gaussian springs, k-means types and their co-occurrence bias from the keypoints' offsets."""
        from sklearn.cluster import KMeans

        cfg, T = self.config, self.config.n_types
        N, K = visible.shape
        # offsets to the parent (a root: from its first child) -> Gaussian springs and k-means types
        first_child = {r: int(np.flatnonzero(self.parents == r)[0]) for r in np.flatnonzero(self.parents < 0)}
        other = np.array([first_child.get(i, p) for i, p in enumerate(self.parents)])
        offset = keypoints2d - keypoints2d[:, other]  # [N, K, 2]
        offset[:, self.parents < 0] *= -1
        both = visible & visible[:, other]  # [N, K]
        few = [i for i in range(K) if both[:, i].sum() < 2]
        if few:
            raise ValueError(f"keypoints {few} are visible with their parent (or root's child) in fewer than 2 images")
        types = np.zeros((N, K), dtype=np.int64)
        if T > 1:
            for i in range(K):
                kmeans = KMeans(T, n_init=4, random_state=cfg.seed).fit(offset[both[:, i], i])
                types[:, i] = kmeans.predict(offset[:, i])
        self.offsets_, self.weights_ = np.zeros((K, 2)), np.zeros((K, 4))  # single-type springs (pixels)
        self.type_offsets_, self.type_weights_ = np.zeros((K, T, T, 2)), np.zeros((K, T, T, 4))
        self.bias_ = np.zeros((K, T, T))
        for i, j in enumerate(self.parents):
            if j < 0:
                continue
            self.offsets_[i], self.weights_[i] = self._spring(offset[both[:, i], i])
            for m in range(T):
                pick = both[:, i] & (types[:, i] == m)
                mu, w = self._spring(offset[pick, i]) if pick.sum() > 1 else (self.offsets_[i], self.weights_[i])
                self.type_offsets_[i, m], self.type_weights_[i, m] = mu, w
                for mj in range(T):
                    pair = (visible[:, i] & visible[:, j] & (types[:, j] == mj)).sum()
                    self.bias_[i, m, mj] = np.log((np.sum(pick & (types[:, j] == mj)) + 1) / (pair + T))
        return types

    def _sample_negatives(self, rng, cell, inside, Hg: int, Wg: int) -> np.ndarray:  # [M, 3] rows (image, x, y)
        """Random background cells and cells ``near_distance`` from a random visible keypoint; none within one cell
        of a visible keypoint."""
        cfg = self.config
        N = len(cell)
        M = N * cfg.negatives_per_image
        random = np.stack([np.repeat(np.arange(N), cfg.negatives_per_image), rng.integers(0, Wg, M),
                           rng.integers(0, Hg, M)], 1)
        L = N * cfg.near_negatives_per_image
        n = np.repeat(np.arange(N), cfg.near_negatives_per_image)
        k = np.argmax(np.where(inside[n], rng.random(inside[n].shape), -1.0), axis=1)  # a random visible keypoint
        lo, hi = cfg.near_distance
        d = rng.integers(-hi, hi + 1, (L, 2))  # pushed out to Chebyshev distance >= lo along its larger axis
        big = np.argmax(np.abs(d), axis=1)
        grow = np.abs(d[np.arange(L), big]) < lo
        d[grow, big[grow]] = np.where(d[grow, big[grow]] < 0, -lo, lo)
        near = cell[n, k] + d
        ok = (near >= 0).all(1) & (near < [Wg, Hg]).all(1) & inside[n, k]
        negatives = np.concatenate([random, np.stack([n, near[:, 0], near[:, 1]], 1)[ok]])
        close = (np.abs(cell[negatives[:, 0]] - negatives[:, None, 1:]).max(-1) <= 1) & inside[negatives[:, 0]]
        return negatives[~close.any(1)]

    def _fit_filters(self, X: np.ndarray, y: np.ndarray, C: int) -> None:
        cfg = self.config
        K, T = len(self.parents), cfg.n_types
        present = np.unique(y)
        coef_p, intercept_p = fit_softmax(X, np.searchsorted(present, y), len(present), cfg.C, cfg.max_iter)
        coef = np.zeros((1 + K * T, X.shape[1]))
        intercept = np.full(1 + K * T, -1e3)  # a (part, type) without examples never wins
        coef[present], intercept[present] = coef_p, intercept_p
        self.filters_ = (coef[1:] - coef[0]).reshape(K, T, cfg.window, cfg.window, C)  # log-odds against background
        self.filter_bias_ = (intercept[1:] - intercept[0]).reshape(K, T)

    def _hard_negatives(self, features: np.ndarray, cell: np.ndarray, inside: np.ndarray) -> np.ndarray:
        K, T = self.filter_bias_.shape
        filters = self.filters_.reshape(K * T, *self.filters_.shape[2:])
        found = []
        for a in range(0, len(features), self.config.chunk):
            f = features[a : a + self.config.chunk]
            scores = filter_responses(f, filters, self.filter_bias_.ravel())  # [n, K T, Hg, Wg]
            scores = scores.reshape(len(f), K, T, *f.shape[1:3]).max(2)  # a part's best type
            rows = hard_negatives(scores, cell[a : a + len(f)], inside[a : a + len(f)])
            rows[:, 0] += a
            found.append(rows)
        return np.concatenate(found)

    def _spring(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [M, 2] offsets -> mu [2], weights [4]
        var = np.maximum(d.var(0), self.config.min_std**2)
        w = self.config.deformation_scale / (2 * var)
        return d.mean(0), np.array([w[0], 0.0, w[1], 0.0])

    # ---------------------------------------------------------------------------------------------- inference
    def unaries(self, images: np.ndarray) -> np.ndarray:  # [N, K, T, Hg, Wg]
        """Part-filter log-odds on the score grid of every image."""
        cfg = self.config
        features = cell_features(images, cfg.cell_size, cfg.stride, cfg.orientations)
        K, T = self.filter_bias_.shape
        filters = self.filters_.reshape(K * T, *self.filters_.shape[2:])
        scores = filter_responses(features, filters, self.filter_bias_.ravel())
        return scores.reshape(len(features), K, T, *features.shape[1:3])

    def map_poses(self, images: np.ndarray) -> BatchMAP:
        """The MAP configurations on the score grid: cells ``(x, y)``, types and scores (``pictorial_map_batch``),
        computed in chunks of images."""
        s, T = self.config.stride, self.filter_bias_.shape[1]
        images = _check_images(images)
        step = max(1, self.config.chunk // T**2)  # the mixture's messages are [n, parts, T, T, Hg, Wg]
        results = []
        for a in range(0, len(images), step):
            unaries = self.unaries(images[a : a + step])
            if T == 1:
                results.append(pictorial_map_batch(unaries[:, :, 0], self.weights_ * s**2, self.offsets_ / s,
                                                   self.parents))
            else:
                results.append(pictorial_map_batch(unaries, self.type_weights_ * s**2, self.type_offsets_ / s,
                                                   self.parents, self.bias_))
        return BatchMAP(*(np.concatenate(parts) for parts in zip(*results)))

    def predict(self, images: np.ndarray) -> np.ndarray:  # [N, K, 2] image pixels
        """The MAP pose of every image, each keypoint at the centre of its grid cell."""
        return (self.map_poses(images).locations + 0.5) * self.config.stride

    def predict_from_heatmaps(self, heatmaps: np.ndarray, image_size: int | None = None) -> np.ndarray:
        """MAP poses with given score maps ``[N, K, h, w]`` (e.g. a network's log-heatmaps) as the unaries and the
        learned single-type springs (notes §13.1, "body modelling and feature learning"). The maps cover the
        image, so a cell is ``image_size / w`` pixels (default: the training images' width); returns pixels.
        Scores must be finite: clip log-probabilities of zero."""
        heatmaps = np.asarray(heatmaps, dtype=np.float64)
        if heatmaps.ndim != 4 or heatmaps.shape[1] != len(self.parents):
            raise ValueError(f"heatmaps must be [N, {len(self.parents)}, h, w], got {heatmaps.shape}")
        size = self.image_shape_[1] if image_size is None else image_size
        cell = size / heatmaps.shape[-1]
        result = pictorial_map_batch(heatmaps, self.weights_ * cell**2, self.offsets_ / cell, self.parents)
        return (result.locations + 0.5) * cell
