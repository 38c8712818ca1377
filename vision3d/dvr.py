"""Differentiable volumetric rendering: shape and texture from posed images and masks (notes §12.3).

Niemeyer, Mescheder, Oechsle & Geiger 2020, "Differentiable Volumetric Rendering" (DVR), trained
from RGB images and silhouettes only (no depth, no 3D supervision):

* an occupancy network ``f_theta(p)`` (logits; occupancy ``sigmoid``) and a texture field
  ``t_theta(p) -> [0, 1]^3``. They are two separate :class:`~vision3d.fields.ImplicitField` MLPs,
  not one trunk with two heads, so that the texture loss cannot bend the geometry except through
  the surface point ``p_hat``, the path the notes derive. The occupancy network starts from a
  sphere (geometric initialisation, ``logit ~ -logit_scale (||p|| - occupancy.radius)``); the masks
  then carve and grow it.
* each step draws ``rays`` random pixels of the training views and finds the first crossing
  ``p_hat`` of ``sigmoid(f) = tau`` along each pixel's ray (``surface.find_surface``). Losses, each
  a sum over rays divided by the number of rays in the batch:

  - photometric (mask 1, ray hits): ``|| t(p_hat) - I_u ||_1``, with ``p_hat = r0 + d_hat w`` and
    ``d_hat`` differentiated implicitly (``surface.implicit_depth``), so the colour error also moves
    the surface;
  - freespace (mask 0): binary cross-entropy towards occupancy 0 at ``p_hat`` if the ray hits, else
    at the coarse sample of largest occupancy on the ray (the point most likely to become a floater);
  - occupancy (mask 1, no hit): binary cross-entropy towards occupancy 1 at the coarse sample of
    largest occupancy on the ray (DVR's alternative to a random point; it grows the surface where
    it is closest to appearing rather than anywhere along the ray).

  The freespace and occupancy points are detached: at ``p_hat`` the occupancy equals ``tau`` by
  construction, so differentiating through the surface point would cancel their gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.training import FitConfig, resolve_device, seed_everything
from vision3d.camera import Intrinsics, image_rays
from vision3d.dataset import load_blender
from vision3d.fields import FieldConfig, ImplicitField, Reconstruction, fit_image_model, load_image_model
from vision3d.metrics import psnr, silhouette_iou
from vision3d.occupancy import logit
from vision3d.surface import find_surface, implicit_depth


def _default_fit() -> FitConfig:
    return FitConfig(steps=1000, lr=3e-3)


def _default_occupancy() -> FieldConfig:
    # ReLU: several times cheaper than softplus on a CPU, and the surface needs no second derivatives.
    return FieldConfig(hidden=64, layers=4, skip=(), out_dim=1, activation="relu", geometric_init=True, radius=0.4)


def _default_texture() -> FieldConfig:
    return FieldConfig(hidden=64, layers=3, skip=(), out_dim=3, activation="relu", geometric_init=False,
                       fourier_levels=4)


@dataclass
class DVRConfig:
    """DVR hyperparameters: optimisation, networks, data, ray marching and loss weights."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation (steps, learning rate, seed, device, logging)."""
    occupancy: FieldConfig = field(default_factory=_default_occupancy)
    """The occupancy network (one output; its geometric initialisation is the starting sphere)."""
    texture: FieldConfig = field(default_factory=_default_texture)
    """The texture field (three outputs, squashed by a sigmoid)."""
    rays: int = 1024
    """Random training pixels (rays) per step."""
    n_steps: int = 48
    """Evenly spaced occupancy evaluations per ray inside the scene box (the coarse march)."""
    n_secant: int = 8
    """Secant iterations refining the first crossing."""
    tau: float = 0.5
    """Occupancy threshold of the surface."""
    size: int = 64
    """Training images are resized to ``size x size`` pixels."""
    max_views: int = 50
    """Use at most this many training views."""
    lambda_rgb: float = 1.0
    """Weight of the photometric loss."""
    lambda_freespace: float = 1.0
    """Weight of the freespace loss (mask 0)."""
    lambda_occupancy: float = 1.0
    """Weight of the occupancy loss (mask 1, no hit)."""
    logit_scale: float = 10.0
    """Logits are ``-logit_scale`` times the occupancy network's output (sets how sharp the initial sphere is)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.tau < 1.0:
            raise ValueError(f"tau must be in (0, 1), got {self.tau}")
        if min(self.rays, self.size, self.max_views, self.n_steps - 1) < 1 or self.n_secant < 0:
            raise ValueError(
                f"rays, size, max_views must be >= 1, n_steps >= 2 and n_secant >= 0; got rays={self.rays}, "
                f"size={self.size}, max_views={self.max_views}, n_steps={self.n_steps}, n_secant={self.n_secant}"
            )
        if self.occupancy.out_dim != 1 or self.texture.out_dim != 3 or self.occupancy.latent_dim or self.texture.latent_dim:
            raise ValueError(
                f"occupancy needs out_dim=1 and texture out_dim=3, both latent_dim=0; got occupancy "
                f"({self.occupancy.out_dim}, {self.occupancy.latent_dim}), texture ({self.texture.out_dim}, "
                f"{self.texture.latent_dim})"
            )
        if self.logit_scale <= 0:
            raise ValueError(f"logit_scale must be positive, got {self.logit_scale}")


class DVRModel(nn.Module):
    """Occupancy network (logits) and texture field of DVR, two separate MLPs (see the module docstring)."""

    def __init__(self, config: DVRConfig) -> None:
        super().__init__()
        self.config = config
        self.occupancy = ImplicitField(config.occupancy)
        self.texture = ImplicitField(config.texture)

    @property
    def tau_logit(self) -> float:
        """The surface level in logit space, ``log(tau / (1 - tau))``."""
        return logit(self.config.tau)

    def logits(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """Occupancy logits ``f_theta(p)``; inside where ``>= tau_logit``."""
        return -self.config.logit_scale * self.occupancy(points)[:, 0]

    def color(self, points: Tensor) -> Tensor:  # [N, 3] -> [N, 3]
        """Texture field ``t_theta(p)`` in ``[0, 1]``."""
        return torch.sigmoid(self.texture(points))

    def sdf(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """Negative inside, zero on the surface: ``-(logit - logit(tau))`` (for marching cubes)."""
        return self.tau_logit - self.logits(points)


class RenderableField(Protocol):
    """What :func:`render_field` needs: occupancy logits, a colour and the surface level."""

    tau_logit: float

    def logits(self, points: Tensor) -> Tensor: ...  # [N, 3] -> [N]

    def color(self, points: Tensor) -> Tensor: ...  # [N, 3] -> [N, 3]


def photometric_loss(rgb: Tensor, target: Tensor, n_rays: int) -> Tensor:  # rgb, target: [M, 3]
    """``sum_u ||I_hat_u - I_u||_1 / n_rays`` (notes §12.3's reconstruction loss with the L1 norm)."""
    return (rgb - target).abs().sum() / n_rays


def freespace_loss(logits: Tensor, n_rays: int) -> Tensor:  # logits: [M]
    """Binary cross-entropy towards occupancy 0, ``sum -log(1 - sigmoid(l)) / n_rays``."""
    return F.softplus(logits).sum() / n_rays


def occupied_loss(logits: Tensor, n_rays: int) -> Tensor:  # logits: [M]
    """Binary cross-entropy towards occupancy 1, ``sum -log(sigmoid(l)) / n_rays``."""
    return F.softplus(-logits).sum() / n_rays


class DVRLosses(NamedTuple):
    """The three loss terms of one batch and how many rays fed each."""

    photometric: Tensor
    freespace: Tensor
    occupancy: Tensor
    n_photometric: int  # mask 1, hit
    n_freespace: int  # mask 0
    n_occupancy: int  # mask 1, no hit


def dvr_losses(
    model: DVRModel,
    rays_o: Tensor,  # [B, 3]
    rays_d: Tensor,  # [B, 3]
    rgb: Tensor,  # [B, 3] ground-truth colours
    mask: Tensor,  # [B] bool ground-truth silhouette
    n_steps: int,
    n_secant: int,
) -> DVRLosses:
    """Photometric, freespace and occupancy losses of a ray batch (module docstring)."""
    n = rays_o.shape[0]
    if rgb.shape != (n, 3) or mask.shape != (n,):
        raise ValueError(f"rgb must be [{n}, 3] and mask [{n}]; got {tuple(rgb.shape)} and {tuple(mask.shape)}")
    surf = find_surface(model.logits, rays_o, rays_d, n_steps=n_steps, n_secant=n_secant, tau=model.tau_logit)
    in_box = surf.far > surf.near
    photo = surf.hit & mask
    loss_rgb = rays_o.new_zeros(())
    if photo.any():
        depth = implicit_depth(
            model.logits, surf.depth[photo], rays_o[photo], rays_d[photo], list(model.occupancy.parameters())
        )
        p_hat = rays_o[photo] + depth[:, None] * rays_d[photo]
        loss_rgb = photometric_loss(model.color(p_hat), rgb[photo], n)

    free = ~mask & in_box
    grow = mask & ~surf.hit & in_box
    d_free = torch.where(surf.hit, surf.depth, surf.max_depth)[free]
    points = torch.cat(
        [rays_o[free] + d_free[:, None] * rays_d[free], rays_o[grow] + surf.max_depth[grow][:, None] * rays_d[grow]]
    )
    logits = model.logits(points)
    n_free = int(free.sum())
    return DVRLosses(
        loss_rgb,
        freespace_loss(logits[:n_free], n),
        occupied_loss(logits[n_free:], n),
        int(photo.sum()),
        n_free,
        int(grow.sum()),
    )


class DVRObjective:
    """``generative.training.Objective`` of DVR: random pixels of all training views per step."""

    def __init__(
        self,
        model: DVRModel,
        rays_o: Tensor,  # [R, 3] every training pixel's ray
        rays_d: Tensor,  # [R, 3]
        rgb: Tensor,  # [R, 3]
        mask: Tensor,  # [R] bool
        config: DVRConfig,
        preview: tuple[np.ndarray, Intrinsics, np.ndarray] | None = None,  # pose [4, 4], intrinsics, rgb [H, W, 3]
    ) -> None:
        r = rays_o.shape[0]
        if rays_d.shape != (r, 3) or rgb.shape != (r, 3) or mask.shape != (r,) or rays_o.shape != (r, 3):
            raise ValueError(
                f"rays_o, rays_d, rgb must be [R, 3] and mask [R]; got {tuple(rays_o.shape)}, "
                f"{tuple(rays_d.shape)}, {tuple(rgb.shape)}, {tuple(mask.shape)}"
            )
        self.model, self.config = model, config
        self.rays_o, self.rays_d, self.rgb, self.mask = rays_o, rays_d, rgb, mask.bool()
        self.preview = preview  # a view that evaluations render for the trackers (``pictures``)

    def modules(self) -> dict[str, nn.Module]:
        return {"dvr": self.model}

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.model.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        idx = torch.randint(self.rays_o.shape[0], (cfg.rays,), generator=generator).to(self.rays_o.device)
        terms = dvr_losses(
            self.model, self.rays_o[idx], self.rays_d[idx], self.rgb[idx], self.mask[idx], cfg.n_steps, cfg.n_secant
        )
        total = (
            cfg.lambda_rgb * terms.photometric
            + cfg.lambda_freespace * terms.freespace
            + cfg.lambda_occupancy * terms.occupancy
        )
        return total, {
            "photometric": float(terms.photometric.detach()),
            "freespace": float(terms.freespace.detach()),
            "occupancy": float(terms.occupancy.detach()),
            "hit_rate": terms.n_photometric / max(1, int(self.mask[idx].sum())),
        }

    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """The preview view rendered beside its image, for the trackers (nothing without a preview)."""
        from envs.io.video import side_by_side
        from vision3d.appearance import to_uint8

        if self.preview is None:
            return {}
        pose, intrinsics, truth = self.preview
        rgb = render_field(self.model, intrinsics, pose[None], self.config.n_steps, self.config.n_secant,
                           device=self.rays_o.device).rgb[0]
        return {"render_vs_truth": side_by_side([to_uint8(rgb)], [to_uint8(truth)])[0]}


def fit_dvr(data: Path, run_dir: Path | RunFolder, config: DVRConfig | None = None, resume: bool = False) -> Reconstruction:
    """Fit DVR to the training views of a Blender-layout dataset at ``data``; see the module docstring.

    Writes ``run_dir/dvr_config.json`` (to rebuild the model, :func:`load_dvr`) besides what
    ``generative.training.fit`` writes. Returns the model and one shape whose ``sdf`` is ``-(logit - logit(tau))``.
    """
    config = config or DVRConfig()
    data = Path(data)
    if not (data / "transforms_train.json").exists():
        raise ValueError(f"data must be a dataset folder with transforms_train.json, got {data}")
    seed_everything(config.fit.seed)
    device = resolve_device(config.fit.device)
    views = load_blender(data, "train", size=config.size, max_views=config.max_views)
    origins, directions = image_rays(views.intrinsics, views.poses)
    model = DVRModel(config).to(device)

    def flat(a: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device).reshape(-1, *a.shape[3:])

    objective = DVRObjective(model, flat(origins), flat(directions), flat(views.rgb), flat(views.masks, torch.bool),
                             config, preview=(views.poses[0], views.intrinsics, views.rgb[0]))
    return fit_image_model(objective, model, config, run_dir, resume, "dvr", data.name, device)


def load_dvr(run_dir: Path, device: str = "cpu") -> DVRModel:
    """The model of a finished (or checkpointed) :func:`fit_dvr` run."""
    return load_image_model(run_dir, DVRConfig, DVRModel, "dvr", device)  # type: ignore[return-value]


class Rendering(NamedTuple):
    """Images of a field from a set of cameras."""

    rgb: np.ndarray  # [N, H, W, 3] float32 in [0, 1], background where no surface
    mask: np.ndarray  # [N, H, W] bool: the ray hits the surface
    depth: np.ndarray  # [N, H, W] float32 depth along the viewing axis, 0 on the background


@torch.no_grad()
def render_field(
    model: RenderableField,
    intrinsics: Intrinsics,
    poses: np.ndarray,  # [N, 4, 4] camera-to-world
    n_steps: int = 128,
    n_secant: int = 8,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    chunk: int = 4096,
    device: torch.device | str = "cpu",
) -> Rendering:
    """Render the surface ``sigmoid(f) = tau`` of ``model`` with its texture: DVR's forward pass (§12.3)."""
    origins, directions = image_rays(intrinsics, poses)
    shape = origins.shape[:3]
    o = torch.as_tensor(origins.reshape(-1, 3), device=device)
    d = torch.as_tensor(directions.reshape(-1, 3), device=device)
    surf = find_surface(model.logits, o, d, n_steps=n_steps, n_secant=n_secant, tau=model.tau_logit, chunk=chunk)
    rgb = torch.tensor(background, dtype=torch.float32, device=device).expand(o.shape[0], 3).clone()
    hit = surf.hit
    index = torch.nonzero(hit).squeeze(1)
    for start in range(0, index.shape[0], chunk):
        i = index[start : start + chunk]
        rgb[i] = model.color(o[i] + surf.depth[i][:, None] * d[i]).float()
    depth = torch.where(hit, surf.depth, torch.zeros_like(surf.depth))
    return Rendering(
        rgb.reshape(*shape, 3).cpu().numpy(),
        hit.reshape(shape).cpu().numpy(),
        depth.reshape(shape).float().cpu().numpy(),
    )


class DVREvaluation(NamedTuple):
    """Novel-view quality of a DVR model on a dataset split."""

    silhouette_iou: float  # pooled over all pixels of all views
    psnr: float  # of the rendered colours on the dataset's background
    views: int


def evaluate_dvr(
    model: DVRModel | Path,
    data: Path,
    split: str = "test",
    size: int | None = None,
    max_views: int | None = None,
    n_steps: int = 128,
) -> DVREvaluation:
    """Silhouette IoU and PSNR of ``model`` (or the run folder of :func:`fit_dvr`) on ``data``'s ``split``.

    Views are rendered at ``size`` (default: the training size) on a white background.
    """
    if not isinstance(model, DVRModel):
        model = load_dvr(Path(model))
    device = next(model.parameters()).device
    views = load_blender(Path(data), split, size=size or model.config.size, max_views=max_views)
    rendered = render_field(
        model, views.intrinsics, views.poses, n_steps=n_steps, n_secant=model.config.n_secant, device=device
    )
    return DVREvaluation(silhouette_iou(rendered.mask, views.masks), psnr(rendered.rgb, views.rgb), len(views.poses))
