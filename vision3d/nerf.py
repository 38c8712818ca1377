"""Neural radiance field: notes §12.4, "Neural radiance field" (Mildenhall et al., 2020, "NeRF").

A field ``F(x, d) -> (sigma, c)`` maps a position and a viewing direction to a density and a colour;
images are rendered with the quadrature of :func:`vision3d.volume.volume_render` and the field is fitted
to posed images by the photometric error of random rays, on the one engine (:func:`generative.training.fit`).

* :class:`NeRFNetwork` -- the notes' Figure 12.3: ``gamma(x)`` enters the MLP twice (input and a skip
  concatenation), ``sigma`` leaves before the direction enters (density depends on position only), then a
  feature vector and ``gamma(d)`` give the colour through a sigmoid.
* :func:`render_rays` -- hierarchical sampling: a coarse network at stratified samples, a fine network at
  the union of those and samples drawn from the coarse weights (inverse CDF).
* :class:`NeRFObjective` -- ``MSE(coarse) + MSE(fine)`` of random pixels of all training views.
* :func:`fit_nerf`, :func:`load_nerf`, :func:`render_image`, :func:`evaluate_nerf`.
* The fast path (:mod:`vision3d.ngp`, Müller et al., 2022): ``network="hash"`` swaps the MLP for a hash-encoded
  field, ``occupancy_grid=True`` replaces hierarchical sampling with fixed-step marching that evaluates the
  field only in occupied cells of a grid refreshed every ``grid_update_every`` steps (one network).
  :func:`cpu_preset` holds the settings measured best for a CPU fit (measurements in its docstring).

Choices where the paper leaves room or does not fit this project:

* Samples live where the scene is: ``[near, far]`` of each ray is its intersection with the scene box
  ``[-bound, bound]^3`` (:func:`vision3d.surface.ray_box_intersection`; ``bound`` defaults to
  ``SCENE_BOUND``, which already has a margin around the normalised object). Rays that miss the box get
  no density and show the background.
* ``t`` follows :mod:`vision3d.camera` (depth along the viewing axis, directions not normalised). The
  density is per unit of length, so the quadrature uses ``delta_i ||d||`` (as the original code); rendered
  depth is viewing-axis depth, comparable with the datasets' depth maps.
* The last sample's segment ends at the box exit ``far`` (not ``1e10``): with a softplus density, which is
  never exactly 0, ``1e10`` would make every ray opaque and hide the background.
* ``sigma = softplus(raw + density_bias)`` with ``density_bias = -1`` by default (as mip-NeRF): smooth,
  non-zero gradient for empty space, and a half-transparent start (``softplus(-1) ~ 0.31``). ``relu``
  (the paper's choice) is available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.training import FitConfig, resolve_device, seed_everything
from vision3d import SCENE_BOUND
from vision3d.camera import Intrinsics, image_rays, pixel_rays
from vision3d.dataset import load_blender
from vision3d.fields import Reconstruction, fit_image_model, load_image_model
from vision3d.metrics import psnr
from vision3d.ngp import HashNeRF, OccupancyGrid, march
from vision3d.surface import ray_box_intersection
from vision3d.volume import (
    RenderResult,
    merge_samples,
    midpoints_to_bins,
    positional_encoding,
    sample_pdf,
    stratified_samples,
    volume_render,
)


def _default_fit() -> FitConfig:
    return FitConfig(steps=2000, lr=5e-4, lr_min_ratio=0.1)


@dataclass
class NeRFConfig:
    """NeRF hyperparameters: optimisation, networks, sampling, data and rendering."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation (steps, learning rate, seed, device, logging)."""
    depth: int = 8
    """Linear layers of the position MLP (the paper: 8)."""
    width: int = 256
    """Width ``W`` of the position MLP; the colour branch has ``W / 2`` (the paper: 256)."""
    skip: int | None = 4
    """``gamma(x)`` is concatenated to the output of this layer (0-based; the paper: the fifth); None: no skip."""
    levels: int = 10
    """Frequencies ``L`` of the position encoding (the paper: 10)."""
    dir_levels: int = 4
    """Frequencies ``L'`` of the direction encoding (the paper: 4)."""
    density_activation: Literal["softplus", "relu"] = "softplus"
    """``sigma = softplus(raw + density_bias)`` or ``relu(raw + density_bias)`` (the paper: relu, bias 0)."""
    density_bias: float = -1.0
    """Shift of the raw density before the activation."""
    n_coarse: int = 64
    """Stratified samples per ray of the coarse network."""
    n_fine: int = 128
    """Samples per ray drawn from the coarse weights; the fine network sees ``n_coarse + n_fine``. 0: coarse only."""
    coarse_only: bool = False
    """Train and render the coarse network only (no hierarchical sampling, no fine network)."""
    rays: int = 1024
    """Random training pixels (rays) per step, drawn from all training views."""
    perturb: bool = True
    """Jitter the stratified samples and draw the fine samples at random when training (rendering never does)."""
    bound: float = SCENE_BOUND
    """Half-width of the box ``[-bound, bound]^3`` whose intersection with each ray is its ``[near, far]``."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour behind the scene: the images are composited on it (``load_blender``) and so is every render."""
    size: int = 64
    """Training images are resized to ``size x size`` pixels."""
    max_views: int = 100
    """Use at most this many training views."""
    surface_density: float = 50.0
    """Density of the level set that ``FittedShape.sdf`` puts at 0 (for marching cubes)."""
    network: Literal["mlp", "hash"] = "mlp"
    """The field: the paper's MLP on ``gamma(x)`` or :class:`vision3d.ngp.HashNeRF` (hash encoding, small MLPs)."""
    hash_levels: int = 16
    """Levels ``L`` of the hash encoding."""
    hash_features: int = 2
    """Features ``F`` per table entry."""
    hash_table_size: int = 2**15
    """Entries ``T`` per level's table."""
    hash_min_res: int = 16
    """Coarsest grid resolution ``N_min``."""
    hash_max_res: int = 256
    """Finest grid resolution ``N_max``."""
    hash_hidden: int = 64
    """Width of the hash network's density and colour MLPs."""
    occupancy_grid: bool = False
    """March at a fixed step and evaluate the field only in occupied cells of an occupancy grid (one network,
    no hierarchical sampling); see :mod:`vision3d.ngp`."""
    grid_resolution: int = 32
    """Cells per side of the occupancy grid."""
    grid_update_every: int = 16
    """Training steps between occupancy grid updates."""
    grid_threshold: float = 0.01
    """Optical thickness ``sigma * step`` of one marching step below which a cell is empty (nerfacc's 0.01); the
    density threshold ``grid_threshold / march_step`` is lowered to the grid's mean while the field is faint."""
    grid_warmup: int = 64
    """Training steps before the first occupancy grid update (every cell is occupied until then)."""
    grid_decay: float = 0.95
    """Decay of the per-cell running maximum of the density."""
    march_steps: int = 128
    """Samples along the box diagonal: the marching step is ``2 sqrt(3) bound / march_steps``."""

    def __post_init__(self) -> None:
        if min(self.depth, self.width, self.n_coarse, self.rays, self.size, self.max_views) < 1:
            raise ValueError(
                f"depth, width, n_coarse, rays, size and max_views must be >= 1; got depth={self.depth}, "
                f"width={self.width}, n_coarse={self.n_coarse}, rays={self.rays}, size={self.size}, "
                f"max_views={self.max_views}"
            )
        if min(self.n_fine, self.levels, self.dir_levels) < 0:
            raise ValueError(f"n_fine, levels, dir_levels must be >= 0, got {self.n_fine}, {self.levels}, "
                             f"{self.dir_levels}")
        if self.skip is not None and not 0 <= self.skip < self.depth - 1:
            raise ValueError(f"skip must be None or in [0, depth - 1) = [0, {self.depth - 1}), got {self.skip}")
        if min(self.hash_levels, self.hash_features, self.hash_min_res, self.hash_hidden, self.grid_resolution,
               self.grid_update_every, self.march_steps) < 1 or self.hash_max_res < self.hash_min_res or min(
                   self.grid_warmup, self.grid_threshold) < 0:
            raise ValueError("hash_levels, hash_features, hash_min_res, hash_hidden, grid_resolution, "
                             "grid_update_every, march_steps must be >= 1, hash_max_res >= hash_min_res, "
                             "grid_warmup and grid_threshold >= 0")
        if self.bound <= 0 or self.surface_density <= 0:
            raise ValueError(f"bound and surface_density must be positive, got {self.bound}, {self.surface_density}")
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be an RGB triple in [0, 1], got {self.background}")

    @property
    def hierarchical(self) -> bool:
        """Whether a fine network renders at coarse + fine samples (never with the occupancy grid)."""
        return not self.coarse_only and self.n_fine > 0 and not self.occupancy_grid

    @property
    def march_step(self) -> float:
        """World-space step of occupancy-grid marching."""
        return 2.0 * math.sqrt(3.0) * self.bound / self.march_steps


