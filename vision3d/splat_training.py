"""Training 3D Gaussian splats from posed images: notes §12.5, "Gaussian splatting" (Kerbl et al., 2023,
"3D Gaussian Splatting for Real-Time Radiance Field Rendering", §5 and App. B), on the one engine.

The scene starts from a point cloud (the dataset's ``points.ply`` stands in for the notes' SfM points) or
from random points in the scene box. Each step renders one random training view with the tiled rasteriser
(:func:`vision3d.splatting.rasterize_tiles`), takes ``(1 - lambda) L1 + lambda (1 - SSIM)`` and moves every
parameter with Adam at its own learning rate. Every ``densify_interval`` steps the adaptive density control
of footnote 28 runs (:func:`densify_and_prune`): Gaussians whose mean view-space positional gradient is
large are cloned (small ones: under-reconstruction) or split in two (large ones: over-reconstruction), and
nearly transparent ones are removed; every ``opacity_reset_interval`` steps the opacities are lowered
(:func:`reset_opacity`) so that only the Gaussians the images need grow back.

How this sits on :func:`generative.training.fit`: the number of Gaussians changes, so the parameters are not
an ``nn.Module`` and not in a ``torch.optim`` optimizer (whose state would not follow rows being added and
removed). The objective owns them and their Adam moments in a :class:`GaussianState`, and uses the engine's
hooks: ``optimizers()`` returns no optimizer, ``train_step`` does the forward, backward and Adam update,
``on_step_end`` densifies, prunes and resets, ``state_dict``/``load_state_dict`` put the variable-size tensors
into the checkpoint. The engine still owns seeding, the generator (the views and the split samples are
drawn from it), logging, checkpoints and resume, so a resumed run continues bit for bit.

The view-space gradient: the projected means ``mu'`` (``Projection.means2d``, in pixels) are an
intermediate tensor; ``retain_grad()`` on it keeps ``dL/dmu'`` after backward. The paper's threshold (2e-4)
is on the gradient with respect to normalised device coordinates, where ``u = (x_ndc + 1) W / 2``: so
``dL/dx_ndc = dL/du * W / 2`` (and ``H / 2`` for ``v``). We convert and keep the paper's unit and value,
which also makes the threshold (nearly) independent of the image size.
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

from envs.io.config import dumps
from envs.io.files import atomic_write_text
from envs.io.run import RunFolder, opened
from generative.training import FitConfig, FitResult, fit, resolve_device, seed_everything
from vision3d import SCENE_BOUND
from vision3d.camera import Intrinsics
from vision3d.dataset import load_blender, load_point_cloud
from vision3d.gaussians import SH_MAX_DEGREE, Gaussians, quaternion_to_rotation, rgb_to_sh0, splat_inputs
from vision3d.metrics import psnr
from vision3d.splat_ply import SplatArrays, read_splat_ply, write_splat_ply
from vision3d.splatting import rasterize_tiles, render

#: Names of the optimised tensors, in a fixed order (checkpoints and the Adam moments follow it).
PARAMS = ("means", "log_scales", "quaternions", "opacity_logits", "sh_dc", "sh_rest")
#: A split Gaussian's children have its scales divided by this (Kerbl et al., §5.2: "by a factor of 1.6").
SPLIT_SCALE = 1.6


def _default_fit() -> FitConfig:
    return FitConfig(steps=3000, schedule="constant", log_every=100, checkpoint_every=500)


@dataclass
class SplatConfig:
    """3D Gaussian splatting hyperparameters (defaults: Kerbl et al., App. B, on a 3000-step budget).

    Four defaults depart from the paper's, which are laid out for 30K steps on ~800 px images; here a run has
    3000 steps on a CPU and 64x64 images (the fields say why): ``sh_interval``, ``densify_from``, ``lr_sh_dc``
    and ``dilation``; and the rasteriser's ``tile`` is 4 pixels.
    """

    fit: FitConfig = field(default_factory=_default_fit)
    """Steps, seed, device, logging; its ``lr`` and schedule are unused (each parameter has its own below)."""
    init: Literal["points", "random"] = "points"
    """Start from the dataset's ``points.ply`` (the SfM stand-in) or from uniform points in the scene box."""
    n_init: int = 5000
    """Initial Gaussians (a random subset of the point cloud when it has more)."""
    init_opacity: float = 0.1
    """Initial opacity of every Gaussian (the paper: 0.1)."""
    sh_degree: int = 3
    """Highest SH band (at most 3); the active degree starts at 0 and rises by one every ``sh_interval``."""
    sh_interval: int = 250
    """Steps between raising the active SH degree. The paper's 1000 is for 30K steps: in 3000 the third band would
    arrive at the very end, and the view-dependent highlights of a phong scene need it early."""
    lr_means: float = 1.6e-4
    """Initial learning rate of the means, times the scene extent (the paper: 1.6e-4)."""
    lr_means_final: float = 1.6e-6
    """Final learning rate of the means, times the extent; log-linear (exponential) decay between the two."""
    means_decay_steps: int | None = None
    """Steps of that decay (the paper: 30000, its run's length); None: ``fit.steps``."""
    lr_log_scales: float = 5e-3
    """Learning rate of the log-scales."""
    lr_quaternions: float = 1e-3
    """Learning rate of the quaternions."""
    lr_opacity: float = 5e-2
    """Learning rate of the opacity logits."""
    lr_sh_dc: float = 5e-3
    """Learning rate of the degree-0 SH coefficients; the higher bands get a twentieth of it (the paper: 2.5e-3;
    doubled so that the grey initial colours reach the images' within a short run)."""
    densify_from: int = 200
    """First step of densification (the paper: 500 of 30000; at 64x64 the gradients are informative sooner)."""
    densify_until: int = 2000
    """No densification and no opacity reset from this step on (the paper: 15000 of 30000)."""
    densify_interval: int = 100
    """Steps between densifications (the paper and footnote 28: 100)."""
    grad_threshold: float = 2e-4
    """Densify where the mean norm of dL/dmu' in NDC units (pixel gradient times W/2, H/2) is at least this."""
    percent_dense: float = 0.01
    """Largest scale below which a Gaussian is cloned and above which it is split, as a fraction of the extent."""
    eps_alpha: float = 0.005
    """Gaussians with an opacity below this are pruned (the notes' epsilon_alpha)."""
    max_screen_size: float | None = 0.1
    """After the first opacity reset, prune Gaussians whose 3-sigma screen radius exceeded this fraction of the
    image side (the paper: 20 px at about 800 px; that is below the dilation's own footprint at 64 px)."""
    max_world_size: float = 0.1
    """With the screen test, also prune Gaussians whose largest scale exceeds this fraction of the extent."""
    max_gaussians: int = 200_000
    """Densification adds no more than this many Gaussians in all (the largest gradients first)."""
    opacity_reset_interval: int = 3000
    """Steps between opacity resets (the paper: 3000)."""
    opacity_reset_value: float = 0.01
    """Opacities are lowered to at most this. Footnote 28 says "to zero every 300"; the paper's code resets to
    0.01 every 3000: an opacity of exactly 0 is a logit of -inf, whose sigmoid has no gradient, so nothing
    could grow back."""
    lambda_ssim: float = 0.2
    """Weight ``lambda`` of the D-SSIM term: ``(1 - lambda) L1 + lambda (1 - SSIM)`` (the paper: 0.2)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour behind the scene: the images are composited on it and so is every render."""
    size: int = 64
    """Training images are resized to ``size x size`` pixels."""
    max_views: int = 100
    """Use at most this many training views."""
    views_per_step: int = 1
    """Random training views per step, losses averaged (the paper: 1)."""
    tile: int = 4
    """Tile side of the rasteriser in pixels (the library's default is 8; a trained scene of ~30K small Gaussians
    at 64x64 composites fewer wasted pixel x Gaussian pairs with 4, and a step is about 1.4x faster)."""
    dilation: float = 0.02
    """Added to every projected 2D covariance, in px^2, in training and in every render of the result (the 3DGS
    code: 0.3, a low-pass filter that keeps each footprint at least a pixel wide). This rasteriser samples each
    pixel at its centre, and at 64x64 nearly all the error is on edges, which a 0.3 px^2 blur softens more than
    the images are: on the phong torus (rendered at 128x128, loaded at 64x64: antialiased), 3000 steps reach
    30.5 dB with 0.02 against 29.2 with 0.3; on images rendered directly at 64x64 (aliased) 27.2 against 24.8
    after 2000 steps. Small but positive keeps the conics finite. A scene
    must be rendered with the dilation it was trained with: the torus fitted with 0.02 scores 17 dB when rendered
    with 0.3 (every sub-pixel Gaussian is widened at its full opacity), as a standard 3DGS viewer would."""

    def __post_init__(self) -> None:
        if min(self.n_init, self.sh_interval, self.densify_interval, self.opacity_reset_interval, self.size,
               self.max_views, self.views_per_step, self.tile, self.max_gaussians) < 1:
            raise ValueError("n_init, sh_interval, densify_interval, opacity_reset_interval, size, max_views, "
                             "views_per_step, tile and max_gaussians must be >= 1")
        if not 0 <= self.sh_degree <= SH_MAX_DEGREE:
            raise ValueError(f"sh_degree must be in 0..{SH_MAX_DEGREE}, got {self.sh_degree}")
        if not 0.0 < self.init_opacity < 1.0 or not 0.0 < self.opacity_reset_value < 1.0:
            raise ValueError(f"init_opacity and opacity_reset_value must be in (0, 1), got {self.init_opacity}, "
                             f"{self.opacity_reset_value}")
        if not self.dilation >= 0.0:
            raise ValueError(f"dilation must be >= 0 (px^2), got {self.dilation}")
        if not 0.0 <= self.lambda_ssim <= 1.0:
            raise ValueError(f"lambda_ssim must be in [0, 1], got {self.lambda_ssim}")
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be an RGB triple in [0, 1], got {self.background}")


