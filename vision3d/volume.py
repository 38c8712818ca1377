"""Volume rendering of a neural radiance field: notes §12.4, "Neural radiance field" (Mildenhall et al., 2020).

Small pure functions, batched over ``R`` rays with ``S`` samples each, on any device and floating dtype:

* :func:`positional_encoding` -- the notes' ``gamma(p)``;
* :func:`stratified_samples` -- the coarse pass's samples, one uniform draw per equal bin of ``[near, far]``;
* :func:`volume_render` -- ``alpha_i = 1 - exp(-sigma_i delta_i)``, ``T_i = prod_{j<i} (1 - alpha_j)``,
  ``c = sum_i T_i alpha_i c_i``; :func:`render_rays_reference` is the same sum as a plain loop;
* :func:`midpoints_to_bins`, :func:`sample_pdf`, :func:`merge_samples` -- hierarchical sampling: draw
  the fine pass's samples from the coarse weights and render at the union of both sets.

Ray parameters ``t`` follow :func:`vision3d.camera.pixel_rays`: its directions are not normalised, so ``t``
(and the rendered depth) is depth along the viewing axis, not Euclidean distance.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class RenderResult(NamedTuple):
    """What :func:`volume_render` returns for ``R`` rays of ``S`` samples."""

    rgb: Tensor  # [R, 3] composited colour, background included when one was given
    depth: Tensor  # [R] expected depth sum_i w_i t_i, not normalised by the opacity
    opacity: Tensor  # [R] accumulated opacity sum_i w_i = 1 - transmittance past the last sample
    weights: Tensor  # [R, S] w_i = T_i alpha_i


def positional_encoding(p: Tensor, levels: int, include_input: bool = False) -> Tensor:
    """The notes' positional encoding (§12.4) ``gamma(p) = [sin(2^0 pi p), cos(2^0 pi p), ...,
    sin(2^{L-1} pi p), cos(2^{L-1} pi p)]``, applied to each coordinate of ``p`` ``[..., D]``.

    Returns ``[..., 2 L D]``, or ``[..., D + 2 L D]`` with ``include_input`` (the raw ``p`` first). The
    encoding is ``gamma(p_1), ..., gamma(p_D)`` concatenated, coordinate-major, each in the notes' order
    (frequency ``k = 0 .. L-1``, ``sin`` before ``cos``): ``out.reshape(..., D, L, 2)[..., d, k, 0]`` is
    ``sin(2^k pi p_d)`` and ``[..., d, k, 1]`` is ``cos(2^k pi p_d)``.
    """
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    if p.ndim < 1:
        raise ValueError(f"p must have shape [..., D], got {tuple(p.shape)}")
    freqs = math.pi * 2.0 ** torch.arange(levels, dtype=p.dtype, device=p.device)  # [L]
    angles = p[..., None] * freqs  # [..., D, L]
    gamma = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1)  # [..., D, L, 2]
    gamma = gamma.reshape(*p.shape[:-1], 2 * levels * p.shape[-1])  # [..., 2 L D]
    return torch.cat([p, gamma], dim=-1) if include_input else gamma


def _as_ray_column(value: Tensor | float, rays: int, like: Tensor, name: str) -> Tensor:  # -> [R, 1]
    """A per-ray scalar (``[R]``, ``[R, 1]``, a 0-d tensor or a float) as a column ``[R, 1]``."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, rays)):
        raise ValueError(f"{name} must have shape [{rays}] or be a scalar, got {tuple(value.shape)}")
    return value.reshape(-1, 1).expand(rays, 1)


