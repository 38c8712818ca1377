"""DeepSDF: an auto-decoder of signed distance functions (notes §12 and §12.1; Park et al., CVPR 2019).

``f_theta(x, z_k)`` regresses the signed distance (negative inside) of shape ``k`` at ``x``; the
surface is ``{x | f_theta(x, z_k) = 0}``. There is no encoder: every training shape owns a code
``z_k ~ N(0, 0.01^2)`` at the start, optimised jointly with the decoder (an auto-decoder). The loss
on samples ``(x, s)`` with ``s = SDF(x)`` (``samples.npz``) is the clamped L1 distance

    L(f, s) = | clamp(f, -delta, delta) - clamp(s, -delta, delta) |,   delta = 0.1,

which spends the capacity of the network near the surface, plus the code prior of a zero-mean
Gaussian with variance ``sigma^2``: ``(1 / sigma^2) ||z_k||^2``.

A new shape is encoded by optimising its code alone with the decoder frozen (``fit_code``: the
maximum a-posteriori estimate of the paper's §4.2); codes can be interpolated (``interpolate``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.training import FitConfig, fit, resolve_device, seed_everything
from vision3d.fields import AutoDecoder, FieldConfig, FittedShape, ImplicitField, Reconstruction, as_numpy_sdf, as_paths


def clamped_l1(pred: Tensor, target: Tensor, delta: float = 0.1) -> Tensor:  # pred, target: [N] -> []
    """Mean of ``|clamp(pred, -delta, delta) - clamp(target, -delta, delta)|`` (DeepSDF, eq. 4)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if delta <= 0:
        raise ValueError(f"delta must be positive, got {delta}")
    return (pred.clamp(-delta, delta) - target.clamp(-delta, delta)).abs().mean()


def code_regularisation(z: Tensor, weight: float) -> Tensor:  # z: [K, L] -> []
    """The code prior ``(1 / sigma^2) ||z||^2`` with ``weight = 1 / sigma^2``, averaged over the ``K`` codes."""
    if z.ndim != 2:
        raise ValueError(f"z must have shape [K, latent_dim], got {tuple(z.shape)}")
    return weight * (z**2).sum(dim=1).mean()


def _default_fit() -> FitConfig:
    return FitConfig(steps=2000, lr=1e-3)


def _default_network() -> FieldConfig:
    return FieldConfig(
        hidden=128,
        layers=6,
        skip=(3,),
        latent_dim=32,
        activation="relu",
        geometric_init=True,
        radius=0.3,
        fourier_levels=0,
    )


@dataclass
class DeepSDFConfig:
    """DeepSDF auto-decoder: architecture, loss and optimisation of the decoder and of new codes."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation of the decoder and the training codes."""
    network: FieldConfig = field(default_factory=_default_network)
    """The decoder ``f_theta(x, z)``."""
    batch_size: int = 4096
    """SDF samples per step, split evenly between the shapes."""
    delta: float = 0.1
    """Clamping distance of the L1 loss."""
    code_reg: float = 1e-4
    """Weight ``1 / sigma^2`` of the code prior ``||z||^2``."""
    code_std: float = 0.01
    """Standard deviation of the initial codes."""
    code_lr: float = 1e-3
    """Adam learning rate of the training codes."""
    infer_steps: int = 800
    """Steps of ``fit_code`` when encoding a new shape (decoder frozen)."""
    infer_lr: float = 5e-3
    """Adam learning rate of ``fit_code``."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.delta <= 0 or self.code_reg < 0 or self.infer_steps < 1:
            raise ValueError(
                f"batch_size, infer_steps >= 1, delta > 0 and code_reg >= 0 expected, got "
                f"{self.batch_size}, {self.infer_steps}, {self.delta}, {self.code_reg}"
            )
        if self.network.latent_dim < 1 or self.network.out_dim != 1:
            raise ValueError(
                f"network needs latent_dim >= 1 and out_dim == 1, got {self.network.latent_dim}, {self.network.out_dim}"
            )


def _tensors(points: np.ndarray, sdf: np.ndarray, device: torch.device, k: int = 0) -> tuple[Tensor, Tensor]:
    points, sdf = np.asarray(points), np.asarray(sdf)
    if points.ndim != 2 or points.shape[1] != 3 or sdf.shape != (len(points),) or len(points) == 0:
        raise ValueError(f"shape {k}: points must be [N, 3] and sdf [N] with N > 0, got {points.shape} and {sdf.shape}")
    return (
        torch.as_tensor(points, dtype=torch.float32, device=device),
        torch.as_tensor(sdf, dtype=torch.float32, device=device),
    )


class DeepSDFObjective:
    """Clamped L1 on SDF samples of several shapes plus the code prior (``generative.training.Objective``)."""

    def __init__(
        self,
        points: Sequence[np.ndarray],  # K arrays [N_k, 3]
        sdf: Sequence[np.ndarray],  # K arrays [N_k]
        config: DeepSDFConfig,
        device: torch.device,
    ) -> None:
        if len(points) == 0 or len(points) != len(sdf):
            raise ValueError(
                f"points and sdf must list the same, non-zero number of shapes, got {len(points)} and {len(sdf)}"
            )
        self.data = [_tensors(p, s, device, k) for k, (p, s) in enumerate(zip(points, sdf))]
        self.config, self.device = config, device
        seed_everything(config.fit.seed)
        self.decoder = AutoDecoder(config.network, len(points), config.code_std).to(device)
        self.per_shape = max(1, config.batch_size // len(points))

    def modules(self) -> dict[str, nn.Module]:
        return {"decoder": self.decoder}

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"params": list(self.decoder.field.parameters())},
            {"params": list(self.decoder.codes.parameters()), "lr": self.config.code_lr},
        ]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        l1 = torch.zeros((), device=self.device)
        for k, (points, sdf) in enumerate(self.data):
            index = torch.randint(0, len(points), (self.per_shape,), generator=generator).to(self.device)
            l1 = l1 + clamped_l1(self.decoder(points[index], k), sdf[index], self.config.delta)
        l1 = l1 / len(self.data)
        reg = code_regularisation(self.decoder.codes.weight, self.config.code_reg)
        return l1 + reg, {"l1": float(l1.detach()), "code_reg": float(reg.detach())}


class DeepSDFModel(NamedTuple):
    """A fitted DeepSDF: the decoder with its training codes and the shapes' names."""

    decoder: AutoDecoder
    names: list[str]
    device: torch.device

    def shapes(self) -> list[FittedShape]:
        """One ``FittedShape`` per training code."""
        self.decoder.eval()
        codes = self.decoder.codes.weight.detach()
        return [
            FittedShape(name, interpolate(self.decoder.field, codes[k], codes[k], 0.0, self.device))
            for k, name in enumerate(self.names)
        ]


