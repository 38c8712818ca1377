"""Procedural pen trajectories in the stroke-3 format (Graves 2013; Ha and Eck 2017's sketch-rnn) for the VRNN.

A drawing is a sequence of ``T`` pen points; each step stores ``(dx, dy, pen_up)``: the offset from the
previous point (drawings start at the origin, so the first offset is zero up to noise) and ``pen_up = 1``
when the pen lifts after this point, so the next offset is a move without ink (the last point of a drawing
always lifts the pen). Every drawing has exactly ``T`` points, so the sets are plain arrays ``[N, T, 3]``
float32 without padding.

Three kinds, all seeded (``numpy.random.Generator``):

* ``"glyph"``: a digit 0-9 drawn from a polyline template of one to three strokes (e.g. a 4 is two strokes,
  so the pen lifts once), under a random affine map (scale, slant, rotation) and point noise;
* ``"curve"``: a random smooth curve, a low-frequency Fourier series in x and y;
* ``"loop"``: a row of loops, a prolate cycloid ``(a t - r sin t, -r cos t)`` with random radius and pitch.

Points are spaced evenly along each drawing's path; a drawing is about :data:`SIZE` units tall, so the
offsets are of order 1. :func:`strokes_to_polylines` turns a drawing back into the pen-down polylines.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

SIZE = 8.0
"""Height of a drawing in pen units (offsets are then of order one for ``T`` around 40)."""
TEST_SEED = 20_240_706
"""Seed of the fixed validation and test drawings."""
NOISE = 0.05
"""Standard deviation of the point noise, in pen units."""

Kind = Literal["glyph", "curve", "loop"]
KINDS: tuple[Kind, ...] = ("glyph", "curve", "loop")

_ARC = np.linspace(0, 2 * np.pi, 17)
DIGIT_STROKES: dict[int, list[np.ndarray]] = {
    0: [np.stack([0.5 + 0.45 * np.sin(_ARC), 0.5 + 0.5 * np.cos(_ARC)], 1)],
    1: [np.array([[0.25, 0.75], [0.55, 1.0], [0.55, 0.0]])],
    2: [np.array([[0.05, 0.8], [0.3, 1.0], [0.75, 1.0], [0.95, 0.75], [0.9, 0.55], [0.05, 0.0], [0.95, 0.0]])],
    3: [np.array([[0.05, 0.9], [0.5, 1.0], [0.9, 0.8], [0.85, 0.6], [0.4, 0.5], [0.9, 0.4], [0.95, 0.15],
                  [0.5, 0.0], [0.05, 0.1]])],
    4: [np.array([[0.7, 1.0], [0.05, 0.35], [0.95, 0.35]]), np.array([[0.7, 0.6], [0.7, 0.0]])],
    5: [np.array([[0.9, 1.0], [0.15, 1.0], [0.1, 0.55], [0.6, 0.6], [0.9, 0.35], [0.8, 0.1], [0.4, 0.0],
                  [0.05, 0.1]]), np.array([[0.15, 1.0], [0.9, 1.0]])],
    6: [np.array([[0.8, 1.0], [0.3, 0.7], [0.1, 0.3], [0.3, 0.0], [0.75, 0.05], [0.85, 0.35], [0.5, 0.5],
                  [0.15, 0.35]])],
    7: [np.array([[0.05, 1.0], [0.95, 1.0], [0.35, 0.0]]), np.array([[0.3, 0.5], [0.8, 0.5]])],
    8: [np.stack([0.5 + 0.35 * np.sin(_ARC), 0.75 + 0.25 * np.cos(_ARC)], 1),
        np.stack([0.5 + 0.45 * np.sin(-_ARC), 0.25 + 0.25 * np.cos(_ARC)], 1)],
    9: [np.stack([0.5 + 0.4 * np.sin(-_ARC), 0.72 + 0.28 * np.cos(_ARC)], 1),
        np.array([[0.9, 0.72], [0.8, 0.3], [0.5, 0.0]])],
}
"""Polyline templates of the digits in the unit box (y up), one array ``[n, 2]`` per pen-down stroke."""


# ---------------------------------------------------------------------- geometry (pure functions)
def resample(stroke: np.ndarray, n: int) -> np.ndarray:  # [m, 2] -> [n, 2]
    """``n`` points evenly spaced by arc length along the polyline ``stroke`` (both ends included)."""
    if stroke.ndim != 2 or stroke.shape[1] != 2 or len(stroke) < 2 or n < 2:
        raise ValueError(f"stroke must be [m >= 2, 2] and n >= 2, got {stroke.shape} and n={n}")
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(stroke, axis=0), axis=1))])
    u = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(u, s, stroke[:, 0]), np.interp(u, s, stroke[:, 1])], 1)


def points_per_stroke(lengths: np.ndarray, T: int) -> np.ndarray:  # [S] -> [S] int, sum T, each >= 2
    """Split ``T`` points over strokes in proportion to their lengths, at least 2 per stroke."""
    S = len(lengths)
    if T < 2 * S:
        raise ValueError(f"T must be >= 2 per stroke ({2 * S}), got {T}")
    share = 2 + (T - 2 * S) * np.asarray(lengths, dtype=np.float64) / max(float(np.sum(lengths)), 1e-12)
    counts = np.floor(share).astype(np.int64)
    counts[np.argsort(counts - share)[: T - counts.sum()]] += 1  # largest remainders first
    return counts


def to_stroke3(strokes: list[np.ndarray], T: int) -> np.ndarray:  # list of [m_i, 2] -> [T, 3] float32
    """Absolute pen-down polylines -> ``T`` evenly spaced points as ``(dx, dy, pen_up)``."""
    lengths = np.array([np.linalg.norm(np.diff(s, axis=0), axis=1).sum() for s in strokes])
    parts = [resample(s, k) for s, k in zip(strokes, points_per_stroke(lengths, T))]
    points = np.concatenate(parts)  # [T, 2]
    points = points - points[0]  # every drawing starts at the origin: the first offset is (0, 0)
    pen = np.zeros(T)
    pen[np.cumsum([len(p) for p in parts]) - 1] = 1.0  # lift after the last point of every stroke
    offsets = np.diff(points, axis=0, prepend=np.zeros((1, 2)))
    return np.concatenate([offsets, pen[:, None]], 1).astype(np.float32)


def strokes_to_polylines(drawing: np.ndarray) -> list[np.ndarray]:  # [T, 3] -> list of [n_i, 2]
    """The pen-down polylines of a stroke-3 drawing, in absolute coordinates (for plotting)."""
    drawing = np.asarray(drawing)
    if drawing.ndim != 2 or drawing.shape[1] != 3:
        raise ValueError(f"drawing must be [T, 3] (dx, dy, pen_up), got {drawing.shape}")
    points = np.cumsum(drawing[:, :2], axis=0)
    ends = np.flatnonzero(drawing[:, 2] > 0.5) + 1
    pieces = np.split(points, ends)
    return [p for p in pieces if len(p)]


# ---------------------------------------------------------------------- random drawings
def _affine(rng: np.random.Generator) -> np.ndarray:  # -> [2, 2]
    angle = rng.normal(0.0, 0.1)
    slant = rng.normal(0.15, 0.15)
    scale = SIZE * np.array([rng.uniform(0.55, 0.85), rng.uniform(0.9, 1.1)])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return rotation @ np.array([[1.0, slant], [0.0, 1.0]]) @ np.diag(scale)


def glyph(digit: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The strokes of ``digit`` under a random affine map, with jittered template corners."""
    if digit not in DIGIT_STROKES:
        raise ValueError(f"digit must be in 0..9, got {digit}")
    A = _affine(rng)
    return [(s + rng.normal(0.0, 0.03, s.shape)) @ A.T for s in DIGIT_STROKES[digit]]