# --- Schedules ----------------------------------------------------------------------------------------------


def active_sh_degree(step: int, config: SplatConfig) -> int:
    """SH degree used at 0-based ``step``: one more band every ``sh_interval`` steps, up to ``sh_degree``."""
    return min(config.sh_degree, (step + 1) // config.sh_interval)


def means_lr(step: int, config: SplatConfig, extent: float) -> float:
    """``exp((1 - t) ln lr_0 + t ln lr_1) * extent`` with ``t = step / means_decay_steps`` (the paper's decay)."""
    steps = config.fit.steps if config.means_decay_steps is None else config.means_decay_steps
    t = min(max(step / max(steps, 1), 0.0), 1.0)
    return math.exp((1 - t) * math.log(config.lr_means) + t * math.log(config.lr_means_final)) * extent


def learning_rates(step: int, config: SplatConfig, extent: float) -> dict[str, float]:
    """The learning rate of every tensor of :data:`PARAMS` at ``step``."""
    return {"means": means_lr(step, config, extent), "log_scales": config.lr_log_scales,
            "quaternions": config.lr_quaternions, "opacity_logits": config.lr_opacity, "sh_dc": config.lr_sh_dc,
            "sh_rest": config.lr_sh_dc / 20.0}


def camera_extent(poses: Tensor) -> float:  # [V, 4, 4] -> the paper's "cameras_extent"
    """``1.1`` times the largest distance of a camera centre from their mean (the 3DGS scene radius)."""
    centres = poses[:, :3, 3].double()
    return 1.1 * float((centres - centres.mean(0)).norm(dim=-1).max())


# --- Loss ---------------------------------------------------------------------------------------------------


def ssim_map(image: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:  # -> [3, H, W]
    """Per-pixel, per-channel structural similarity (Wang et al., 2004) with an ``11 x 11`` Gaussian window
    (sigma 1.5), zero padding and ``C1 = 0.01^2``, ``C2 = 0.03^2``, as the 3DGS code computes it. Pixels at least
    ``window // 2`` from the border see no padding: there it equals scikit-image's SSIM with Gaussian weights and
    population covariances (what :func:`vision3d.appearance.ssim` reports, which averages that interior)."""
    x = torch.arange(window, dtype=image.dtype, device=image.device) - (window - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, window, window)
    a, b = image.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, padding=window // 2, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value[0]


def ssim(image: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:  # [H, W, 3] each -> []
    """Mean of :func:`ssim_map` over every pixel, the border included (the training loss's D-SSIM term)."""
    return ssim_map(image, target, window, sigma).mean()


def photometric_loss(image: Tensor, target: Tensor, lambda_ssim: float) -> Tensor:  # [H, W, 3] each -> []
    """``(1 - lambda) L1 + lambda (1 - SSIM)`` (Kerbl et al., eq. 7)."""
    loss = (1.0 - lambda_ssim) * (image - target).abs().mean()
    return loss + lambda_ssim * (1.0 - ssim(image, target)) if lambda_ssim > 0 else loss


# --- Parameters and their Adam moments ----------------------------------------------------------------------


def _logit(p: float | Tensor) -> Tensor:
    p = torch.as_tensor(p)
    return torch.log(p / (1 - p))


@dataclass
class GaussianState:
    """The optimised tensors of :data:`PARAMS` (leaf tensors with grad) and their Adam moments.

    ``sh_dc`` is ``[N, 1, 3]`` and ``sh_rest`` ``[N, K - 1, 3]`` (two tensors because their learning rates
    differ). ``adam_step`` counts the updates, for the bias correction; it is shared by all rows, as in the
    3DGS code, where a new Gaussian joins the optimiser's running step count with zero moments.
    """

    params: dict[str, Tensor]
    exp_avg: dict[str, Tensor]
    exp_avg_sq: dict[str, Tensor]
    adam_step: int = 0

    @classmethod
    def from_gaussians(cls, gaussians: Gaussians) -> GaussianState:
        """Fresh parameters (copies) with zero moments."""
        values = _split_sh(gaussians)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in values.items()}
        return cls(params, {k: torch.zeros_like(v) for k, v in values.items()},
                   {k: torch.zeros_like(v) for k, v in values.items()})

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    def gaussians(self) -> Gaussians:
        """The scene, differentiable with respect to :attr:`params`."""
        p = self.params
        sh = torch.cat([p["sh_dc"], p["sh_rest"]], dim=1)
        return Gaussians(p["means"], p["log_scales"], p["quaternions"], p["opacity_logits"], sh)

    @torch.no_grad()
    def adam(self, lrs: dict[str, float], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-15) -> None:
        """One Adam update of every parameter from its ``.grad`` (then cleared); ``eps`` is the 3DGS code's."""
        self.adam_step += 1
        b1, b2 = betas
        c1, c2 = 1 - b1**self.adam_step, 1 - b2**self.adam_step
        for name, p in self.params.items():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(lrs[name] * (m / c1) / ((v / c2).sqrt() + eps))
            p.grad = None

    def remap(self, gaussians: Gaussians, parent: Tensor, fresh: Tensor) -> GaussianState:
        """The state after densification: parameters from ``gaussians`` (``N'`` rows); row ``i`` keeps the
        moments of old row ``parent[i]`` unless ``fresh[i]`` (a new clone or split child: zero moments)."""
        keep = (~fresh).to(self.params["means"].dtype)
        values = _split_sh(gaussians)

        def moments(old: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: old[k][parent] * keep.reshape(-1, *[1] * (old[k].ndim - 1)) for k in PARAMS}

        params = {k: v.detach().clone().requires_grad_(True) for k, v in values.items()}
        return GaussianState(params, moments(self.exp_avg), moments(self.exp_avg_sq), self.adam_step)

    def state_dict(self) -> dict[str, object]:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "exp_avg": {k: v.clone() for k, v in self.exp_avg.items()},
                "exp_avg_sq": {k: v.clone() for k, v in self.exp_avg_sq.items()}, "adam_step": self.adam_step}

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device) -> GaussianState:
        return cls({k: state["params"][k].to(device).requires_grad_(True) for k in PARAMS},
                   {k: state["exp_avg"][k].to(device) for k in PARAMS},
                   {k: state["exp_avg_sq"][k].to(device) for k in PARAMS}, int(state["adam_step"]))


