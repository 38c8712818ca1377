"""Ray-surface intersection of an implicit field and its gradient by implicit differentiation.

Notes §12.3 ("Training with 2D images"), after Niemeyer et al. 2020, "Differentiable Volumetric
Rendering" (DVR). A field ``f(p)`` is *inside* where ``f(p) >= tau`` (an occupancy network's logits
with ``tau = logit(0.5) = 0``, or a negated signed distance with ``tau = 0``). Along a ray
``r(d) = r0 + d w`` the visible surface point is the **first** crossing from outside to inside:

1. :func:`ray_box_intersection` clips the ray to the scene box ``[-SCENE_BOUND, SCENE_BOUND]^3``;
2. :func:`find_surface` evaluates ``f`` at ``n_steps`` evenly spaced depths (no gradient), takes the
   first interval whose ends change sign from outside to inside, and refines it with
3. :func:`secant`, the secant method of Algorithm 6 with the bracket kept (regula falsi);
4. :func:`implicit_depth` makes the found depth ``d_hat`` differentiable without backpropagating
   through the iterations: from ``f_theta(r0 + d_hat w) = tau``,
   ``d d_hat / d theta = -(df/dp . w)^-1 d+f/d theta`` (the notes' last equation of §12.3).

Ray directions need not be normalised (``camera.pixel_rays`` gives directions with unit depth
component, so ``d`` is the depth along the viewing axis).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from vision3d import SCENE_BOUND

#: A field evaluated at points ``[M, 3] -> [M]``; inside where the value is ``>= tau``.
Field = Callable[[Tensor], Tensor]


class RayBox(NamedTuple):
    """Where rays enter and leave an axis-aligned box (depths clipped to start at 0)."""

    near: Tensor  # [N] entry depth, 0 for an origin inside the box
    far: Tensor  # [N] exit depth
    hit: Tensor  # [N] bool: the ray passes through the box in front of its origin


class SurfaceHit(NamedTuple):
    """The first outside-to-inside crossing of ``f = tau`` along each ray (no gradient attached)."""

    depth: Tensor  # [N] depth of the crossing; `far` where there is none
    hit: Tensor  # [N] bool: the ray enters the surface inside the box
    near: Tensor  # [N] where the marched interval starts
    far: Tensor  # [N] where it ends
    max_depth: Tensor  # [N] depth of the coarse sample with the largest field value
    inside_at_near: Tensor  # [N] bool: the first sample is already inside (so there is no hit)


def ray_box_intersection(
    rays_o: Tensor,  # [N, 3]
    rays_d: Tensor,  # [N, 3]
    bound: float = SCENE_BOUND,
) -> RayBox:
    """Slab test of rays against the box ``[-bound, bound]^3``.

    Per axis the ray is inside the slab for ``d`` between ``(-bound - o) / w`` and
    ``(bound - o) / w``; the box interval is the intersection of the three slab intervals. An axis
    with ``w = 0`` contributes ``(-inf, inf)`` when the origin lies within the slab, and an empty
    interval otherwise. ``near`` is clipped to 0, so only the part in front of the origin counts.
    """
    _check_rays(rays_o, rays_d)
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    parallel = rays_d == 0
    safe_d = torch.where(parallel, torch.ones_like(rays_d), rays_d)
    t0 = (-bound - rays_o) / safe_d
    t1 = (bound - rays_o) / safe_d
    t_lo, t_hi = torch.minimum(t0, t1), torch.maximum(t0, t1)
    inside_slab = rays_o.abs() <= bound
    inf = torch.full_like(t_lo, float("inf"))
    t_lo = torch.where(parallel, torch.where(inside_slab, -inf, inf), t_lo)
    t_hi = torch.where(parallel, torch.where(inside_slab, inf, -inf), t_hi)
    near = t_lo.amax(dim=-1).clamp_min(0.0)
    far = t_hi.amin(dim=-1)
    hit = far > near
    return RayBox(near, torch.where(hit, far, near), hit)


def secant(
    f: Callable[[Tensor], Tensor],
    d0: Tensor,  # [N] outside end of the bracket, f(d0) < 0
    d1: Tensor,  # [N] inside end of the bracket, f(d1) >= 0
    f0: Tensor,  # [N]
    f1: Tensor,  # [N]
    iterations: int,
) -> Tensor:  # [N]
    """Root of ``f`` (depths ``[N] -> [N]``, the field minus ``tau``) inside ``[d0, d1]``, per ray.

    Algorithm 6 of the notes: each step takes the zero of the line through two points of ``f``,
    ``d = d1 - f1 (d1 - d0) / (f1 - f0)``. Algorithm 6 always keeps the two most recent iterates,
    which can jump out of the interval (and so onto another, e.g. the far, crossing of the ray).
    Here the new point replaces whichever end has the same sign of ``f`` (regula falsi, as in DVR's
    implementation), so the iterate never leaves the bracket that holds the first crossing and the
    denominator ``f1 - f0 > 0`` never vanishes. Near a simple root the two variants coincide up to
    which old point is dropped; both converge fast on the short intervals left by the coarse march.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if not (d0.shape == d1.shape == f0.shape == f1.shape) or d0.ndim != 1:
        raise ValueError(
            f"d0, d1, f0, f1 must all be [N]; got {tuple(d0.shape)}, {tuple(d1.shape)}, "
            f"{tuple(f0.shape)}, {tuple(f1.shape)}"
        )
    d = secant_step(d0, d1, f0, f1)
    for _ in range(iterations):
        fd = f(d)
        outside = fd < 0
        d0, f0 = torch.where(outside, d, d0), torch.where(outside, fd, f0)
        d1, f1 = torch.where(outside, d1, d), torch.where(outside, f1, fd)
        d = secant_step(d0, d1, f0, f1)
    return d