def fit_deepsdf_model(
    data: Path | Sequence[Path], run_dir: Path | RunFolder, config: DeepSDFConfig | None = None, resume: bool = False
) -> DeepSDFModel:
    """Fit one decoder and one code per data folder (each with ``samples.npz``)."""
    from vision3d.dataset import load_samples

    config = config or DeepSDFConfig()
    folders = as_paths(data, "data")
    samples = [load_samples(folder) for folder in folders]
    device = resolve_device(config.fit.device)
    objective = DeepSDFObjective([s.points for s in samples], [s.sdf for s in samples], config, device)
    fit(objective, config.fit, run_dir, resume=resume, desc="deepsdf", record=config)
    return DeepSDFModel(objective.decoder, [folder.name for folder in folders], device)


def fit_deepsdf(
    data: Path | Sequence[Path], run_dir: Path | RunFolder, config: DeepSDFConfig | None = None, resume: bool = False
) -> Reconstruction:
    """``fit_deepsdf_model``: one ``FittedShape`` per folder, named after it, and the decoder."""
    model = fit_deepsdf_model(data, run_dir, config, resume)
    return Reconstruction(model.shapes(), model.decoder)


class _CodeObjective:
    """The clamped L1 of one new shape and its code prior; only the code is a parameter."""

    def __init__(self, decoder: ImplicitField, points: Tensor, sdf: Tensor, config: DeepSDFConfig) -> None:
        self.decoder, self.points, self.sdf, self.config = decoder, points, sdf, config
        self.code = nn.Embedding(1, decoder.config.latent_dim).to(points.device)
        nn.init.normal_(self.code.weight, 0.0, config.code_std)

    def modules(self) -> dict[str, nn.Module]:
        return {"code": self.code}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.code.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.points), (self.config.batch_size,), generator=generator).to(
            self.points.device
        )
        z = self.code.weight
        l1 = clamped_l1(self.decoder(self.points[index], z)[:, 0], self.sdf[index], self.config.delta)
        reg = code_regularisation(z, self.config.code_reg)
        return l1 + reg, {"l1": float(l1.detach())}


def fit_code(
    decoder: ImplicitField,
    points: np.ndarray,  # [N, 3]
    sdf: np.ndarray,  # [N]
    config: DeepSDFConfig | None = None,
    run_dir: Path | None = None,
) -> Tensor:  # [latent_dim]
    """Encode a new shape: optimise its code alone (the decoder stays frozen, bit for bit) on SDF samples.

    Runs ``config.infer_steps`` steps of ``generative.training.fit`` at ``config.infer_lr``; logs go to ``run_dir``
    (a temporary folder when None).
    """
    config = config or DeepSDFConfig()
    if decoder.config.latent_dim < 1:
        raise ValueError("decoder has latent_dim=0: there is no code to fit")
    device = next(decoder.parameters()).device
    points_t, sdf_t = _tensors(points, sdf, device)
    seed_everything(config.fit.seed)
    objective = _CodeObjective(decoder, points_t, sdf_t, config)
    fit_config = FitConfig(
        steps=config.infer_steps,
        lr=config.infer_lr,
        seed=config.fit.seed,
        progress=False,
        threads=config.fit.threads,
        log_every=max(1, config.infer_steps // 10),
        checkpoint_every=config.infer_steps,
    )
    flags = [p.requires_grad for p in decoder.parameters()]
    decoder.requires_grad_(False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fit(objective, fit_config, Path(run_dir) if run_dir is not None else Path(tmp), desc="deepsdf code")
    finally:
        for p, flag in zip(decoder.parameters(), flags):
            p.requires_grad_(flag)
    return objective.code.weight.detach()[0]


def interpolate(
    decoder: ImplicitField,
    z_a: Tensor,  # [latent_dim]
    z_b: Tensor,  # [latent_dim]
    alpha: float,
    device: torch.device | str = "cpu",
) -> Callable[[np.ndarray], np.ndarray]:
    """The SDF of the code ``(1 - alpha) z_a + alpha z_b`` as a numpy callable (latent interpolation)."""
    latent_dim = decoder.config.latent_dim
    if z_a.shape != (latent_dim,) or z_b.shape != (latent_dim,):
        raise ValueError(f"z_a and z_b must have shape [{latent_dim}], got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    z = ((1.0 - alpha) * z_a + alpha * z_b).detach().to(device)
    return as_numpy_sdf(lambda x: decoder(x, z), device)
