"""Two-dimensional toy densities for the density models of the later chapters (flows, VAEs, GANs, diffusion).

Five samplers, each with its log-density so a model's likelihood can be compared with the truth:

* ``"8gaussians"``   8 isotropic Gaussians (std 0.1) on the circle of radius 2, equal weights: exact;
* ``"25gaussians"``  25 isotropic Gaussians (std 0.1) on the grid ``{-2, ..., 2}^2``, equal weights: exact;
* ``"checkerboard"`` uniform on the 8 unit squares ``[a, a+1) x [b, b+1)`` of ``[-2, 2)^2`` with ``a + b``
  even: exactly ``log(1/8)`` there and ``-inf`` elsewhere;
* ``"moons"``        two half circles (radius 1, centred as scikit-learn's ``make_moons``, then shifted to
  mean ~0) plus Gaussian noise (std 0.1);
* ``"swissroll"``    the spiral ``(t cos t, t sin t) / 5``, ``t ~ U[1.5 pi, 4.5 pi]``, plus Gaussian noise
  (std 0.1).

A curve with noise has the density ``p(x) = E_t N(x; c(t), s^2 I)``, an integral over the curve parameter
``t`` without closed form; ``log_density`` evaluates it with the midpoint rule on ``CURVE_NODES`` nodes
(node spacing far below the noise, so the error is negligible; see the tests).

Every sampler draws only from the ``torch.Generator`` it is given (or one seeded with ``seed``):
same seed, same points.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

ToyName = Literal["moons", "8gaussians", "25gaussians", "swissroll", "checkerboard"]
TOYS: tuple[str, ...] = get_args(ToyName)

MIXTURE_STD = 0.1
"""Standard deviation of every component of the Gaussian mixtures."""
RING_RADIUS = 2.0
"""Radius of the circle that carries the 8 Gaussians."""
CURVE_NOISE = 0.1
"""Standard deviation of the Gaussian noise around the moons and the swiss roll."""
CURVE_NODES = 2048
"""Midpoint-rule nodes per curve in the log-density of the moons and the swiss roll."""
MOONS_SHIFT = (0.5, 0.25)
"""Subtracted from scikit-learn's moons so that their mean is close to the origin."""
SWISS_T = (1.5 * math.pi, 4.5 * math.pi)
"""Range of the swiss roll's curve parameter ``t``."""
SWISS_SCALE = 0.2
"""The swiss roll is ``SWISS_SCALE * (t cos t, t sin t)``."""


def _check_name(name: str) -> None:
    if name not in TOYS:
        raise ValueError(f"name must be one of {', '.join(TOYS)}, got {name!r}")


def _check_points(x: Tensor) -> None:  # x: [N, 2]
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must be [N, 2], got {tuple(x.shape)}")


def mixture_means(name: ToyName) -> Tensor:  # -> [K, 2] float64
    """The component means of ``8gaussians`` (on the circle) or ``25gaussians`` (on the grid)."""
    if name == "8gaussians":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return RING_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    if name == "25gaussians":
        grid = torch.arange(-2, 3, dtype=torch.float64)
        return torch.cartesian_prod(grid, grid)
    raise ValueError(f"name must be 8gaussians or 25gaussians, got {name!r}")


def moons_curve(t: Tensor, lower: bool) -> Tensor:  # t: [T] in [0, pi] -> [T, 2]
    """A point of the upper moon ``(cos t, sin t)`` or the lower ``(1 - cos t, 0.5 - sin t)``, shifted."""
    if lower:
        points = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], dim=-1)
    else:
        points = torch.stack([torch.cos(t), torch.sin(t)], dim=-1)
    return points - torch.tensor(MOONS_SHIFT, dtype=t.dtype)


def swiss_curve(t: Tensor) -> Tensor:  # t: [T] in SWISS_T -> [T, 2]
    """The swiss roll's spiral ``SWISS_SCALE * (t cos t, t sin t)``."""
    return SWISS_SCALE * torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=-1)