def secant_step(d0: Tensor, d1: Tensor, f0: Tensor, f1: Tensor) -> Tensor:  # all [N]
    """Zero of the line through ``(d0, f0)`` and ``(d1, f1)`` (line 2 of Algorithm 6)."""
    return d1 - f1 * (d1 - d0) / (f1 - f0)


@torch.no_grad()
def find_surface(
    f: Field,
    rays_o: Tensor,  # [N, 3]
    rays_d: Tensor,  # [N, 3]
    near: Tensor | float | None = None,  # [N] or scalar; None: where the ray enters the scene box
    far: Tensor | float | None = None,  # [N] or scalar; None: where the ray leaves the scene box
    n_steps: int = 64,
    n_secant: int = 8,
    tau: float = 0.0,
    chunk: int = 4096,
) -> SurfaceHit:
    """First crossing of ``f = tau`` from outside (``f < tau``) to inside along each ray.

    Notes §12.3, forward pass. ``f`` is evaluated at ``n_steps`` evenly spaced depths in
    ``[near, far]``; a ray hits when its first sample is outside and a later one is inside; the
    first such pair of neighbouring samples brackets the visible surface, which :func:`secant`
    refines with ``n_secant`` more evaluations. Rays that start inside, never cross, or miss the
    scene box do not hit. Rays are processed ``chunk`` at a time (``chunk * n_steps`` points per
    call of ``f``). The result carries no gradient: use :func:`implicit_depth` for that.
    """
    _check_rays(rays_o, rays_d)
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2, got {n_steps}")
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    n = rays_o.shape[0]
    box = ray_box_intersection(rays_o, rays_d)
    near_t = box.near if near is None else _per_ray(near, n, rays_o, "near")
    far_t = box.far if far is None else _per_ray(far, n, rays_o, "far")
    valid = box.hit & (far_t > near_t)
    parts = [
        _find_surface_chunk(
            f,
            rays_o[s : s + chunk],
            rays_d[s : s + chunk],
            near_t[s : s + chunk],
            far_t[s : s + chunk],
            valid[s : s + chunk],
            n_steps,
            n_secant,
            tau,
        )
        for s in range(0, n, chunk)
    ]
    if not parts:
        empty = rays_o.new_zeros(0)
        return SurfaceHit(empty, empty.bool(), empty, empty, empty, empty.bool())
    return SurfaceHit(*(torch.cat(fields) for fields in zip(*parts, strict=True)))


def _find_surface_chunk(
    f: Field,
    rays_o: Tensor,  # [C, 3]
    rays_d: Tensor,  # [C, 3]
    near: Tensor,  # [C]
    far: Tensor,  # [C]
    valid: Tensor,  # [C] bool
    n_steps: int,
    n_secant: int,
    tau: float,
) -> SurfaceHit:
    c = rays_o.shape[0]
    steps = torch.linspace(0.0, 1.0, n_steps, dtype=rays_o.dtype, device=rays_o.device)
    depths = near[:, None] + (far - near)[:, None] * steps  # [C, S]
    points = rays_o[:, None, :] + depths[..., None] * rays_d[:, None, :]  # [C, S, 3]
    values = f(points.reshape(-1, 3)).reshape(c, n_steps) - tau  # [C, S]
    inside = values >= 0
    # First sample inside, scanning from the second one (argmax returns the first True).
    first_in = torch.argmax(inside[:, 1:].to(torch.uint8), dim=1) + 1  # [C]
    crosses = inside[:, 1:].any(dim=1)
    hit = valid & ~inside[:, 0] & crosses
    rows = torch.arange(c, device=rays_o.device)
    lo, hi = first_in - 1, first_in
    d0, d1 = depths[rows, lo], depths[rows, hi]
    f0, f1 = values[rows, lo], values[rows, hi]
    depth = far.clone()
    if hit.any():
        o, w = rays_o[hit], rays_d[hit]

        def along(d: Tensor) -> Tensor:
            return f(o + d[:, None] * w).reshape(-1) - tau

        depth[hit] = secant(along, d0[hit], d1[hit], f0[hit], f1[hit], n_secant)
    max_depth = depths[rows, values.argmax(dim=1)]
    return SurfaceHit(depth, hit, near, far, max_depth, valid & inside[:, 0])