def _split_sh(gaussians: Gaussians) -> dict[str, Tensor]:
    g = gaussians
    return {"means": g.means, "log_scales": g.log_scales, "quaternions": g.quaternions,
            "opacity_logits": g.opacity_logits, "sh_dc": g.sh[:, :1], "sh_rest": g.sh[:, 1:]}


def _take(gaussians: Gaussians, index: Tensor) -> Gaussians:
    g = gaussians
    return Gaussians(g.means[index], g.log_scales[index], g.quaternions[index], g.opacity_logits[index], g.sh[index])


def _cat(parts: list[Gaussians]) -> Gaussians:
    return Gaussians(*(torch.cat([getattr(p, k) for p in parts]) for k in
                       ("means", "log_scales", "quaternions", "opacity_logits", "sh")))


# --- Adaptive density control -------------------------------------------------------------------------------


class Densified(NamedTuple):
    """What :func:`densify_and_prune` returns: the new scene and where each of its Gaussians came from."""

    gaussians: Gaussians  # N' Gaussians
    parent: Tensor  # [N'] int64: the old Gaussian each one comes from (itself, the one cloned or split)
    fresh: Tensor  # [N'] bool: a new clone or a split child (no optimiser history)
    cloned: int
    split: int
    pruned: int


@torch.no_grad()
def densify_and_prune(
    gaussians: Gaussians,
    grad_accum: Tensor,  # [N] sum over steps of ||dL/dmu'|| in NDC units, where the Gaussian was visible
    denom: Tensor,  # [N] number of those steps
    config: SplatConfig,
    extent: float,
    generator: torch.Generator | None = None,
    max_radii: Tensor | None = None,  # [N] largest 3-sigma screen radius seen (pixels); None: no size pruning
) -> Densified:
    """Adaptive density control (Kerbl et al., §5.2; notes footnote 28), in the order of the 3DGS code.

    With ``g`` the mean view-space gradient ``grad_accum / denom`` and ``s`` a Gaussian's largest scale:

    * clone where ``g >= grad_threshold`` and ``s <= percent_dense * extent``: an exact copy is appended
      (the two then separate under their different gradients);
    * split where ``g >= grad_threshold`` and ``s > percent_dense * extent``: two children replace it, their
      means drawn from the Gaussian ``N(mu, Sigma)`` (from ``generator``), their scales divided by 1.6;
    * prune Gaussians with opacity ``< eps_alpha`` and, when ``max_radii`` is given, those whose screen radius
      exceeded ``max_screen_size`` times the image side or whose ``s > max_world_size * extent``.

    At most ``max_gaussians`` exist after densifying (candidates with the largest ``g`` go first).
    """
    n = len(gaussians)
    device = gaussians.means.device
    grads = torch.where(denom > 0, grad_accum / denom.clamp_min(1), torch.zeros_like(grad_accum))
    largest = gaussians.log_scales.exp().max(dim=1).values
    candidate = grads >= config.grad_threshold
    budget = max(config.max_gaussians - n, 0)
    if int(candidate.sum()) > budget:  # keep the `budget` largest gradients
        order = torch.argsort(torch.where(candidate, grads, -1.0), descending=True, stable=True)
        candidate = torch.zeros_like(candidate)
        candidate[order[:budget]] = True
    small = largest <= config.percent_dense * extent
    clone_idx = torch.nonzero(candidate & small).squeeze(1)
    split_idx = torch.nonzero(candidate & ~small).squeeze(1)

    # Split children: mu + R (s * z), z ~ N(0, I): a sample of N(mu, R S S^T R^T).
    parent_split = split_idx.repeat(2)
    sources = _take(gaussians, parent_split)
    z = torch.randn(len(parent_split), 3, generator=generator, dtype=torch.float64).to(gaussians.means)
    local = sources.log_scales.exp() * z
    means = sources.means + (quaternion_to_rotation(sources.quaternions) @ local[:, :, None])[:, :, 0]
    children = Gaussians(means, sources.log_scales - math.log(SPLIT_SCALE), sources.quaternions,
                         sources.opacity_logits, sources.sh)

    keep_old = torch.ones(n, dtype=torch.bool, device=device)
    keep_old[split_idx] = False
    merged = _cat([gaussians, _take(gaussians, clone_idx), children])
    parent = torch.cat([torch.arange(n, device=device), clone_idx, parent_split])
    fresh = torch.cat([torch.zeros(n, dtype=torch.bool, device=device),
                       torch.ones(len(clone_idx) + len(parent_split), dtype=torch.bool, device=device)])
    alive = torch.cat([keep_old, torch.ones(len(fresh) - n, dtype=torch.bool, device=device)])
    prune = merged.opacities() < config.eps_alpha
    if max_radii is not None and config.max_screen_size is not None:
        big_screen = max_radii > config.max_screen_size * config.size
        big_screen = torch.cat([big_screen, big_screen[parent[n:]]])  # new ones inherit the old radius record
        big_world = merged.log_scales.exp().max(dim=1).values > config.max_world_size * extent
        prune = prune | big_screen | big_world
    pruned = int((alive & prune).sum())
    keep = torch.nonzero(alive & ~prune).squeeze(1)
    return Densified(_take(merged, keep), parent[keep], fresh[keep], len(clone_idx), len(split_idx), pruned)