def smooth_curve(rng: np.random.Generator, harmonics: int = 3) -> list[np.ndarray]:
    """One stroke: ``(x, y)(u) = sum_k (a_k cos(k u) + b_k sin(k u)) / k^1.5`` for ``u in [0, 1.6 pi]`` (an open curve), random."""
    u = np.linspace(0.0, 1.6 * np.pi, 80)
    k = np.arange(1, harmonics + 1)
    coefficients = rng.normal(0.0, 1.0, (2, 2, harmonics)) / k**1.5  # [x/y, cos/sin, K]
    basis = np.stack([np.cos(np.outer(u, k)), np.sin(np.outer(u, k))], 0)  # [2, U, K]
    curve = np.einsum("dck,cuk->ud", coefficients, basis)
    return [curve * SIZE / (2.0 * max(np.ptp(curve[:, 1]), 0.5))]


def loops(rng: np.random.Generator) -> list[np.ndarray]:
    """One stroke: a prolate cycloid ``(a u - r sin u, -r cos u)``, 2 to 4 loops."""
    turns = rng.integers(2, 5)
    u = np.linspace(0.0, 2 * np.pi * turns, 40 * turns)
    r, a = rng.uniform(0.35, 0.5), rng.uniform(0.1, 0.25)
    return [np.stack([a * u - r * np.sin(u), -r * np.cos(u)], 1) * SIZE]


