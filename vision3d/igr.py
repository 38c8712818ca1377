"""Implicit geometric regularisation: an SDF from a point cloud (notes §12.2; Gropp et al., ICML 2020).

A point cloud has no inside or outside, so asking ``f_theta`` to vanish on the points alone has the
trivial solution ``f = 0``. IGR adds the Eikonal term, which asks for a unit gradient everywhere,
the defining property of a signed distance function:

    L(theta) = mean_i |f(x_i)|^2  +  lambda E_x[(||grad_x f(x)|| - 1)^2]  (+ tau mean_i ||grad f(x_i) - n_i||).

The notes sum the vanish term; we take the mean (a rescaling of lambda and tau). The Eikonal
expectation is estimated on points drawn uniformly in the scene box (global) and from a Gaussian
around every input point whose standard deviation is the distance to its k-th nearest neighbour
(local), as in the paper. The optional normal term uses oriented normals when the cloud has them.
The network starts from the geometric initialisation (``f ~ ||x|| - r``, Atzmon & Lipman 2020) with
Softplus activations (beta = 100) so that the gradient of ``f`` is smooth. Gradients come from
autograd with ``create_graph=True``, so the loss is differentiated twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.training import FitConfig, fit, resolve_device, seed_everything
from vision3d import SCENE_BOUND
from vision3d.fields import FieldConfig, FittedShape, ImplicitField, Reconstruction, as_numpy_sdf, gradient


def vanish_term(f: Tensor) -> Tensor:  # f: [N] or [N, 1] -> []
    """``mean_i |f(x_i)|^2`` on the input points: the surface passes through them."""
    return (f**2).mean()


def eikonal_term(grad: Tensor) -> Tensor:  # grad: [M, 3] -> []
    """``mean (||grad f|| - 1)^2``: a signed distance function has a unit gradient everywhere."""
    if grad.ndim != 2 or grad.shape[1] != 3:
        raise ValueError(f"grad must have shape [M, 3], got {tuple(grad.shape)}")
    return ((grad.norm(dim=1) - 1.0) ** 2).mean()


def normal_term(grad: Tensor, normals: Tensor) -> Tensor:  # grad, normals: [N, 3] -> []
    """``mean_i ||grad f(x_i) - n_i||``: the gradient at an input point is its outward normal."""
    if grad.shape != normals.shape:
        raise ValueError(
            f"grad and normals must have the same shape, got {tuple(grad.shape)} and {tuple(normals.shape)}"
        )
    return (grad - normals).norm(dim=1).mean()


def local_sigmas(points: np.ndarray, k: int) -> np.ndarray:  # points: [N, 3] -> [N]
    """Distance from every point to its ``k``-th nearest neighbour (itself excluded): the per-point
    standard deviation of IGR's local sampling."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) <= k:
        raise ValueError(f"points must have shape [N, 3] with N > k = {k}, got {points.shape}")
    distances, _ = cKDTree(points).query(points, k=k + 1)
    return distances[:, k].astype(np.float32)


def eikonal_points(
    centres: Tensor,  # [B, 3], input points of the batch
    sigmas: Tensor,  # [B]
    n_global: int,
    generator: torch.Generator,
    bound: float = SCENE_BOUND,
) -> Tensor:  # [B + n_global, 3]
    """Points for the Eikonal term: ``x_i + sigma_i eps`` around each centre, and ``n_global``
    uniform in ``[-bound, bound]^3``."""
    eps = torch.randn(centres.shape, generator=generator).to(centres.device)
    uniform = (torch.rand(n_global, 3, generator=generator) * 2.0 - 1.0).to(centres.device) * bound
    return torch.cat([centres + sigmas[:, None] * eps, uniform], dim=0)


def _default_fit() -> FitConfig:
    return FitConfig(steps=1500, lr=1e-3)


def _default_network() -> FieldConfig:
    return FieldConfig(
        hidden=128, layers=6, skip=(3,), activation="softplus", beta=100.0, geometric_init=True, radius=0.3
    )