@torch.no_grad()
def reset_opacity(opacity_logits: Tensor, value: float) -> Tensor:  # [N] -> [N]
    """Logits of ``min(opacity, value)`` (the 3DGS code's reset; see :attr:`SplatConfig.opacity_reset_value`)."""
    return torch.minimum(opacity_logits, _logit(value).to(opacity_logits))


# --- Initialisation -----------------------------------------------------------------------------------------


def knn_log_scales(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:  # [N, 3] -> [N, 3]
    """Isotropic log-scales ``log sqrt(mean squared distance to the k nearest other points)`` (the paper's
    initialisation), at least ``log sqrt(1e-7)``."""
    n = points.shape[0]
    if n < 2:
        return torch.full((n, 3), 0.5 * math.log(1e-2), dtype=points.dtype, device=points.device)
    kk = min(k, n - 1)
    parts = []
    for s in range(0, n, chunk):
        d2 = torch.cdist(points[s : s + chunk], points).square()
        parts.append(d2.topk(kk + 1, dim=1, largest=False).values[:, 1:].mean(dim=1))  # drops the point itself
    mean_d2 = torch.cat(parts).clamp_min(1e-7)
    return (0.5 * mean_d2.log())[:, None].expand(n, 3).clone()


def initial_gaussians(data: Path, config: SplatConfig, device: torch.device) -> Gaussians:
    """``n_init`` Gaussians at the points of ``points.ply`` (grey, as it has no colours) or, for ``init =
    "random"``, uniform in ``[-SCENE_BOUND, SCENE_BOUND]^3`` with random colours; isotropic scales from the
    3 nearest neighbours, identity rotations, opacity ``init_opacity``, higher SH bands zero."""
    generator = torch.Generator().manual_seed(config.fit.seed)
    if config.init == "points":
        points = torch.as_tensor(load_point_cloud(data)[0], dtype=torch.float32)
        if len(points) > config.n_init:
            points = points[torch.randperm(len(points), generator=generator)[: config.n_init]]
        rgb = torch.full_like(points, 0.5)
    else:
        points = (torch.rand(config.n_init, 3, generator=generator) * 2 - 1) * SCENE_BOUND
        rgb = torch.rand(config.n_init, 3, generator=generator)
    n, K = len(points), (config.sh_degree + 1) ** 2
    sh = torch.zeros(n, K, 3)
    sh[:, 0] = rgb_to_sh0(rgb)
    quaternions = torch.zeros(n, 4)
    quaternions[:, 0] = 1.0
    opacity = _logit(config.init_opacity).float().expand(n).clone()
    g = Gaussians(points, knn_log_scales(points), quaternions, opacity, sh)
    return Gaussians(*(t.to(device) for t in (g.means, g.log_scales, g.quaternions, g.opacity_logits, g.sh)))


# --- The objective ------------------------------------------------------------------------------------------


class TrainingViews(NamedTuple):
    """Training images and cameras on the device."""

    rgb: Tensor  # [V, H, W, 3] on the background
    poses: Tensor  # [V, 4, 4] camera-to-world
    intrinsics: Intrinsics


class SplatObjective:
    """The engine's objective for 3D Gaussian splatting (see the module docstring for the hooks it uses)."""

    def __init__(self, gaussians: Gaussians, views: TrainingViews, config: SplatConfig) -> None:
        self.config, self.views = config, views
        self.extent = camera_extent(views.poses)
        self.background = torch.tensor(config.background, dtype=torch.float32, device=views.rgb.device)
        self.state = GaussianState.from_gaussians(gaussians)
        self._reset_statistics()

    def _reset_statistics(self) -> None:
        like = self.state.params["opacity_logits"].detach()
        self.grad_accum, self.denom, self.max_radii = (torch.zeros_like(like) for _ in range(3))

    # Hooks of generative.training.fit: no module and no torch optimizer; the state is ours.
    def modules(self) -> dict[str, nn.Module]:
        return {}

    def param_groups(self) -> list[dict]:
        return []

    def optimizers(self, config: FitConfig) -> dict[str, torch.optim.Optimizer]:
        return {}

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The photometric loss of ``views_per_step`` random training views (their projected means are kept in
        ``self._projections`` for the densification statistics)."""
        views, cfg = self.views, self.config
        index = torch.randint(len(views.poses), (cfg.views_per_step,), generator=generator).tolist()
        gaussians, degree = self.state.gaussians(), active_sh_degree(step, cfg)
        self._projections, total, mse = [], 0.0, 0.0
        for i in index:
            projection, colors, opacities = splat_inputs(gaussians, views.poses[i], views.intrinsics, degree,
                                                          dilation=cfg.dilation)
            projection.means2d.retain_grad()
            image = rasterize_tiles(projection, colors, opacities, views.intrinsics.width, views.intrinsics.height,
                                    self.background, cfg.tile).image
            total = total + photometric_loss(image, views.rgb[i], cfg.lambda_ssim)
            mse += float(F.mse_loss(image.detach(), views.rgb[i]))
            self._projections.append(projection)
        mse /= len(index)
        return total / len(index), {"psnr": -10.0 * math.log10(max(mse, 1e-12)), "gaussians": float(len(self.state))}

    def train_step(self, step: int, generator: torch.Generator, optimizers: dict) -> dict[str, float]:
        loss, terms = self.loss(step, generator)
        loss.backward()
        if step < self.config.densify_until:
            w, h = self.views.intrinsics.width, self.views.intrinsics.height
            scale = torch.tensor([0.5 * w, 0.5 * h], dtype=torch.float32, device=self.grad_accum.device)
            for projection in self._projections:
                if projection.means2d.grad is None:  # nothing reached the image
                    continue
                seen = projection.visible
                grad = (projection.means2d.grad * scale).norm(dim=-1)
                self.grad_accum += torch.where(seen, grad, 0.0)
                self.denom += seen.float()
                self.max_radii = torch.where(seen, torch.maximum(self.max_radii, projection.radii), self.max_radii)
        self._projections = []
        self.state.adam(learning_rates(step, self.config, self.extent))
        return {"loss": float(loss.detach()), **terms}

    def on_step_end(self, step: int) -> None:
        """Densify and prune every ``densify_interval`` steps after ``densify_from``; reset the opacities every
        ``opacity_reset_interval`` steps; both only before ``densify_until`` (``it = step + 1`` as in 3DGS)."""
        cfg, it = self.config, step + 1
        if it >= cfg.densify_until:
            return
        if it > cfg.densify_from and it % cfg.densify_interval == 0:
            size_test = self.max_radii if it > cfg.opacity_reset_interval else None
            generator = self._split_generator(step)
            out = densify_and_prune(self.state.gaussians(), self.grad_accum, self.denom, cfg, self.extent,
                                    generator, size_test)
            self.state = self.state.remap(out.gaussians, out.parent, out.fresh)
            self._reset_statistics()
        if it % cfg.opacity_reset_interval == 0:
            p = self.state.params["opacity_logits"]
            with torch.no_grad():
                p.copy_(reset_opacity(p, cfg.opacity_reset_value))
            self.state.exp_avg["opacity_logits"].zero_()
            self.state.exp_avg_sq["opacity_logits"].zero_()

    def _split_generator(self, step: int) -> torch.Generator:
        # The hook gets no generator; the split samples come from one seeded by (seed, step): reproducible
        # and independent of resuming.
        return torch.Generator().manual_seed(self.config.fit.seed * 1_000_003 + step)

    def evaluate(self, step: int) -> dict[str, float]:
        """PSNR over all training views and the number of Gaussians."""
        images = render_views(self.state.gaussians(), self.views.poses, self.views.intrinsics, self.config)
        return {"train_psnr": psnr(images, self.views.rgb.cpu().numpy()), "n_gaussians": float(len(self.state))}

    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """The first training view rendered beside its image, for the trackers."""
        from envs.io.video import side_by_side
        from vision3d.appearance import to_uint8

        render = render_views(self.state.gaussians(), self.views.poses[:1], self.views.intrinsics, self.config)[0]
        return {"render_vs_truth": side_by_side([to_uint8(render)], [to_uint8(self.views.rgb[0].cpu().numpy())])[0]}

    def state_dict(self) -> dict[str, object]:
        return {"gaussians": self.state.state_dict(), "grad_accum": self.grad_accum.clone(),
                "denom": self.denom.clone(), "max_radii": self.max_radii.clone()}

    def load_state_dict(self, state: dict) -> None:
        device = self.views.rgb.device
        self.state = GaussianState.from_state_dict(state["gaussians"], device)
        self.grad_accum, self.denom, self.max_radii = (state[k].to(device)
                                                       for k in ("grad_accum", "denom", "max_radii"))


# --- Rendering, fitting, evaluation -------------------------------------------------------------------------


@torch.no_grad()
def render_views(gaussians: Gaussians, poses: Tensor, intrinsics: Intrinsics, config: SplatConfig,
                 sh_degree: int | None = None) -> np.ndarray:  # [V, 4, 4] -> [V, H, W, 3] float32
    """Renders of ``gaussians`` from every pose on the config's background (all SH bands by default)."""
    background = torch.tensor(config.background, dtype=gaussians.means.dtype, device=gaussians.means.device)
    return np.stack([render(gaussians, pose, intrinsics, background, sh_degree, config.tile, dilation=config.dilation)
                     .image.float().cpu().numpy() for pose in poses])


def training_views(data: Path, config: SplatConfig, device: torch.device, split: str = "train") -> TrainingViews:
    """The views of ``split`` at ``config.size`` (at most ``max_views``) as tensors on ``device``."""
    views = load_blender(data, split, background=config.background, size=config.size, max_views=config.max_views)
    return TrainingViews(torch.as_tensor(views.rgb, device=device), torch.as_tensor(views.poses, device=device),
                         views.intrinsics)


class SplatReconstruction(NamedTuple):
    """What :func:`fit_gaussians` returns."""

    gaussians: Gaussians  # the final scene (detached)
    ply: Path  # run_dir/point_cloud.ply
    result: FitResult  # the engine's record (losses, metrics rows, last evaluation)


def fit_gaussians(data: Path, run_dir: Path | RunFolder, config: SplatConfig | None = None,
                  resume: bool = False) -> SplatReconstruction:
    """Fit 3D Gaussians to the training views of the Blender-layout dataset ``data`` on the engine; writes
    ``splat_config.json`` and, at the end, ``point_cloud.ply`` (the standard splat PLY) into ``run_dir``."""
    config = config or SplatConfig()
    data = Path(data)
    if not (data / "transforms_train.json").exists():
        raise ValueError(f"data must be a dataset folder with transforms_train.json, got {data}")
    seed_everything(config.fit.seed)
    device = resolve_device(config.fit.device)
    objective = SplatObjective(initial_gaussians(data, config, device), training_views(data, config, device), config)
    with opened(run_dir, config=config, resume=resume) as run:
        if run.writer:
            atomic_write_text(run.path / "splat_config.json", dumps(config))
        result = fit(objective, config.fit, run, resume=resume, desc="splat")
        path = run.path / "point_cloud.ply"
        g = objective.state.gaussians()
        arrays = SplatArrays(*(t.detach().cpu().numpy() for t in
                               (g.means, g.log_scales, g.quaternions, g.opacity_logits, g.sh)))
        if run.writer:
            write_splat_ply(path, arrays)
    detached = Gaussians(*(t.detach() for t in (g.means, g.log_scales, g.quaternions, g.opacity_logits, g.sh)))
    return SplatReconstruction(detached, path, result)


def load_gaussians(path: Path, device: str | torch.device = "cpu") -> Gaussians:
    """The Gaussians of a splat PLY (or of ``point_cloud.ply`` in a run folder)."""
    path = Path(path)
    arrays = read_splat_ply(path / "point_cloud.ply" if path.is_dir() else path)
    return Gaussians(*(torch.as_tensor(a, device=device) for a in arrays))


class SplatEvaluation(NamedTuple):
    """Novel-view quality of Gaussians on a dataset split."""

    psnr: float  # of all pixels of all views, pooled
    views: int
    renders: np.ndarray  # [V, H, W, 3] float32


def evaluate_gaussians(gaussians: Gaussians | Path, data: Path, config: SplatConfig | None = None,
                       split: Literal["train", "val", "test"] = "test") -> SplatEvaluation:
    """PSNR of ``gaussians`` (or a splat PLY / run folder) on ``data``'s ``split`` at ``config.size``."""
    config = config or SplatConfig()
    if not isinstance(gaussians, Gaussians):
        gaussians = load_gaussians(Path(gaussians))
    views = training_views(Path(data), config, gaussians.means.device, split)
    renders = render_views(gaussians, views.poses, views.intrinsics, config)
    return SplatEvaluation(psnr(renders, views.rgb.cpu().numpy()), len(views.poses), renders)
