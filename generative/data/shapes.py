"""Procedural images of shapes with per-pixel labels, for semantic segmentation (notes §3).

Each image has 1 to ``max_shapes`` shapes (disc, square, triangle; random size, position, rotation
and colour) drawn with ``skimage.draw`` over a textured background (a smooth random field plus pixel
noise). Later shapes cover earlier ones, in the image and in the labels. Labels: 0 background,
1 disc, 2 square, 3 triangle. The shapes' colours are drawn independently of their kind and kept
away from the background's, so the network must tell the kinds apart by form, not by colour.

Generated on the fly from a seed (same seed, same images); :func:`test_set` is the fixed test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from skimage.draw import disk, polygon

CLASSES = ("background", "disc", "square", "triangle")
"""Label ``k`` is ``CLASSES[k]``."""
TEST_SEED = 20_240_301
"""Seed of the fixed test set."""


@dataclass(frozen=True)
class ShapesSpec:
    """What the generated images look like."""

    size: int = 32
    """Height and width in pixels."""
    channels: int = 3
    """3 for RGB, 1 for grey."""
    max_shapes: int = 4
    """Each image holds 1..max_shapes shapes."""
    min_radius: float = 4.0
    """Smallest shape radius (disc radius, or centre-to-corner distance) in pixels."""
    max_radius: float = 9.0
    """Largest shape radius in pixels."""
    texture: float = 0.15
    """Amplitude of the smooth background texture."""
    noise: float = 0.05
    """Standard deviation of the per-pixel Gaussian noise over the whole image."""
    min_contrast: float = 0.3
    """Smallest largest-channel difference between a shape's colour and the local background mean."""

    def __post_init__(self) -> None:
        if self.size < 8 or self.channels not in (1, 3) or self.max_shapes < 1:
            raise ValueError(
                f"need size >= 8, channels in (1, 3), max_shapes >= 1, got {self.size}, {self.channels}, "
                f"{self.max_shapes}"
            )
        if not 0 < self.min_radius <= self.max_radius < self.size / 2:
            raise ValueError(
                f"need 0 < min_radius <= max_radius < size / 2, got {self.min_radius}, {self.max_radius}, {self.size}"
            )


class ShapesBatch(NamedTuple):
    """Images and labels."""

    images: np.ndarray  # [N, C, H, W] float32 in [0, 1]
    labels: np.ndarray  # [N, H, W] int64 in {0, 1, 2, 3}


def _corners(kind: int, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:  # -> [K, 2] (row, col)
    corners = 4 if kind == 2 else 3
    phi = angle + 2 * math.pi * np.arange(corners) / corners
    return centre + radius * np.stack([np.sin(phi), np.cos(phi)], axis=1)


def _interpolation_matrix(size: int, knots: int) -> np.ndarray:  # -> [size, knots]
    """Linear interpolation from ``knots`` evenly spaced values to ``size`` pixels, as a matrix."""
    position = np.linspace(0.0, knots - 1.0, size)
    return np.stack([np.interp(position, np.arange(knots), np.eye(knots)[k]) for k in range(knots)], axis=1)


def _background(spec: ShapesSpec, rng: np.random.Generator) -> np.ndarray:  # -> [H, W, C]
    """A base colour plus a smooth random field: a 4x4 grid of Gaussian values, bilinearly upsampled."""
    base = rng.uniform(0.25, 0.75, size=spec.channels)
    coarse = rng.normal(0.0, spec.texture, size=(4, 4, spec.channels))
    M = _interpolation_matrix(spec.size, 4)
    return base + np.einsum("ik,klc,jl->ijc", M, coarse, M)


def _colour(spec: ShapesSpec, local: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # local: [C] -> [C]
    while True:
        colour = rng.uniform(0.0, 1.0, size=spec.channels)
        if np.abs(colour - local).max() >= spec.min_contrast:
            return colour


def draw_image(spec: ShapesSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image ``[C, H, W]`` float32 in [0, 1] and its labels ``[H, W]`` int64."""
    shape = (spec.size, spec.size)
    image = _background(spec, rng)
    labels = np.zeros(shape, dtype=np.int64)
    for _ in range(int(rng.integers(1, spec.max_shapes + 1))):
        kind = int(rng.integers(1, len(CLASSES)))
        radius = rng.uniform(spec.min_radius, spec.max_radius)
        centre = rng.uniform(radius * 0.7, spec.size - radius * 0.7, size=2)  # may touch the border
        if kind == 1:
            rows, cols = disk(tuple(centre), radius, shape=shape)
        else:
            corners = _corners(kind, centre, radius, rng.uniform(0, 2 * math.pi))
            rows, cols = polygon(corners[:, 0], corners[:, 1], shape=shape)
        if len(rows) == 0:
            continue
        local = image[rows, cols].mean(axis=0)
        image[rows, cols] = _colour(spec, local, rng)
        labels[rows, cols] = kind
    image = image + rng.normal(0.0, spec.noise, size=image.shape)
    return np.clip(image, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32), labels


def shapes_batch(n: int, rng: np.random.Generator, spec: ShapesSpec | None = None) -> ShapesBatch:
    """``n`` images and labels drawn from ``rng``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    spec = spec or ShapesSpec()
    images = np.zeros((n, spec.channels, spec.size, spec.size), dtype=np.float32)
    labels = np.zeros((n, spec.size, spec.size), dtype=np.int64)
    for k in range(n):
        images[k], labels[k] = draw_image(spec, rng)
    return ShapesBatch(images, labels)


def test_set(n: int = 256, spec: ShapesSpec | None = None, seed: int = TEST_SEED) -> ShapesBatch:
    """The fixed test set: ``n`` images from ``seed`` (training batches use other seeds)."""
    return shapes_batch(n, np.random.default_rng(seed), spec)


test_set.__test__ = False  # type: ignore[attr-defined]  (not a pytest test when imported into one)
