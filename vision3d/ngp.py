"""The fast path of a NeRF fit: a multiresolution hash encoding and an occupancy grid (Müller et al., 2022,
"Instant Neural Graphics Primitives with a Multiresolution Hash Encoding"), in plain PyTorch for the CPU.

* :func:`hash_encode` -- ``L`` grids of vertices at resolutions ``N_l = floor(N_min b^l)``, ``b`` chosen so
  that ``N_{L-1} = N_max``; each vertex owns ``F`` trainable features in a table of ``T`` rows per level. A
  point gets, per level, the trilinear interpolation (:func:`trilinear_weights`) of its cell's 8 corners.
  Levels with at most ``T`` vertices index their table directly (:func:`dense_index`, no collisions); finer
  levels use the paper's spatial hash (:func:`spatial_hash`, xor of the coordinates times large primes,
  modulo ``T``), whose collisions the gradient averages out.
* :class:`HashNeRF` -- the encoding, a one-hidden-layer density MLP whose first output is the raw density and
  the rest a geometry feature, and a two-hidden-layer colour MLP of that feature and the encoded view
  direction (the notes' ``gamma(d)``; the paper uses spherical harmonics). Same interface as
  :class:`vision3d.nerf.NeRFNetwork`: ``forward(points, dirs) -> (sigma, rgb)`` and ``density(points)``.
* :class:`OccupancyGrid` -- a coarse boolean grid over the scene box (instant-ngp §4 / nerfacc): every few
  steps each cell's density EMA becomes ``max(decay * ema, sigma(random point in the cell))``
  (:func:`ema_max_update`) and the cells above a threshold are occupied (:func:`occupancy_mask`);
  :func:`march` places samples at a fixed step and keeps only those in occupied cells, so the network is
  evaluated where the scene is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision3d.volume import positional_encoding

#: The paper's hash primes for x, y, z (the first is 1: consecutive x stay coherent in memory).
PRIMES = (1, 2654435761, 805459861)

#: The 8 corners of a unit cell, ``[8, 3]`` offsets in {0, 1}; corner ``k`` has bit ``d`` of ``k`` as offset ``d``.
CORNERS = torch.tensor([[(k >> d) & 1 for d in range(3)] for k in range(8)], dtype=torch.long)


def level_resolutions(levels: int, n_min: int, n_max: int) -> list[int]:
    """``N_l = floor(N_min b^l)`` with ``b = exp((ln N_max - ln N_min) / (L - 1))`` (the paper's eq. 2-3)."""
    if levels < 1 or not 1 <= n_min <= n_max:
        raise ValueError(f"levels must be >= 1 and 1 <= n_min <= n_max, got {levels}, {n_min}, {n_max}")
    if levels == 1:
        return [n_min]
    b = math.exp((math.log(n_max) - math.log(n_min)) / (levels - 1))
    # the small slack keeps N_{L-1} = N_max despite rounding in b^l
    return [math.floor(n_min * b**level + 1e-6) for level in range(levels)]


def is_dense(resolution: int, table_size: int) -> bool:
    """Whether a level's ``(N + 1)^3`` vertices fit its table, so that it indexes it without a hash."""
    return (resolution + 1) ** 3 <= table_size


def _corner_product(a: Tensor, op: Callable[[Tensor, Tensor], Tensor]) -> Tensor:  # [..., 3, 2] -> [..., 8]
    """``op`` over the 8 corners of per-axis values ``a[..., d, c]`` (axis ``d``, offset ``c``), in the order of
    :data:`CORNERS` (corner ``k = x + 2 y + 4 z``): a separable form, 8 values per point instead of 24."""
    x, y, z = a[..., 0, :], a[..., 1, :], a[..., 2, :]
    out = op(op(z[..., :, None, None], y[..., None, :, None]), x[..., None, None, :])  # [..., z, y, x]
    return out.reshape(*a.shape[:-2], 8)


def trilinear_weights(frac: Tensor) -> Tensor:  # [..., 3] in [0, 1] -> [..., 8]
    """Weights of the 8 corners of a cell (order :data:`CORNERS`) at fractional position ``frac``:
    ``w_k = prod_d (frac_d if corner_d else 1 - frac_d)``; they are non-negative and sum to 1."""
    return _corner_product(torch.stack([1.0 - frac, frac], dim=-1), torch.mul)


def spatial_hash(corner: Tensor, table_size: int) -> Tensor:  # [..., 3] long -> [...] long in [0, T)
    """``(x pi_1 xor y pi_2 xor z pi_3) mod T`` (the paper's eq. 4), in int64 (no overflow for ``N < 2^31``)."""
    h = corner[..., 0] * PRIMES[0]
    h = torch.bitwise_xor(h, corner[..., 1] * PRIMES[1])
    h = torch.bitwise_xor(h, corner[..., 2] * PRIMES[2])
    return _modulo(h, table_size)


def dense_index(corner: Tensor, resolution: int) -> Tensor:  # [..., 3] long -> [...] long in [0, (N + 1)^3)
    """Row-major index ``x + (N + 1) (y + (N + 1) z)`` of a vertex of a level with ``N`` cells per side."""
    side = resolution + 1
    return corner[..., 0] + side * (corner[..., 1] + side * corner[..., 2])


def _modulo(h: Tensor, table_size: int) -> Tensor:
    """``h mod T`` of non-negative ``h``; a mask when ``T`` is a power of two (int64 division is slow on CPUs)."""
    return torch.bitwise_and(h, table_size - 1) if table_size & (table_size - 1) == 0 else torch.remainder(h, table_size)


def _corner_rows(low: Tensor, resolutions: list[int], table_size: int) -> Tensor:  # [N, L, 3] -> [N, L, 8]
    """Table rows of the 8 corners around the lower corners ``low``: :func:`dense_index` on dense levels,
    :func:`spatial_hash` on the others (the same numbers, computed per axis and combined per corner).
    The resolutions grow, so the dense levels come first."""
    corners = torch.stack([low, low + 1], dim=-1)  # [N, L, 3, 2]
    n_dense = sum(is_dense(r, table_size) for r in resolutions)
    parts = []
    if n_dense:
        side = torch.tensor(resolutions[:n_dense], device=low.device)[:, None, None] + 1  # [Ld, 1, 1]
        strides = torch.cat([torch.ones_like(side), side, side * side], dim=1)  # [Ld, 3, 1]
        parts.append(_corner_product(corners[:, :n_dense] * strides, torch.add))
    if n_dense < len(resolutions):
        primes = torch.tensor(PRIMES, device=low.device)[:, None]  # [3, 1]
        parts.append(_modulo(_corner_product(corners[:, n_dense:] * primes, torch.bitwise_xor), table_size))
    return torch.cat(parts, dim=1)


def hash_encode(
    x: Tensor,  # [N, 3] in [0, 1]^3 (clamped)
    tables: Tensor,  # [L, T, F] the feature tables
    resolutions: list[int],  # [L] cells per side of each level
) -> Tensor:  # [N, L F]
    """The multiresolution hash encoding: per level ``l``, the trilinear interpolation of the features of the
    8 vertices around ``x N_l``, from ``tables[l]`` indexed densely or through :func:`spatial_hash`;
    levels concatenated (level-major, ``out.reshape(N, L, F)[:, l]`` is level ``l``)."""
    levels, table_size, features = tables.shape
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must have shape [N, 3], got {tuple(x.shape)}")
    if len(resolutions) != levels:
        raise ValueError(f"resolutions must have one entry per level of tables, {levels}, got {len(resolutions)}")
    res = torch.tensor(resolutions, dtype=x.dtype, device=x.device)  # [L]
    pos = x.clamp(0.0, 1.0)[:, None, :] * res[:, None]  # [N, L, 3] in vertex units
    # the cell's lower corner; x = 1 falls in the last cell (frac = 1) instead of a cell past the grid
    low = torch.minimum(pos.floor(), (res - 1)[:, None])  # [N, L, 3]
    frac = pos - low
    rows = _corner_rows(low.long(), resolutions, table_size)  # [N, L, 8]
    rows = rows + table_size * torch.arange(levels, device=x.device)[:, None]  # rows of the flat table
    feats = tables.reshape(levels * table_size, features)[rows]  # [N, L, 8, F]
    w = trilinear_weights(frac)  # [N, L, 8]
    return torch.einsum("nlc,nlcf->nlf", w, feats).reshape(x.shape[0], levels * features)


class HashEncoding(nn.Module):
    """:func:`hash_encode` of points in the box ``[-bound, bound]^3`` with trainable tables ``[L, T, F]``
    (initialised uniform in ``[-1e-4, 1e-4]`` as the paper)."""

    def __init__(self, bound: float, levels: int = 16, features: int = 2, table_size: int = 2**15,
                 n_min: int = 16, n_max: int = 256) -> None:
        super().__init__()
        if bound <= 0 or features < 1 or table_size < 8:
            raise ValueError(f"bound must be > 0, features >= 1, table_size >= 8; got {bound}, {features}, "
                             f"{table_size}")
        self.bound = bound
        self.resolutions = level_resolutions(levels, n_min, n_max)
        self.tables = nn.Parameter(torch.empty(levels, table_size, features).uniform_(-1e-4, 1e-4))

    @property
    def out_dim(self) -> int:
        return self.tables.shape[0] * self.tables.shape[2]

    def forward(self, points: Tensor) -> Tensor:  # [N, 3] -> [N, L F]
        return hash_encode((points + self.bound) / (2 * self.bound), self.tables, self.resolutions)


class HashNeRF(nn.Module):
    """A radiance field on a hash encoding (instant-ngp's NeRF): ``enc(x)`` -> density MLP (one hidden layer of
    ``hidden``) -> raw density and a ``geo_features`` vector; ``[geo, gamma(d)]`` -> colour MLP (two hidden
    layers) -> sigmoid colour. The density never sees the direction."""

    def __init__(self, bound: float, levels: int = 16, features: int = 2, table_size: int = 2**15, n_min: int = 16,
                 n_max: int = 256, hidden: int = 64, geo_features: int = 15, dir_levels: int = 4,
                 density_activation: Literal["softplus", "relu"] = "softplus", density_bias: float = -1.0) -> None:
        super().__init__()
        self.encoding = HashEncoding(bound, levels, features, table_size, n_min, n_max)
        self.dir_levels, self.activation, self.density_bias = dir_levels, density_activation, density_bias
        self.density_mlp = nn.Sequential(nn.Linear(self.encoding.out_dim, hidden), nn.ReLU(),
                                         nn.Linear(hidden, 1 + geo_features))
        self.colour_mlp = nn.Sequential(nn.Linear(geo_features + 3 + 6 * dir_levels, hidden), nn.ReLU(),
                                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def _sigma_geo(self, points: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3] -> [N], [N, geo]
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape [N, 3], got {tuple(points.shape)}")
        h = self.density_mlp(self.encoding(points))
        raw = h[:, 0] + self.density_bias
        return (F.softplus(raw) if self.activation == "softplus" else F.relu(raw)), h[:, 1:]

    def density(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """``sigma(x) >= 0`` alone (no colour branch)."""
        return self._sigma_geo(points)[0]

    def forward(self, points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3], [N, 3] unit
        """Density ``[N]`` and colour ``[N, 3]`` at ``points`` seen along the unit directions ``dirs``."""
        if dirs.shape != points.shape:
            raise ValueError(f"dirs must have the shape of points, {tuple(points.shape)}, got {tuple(dirs.shape)}")
        sigma, geo = self._sigma_geo(points)
        gamma_d = positional_encoding(dirs, self.dir_levels, include_input=True)
        return sigma, torch.sigmoid(self.colour_mlp(torch.cat([geo, gamma_d], dim=-1)))


# --- occupancy grid -----------------------------------------------------------------------------------------


def cell_index(points: Tensor, resolution: int, bound: float) -> tuple[Tensor, Tensor]:  # [N, 3] -> [N], [N]
    """Flat index ``i + G (j + G k)`` of the grid cell holding each point and whether it is inside the box."""
    u = (points + bound) / (2 * bound) * resolution  # [N, 3] in cell units
    inside = ((u >= 0) & (u < resolution)).all(dim=-1)
    ijk = u.floor().long().clamp(0, resolution - 1)
    return ijk[:, 0] + resolution * (ijk[:, 1] + resolution * ijk[:, 2]), inside


def ema_max_update(ema: Tensor, density: Tensor, decay: float) -> Tensor:
    """instant-ngp's grid update: ``max(decay * ema, density)`` (a decaying running maximum per cell)."""
    return torch.maximum(decay * ema, density)


def occupancy_mask(ema: Tensor, threshold: float) -> Tensor:
    """Occupied cells: ``ema > min(threshold, mean(ema))`` (nerfacc's rule: a scene whose density is all low
    early in the fit keeps its denser half)."""
    return ema > torch.clamp(ema.mean(), max=threshold)


class OccupancyGrid(nn.Module):
    """A ``G^3`` boolean grid over ``[-bound, bound]^3`` (buffers, so checkpoints hold it); all cells start
    occupied. :meth:`update` refreshes it from a density function, :meth:`occupied` looks points up."""

    def __init__(self, bound: float, resolution: int = 32, decay: float = 0.95, threshold: float = 0.01) -> None:
        super().__init__()
        if bound <= 0 or resolution < 1 or not 0.0 <= decay < 1.0 or threshold < 0:
            raise ValueError(f"bound > 0, resolution >= 1, decay in [0, 1), threshold >= 0 expected; got {bound}, "
                             f"{resolution}, {decay}, {threshold}")
        self.bound, self.resolution, self.decay, self.threshold = bound, resolution, decay, threshold
        self.register_buffer("density_ema", torch.zeros(resolution**3))
        self.register_buffer("mask", torch.ones(resolution**3, dtype=torch.bool))

    def occupied(self, points: Tensor) -> Tensor:  # [N, 3] -> [N] bool; False outside the box
        index, inside = cell_index(points, self.resolution, self.bound)
        return self.mask[index] & inside

    @torch.no_grad()
    def update(self, density: Callable[[Tensor], Tensor], generator: torch.Generator | None = None,
               chunk: int = 65536) -> None:
        """One update: the density at one uniform random point per cell, :func:`ema_max_update`, then
        :func:`occupancy_mask`."""
        g = self.resolution
        device = self.density_ema.device
        ar = torch.arange(g, device=device)
        ijk = torch.stack(torch.meshgrid(ar, ar, ar, indexing="ij")[::-1], dim=-1).reshape(-1, 3)  # flat i + G(j+Gk)
        jitter = torch.rand(ijk.shape, generator=generator, device=device)
        points = (ijk + jitter) / g * (2 * self.bound) - self.bound  # [G^3, 3]
        sigma = torch.cat([density(points[s:s + chunk]).float() for s in range(0, points.shape[0], chunk)])
        self.density_ema.copy_(ema_max_update(self.density_ema, sigma, self.decay))
        self.mask.copy_(occupancy_mask(self.density_ema, self.threshold))


class Marched(NamedTuple):
    """Samples of :func:`march` for ``R`` rays of at most ``S`` samples."""

    t: Tensor  # [R, S] sorted; samples past `far` sit at `far`
    keep: Tensor  # [R, S] bool: inside [near, far) and in an occupied cell


def march(
    rays_o: Tensor,  # [R, 3]
    rays_d: Tensor,  # [R, 3] not normalised
    near: Tensor,  # [R]
    far: Tensor,  # [R]
    step: float,  # world-space length between samples
    grid: OccupancyGrid | None,
    generator: torch.Generator | None = None,
    perturb: bool = False,
) -> Marched:
    """Samples at a fixed world-space ``step`` from ``near`` (one random offset per ray with ``perturb``, else
    half a step), kept where they lie before ``far`` and in an occupied cell of ``grid`` (all, without one)."""
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    dt = step / torch.linalg.vector_norm(rays_d, dim=-1)  # [R] the step in t (viewing-axis depth)
    n = max(int(torch.ceil(((far - near) / dt).max()).item()) if near.numel() else 1, 1)
    if perturb:
        u = torch.rand(near.shape[0], 1, generator=generator, dtype=near.dtype, device=near.device)
    else:
        u = torch.full((near.shape[0], 1), 0.5, dtype=near.dtype, device=near.device)
    t = near[:, None] + (torch.arange(n, dtype=near.dtype, device=near.device) + u) * dt[:, None]  # [R, S]
    keep = t < far[:, None]
    t = torch.minimum(t, far[:, None])  # zero-length, empty segments past far keep t sorted
    if grid is not None:
        points = rays_o[:, None, :] + t[..., None] * rays_d[:, None, :]
        keep = keep & grid.occupied(points.reshape(-1, 3)).reshape(keep.shape)
    return Marched(t, keep)
