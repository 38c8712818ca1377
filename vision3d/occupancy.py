"""Occupancy networks (notes §12 and §12.1; Mescheder et al., "Occupancy Networks", CVPR 2019).

``f_theta(x, z) = sigmoid(g_theta(x, z))`` is the probability that ``x`` lies inside the shape with
code ``z``; the surface is the level set ``{x | f_theta(x, z) = tau}``. Trained on points labelled
inside/outside (``samples.npz`` of an exported dataset: uniform in the scene box plus near the
surface) with binary cross-entropy. One learned code per shape (an auto-decoder, as DeepSDF), so one
network holds several shapes.

The notes write the loss as a sum over the ``n`` points; we use the mean, which only rescales the
learning rate and keeps it independent of the batch size.

For marching cubes every method hands over an SDF-like field, negative inside with the surface at 0:
here ``-(g_theta(x, z) - logit(tau))``, which is positive exactly where ``f_theta < tau``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.training import FitConfig, fit, resolve_device, seed_everything
from vision3d.fields import AutoDecoder, FieldConfig, FittedShape, Reconstruction, as_numpy_sdf, as_paths


def occupancy_loss(logits: Tensor, labels: Tensor) -> Tensor:  # logits: [N], labels: [N] in {0, 1}
    """Mean binary cross-entropy ``-(1/n) sum_i y_i log f_i + (1 - y_i) log(1 - f_i)``, ``f = sigmoid(logits)``,
    evaluated stably from the logits."""
    if logits.shape != labels.shape:
        raise ValueError(
            f"logits and labels must have the same shape, got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def logit(p: float) -> float:
    """``log(p / (1 - p))``, the pre-activation at which the occupancy probability equals ``p``."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"tau must lie in (0, 1), got {p}")
    return math.log(p / (1.0 - p))


def _default_fit() -> FitConfig:
    return FitConfig(steps=2000, lr=1e-3)


def _default_network() -> FieldConfig:
    return FieldConfig(
        hidden=128, layers=5, skip=(), latent_dim=16, activation="relu", geometric_init=False, fourier_levels=4
    )


@dataclass
class OccupancyConfig:
    """Occupancy network: architecture, optimisation and decision threshold."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation (steps, learning rate, seed, device, logging)."""
    network: FieldConfig = field(default_factory=_default_network)
    """The network ``g_theta(x, z)`` (its output is the occupancy logit)."""
    batch_size: int = 4096
    """Labelled points per step, split evenly between the shapes."""
    tau: float = 0.5
    """Occupancy threshold of the surface ``f_theta = tau``."""
    code_std: float = 0.1
    """Standard deviation of the initial shape codes (larger than DeepSDF's 0.01: the codes separate sooner)."""

    def __post_init__(self) -> None:
        logit(self.tau)  # checks the range
        if self.batch_size < 1 or self.code_std < 0:
            raise ValueError(f"batch_size must be >= 1 and code_std >= 0, got {self.batch_size}, {self.code_std}")
        if self.network.latent_dim < 1 or self.network.out_dim != 1:
            raise ValueError(
                f"network needs latent_dim >= 1 and out_dim == 1, got {self.network.latent_dim}, {self.network.out_dim}"
            )


class OccupancyObjective:
    """BCE on labelled points of several shapes, one code per shape (``generative.training.Objective``)."""

    def __init__(
        self,
        points: Sequence[np.ndarray],  # K arrays [N_k, 3]
        occupancy: Sequence[np.ndarray],  # K arrays [N_k] bool
        config: OccupancyConfig,
        device: torch.device,
    ) -> None:
        if len(points) == 0 or len(points) != len(occupancy):
            raise ValueError(
                f"points and occupancy must list the same, non-zero number of shapes, got "
                f"{len(points)} and {len(occupancy)}"
            )
        self.points, self.labels = [], []
        for k, (p, o) in enumerate(zip(points, occupancy)):
            p, o = np.asarray(p), np.asarray(o)
            if p.ndim != 2 or p.shape[1] != 3 or o.shape != (len(p),) or len(p) == 0:
                raise ValueError(
                    f"shape {k}: points must be [N, 3] and occupancy [N] with N > 0, got {p.shape} and {o.shape}"
                )
            self.points.append(torch.as_tensor(p, dtype=torch.float32, device=device))
            self.labels.append(torch.as_tensor(o, dtype=torch.float32, device=device))
        self.config, self.device = config, device
        seed_everything(config.fit.seed)
        self.decoder = AutoDecoder(config.network, len(points), config.code_std).to(device)
        self.per_shape = max(1, config.batch_size // len(points))

    def modules(self) -> dict[str, nn.Module]:
        return {"decoder": self.decoder}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.decoder.parameters())}]

    def logits(self, x: Tensor, shape: int) -> Tensor:  # x: [N, 3] -> [N]
        """Occupancy logit ``g_theta(x, z_shape)``."""
        return self.decoder(x, shape)

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        total = torch.zeros((), device=self.device)
        correct = 0.0
        for k, (points, labels) in enumerate(zip(self.points, self.labels)):
            index = torch.randint(0, len(points), (self.per_shape,), generator=generator).to(self.device)
            logits = self.logits(points[index], k)
            total = total + occupancy_loss(logits, labels[index])
            correct += float(((logits > 0) == (labels[index] > 0.5)).float().mean())
        return total / len(self.points), {"accuracy": correct / len(self.points)}

    def fitted(self, names: Sequence[str]) -> list[FittedShape]:
        """One ``FittedShape`` per code, with ``sdf = -(logit - logit(tau))``."""
        self.decoder.eval()
        offset = logit(self.config.tau)
        shapes = []
        for k, name in enumerate(names):

            def field_k(x: Tensor, k: int = k) -> Tensor:
                return offset - self.logits(x, k)

            shapes.append(FittedShape(name, as_numpy_sdf(field_k, self.device)))
        return shapes


def fit_occupancy(
    data: Path | Sequence[Path], run_dir: Path | RunFolder, config: OccupancyConfig | None = None, resume: bool = False
) -> Reconstruction:
    """Fit one occupancy network with one code per data folder (each with ``samples.npz``); the
    shapes are named after their folders. Logs and checkpoints go to ``run_dir`` (``generative.training.fit``)."""
    from vision3d.dataset import load_samples

    config = config or OccupancyConfig()
    folders = as_paths(data, "data")
    samples = [load_samples(folder) for folder in folders]
    device = resolve_device(config.fit.device)
    objective = OccupancyObjective([s.points for s in samples], [s.occupancy for s in samples], config, device)
    fit(objective, config.fit, run_dir, resume=resume, desc="occupancy", record=config)
    return Reconstruction(objective.fitted([folder.name for folder in folders]), objective.decoder)