def cpu_preset(kind: Literal["nerf", "ngp"], steps: int | None = None) -> NeRFConfig:
    """Settings measured on a CPU: ``export_dataset("torus", ..., views=100, size=64)``, one torch thread per
    fit, two fits side by side on a shared 2-core machine; test PSNR against training seconds (evaluation
    excluded), seed 0.

    * ``nerf`` (1800 steps): the MLP shrunk to 4 x 64 without skip, ``L = 6``, 64 coarse samples only, 512 rays,
      ``lr = 5e-3``: 18.0 dB at 30 s, 22.3 at 90 s, 24.2 at 120 s, 25.3 at 182 s (the end). Planned for 3400
      steps, the same fit reached 24.2 dB at 180 s and 26.2 at 290 s (step 2709, stopped there).
    * ``ngp`` (2600 steps): hash encoding (``L = 8``, ``T = 2^15``, ``F = 2``, ``N`` 16 to 64) and occupancy
      grid (32^3, 128 marching steps across the diagonal), 1024 rays, ``lr = 1e-2``: 25.7 dB at 60 s, 26.9 at
      120 s, 28.0 at 180 s, 28.3 at 243 s (the end); ~16% of the cells stay occupied. ``N_max = 128``
      overfits (train 35 dB, test 27.9 at 244 s).

    Both mesh at ``surface_density = 10`` instead of the paper's 50: inside these small fields the density
    hovers around 50 (the ``ngp`` torus: median 62 at 0.02 below the surface, 45 at 0.08; 1e-4 just outside), so
    the level 50 cuts holes. Marching cubes at 96^3 of the phong torus fits (rendered at 128, fitted at 64):
    ``ngp`` IoU 0.45 -> 0.93 and Chamfer-L1 0.031 -> 0.012; ``nerf`` 0.81 -> 0.96 and 0.015 -> 0.005; the demo's
    600-step ``ngp`` 0.002 -> 0.87. The thin wire_knot loses a little (``ngp`` IoU 0.63 -> 0.52, Chamfer 0.0047 ->
    0.0077): the lower level thickens the wire.
    """
    if kind == "nerf":
        return NeRFConfig(fit=FitConfig(steps=steps or 1800, lr=5e-3, lr_min_ratio=0.1, device="cpu"),
                          depth=4, width=64, skip=None, levels=6, dir_levels=2, coarse_only=True, n_coarse=64,
                          rays=512, surface_density=10.0)
    if kind == "ngp":
        return NeRFConfig(fit=FitConfig(steps=steps or 2600, lr=1e-2, lr_min_ratio=0.1, device="cpu"),
                          network="hash", occupancy_grid=True, rays=1024, dir_levels=2, hash_levels=8,
                          hash_max_res=64, surface_density=10.0)
    raise ValueError(f"kind must be 'nerf' or 'ngp', got {kind!r}")