def random_drawing(T: int, rng: np.random.Generator, kind: Kind | None = None) -> tuple[np.ndarray, int]:
    """One drawing ``[T, 3]`` and its label (the digit for a glyph, ``10`` a curve, ``11`` loops)."""
    kind = kind or KINDS[int(rng.integers(0, len(KINDS)))]
    if kind == "glyph":
        label = int(rng.integers(0, 10))
        strokes = glyph(label, rng)
    elif kind == "curve":
        label, strokes = 10, smooth_curve(rng)
    elif kind == "loop":
        label, strokes = 11, loops(rng)
    else:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    drawing = to_stroke3(strokes, T)
    drawing[:, :2] += rng.normal(0.0, NOISE, (T, 2)).astype(np.float32)
    return drawing, label


def random_drawings(n: int, T: int, rng: np.random.Generator, kind: Kind | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:  # -> [n, T, 3] float32, [n] int64
    """``n`` drawings of ``T`` points and their labels."""
    if n < 0 or T < 6:
        raise ValueError(f"need n >= 0 and T >= 6 (two points for each of up to three strokes), got {n}, {T}")
    pairs = [random_drawing(T, rng, kind) for _ in range(n)]
    if not pairs:
        return np.zeros((0, T, 3), np.float32), np.zeros(0, np.int64)
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)


class StrokeSplit(NamedTuple):
    """Train / validation / test drawings ``[N, T, 3]`` float32 ``(dx, dy, pen_up)`` and labels ``[N]``."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    y_train: np.ndarray  # [N_train] int64: digit 0..9, 10 curve, 11 loops
    y_val: np.ndarray
    y_test: np.ndarray


def strokes_split(n_train: int = 2048, n_val: int = 128, n_test: int = 256, T: int = 40, seed: int = 0,
                  kind: Kind | None = None) -> StrokeSplit:
    """The fixed drawings: training drawings from ``seed``, validation and test from :data:`TEST_SEED`."""
    if min(n_train, n_val, n_test) < 0:
        raise ValueError(f"drawing counts must be >= 0, got {n_train}, {n_val}, {n_test}")
    held, y_held = random_drawings(n_val + n_test, T, np.random.default_rng([TEST_SEED, T]), kind)
    train, y_train = random_drawings(n_train, T, np.random.default_rng([seed, T, 1]), kind)
    return StrokeSplit(train, held[:n_val], held[n_val:], y_train, y_held[:n_val], y_held[n_val:])
