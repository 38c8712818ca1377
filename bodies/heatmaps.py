"""Heatmaps and batches of 2D poses, shared by convolutional pose machines and DeepPose (notes §13.1).

Coordinates are image pixels: x right, y down, pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``, so
its centre is ``(i + 0.5, j + 0.5)``. A heatmap at stride ``s`` has one cell per ``s x s`` block of
pixels; cell ``u`` is centred at image coordinate ``(u + 0.5) s``, so an image point ``x`` sits at the
(continuous) cell index ``x / s - 0.5``. Targets are Gaussians of width ``sigma`` in **heatmap cells**
around that point (Wei et al. 2016 use the same kind of target), decoded back by an argmax refined with
a parabola through the log of the peak and its two neighbours on each axis, which is exact for a
Gaussian.

Also here: random training batches with horizontal flips (left and right keypoints swapped) and zoom/shift
jitter that move the keypoints with the pixels, and :func:`stick_figures`, a synthetic data set of 2D poses
drawn along the keypoint tree (for tests and quick demos without the renderer).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bodies.skeleton import FLIP_PERMUTATION, KEYPOINT_PARENTS, NUM_KEYPOINTS

__all__ = [
    "Batch", "as_tensors", "cell_coordinates", "decode_heatmaps", "gaussian_heatmaps", "horizontal_flip", "sample_batch",
    "scale_translate", "stick_figures", "with_background",
]


def _check_points(keypoints: Tensor, visible: Tensor | None) -> None:
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must be [B, K, 2], got {tuple(keypoints.shape)}")
    if visible is not None and visible.shape != keypoints.shape[:2]:
        raise ValueError(f"visible must be [B, K] = {tuple(keypoints.shape[:2])}, got {tuple(visible.shape)}")


def cell_coordinates(keypoints: Tensor, stride: int) -> Tensor:  # [..., 2] pixels -> [..., 2] cell indices
    """The continuous heatmap-cell index of image points: ``x / stride - 0.5`` (cell ``u`` centred at ``(u + 0.5) s``)."""
    return keypoints / stride - 0.5


def gaussian_heatmaps(
    keypoints: Tensor,  # [B, K, 2] image pixels
    size: int,
    stride: int,
    sigma: float,
    visible: Tensor | None = None,  # [B, K] bool; invisible keypoints get an all-zero map
) -> Tensor:  # [B, K, size, size]
    """Target belief maps ``b*_k(u, v) = exp(-((u - x_k)^2 + (v - y_k)^2) / (2 sigma^2))`` in cell units."""
    _check_points(keypoints, visible)
    if sigma <= 0 or stride < 1 or size < 1:
        raise ValueError(f"need sigma > 0, stride >= 1 and size >= 1, got {sigma}, {stride}, {size}")
    centre = cell_coordinates(keypoints.float(), stride)  # [B, K, 2]
    grid = torch.arange(size, dtype=torch.float32, device=keypoints.device)
    gx = torch.exp(-((grid - centre[..., 0:1]) ** 2) / (2 * sigma**2))  # [B, K, size] along x
    gy = torch.exp(-((grid - centre[..., 1:2]) ** 2) / (2 * sigma**2))  # [B, K, size] along y
    maps = gy[..., :, None] * gx[..., None, :]  # [B, K, size(y), size(x)]
    if visible is not None:
        maps = maps * visible[..., None, None].to(maps.dtype)
    return maps


def with_background(heatmaps: Tensor) -> Tensor:  # [B, K, h, w] -> [B, K + 1, h, w]
    """Append the background channel ``1 - max_k b_k`` (CPM's extra "no part here" map)."""
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be [B, K, h, w], got {tuple(heatmaps.shape)}")
    return torch.cat([heatmaps, 1.0 - heatmaps.amax(1, keepdim=True)], dim=1)


def decode_heatmaps(heatmaps: Tensor, stride: int, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Keypoints ``[B, K, 2]`` in image pixels and peak scores ``[B, K]`` from belief maps ``[B, K, h, w]``.

    Argmax, then on each axis the vertex of the parabola through ``log max(b, eps)`` at the peak and its two
    neighbours, ``delta = (l_- - l_+) / (2 (l_- - 2 l_0 + l_+))`` clamped to half a cell (no refinement on a
    border or a flat peak); the cell index is mapped back to pixels by ``(u + 0.5) stride``.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be [B, K, h, w], got {tuple(heatmaps.shape)}")
    b, k, h, w = heatmaps.shape
    flat = heatmaps.detach().float().reshape(b, k, h * w)
    scores, index = flat.max(-1)  # [B, K]
    v, u = index // w, index % w
    logs = torch.log(heatmaps.detach().float().clamp_min(eps))
    padded = F.pad(logs, (1, 1, 1, 1), value=float("nan"))  # a border peak gets a nan neighbour -> no shift
    bi = torch.arange(b)[:, None].expand(b, k)
    ki = torch.arange(k)[None, :].expand(b, k)

    def shift(minus: Tensor, centre: Tensor, plus: Tensor) -> Tensor:
        curvature = minus - 2 * centre + plus
        delta = 0.5 * (minus - plus) / curvature
        ok = torch.isfinite(delta) & (curvature < 0)
        return torch.where(ok, delta.clamp(-0.5, 0.5), torch.zeros_like(delta))

    centre = padded[bi, ki, v + 1, u + 1]
    dx = shift(padded[bi, ki, v + 1, u], centre, padded[bi, ki, v + 1, u + 2])
    dy = shift(padded[bi, ki, v, u + 1], centre, padded[bi, ki, v + 2, u + 1])
    cells = torch.stack([u.float() + dx, v.float() + dy], dim=-1)  # [B, K, 2]
    return (cells + 0.5) * stride, scores


# ---------------------------------------------------------------------- batches and augmentation
class Batch(NamedTuple):
    """A training batch: float images in [0, 1] and the keypoints that go with them."""

    images: Tensor  # [B, 3, H, W] float
    keypoints: Tensor  # [B, K, 2] pixels
    visible: Tensor  # [B, K] bool


def horizontal_flip(batch: Batch, flip: Tensor) -> Batch:
    """Mirror the images where ``flip`` ``[B]`` is true: ``x -> W - x`` and left/right keypoints swapped."""
    images, keypoints, visible = batch
    width = images.shape[-1]
    mirrored = keypoints[:, list(FLIP_PERMUTATION)].clone()
    mirrored[..., 0] = width - mirrored[..., 0]
    f = flip.to(images.device)
    return Batch(
        torch.where(f[:, None, None, None], images.flip(-1), images),
        torch.where(f[:, None, None], mirrored, keypoints),
        torch.where(f[:, None], visible[:, list(FLIP_PERMUTATION)], visible),
    )


def scale_translate(batch: Batch, scale: Tensor, shift: Tensor) -> Batch:
    """Zoom each image by ``scale`` ``[B]`` about its centre and move it by ``shift`` ``[B, 2]`` pixels (bilinear;
    the border pixels extend outwards); keypoints follow ``x' = c + scale (x - c) + shift`` and those that leave
    the image become invisible."""
    images, keypoints, visible = batch
    b, _, h, w = images.shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    c = w / 2.0
    # output point p (normalised, align_corners=False) samples input (p - t) / scale, with t = 2 shift / W
    t = 2.0 * shift.float() / w  # [B, 2]
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = -t / scale[:, None]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    moved = c + scale[:, None, None] * (keypoints - c) + shift[:, None, :]
    inside = ((moved >= 0) & (moved < w)).all(-1)
    return Batch(warped, moved, visible & inside)


def sample_batch(
    images: Tensor,  # [N, H, W, 3] uint8
    keypoints: Tensor,  # [N, K, 2]
    visible: Tensor,  # [N, K] bool
    batch_size: int,
    generator: torch.Generator,
    flip: bool = True,
    scale_jitter: float = 0.0,
    shift_jitter: float = 0.0,
    device: torch.device | str = "cpu",
) -> Batch:
    """A random batch drawn with ``generator``: flipped with probability 1/2 (``flip``), zoomed by a factor
    uniform in ``[1 - scale_jitter, 1 + scale_jitter]`` and moved by up to ``shift_jitter`` x the image size."""
    index = torch.randint(len(images), (batch_size,), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5
    scale = 1.0 + scale_jitter * (2 * torch.rand(batch_size, generator=generator) - 1)
    shift = shift_jitter * images.shape[2] * (2 * torch.rand(batch_size, 2, generator=generator) - 1)
    batch = Batch(
        images[index].to(device).permute(0, 3, 1, 2).float() / 255.0,
        keypoints[index].to(device).float(),
        visible[index].to(device),
    )
    if flip:
        batch = horizontal_flip(batch, flips)
    if scale_jitter > 0 or shift_jitter > 0:
        batch = scale_translate(batch, scale.to(device), shift.to(device))
    return batch


def as_tensors(images: np.ndarray, keypoints: np.ndarray, visible: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """Check the data arrays (``uint8 [N, H, W, 3]``, ``[N, K, 2]``, ``bool [N, K]``) and wrap them as tensors."""
    images, keypoints, visible = np.asarray(images), np.asarray(keypoints), np.asarray(visible)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, H, 3], got {images.dtype} {images.shape}")
    if keypoints.shape[:1] != images.shape[:1] or keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must be [N={len(images)}, K, 2], got {keypoints.shape}")
    if visible.shape != keypoints.shape[:2]:
        raise ValueError(f"visible must be [N, K] = {keypoints.shape[:2]}, got {visible.shape}")
    return (torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(keypoints.astype(np.float32)),
            torch.from_numpy(visible.astype(bool)))


# ---------------------------------------------------------------------- synthetic stick figures
#: Bone lengths (fraction of the image size) from each keypoint's parent, and the mean direction (degrees,
#: image axes: 0 = right, 90 = down) with its spread; the person faces the camera (its right at image left).
_BONES = {  # keypoint: (length, mean angle, spread)
    0: (0.12, -90, 15), 2: (0.10, 180, 10), 3: (0.14, 110, 60), 4: (0.13, 110, 80), 5: (0.10, 0, 10),
    6: (0.14, 70, 60), 7: (0.13, 70, 80), 8: (0.30, 105, 6), 9: (0.17, 95, 25), 10: (0.16, 90, 25),
    11: (0.30, 75, 6), 12: (0.17, 85, 25), 13: (0.16, 90, 25),
}
#: One colour per keypoint type (left and right share it, so a mirrored figure is still a valid figure).
_COLOURS = np.array([[255, 255, 255], [255, 200, 0], [255, 60, 60], [60, 255, 60], [60, 120, 255],
                     [255, 60, 60], [60, 255, 60], [60, 120, 255], [255, 0, 255], [0, 255, 255],
                     [255, 140, 0], [255, 0, 255], [0, 255, 255], [255, 140, 0]], dtype=np.float32)


def stick_figures(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic 2D poses for tests and demos: ``n`` images ``uint8 [n, size, size, 3]`` of stick figures
    drawn along ``skeleton.KEYPOINT_PARENTS`` (grey bones, a coloured disc per keypoint on a noisy
    background), their keypoints ``[n, 14, 2]`` (pixels) and visibility (inside the image)."""
    rng = np.random.default_rng(seed)
    scale = size * rng.uniform(0.75, 1.05, n)  # [n]
    points = np.zeros((n, NUM_KEYPOINTS, 2), dtype=np.float64)
    points[:, 1] = np.stack([size * rng.uniform(0.4, 0.6, n), size * rng.uniform(0.22, 0.32, n)], -1)
    for k in range(NUM_KEYPOINTS):  # parents come first in KEYPOINT_PARENTS's order
        if KEYPOINT_PARENTS[k] < 0:
            continue
        length, mean, spread = _BONES[k]
        angle = np.deg2rad(mean + spread * rng.uniform(-1, 1, n))
        step = (length * scale * rng.uniform(0.85, 1.15, n))[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
        points[:, k] = points[:, KEYPOINT_PARENTS[k]] + step
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)[:, None] + 0.5  # [1, size, size] each: pixel centres
    p32 = points.astype(np.float32).transpose(1, 2, 0)[..., None, None]  # [14, 2, n, 1, 1]
    images = rng.uniform(0, 60, (n, 1, 1, 3)).astype(np.float32) + rng.normal(0, 12, (n, size, size, 3)).astype(np.float32)
    width2 = (0.025 * scale[:, None, None]).astype(np.float32) ** 2  # [n, 1, 1]
    for k in range(NUM_KEYPOINTS):
        if KEYPOINT_PARENTS[k] < 0:
            continue
        (ax, ay), (bx, by) = p32[KEYPOINT_PARENTS[k]], p32[k]  # [n, 1, 1] each
        ux, uy = bx - ax, by - ay
        t = np.clip(((xs - ax) * ux + (ys - ay) * uy) / np.maximum(ux**2 + uy**2, 1e-9), 0, 1)  # [n, size, size]
        images[(xs - ax - t * ux) ** 2 + (ys - ay - t * uy) ** 2 < width2] = 150.0
    radius2 = (0.04 * scale[:, None, None]).astype(np.float32) ** 2
    for k in range(NUM_KEYPOINTS):
        images[(xs - p32[k, 0]) ** 2 + (ys - p32[k, 1]) ** 2 < radius2] = _COLOURS[k]
    visible = ((points >= 0) & (points < size)).all(-1)
    return np.clip(images, 0, 255).astype(np.uint8), points.astype(np.float32), visible