def make_network(config: NeRFConfig) -> nn.Module:
    """The field of ``config.network``: :class:`NeRFNetwork` or :class:`vision3d.ngp.HashNeRF`."""
    if config.network == "mlp":
        return NeRFNetwork(config)
    return HashNeRF(config.bound, config.hash_levels, config.hash_features, config.hash_table_size,
                    config.hash_min_res, config.hash_max_res, config.hash_hidden, dir_levels=config.dir_levels,
                    density_activation=config.density_activation, density_bias=config.density_bias)


class NeRFNetwork(nn.Module):
    """The NeRF MLP of the notes' Figure 12.3 (Mildenhall et al., Fig. 7).

    ``gamma(x)`` (``3 + 6 L`` values with the raw ``x``) feeds ``depth`` ReLU layers of ``width``; it is
    concatenated again to the output of layer ``skip``. A linear head gives ``sigma`` from that trunk alone,
    so the density cannot depend on the direction. A linear feature layer, concatenated with ``gamma(d)``
    (``3 + 6 L'``), feeds one ReLU layer of ``width / 2`` and a sigmoid colour head.
    """

    def __init__(self, config: NeRFConfig) -> None:
        super().__init__()
        self.levels, self.dir_levels, self.skip = config.levels, config.dir_levels, config.skip
        self.activation, self.density_bias = config.density_activation, config.density_bias
        self.pos_dim, self.dir_dim = 3 + 6 * config.levels, 3 + 6 * config.dir_levels
        w = config.width
        dims_in = [self.pos_dim] + [w + self.pos_dim if i - 1 == config.skip else w for i in range(1, config.depth)]
        self.layers = nn.ModuleList(nn.Linear(d, w) for d in dims_in)
        self.sigma_head = nn.Linear(w, 1)
        self.feature = nn.Linear(w, w)
        self.view = nn.Linear(w + self.dir_dim, max(w // 2, 1))
        self.rgb_head = nn.Linear(max(w // 2, 1), 3)

    def trunk(self, x: Tensor) -> Tensor:  # [N, 3] -> [N, W]
        """The position MLP's last activation."""
        gamma_x = positional_encoding(x, self.levels, include_input=True)  # [N, pos_dim]
        h = gamma_x
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if i == self.skip:
                h = torch.cat([h, gamma_x], dim=-1)
        return h

    def sigma_from(self, h: Tensor) -> Tensor:  # [N, W] -> [N]
        raw = self.sigma_head(h)[:, 0] + self.density_bias
        return F.softplus(raw) if self.activation == "softplus" else F.relu(raw)

    def density(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """``sigma(x) >= 0`` alone (no colour branch), e.g. for marching cubes."""
        _check_points(points, "points")
        return self.sigma_from(self.trunk(points))

    def forward(self, points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3], [N, 3] unit
        """Density ``sigma`` ``[N]`` (``>= 0``) and colour ``[N, 3]`` (in ``[0, 1]``) at ``points`` seen along ``dirs``."""
        _check_points(points, "points")
        if dirs.shape != points.shape:
            raise ValueError(f"dirs must have the shape of points, {tuple(points.shape)}, got {tuple(dirs.shape)}")
        h = self.trunk(points)
        gamma_d = positional_encoding(dirs, self.dir_levels, include_input=True)  # [N, dir_dim]
        v = F.relu(self.view(torch.cat([self.feature(h), gamma_d], dim=-1)))
        return self.sigma_from(h), torch.sigmoid(self.rgb_head(v))


class NeRFModel(nn.Module):
    """The coarse and (unless ``coarse_only``) fine networks of one scene."""

    def __init__(self, config: NeRFConfig) -> None:
        super().__init__()
        self.config = config
        self.coarse = make_network(config)
        self.fine = make_network(config) if config.hierarchical else None
        self.grid = (OccupancyGrid(config.bound, config.grid_resolution, config.grid_decay,
                                   config.grid_threshold / config.march_step)
                     if config.occupancy_grid else None)

    def density(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """Density of the network that renders the final image (the fine one when there is one)."""
        return (self.fine or self.coarse).density(points)

    def sdf(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """``surface_density - sigma``: negative inside the level set ``sigma = surface_density``."""
        return self.config.surface_density - self.density(points)


class RaysOutput(NamedTuple):
    """What :func:`render_rays` returns for ``R`` rays."""

    coarse: RenderResult
    fine: RenderResult | None  # None when coarse only
    t_coarse: Tensor  # [R, Sc] stratified samples (viewing-axis depth)
    t_fine: Tensor | None  # [R, Sf] samples drawn from the coarse weights (without the coarse ones)

    @property
    def final(self) -> RenderResult:
        """The render to show: the fine one when there is one."""
        return self.fine if self.fine is not None else self.coarse


def near_far(rays_o: Tensor, rays_d: Tensor, bound: float) -> tuple[Tensor, Tensor, Tensor]:  # [R, 3] each
    """``near``, ``far`` ``[R]`` of each ray in the box ``[-bound, bound]^3`` and ``hit`` ``[R]``; a ray that
    misses gets a short interval at its origin (``far = near + 1e-3``), whose density :func:`render_rays` zeroes."""
    box = ray_box_intersection(rays_o, rays_d, bound)
    far = torch.where(box.hit, box.far, box.near + 1e-3)
    return box.near, far, box.hit


def _render_samples(
    network: NeRFNetwork,
    rays_o: Tensor,  # [R, 3]
    rays_d: Tensor,  # [R, 3]
    t: Tensor,  # [R, S]
    far: Tensor,  # [R]
    hit: Tensor,  # [R] bool
    background: Tensor,  # [3]
    keep: Tensor | None = None,  # [R, S] bool: evaluate the network at these samples only (None: all)
) -> RenderResult:
    r, s = t.shape
    points = rays_o[:, None, :] + t[..., None] * rays_d[:, None, :]  # [R, S, 3]
    norm = torch.linalg.vector_norm(rays_d, dim=-1, keepdim=True)  # [R, 1]
    dirs = (rays_d / norm)[:, None, :].expand(r, s, 3)
    if keep is None:
        sigma, rgb = network(points.reshape(-1, 3), dirs.reshape(-1, 3))
    else:  # evaluate the kept samples only and scatter them back; the others are empty space
        flat = keep.reshape(-1)
        sigma_kept, rgb_kept = network(points.reshape(-1, 3)[flat], dirs.reshape(-1, 3)[flat])
        sigma = sigma_kept.new_zeros(r * s).masked_scatter(flat, sigma_kept)
        rgb = rgb_kept.new_zeros(r * s, 3).masked_scatter(flat[:, None], rgb_kept)
    sigma = sigma.reshape(r, s) * hit[:, None].to(sigma.dtype)
    # A last, empty sample at `far` closes the last segment at the box exit; lengths in world units.
    t_ext = torch.cat([t, far[:, None]], dim=1) * norm  # [R, S + 1]
    sigma_ext = torch.cat([sigma, torch.zeros_like(sigma[:, :1])], dim=1)
    rgb_ext = torch.cat([rgb.reshape(r, s, 3), rgb.new_zeros(r, 1, 3)], dim=1)
    out = volume_render(sigma_ext, rgb_ext, t_ext, background=background)
    return RenderResult(out.rgb, out.depth / norm[:, 0], out.opacity, out.weights[:, :s])


def _device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` itself on its own device; elsewhere a generator there seeded from it (reproducible)."""
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator(device).manual_seed(seed)


def render_rays(
    coarse: NeRFNetwork | HashNeRF,
    fine: NeRFNetwork | HashNeRF | None,
    rays_o: Tensor,  # [R, 3]
    rays_d: Tensor,  # [R, 3] as pixel_rays gives them (not normalised)
    near: Tensor,  # [R]
    far: Tensor,  # [R]
    config: NeRFConfig,
    generator: torch.Generator | None,
    perturb: bool,
    hit: Tensor | None = None,  # [R] bool; None: every ray has its interval
    grid: OccupancyGrid | None = None,
) -> RaysOutput:
    """Render rays with hierarchical sampling (Mildenhall et al., §5.2; the notes' "sample more in positions
    with higher weight"): the coarse network at ``n_coarse`` stratified samples of ``[near, far]``, then the
    fine network at those and ``n_fine`` samples from the piecewise-constant pdf of the coarse weights.

    ``perturb`` False uses bin midpoints and evenly spaced CDF samples (deterministic rendering). ``fine``
    None, ``config.coarse_only`` or ``n_fine = 0`` render the coarse pass only.

    With ``config.occupancy_grid`` the coarse network alone renders samples at a fixed step
    (``config.march_step``, :func:`vision3d.ngp.march`), evaluated only where they fall in an occupied cell of
    ``grid`` (every sample without one); ``t_coarse`` holds those samples.
    """
    r = rays_o.shape[0]
    if rays_o.shape != (r, 3) or rays_d.shape != (r, 3) or near.shape != (r,) or far.shape != (r,):
        raise ValueError(
            f"rays_o and rays_d must be [R, 3], near and far [R]; got {tuple(rays_o.shape)}, {tuple(rays_d.shape)}, "
            f"{tuple(near.shape)}, {tuple(far.shape)}"
        )
    hit = torch.ones(r, dtype=torch.bool, device=rays_o.device) if hit is None else hit
    background = torch.tensor(config.background, dtype=rays_o.dtype, device=rays_o.device)
    gen = _device_generator(generator, rays_o.device)
    if config.occupancy_grid:
        marched = march(rays_o, rays_d, near, far, config.march_step, grid, gen, perturb)
        out = _render_samples(coarse, rays_o, rays_d, marched.t, far, hit, background, marched.keep & hit[:, None])
        return RaysOutput(out, None, marched.t, None)
    t_coarse = stratified_samples(near, far, config.n_coarse, gen, perturb=perturb)  # [R, Sc]
    coarse_out = _render_samples(coarse, rays_o, rays_d, t_coarse, far, hit, background)
    if fine is None or not config.hierarchical:
        return RaysOutput(coarse_out, None, t_coarse, None)
    bins = midpoints_to_bins(t_coarse, near, far)  # [R, Sc + 1]
    t_fine = sample_pdf(bins, coarse_out.weights, config.n_fine, gen, deterministic=not perturb).detach()
    fine_out = _render_samples(fine, rays_o, rays_d, merge_samples(t_coarse, t_fine), far, hit, background)
    return RaysOutput(coarse_out, fine_out, t_coarse, t_fine)


def nerf_loss(out: RaysOutput, target: Tensor) -> tuple[Tensor, dict[str, float]]:  # target: [R, 3]
    """``MSE(coarse) + MSE(fine)`` (the paper's loss, squared error averaged over rays and channels)."""
    mse_coarse = F.mse_loss(out.coarse.rgb, target)
    terms = {"mse_coarse": float(mse_coarse.detach())}
    loss = mse_coarse
    if out.fine is not None:
        mse_fine = F.mse_loss(out.fine.rgb, target)
        terms["mse_fine"] = float(mse_fine.detach())
        loss = loss + mse_fine
    mse = terms.get("mse_fine", terms["mse_coarse"])
    terms["psnr"] = -10.0 * float(np.log10(max(mse, 1e-12)))
    return loss, terms


class NeRFObjective:
    """``generative.training.Objective`` of NeRF: ``rays`` random pixels of all training views per step."""

    def __init__(
        self,
        model: NeRFModel,
        rays_o: Tensor,  # [P, 3] every training pixel's ray
        rays_d: Tensor,  # [P, 3]
        rgb: Tensor,  # [P, 3] its colour on the background
        preview: tuple[np.ndarray, Intrinsics, np.ndarray] | None = None,  # pose [4, 4], intrinsics, rgb [H, W, 3]
    ) -> None:
        p = rays_o.shape[0]
        if rays_o.shape != (p, 3) or rays_d.shape != (p, 3) or rgb.shape != (p, 3):
            raise ValueError(f"rays_o, rays_d and rgb must be [P, 3]; got {tuple(rays_o.shape)}, "
                             f"{tuple(rays_d.shape)}, {tuple(rgb.shape)}")
        self.model, self.config = model, model.config
        self.rays_o, self.rays_d, self.rgb = rays_o, rays_d, rgb
        self.near, self.far, self.hit = near_far(rays_o, rays_d, self.config.bound)
        self.preview = preview  # a view that evaluations render for the trackers (``pictures``)

    def modules(self) -> dict[str, nn.Module]:
        return {"nerf": self.model}

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.model.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        idx = torch.randint(self.rays_o.shape[0], (self.config.rays,), generator=generator).to(self.rays_o.device)
        out = render_rays(self.model.coarse, self.model.fine, self.rays_o[idx], self.rays_d[idx], self.near[idx],
                          self.far[idx], self.config, generator, self.config.perturb, self.hit[idx], self.model.grid)
        return nerf_loss(out, self.rgb[idx])

    def on_step_end(self, step: int) -> None:
        """Refresh the occupancy grid every ``grid_update_every`` steps after ``grid_warmup`` (its random points
        are seeded by the step,
        so a resumed run draws the same)."""
        grid = self.model.grid
        if grid is not None and step >= self.config.grid_warmup and step % self.config.grid_update_every == 0:
            device = grid.mask.device
            generator = torch.Generator(device).manual_seed(self.config.fit.seed * 1_000_003 + step)
            grid.update(self.model.coarse.density, generator)

    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """The preview view rendered beside its image, for the trackers (nothing without a preview)."""
        from envs.io.video import side_by_side
        from vision3d.appearance import to_uint8

        if self.preview is None:
            return {}
        pose, intrinsics, truth = self.preview
        render = render_image(self.model, pose, intrinsics, self.config).rgb
        return {"render_vs_truth": side_by_side([to_uint8(render)], [to_uint8(truth)])[0]}


def training_rays(data: Path, config: NeRFConfig, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Origins, directions and colours ``[P, 3]`` of every pixel of the training views (``size``, ``max_views``)."""
    views = load_blender(data, "train", background=config.background, size=config.size, max_views=config.max_views)
    origins, directions = image_rays(views.intrinsics, views.poses)

    def flat(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device).reshape(-1, 3)

    return flat(origins), flat(directions), flat(views.rgb)


def fit_nerf(
    data: Path, run_dir: Path | RunFolder, config: NeRFConfig | None = None, resume: bool = False
) -> Reconstruction:
    """Fit NeRF to the training views of a Blender-layout dataset at ``data``; see the module docstring.

    Writes ``run_dir/nerf_config.json`` (to rebuild the model, :func:`load_nerf`) besides what
    ``generative.training.fit`` writes. Returns the model and one shape whose ``sdf`` is ``surface_density - sigma``.
    """
    config = config or NeRFConfig()
    data = Path(data)
    if not (data / "transforms_train.json").exists():
        raise ValueError(f"data must be a dataset folder with transforms_train.json, got {data}")
    seed_everything(config.fit.seed)
    device = resolve_device(config.fit.device)
    model = NeRFModel(config).to(device)
    first = load_blender(data, "train", background=config.background, size=config.size, max_views=1)
    objective = NeRFObjective(model, *training_rays(data, config, device),
                              preview=(first.poses[0], first.intrinsics, first.rgb[0]))
    return fit_image_model(objective, model, config, run_dir, resume, "nerf", data.name, device)


def load_nerf(run_dir: Path, device: str = "cpu") -> NeRFModel:
    """The model of a finished (or checkpointed) :func:`fit_nerf` run."""
    return load_image_model(run_dir, NeRFConfig, NeRFModel, "nerf", device)  # type: ignore[return-value]


class NeRFImage(NamedTuple):
    """One rendered view."""

    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1], on the config's background
    depth: np.ndarray  # [H, W] float32 expected viewing-axis depth sum_i w_i t_i (not divided by the opacity)
    opacity: np.ndarray  # [H, W] float32 accumulated opacity sum_i w_i


@torch.no_grad()
def render_image(
    model: NeRFModel,
    pose: np.ndarray,  # [4, 4] camera-to-world
    intrinsics: Intrinsics,
    config: NeRFConfig | None = None,
    chunk: int = 4096,
) -> NeRFImage:
    """Render one view deterministically (no jitter, evenly spaced fine samples), ``chunk`` rays at a time."""
    config = config or model.config
    device = next(model.parameters()).device
    origins, directions = pixel_rays(intrinsics, pose)
    o = torch.as_tensor(origins.reshape(-1, 3), device=device)
    d = torch.as_tensor(directions.reshape(-1, 3), device=device)
    near, far, hit = near_far(o, d, config.bound)
    parts = []
    for s in slice_chunks(o.shape[0], chunk):
        out = render_rays(model.coarse, model.fine, o[s], d[s], near[s], far[s], config, None, False, hit[s],
                          model.grid).final
        parts.append((out.rgb, out.depth, out.opacity))
    rgb, depth, opacity = (torch.cat(p).float().cpu().numpy() for p in zip(*parts))
    h, w = intrinsics.height, intrinsics.width
    return NeRFImage(rgb.reshape(h, w, 3), depth.reshape(h, w), opacity.reshape(h, w))


def slice_chunks(n: int, chunk: int) -> list[slice]:
    """``[0, n)`` in slices of at most ``chunk``."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]


class NeRFEvaluation(NamedTuple):
    """Novel-view quality of a NeRF on a dataset split."""

    psnr: float  # of all pixels of all views, pooled
    views: int


def evaluate_nerf(
    model: NeRFModel | Path, data: Path, split: Literal["train", "val", "test"] = "test", size: int | None = None,
    max_views: int | None = None, chunk: int = 4096,
) -> NeRFEvaluation:
    """PSNR of ``model`` (or the run folder of :func:`fit_nerf`) on ``data``'s ``split`` at ``size`` (default:
    the training size), both on the config's background."""
    if not isinstance(model, NeRFModel):
        model = load_nerf(Path(model))
    config = model.config
    views = load_blender(Path(data), split, background=config.background, size=size or config.size,
                         max_views=max_views)
    rendered = np.stack([render_image(model, pose, views.intrinsics, config, chunk).rgb for pose in views.poses])
    return NeRFEvaluation(psnr(rendered, views.rgb), len(views.poses))


def _check_points(points: Tensor, name: str) -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {tuple(points.shape)}")