@dataclass
class IGRConfig:
    """IGR: architecture, loss weights and sampling."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation (steps, learning rate, seed, device, logging)."""
    network: FieldConfig = field(default_factory=_default_network)
    """The network ``f_theta(x)`` (softplus, geometric initialisation)."""
    batch_size: int = 1024
    """Input points per step (the vanish term), also the number of local Eikonal points."""
    n_global: int = 256
    """Uniform points in the scene box per step for the Eikonal term."""
    eikonal_weight: float = 0.1
    """``lambda``, the weight of the Eikonal term."""
    use_normals: bool = False
    """Use the cloud's normals in the normal term (needs normals in ``points.ply``)."""
    normal_weight: float = 1.0
    """``tau``, the weight of the normal term."""
    k_neighbours: int = 50
    """The local sampling's standard deviation is the distance to this nearest neighbour."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.n_global < 0 or self.k_neighbours < 1:
            raise ValueError(
                f"batch_size, k_neighbours >= 1 and n_global >= 0 expected, got {self.batch_size}, "
                f"{self.k_neighbours}, {self.n_global}"
            )
        if self.eikonal_weight < 0 or self.normal_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got {self.eikonal_weight}, {self.normal_weight}")
        if self.network.latent_dim != 0 or self.network.out_dim != 1:
            raise ValueError("IGR fits one shape: network needs latent_dim == 0 and out_dim == 1")


class IGRObjective:
    """Vanish + Eikonal (+ normal) loss on a point cloud (``generative.training.Objective``)."""

    def __init__(
        self,
        points: np.ndarray,  # [N, 3]
        normals: np.ndarray | None,  # [N, 3] or None
        config: IGRConfig,
        device: torch.device,
    ) -> None:
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape [N, 3], got {points.shape}")
        if config.use_normals:
            if normals is None:
                raise ValueError("use_normals=True but the point cloud has no normals")
            if np.asarray(normals).shape != points.shape:
                raise ValueError(
                    f"normals must have the shape of points {points.shape}, got {np.asarray(normals).shape}"
                )
        self.config, self.device = config, device
        self.points = torch.as_tensor(points, dtype=torch.float32, device=device)
        self.sigmas = torch.as_tensor(local_sigmas(points, config.k_neighbours), device=device)
        self.normals = (
            torch.as_tensor(np.asarray(normals), dtype=torch.float32, device=device) if config.use_normals else None
        )
        seed_everything(config.fit.seed)
        self.network = ImplicitField(config.network).to(device)

    def modules(self) -> dict[str, nn.Module]:
        return {"network": self.network}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.network.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        index = torch.randint(0, len(self.points), (cfg.batch_size,), generator=generator).to(self.device)
        surface = self.points[index]
        off = eikonal_points(surface, self.sigmas[index], cfg.n_global, generator)
        x = torch.cat([surface, off], dim=0).requires_grad_(True)
        f = self.network(x)
        grad = gradient(f, x, create_graph=True)
        vanish = vanish_term(f[: cfg.batch_size])
        eikonal = eikonal_term(grad[cfg.batch_size :])
        loss = vanish + cfg.eikonal_weight * eikonal
        terms = {"vanish": float(vanish.detach()), "eikonal": float(eikonal.detach())}
        if self.normals is not None:
            normal = normal_term(grad[: cfg.batch_size], self.normals[index])
            loss = loss + cfg.normal_weight * normal
            terms["normal"] = float(normal.detach())
        return loss, terms


def fit_igr(data: Path, run_dir: Path | RunFolder, config: IGRConfig | None = None, resume: bool = False) -> Reconstruction:
    """Fit an SDF to the point cloud ``data/points.ply`` (normals used only with ``use_normals``);
    returns one ``FittedShape`` named after the folder."""
    from vision3d.dataset import load_point_cloud

    config = config or IGRConfig()
    data = Path(data)
    if not data.is_dir():
        raise ValueError(f"data: expected an existing data folder, got {data}")
    points, normals = load_point_cloud(data)
    device = resolve_device(config.fit.device)
    objective = IGRObjective(points, normals, config, device)
    fit(objective, config.fit, run_dir, resume=resume, desc="igr", record=config)
    objective.network.eval()
    return Reconstruction([FittedShape(data.name, as_numpy_sdf(lambda x: objective.network(x), device))], objective.network)