class _ImplicitDepth(torch.autograd.Function):
    """Identity on the depth in the forward pass; the implicit-function gradient in the backward pass."""

    @staticmethod
    def forward(ctx: Any, f: Field, depth: Tensor, rays_o: Tensor, rays_d: Tensor, *params: Tensor) -> Tensor:
        ctx.f = f
        ctx.save_for_backward(depth, rays_o, rays_d, *params)
        return depth.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_depth: Tensor) -> tuple[Tensor | None, ...]:
        depth, rays_o, rays_d, *params = ctx.saved_tensors
        with torch.enable_grad():
            p = (rays_o + depth[:, None] * rays_d).detach().requires_grad_(True)
            value = ctx.f(p).reshape(-1)
            (grad_p,) = torch.autograd.grad(value.sum(), p, retain_graph=True)  # df/dp, [N, 3]
            scale = -grad_depth / _nonzero(torch.sum(grad_p * rays_d, dim=-1))  # -g (df/dp . w)^-1
            wanted = [q for q, need in zip(params, ctx.needs_input_grad[4:], strict=True) if need]
            grads = iter(torch.autograd.grad(value, wanted, grad_outputs=scale, allow_unused=True) if wanted else ())
        grad_params = [next(grads) if need else None for need in ctx.needs_input_grad[4:]]
        grad_o = scale[:, None] * grad_p if ctx.needs_input_grad[2] else None
        grad_w = (scale * depth)[:, None] * grad_p if ctx.needs_input_grad[3] else None
        return (None, None, grad_o, grad_w, *grad_params)


def implicit_depth(
    f: Field,
    depth: Tensor,  # [N] surface depths found by find_surface (hit rays only)
    rays_o: Tensor,  # [N, 3]
    rays_d: Tensor,  # [N, 3]
    params: Sequence[Tensor],
) -> Tensor:  # [N]
    """``depth`` made differentiable by implicit differentiation of ``f(r0 + d w) = tau`` (notes §12.3).

    Backward pass, with ``p_hat = r0 + d_hat w`` and ``g = dL/d d_hat``:

    * ``dL/d theta = -g (df/dp . w)^-1 d+f/d theta`` for every tensor in ``params`` (network
      weights, a latent code: whatever ``f`` reads that should learn);
    * ``dL/d r0 = -g (df/dp . w)^-1 df/dp`` and ``dL/d w = -g d_hat (df/dp . w)^-1 df/dp``.

    Only one evaluation of ``f`` (and its gradient) at ``p_hat`` is needed; the secant iterations
    are not differentiated. ``f`` must treat points independently (no batch statistics), and
    tensors it reads that are not in ``params`` receive no gradient. The depth itself gets none
    (it is a root, not an input). Second derivatives are not supported.
    """
    _check_rays(rays_o, rays_d)
    if depth.shape != rays_o.shape[:1]:
        raise ValueError(f"depth must be [N] = {tuple(rays_o.shape[:1])}, got {tuple(depth.shape)}")
    return _ImplicitDepth.apply(f, depth.detach(), rays_o, rays_d, *params)


def _nonzero(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``x`` pushed away from 0 (keeping its sign) so that grazing rays do not divide by zero."""
    return torch.where(x >= 0, x.clamp_min(eps), x.clamp_max(-eps))


def _per_ray(value: Tensor | float, n: int, like: Tensor, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"{name} must be a scalar or [N] = ({n},), got {tuple(t.shape)}")
    return t


def _check_rays(rays_o: Tensor, rays_d: Tensor) -> None:
    if rays_o.ndim != 2 or rays_o.shape[-1] != 3 or rays_d.shape != rays_o.shape:
        raise ValueError(f"rays_o and rays_d must both be [N, 3]; got {tuple(rays_o.shape)} and {tuple(rays_d.shape)}")
