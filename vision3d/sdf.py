"""Analytic signed distance functions: the exact fields of simple solids, negative inside.

Notes §12 (DeepSDF, Park et al. 2019): a signed distance function ``f(x)`` is the distance from ``x``
to the surface ``S = {f = 0}``, negative inside and positive outside. An exact SDF satisfies the
Eikonal equation ``||grad f(x)|| = 1`` everywhere except on its singular set (points with more than
one closest surface point, e.g. the centre of a sphere); §12.2's Eikonal term (Gropp et al. 2020,
IGR) pushes a network towards that property. These closed forms are the ground truth that tests of
marching cubes, ray marching and the Eikonal term compare against.

Every function takes points ``x`` of shape ``[..., 3]`` as a numpy array or a torch tensor and
returns distances of shape ``[...]`` of the same kind, dtype and device, so torch inputs keep their
autograd graph. Shape parameters (radius, centre, half extents) are plain Python numbers or tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Floor under squared norms before the square root: keeps the torch gradient finite (zero) where a
#: norm vanishes exactly (the box's inside, a sphere's centre); sqrt(1e-30) = 1e-15 changes no value.
_TINY = 1e-30


def _check_points(x: np.ndarray | torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape [..., 3], got {tuple(x.shape)}")


def _like(value: float | Sequence[float], x: Array) -> Array:
    """``value`` as an array/tensor of ``x``'s kind, dtype and device (for broadcasting against x)."""
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return np.asarray(value, dtype=x.dtype)


def _float(x: Array) -> Array:
    """Integer numpy points become float64; float arrays and tensors pass through unchanged."""
    if isinstance(x, np.ndarray) and not np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float64)
    return x


def _norm(v: Array) -> Array:  # [..., D] -> [...]
    """Euclidean norm over the last axis, with a finite gradient at 0 for torch inputs."""
    return (v * v).sum(-1).clip(min=_TINY) ** 0.5


def _max_last(v: Array) -> Array:  # [..., D] -> [...]
    return v.amax(-1) if isinstance(v, torch.Tensor) else v.max(-1)


def sphere_sdf(
    x: Array,  # [..., 3]
    radius: float = 0.5,
    centre: Sequence[float] = (0.0, 0.0, 0.0),
) -> Array:  # [...]
    """Sphere: ``f(x) = ||x - c|| - r``. Singular only at the centre ``c``."""
    _check_points(x)
    if radius <= 0:
        raise ValueError(f"radius: expected a positive number, got {radius}")
    x = _float(x)
    return _norm(x - _like(centre, x)) - radius


def torus_sdf(
    x: Array,  # [..., 3]
    major_radius: float = 0.35,
    minor_radius: float = 0.15,
) -> Array:  # [...]
    """Torus around the z axis, centred at the origin, tube radius ``r`` about a circle of radius ``R``.

    ``q = (sqrt(x^2 + y^2) - R, z)``, ``f(x) = ||q|| - r``: the distance to the core circle minus the
    tube radius. Singular on the z axis and on the core circle itself.
    """
    _check_points(x)
    if not 0 < minor_radius < major_radius:
        raise ValueError(
            f"minor_radius, major_radius: expected 0 < minor_radius < major_radius, got {minor_radius}, {major_radius}"
        )
    x = _float(x)
    radial = _norm(x[..., :2]) - major_radius  # signed distance to the core circle, within its plane
    return (radial * radial + x[..., 2] * x[..., 2]).clip(min=_TINY) ** 0.5 - minor_radius


def box_sdf(
    x: Array,  # [..., 3]
    half_extents: Sequence[float] = (0.4, 0.3, 0.2),
    centre: Sequence[float] = (0.0, 0.0, 0.0),
) -> Array:  # [...]
    """Axis-aligned box with half extents ``b``: exact SDF, corners and edges included.

    With ``q = |x - c| - b`` (per axis): ``f(x) = ||max(q, 0)|| + min(max_i q_i, 0)``. Outside, the
    first term is the distance to the nearest face, edge or corner; inside, the second is minus the
    distance to the nearest face. Singular on the medial planes inside (where two faces are equally
    near).
    """
    _check_points(x)
    if len(half_extents) != 3 or min(half_extents) <= 0:
        raise ValueError(f"half_extents: expected three positive numbers, got {tuple(half_extents)}")
    x = _float(x)
    q = abs(x - _like(centre, x)) - _like(half_extents, x)
    return _norm(q.clip(min=0.0)) + _max_last(q).clip(max=0.0)


def capsule_sdf(
    x: Array,  # [..., 3]
    a: Sequence[float] = (0.0, 0.0, -0.25),
    b: Sequence[float] = (0.0, 0.0, 0.25),
    radius: float = 0.2,
) -> Array:  # [...]
    """Capsule: all points within ``radius`` of the segment ``[a, b]``.

    ``h = clip(<x - a, b - a> / ||b - a||^2, 0, 1)``, ``f(x) = ||x - a - h (b - a)|| - r``: the
    distance to the closest point of the segment minus the radius. Singular on the segment.
    """
    _check_points(x)
    if radius <= 0:
        raise ValueError(f"radius: expected a positive number, got {radius}")
    ab_np = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    length2 = float(ab_np @ ab_np)
    if length2 == 0.0:
        raise ValueError(f"a, b: expected two different end points, got {tuple(a)} twice")
    x = _float(x)
    ax = x - _like(a, x)
    ab = _like(ab_np, x)
    h = ((ax * ab).sum(-1) / length2).clip(min=0.0, max=1.0)
    return _norm(ax - h[..., None] * ab) - radius