def stratified_samples(
    near: Tensor,  # [R] or 0-d
    far: Tensor,  # [R] or 0-d
    n: int,
    generator: torch.Generator | None,
    perturb: bool = True,
) -> Tensor:  # [R, n]
    """Stratified sampling of the coarse pass (Mildenhall et al., eq. 2): split ``[near, far]`` into ``n``
    equal bins and draw one uniform sample in each (the bin midpoints when ``perturb`` is False).

    ``near`` and ``far`` broadcast to ``[R]``; two 0-d tensors give one ray, ``[1, n]``. The result is sorted
    along each ray, one sample per bin. ``generator`` (``None``: torch's global one) must live on the
    device of ``near``; the same seed gives the same samples.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if near.ndim > 1 or far.ndim > 1:
        raise ValueError(f"near and far must have shape [R] or be 0-d, got {tuple(near.shape)} and {tuple(far.shape)}")
    try:
        near, far = torch.broadcast_tensors(near, far)
    except RuntimeError:
        raise ValueError(f"near and far must broadcast, got {tuple(near.shape)} and {tuple(far.shape)}") from None
    near, far = near.reshape(-1, 1), far.reshape(-1, 1)  # [R, 1]
    if not near.is_floating_point():
        raise ValueError(f"near and far must be floating point, got {near.dtype}")
    if not bool((far > near).all()):
        raise ValueError("far must be > near on every ray")
    offsets = torch.arange(n, dtype=near.dtype, device=near.device)  # [n] bin index
    if perturb:
        u = torch.rand(near.shape[0], n, generator=generator, dtype=near.dtype, device=near.device)  # [R, n]
    else:
        u = torch.full((near.shape[0], n), 0.5, dtype=near.dtype, device=near.device)
    s = (offsets + u) / n  # [R, n] in [0, 1]
    # lerp is exact at both ends, so the samples never leave [near, far] by rounding.
    return torch.lerp(near.expand_as(s), far.expand_as(s), s)


def _check_render_inputs(sigma: Tensor, rgb: Tensor, t: Tensor) -> None:
    if sigma.ndim != 2 or sigma.shape[1] < 1:
        raise ValueError(f"sigma must have shape [R, S] with S >= 1, got {tuple(sigma.shape)}")
    if t.shape != sigma.shape:
        raise ValueError(f"t must have the shape of sigma, {tuple(sigma.shape)}, got {tuple(t.shape)}")
    if rgb.shape != (*sigma.shape, 3):
        raise ValueError(f"rgb must have shape [R, S, 3] = {(*sigma.shape, 3)}, got {tuple(rgb.shape)}")


def _background(background: Tensor | float, rays: int, like: Tensor) -> Tensor:  # -> [R, 3] or [1, 3]
    background = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if background.ndim == 0:
        return background.expand(1, 3)
    if background.shape in ((3,), (1, 3), (rays, 3)):
        return background.reshape(-1, 3)
    raise ValueError(f"background must be a float or have shape [3] or [{rays}, 3], got {tuple(background.shape)}")


def volume_render(
    sigma: Tensor,  # [R, S] density, >= 0
    rgb: Tensor,  # [R, S, 3] colour of each sample
    t: Tensor,  # [R, S] sorted sample positions along each ray
    background: Tensor | float | None = None,  # [3], [R, 3] or a grey level
    far_delta: float = 1e10,
) -> RenderResult:
    """The quadrature of notes §12.4: ``delta_i = t_{i+1} - t_i``, ``alpha_i = 1 - exp(-sigma_i delta_i)``,
    ``T_i = prod_{j<i} (1 - alpha_j)``, weights ``w_i = T_i alpha_i`` and colour ``c = sum_i w_i c_i``.

    * The last sample has no successor: its ``delta`` is ``far_delta``. The original NeRF uses ``1e10``,
      so the last sample absorbs all the light left (any ``sigma > 0`` there makes the ray opaque);
      pass a finite value (e.g. the sample spacing) to model a last segment of that length.
    * ``T_i`` is computed as ``exp(-sum_{j<i} sigma_j delta_j)``, the same product written as an exclusive
      cumulative sum, which neither underflows step by step nor divides (and ``alpha`` uses ``expm1``).
    * ``background`` (a grey level, ``[3]`` or ``[R, 3]``) fills the light that passes every sample:
      ``c = sum_i w_i c_i + (1 - sum_i w_i) background``. ``None`` composites over nothing (black).
    * ``depth = sum_i w_i t_i`` is the unnormalised expected depth (a transparent ray's depth tends to 0);
      divide by ``opacity = sum_i w_i`` for the depth of the visible part only.
    * ``sigma`` must be non-negative: callers apply ReLU or softplus. It is neither clamped nor checked
      here (a check would synchronise the device on every call); a negative density gives ``T_i > 1``.
    """
    _check_render_inputs(sigma, rgb, t)
    rays = sigma.shape[0]
    last = torch.full_like(t[:, :1], far_delta)  # [R, 1]
    delta = torch.cat([t[:, 1:] - t[:, :-1], last], dim=1)  # [R, S]
    tau = sigma * delta  # [R, S] optical thickness of each segment
    alpha = -torch.expm1(-tau)  # [R, S] = 1 - exp(-sigma delta)
    tau_before = torch.cat([torch.zeros_like(tau[:, :1]), torch.cumsum(tau[:, :-1], dim=1)], dim=1)  # [R, S]
    T_i = torch.exp(-tau_before)  # [R, S] transmittance up to sample i
    weights = T_i * alpha  # [R, S]
    opacity = weights.sum(dim=1)  # [R]
    colour = (weights[..., None] * rgb).sum(dim=1)  # [R, 3]
    if background is not None:
        colour = colour + (1.0 - opacity)[:, None] * _background(background, rays, sigma)
    depth = (weights * t).sum(dim=1)  # [R]
    return RenderResult(colour, depth, opacity, weights)


def render_rays_reference(
    sigma: Tensor,  # [R, S]
    rgb: Tensor,  # [R, S, 3]
    t: Tensor,  # [R, S]
    background: Tensor | float | None = None,
    far_delta: float = 1e10,
) -> RenderResult:
    """:func:`volume_render` as a plain loop over rays and samples, the notes' equations line by line.

    Slow (Python floats); for tests and for reading. Same arguments and result as :func:`volume_render`.
    """
    _check_render_inputs(sigma, rgb, t)
    rays, samples = sigma.shape
    bg = None if background is None else _background(background, rays, sigma).expand(rays, 3).tolist()
    sigma_l, rgb_l, t_l = sigma.tolist(), rgb.tolist(), t.tolist()
    colours, depths, opacities, all_weights = [], [], [], []
    for r in range(rays):
        transmittance = 1.0  # T_1 = 1: nothing in front of the first sample
        colour, depth, opacity, weights = [0.0, 0.0, 0.0], 0.0, 0.0, []
        for i in range(samples):
            delta = t_l[r][i + 1] - t_l[r][i] if i + 1 < samples else far_delta
            alpha = 1.0 - math.exp(-sigma_l[r][i] * delta)
            w = transmittance * alpha
            colour = [c + w * ci for c, ci in zip(colour, rgb_l[r][i])]
            depth += w * t_l[r][i]
            opacity += w
            weights.append(w)
            transmittance *= 1.0 - alpha  # T_{i+1} = T_i (1 - alpha_i)
        if bg is not None:
            colour = [c + (1.0 - opacity) * b for c, b in zip(colour, bg[r])]
        colours.append(colour)
        depths.append(depth)
        opacities.append(opacity)
        all_weights.append(weights)

    def tensor(values: list) -> Tensor:
        return torch.tensor(values, dtype=sigma.dtype, device=sigma.device)

    return RenderResult(
        tensor(colours).reshape(rays, 3), tensor(depths), tensor(opacities), tensor(all_weights).reshape(rays, samples)
    )


def midpoints_to_bins(
    t: Tensor,  # [R, S] sorted samples
    near: Tensor | float,  # [R] or scalar
    far: Tensor | float,  # [R] or scalar
) -> Tensor:  # [R, S + 1]
    """Bin edges around the coarse samples for :func:`sample_pdf`: ``[near, midpoints, far]``.

    The interior edges are the midpoints ``(t_i + t_{i+1}) / 2`` between neighbouring samples, as the original
    NeRF code describes; unlike that code, which keeps only the interior midpoints and drops the first and last
    weights, the outer edges are ``near`` and ``far``. Then each of the ``S`` coarse weights has a bin, and the
    fine samples cover all of ``[near, far]`` that the coarse pass covered (with stratified samples, each
    ``t_i`` lies inside its own bin). With ``far_delta = 1e10`` the last weight also holds the light past
    ``far``, which puts some fine samples in the last bin on half-transparent rays.
    """
    if t.ndim != 2 or t.shape[1] < 1:
        raise ValueError(f"t must have shape [R, S] with S >= 1, got {tuple(t.shape)}")
    rays = t.shape[0]
    near_col, far_col = _as_ray_column(near, rays, t, "near"), _as_ray_column(far, rays, t, "far")  # [R, 1]
    mids = 0.5 * (t[:, 1:] + t[:, :-1])  # [R, S - 1]
    return torch.cat([near_col, mids, far_col], dim=1)


def sample_pdf(
    bins: Tensor,  # [R, S + 1] sorted bin edges
    weights: Tensor,  # [R, S] non-negative mass of each bin
    n: int,
    generator: torch.Generator | None,
    deterministic: bool = False,
    eps: float = 1e-5,
) -> Tensor:  # [R, n]
    """Hierarchical sampling (Mildenhall et al., §5.2): ``n`` samples per ray from the piecewise-constant pdf
    whose mass in bin ``[bins_k, bins_{k+1}]`` is proportional to ``weights_k``, by inverting its CDF.

    * ``u ~ U[0, 1)`` (``generator``: ``None`` is torch's global one), or with ``deterministic`` the midpoints
      ``(j + 1/2) / n`` of ``n`` equal bins of ``[0, 1]``, which gives sorted samples.
    * Within a bin the CDF is linear, so its inverse is too: ``t = bins_k + (u - cdf_k) / (cdf_{k+1} - cdf_k)
      (bins_{k+1} - bins_k)``.
    * ``eps`` (as in the original code, ``1e-5``) is added to every weight, so a ray whose weights are all zero
      gets equal mass in every bin (uniform samples for equal-width bins) instead of ``0 / 0``.
    * The weights are detached: the fine samples are positions chosen by the coarse pass, and no gradient
      flows through their choice into the weights (a gradient through ``bins`` is kept).
    """
    if bins.ndim != 2 or bins.shape[1] < 2:
        raise ValueError(f"bins must have shape [R, S + 1] with S >= 1, got {tuple(bins.shape)}")
    if weights.shape != (bins.shape[0], bins.shape[1] - 1):
        raise ValueError(
            f"weights must have shape [R, S] = {(bins.shape[0], bins.shape[1] - 1)} for bins of shape "
            f"{tuple(bins.shape)}, got {tuple(weights.shape)}"
        )
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rays, n_bins = weights.shape
    w = weights.detach().to(bins.dtype) + eps  # [R, S]
    pdf = w / w.sum(dim=1, keepdim=True)  # [R, S]
    # cdf_0 = 0 and cdf_S = 1 exactly; clamping keeps it monotone where rounding would overshoot 1.
    inner = torch.cumsum(pdf[:, :-1], dim=1).clamp(max=1.0)  # [R, S - 1]
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), inner, torch.ones_like(pdf[:, :1])], dim=1)  # [R, S + 1]
    if deterministic:
        u = (torch.arange(n, dtype=bins.dtype, device=bins.device) + 0.5) / n  # [n]
        u = u.expand(rays, n).contiguous()  # [R, n]
    else:
        u = torch.rand(rays, n, generator=generator, dtype=bins.dtype, device=bins.device)  # [R, n]
    # bin k holds u when cdf_k <= u < cdf_{k+1}
    k = (torch.searchsorted(cdf, u, right=True) - 1).clamp(0, n_bins - 1)  # [R, n]
    cdf_lo, cdf_hi = torch.gather(cdf, 1, k), torch.gather(cdf, 1, k + 1)  # [R, n]
    t_lo, t_hi = torch.gather(bins, 1, k), torch.gather(bins, 1, k + 1)  # [R, n]
    mass = cdf_hi - cdf_lo  # [R, n] > 0 thanks to eps, unless rounding ate it
    frac = ((u - cdf_lo) / torch.where(mass > 0, mass, torch.ones_like(mass))).clamp(0.0, 1.0)  # [R, n]
    return t_lo + frac * (t_hi - t_lo)


def merge_samples(
    t_coarse: Tensor,  # [R, Sc]
    t_fine: Tensor,  # [R, Sf]
) -> Tensor:  # [R, Sc + Sf]
    """The sorted union of the coarse and fine samples, where the fine pass evaluates the field."""
    if t_coarse.ndim != 2 or t_fine.ndim != 2 or t_coarse.shape[0] != t_fine.shape[0]:
        raise ValueError(
            f"t_coarse and t_fine must have shapes [R, Sc] and [R, Sf], got {tuple(t_coarse.shape)} "
            f"and {tuple(t_fine.shape)}"
        )
    return torch.sort(torch.cat([t_coarse, t_fine], dim=1), dim=1).values