def sample(name: ToyName, n: int, generator: torch.Generator | None = None, seed: int = 0) -> Tensor:  # -> [n, 2]
    """``n`` float32 points of the toy density ``name``, drawn from ``generator`` (or a fresh one seeded
    with ``seed``)."""
    _check_name(name)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    f64 = torch.float64
    if name in ("8gaussians", "25gaussians"):
        means = mixture_means(name)
        k = torch.randint(0, len(means), (n,), generator=g)
        x = means[k] + MIXTURE_STD * torch.randn(n, 2, generator=g, dtype=f64)
    elif name == "checkerboard":
        x1 = 4 * torch.rand(n, generator=g, dtype=f64) - 2
        column = torch.floor(x1)
        row = -2 + 2 * torch.randint(0, 2, (n,), generator=g) + torch.remainder(column, 2)
        x = torch.stack([x1, row + torch.rand(n, generator=g, dtype=f64)], dim=1)
    elif name == "moons":
        t = math.pi * torch.rand(n, generator=g, dtype=f64)
        lower = torch.randint(0, 2, (n,), generator=g).bool()
        x = torch.where(lower[:, None], moons_curve(t, True), moons_curve(t, False))
        x = x + CURVE_NOISE * torch.randn(n, 2, generator=g, dtype=f64)
    else:  # swissroll
        t = SWISS_T[0] + (SWISS_T[1] - SWISS_T[0]) * torch.rand(n, generator=g, dtype=f64)
        x = swiss_curve(t) + CURVE_NOISE * torch.randn(n, 2, generator=g, dtype=f64)
    return x.float()


def gaussian_mixture_log_density(x: Tensor, means: Tensor, std: float) -> Tensor:  # x: [N, 2], means: [K, 2] -> [N]
    """``log (1/K) sum_k N(x; mu_k, std^2 I)`` in two dimensions (equal weights)."""
    _check_points(x)
    if means.ndim != 2 or means.shape[1] != 2:
        raise ValueError(f"means must be [K, 2], got {tuple(means.shape)}")
    out = torch.empty(len(x), dtype=torch.float64)
    for start in range(0, len(x), 4096):  # chunks keep the [chunk, K] matrix small
        chunk = x[start:start + 4096].to(torch.float64)
        sq = torch.cdist(chunk, means.to(torch.float64)).square()
        log_n = -sq / (2 * std**2) - math.log(2 * math.pi * std**2)
        out[start:start + 4096] = torch.logsumexp(log_n, dim=1) - math.log(len(means))
    return out


def _curve_nodes(name: ToyName) -> list[Tensor]:  # -> curves, each [CURVE_NODES, 2]
    """Midpoint-rule nodes ``c(t_i)`` of each curve of ``moons`` or ``swissroll`` (equal weights)."""
    u = (torch.arange(CURVE_NODES, dtype=torch.float64) + 0.5) / CURVE_NODES
    if name == "moons":
        return [moons_curve(math.pi * u, False), moons_curve(math.pi * u, True)]
    return [swiss_curve(SWISS_T[0] + (SWISS_T[1] - SWISS_T[0]) * u)]


def log_density(name: ToyName, x: Tensor) -> Tensor:  # x: [N, 2] -> [N] float64
    """``log p(x)`` of the toy density ``name`` (exact for the mixtures and the checkerboard; the midpoint
    rule over the curve parameter for the moons and the swiss roll)."""
    _check_name(name)
    _check_points(x)
    x = x.to(torch.float64)
    if name in ("8gaussians", "25gaussians"):
        return gaussian_mixture_log_density(x, mixture_means(name), MIXTURE_STD)
    if name == "checkerboard":
        cells = torch.floor(x)
        inside = ((x >= -2) & (x < 2)).all(dim=1) & (torch.remainder(cells.sum(dim=1), 2) == 0)
        return torch.where(inside, torch.tensor(math.log(1 / 8), dtype=torch.float64), -math.inf)
    # a noisy curve is a mixture of its nodes' Gaussians: the moons weigh each curve 1/2
    nodes = torch.cat(_curve_nodes(name))
    return gaussian_mixture_log_density(x, nodes, CURVE_NOISE)
