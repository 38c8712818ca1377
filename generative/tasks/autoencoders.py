"""Training the autoencoders of notes §6.1-6.2 on the engine, and the pictures of §6 (autoencoders and VAEs).

``train_autoencoder`` fits one of four variants on the float images of the fixed split
(``generative.data.digits``), minimising the squared error ``||x - g(f(c(x)))||^2`` per image
(``generative.models.autoencoders.reconstruction_error``) where ``c`` is the variant's corruption:

* ``linear``        — ``LinearAutoencoder`` (notes §6.1; it converges to PCA's subspace), no corruption;
* ``undercomplete`` — MLP ``Autoencoder`` with ``latent < D`` (notes §6.2), no corruption;
* ``denoising``     — overcomplete MLP on ``x + noise_std * eps`` (Vincent et al. 2008);
* ``inpainting``    — overcomplete MLP on ``x`` with a ``mask_fraction`` of its pixels set to 0.

The loss always compares with the clean ``x``. ``evaluate`` reports mean squared errors per pixel on the
validation and test images (clean input; for the corrupting variants also the corrupted input, with a
fixed seed, and the error of the corrupted input itself as the baseline a useful model must beat).

Figures (``matplotlib.figure.Figure``; grids through ``envs.io.figures.image_grid``): reconstructions
(input / corrupted / output rows), and for a ``VAE`` (``generative.models.vae``): samples, a latent
interpolation between two test digits, the 2-D latent map of the test means coloured by class, latent
traversals, and the KL per latent dimension.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from envs.io.figures import image_grid
from envs.io.run import RunFolder
from generative.data.digits import DataConfig, Split, load_split
from generative.models.autoencoders import (
    Autoencoder,
    LinearAutoencoder,
    add_noise,
    mask_pixels,
    pca,
    reconstruction_error,
)
from generative.models.base import discrete_sample
from generative.models.vae import VAE
from generative.nn.mlp import Activation
from generative.training import FitConfig, FitResult, OneModel, evaluating, fit, resolve_device, seed_everything

__all__ = [
    "AEConfig", "AEObjective", "AEResult", "Variant", "autoencoder_figure", "interpolation_figure", "kl_figure",
    "latent_map_figure", "mean_squared_error", "reconstructions_figure", "samples_figure", "train_autoencoder",
    "traversal_figure", "vae_figures",
]

Variant = Literal["linear", "undercomplete", "denoising", "inpainting"]
DEFAULT_LATENT: dict[str, int] = {"linear": 8, "undercomplete": 8, "denoising": 128, "inpainting": 128}
"""Latent sizes when ``AEConfig.latent`` is None: undercomplete 8, overcomplete 128 for the corrupting variants."""


def _fit() -> FitConfig:
    return FitConfig(steps=3000, lr=2e-3, log_every=100, eval_every=1000, checkpoint_every=1000)


@dataclass
class AEConfig:
    """A non-probabilistic autoencoder (notes §6.1-6.2) and how to train it."""

    variant: Variant = "undercomplete"
    """linear (PCA), undercomplete MLP, denoising or inpainting (overcomplete MLPs by default)."""
    latent: int | None = None
    """Dimensions of the code ``z``; None: 8 (linear, undercomplete) or 128 (denoising, inpainting)."""
    hidden: tuple[int, ...] = (256,)
    """Hidden widths of the MLP encoder (the decoder mirrors them); unused by the linear variant."""
    activation: Activation = "relu"
    """Non-linearity of the MLP's hidden layers."""
    noise_std: float = 0.3
    """Standard deviation of the Gaussian noise added to the denoising autoencoder's input."""
    mask_fraction: float = 0.25
    """Fraction of pixels the inpainting autoencoder's input loses (set to 0)."""
    batch_size: int = 64
    """Training images per step, drawn with replacement."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which images; the form must be ``float`` (pixels in [0, 1])."""
    fit: FitConfig = field(default_factory=_fit)
    """Optimisation (Adam, cosine schedule), seed, device, threads, logging."""

    def __post_init__(self) -> None:
        if self.variant not in DEFAULT_LATENT:
            raise ValueError(f"variant must be one of {', '.join(DEFAULT_LATENT)}, got {self.variant!r}")
        if self.latent is not None and self.latent < 1:
            raise ValueError(f"latent must be >= 1 or None, got {self.latent}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")
        if not (self.noise_std >= 0 and math.isfinite(self.noise_std)):
            raise ValueError(f"noise_std must be a finite number >= 0, got {self.noise_std}")
        if not 0.0 <= self.mask_fraction < 1.0:
            raise ValueError(f"mask_fraction must lie in [0, 1), got {self.mask_fraction}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.data.form != "float":
            raise ValueError(f"autoencoders read the float form of the images, got data.form={self.data.form!r}")

    @property
    def latent_size(self) -> int:
        """``latent``, or the variant's default."""
        return self.latent if self.latent is not None else DEFAULT_LATENT[self.variant]

    def build(self, image_shape: tuple[int, int, int], levels: int) -> nn.Module:
        """The autoencoder for ``[B, *image_shape]`` float images (``levels`` is not used: the pixels are floats)."""
        D = math.prod(image_shape)
        if self.variant == "linear":
            return LinearAutoencoder(image_shape, self.latent_size)
        if self.variant == "undercomplete" and self.latent_size >= D:
            raise ValueError(f"latent must be < {D} (the pixels) for the undercomplete variant, got {self.latent_size}")
        return Autoencoder(image_shape, self.latent_size, self.hidden, self.activation)

    def corrupt(self, x: Tensor, generator: torch.Generator) -> Tensor:  # [B, C, H, W] -> same
        """The network's input for clean images ``x``: noisy, masked, or ``x`` itself."""
        if self.variant == "denoising":
            return add_noise(x, self.noise_std, generator)
        if self.variant == "inpainting":
            return mask_pixels(x, fraction=self.mask_fraction, generator=generator)[0]
        return x

    @property
    def corrupting(self) -> bool:
        """Whether the network sees corrupted inputs (denoising, inpainting)."""
        return self.variant in ("denoising", "inpainting")


class AEResult(NamedTuple):
    """A trained autoencoder and its errors (mean squared error per pixel, clean targets)."""

    model: nn.Module
    test_mse: float  # clean test input
    test_mse_corrupted: float  # corrupted test input (NaN for linear / undercomplete)
    baseline_mse: float  # the corrupted test input itself as the output (NaN for linear / undercomplete)
    val_mse: float  # validation error on the variant's input (corrupted where it corrupts)
    seconds: float  # wall-clock seconds of the fit (this process)
    fit: FitResult


@torch.no_grad()
def mean_squared_error(model: nn.Module, x: Tensor, inputs: Tensor | None = None, batch_size: int = 1024) -> float:
    """Mean over images and pixels of ``(x - model(inputs))^2`` in evaluation mode (``inputs`` default ``x``)."""
    inputs = x if inputs is None else inputs
    if inputs.shape != x.shape:
        raise ValueError(f"inputs must have x's shape {tuple(x.shape)}, got {tuple(inputs.shape)}")
    with evaluating(model):
        device = next(model.parameters()).device
        total = sum(float(reconstruction_error(x[i:i + batch_size].to(device), model(inputs[i:i + batch_size].to(device)))
                          .sum()) for i in range(0, len(x), batch_size))
    return total / max(x[0].numel() * len(x), 1)


class AEObjective(OneModel):
    """Mean squared reconstruction error of (corrupted) training minibatches (``training.Objective``)."""

    def __init__(self, model: nn.Module, split: Split, config: AEConfig, device: torch.device) -> None:
        if split.x_train.dtype != np.float32:
            raise ValueError(f"split must hold float32 images, got {split.x_train.dtype}")
        self.model, self.config, self.device = model, config, device
        self.x = torch.from_numpy(split.x_train).to(device)  # [N, C, H, W]
        self.x_val, self.x_test = torch.from_numpy(split.x_val), torch.from_numpy(split.x_test)

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.x), (self.config.batch_size,), generator=generator).to(self.device)
        x = self.x[index]
        error = reconstruction_error(x, self.model(self.config.corrupt(x, generator))).mean()  # per image
        return error, {"train_mse": float(error.detach()) / x[0].numel()}

    def corrupted(self, x: Tensor) -> Tensor:
        """``x`` corrupted with a generator seeded from the fit's seed: the same inputs at every evaluation."""
        return self.config.corrupt(x, torch.Generator().manual_seed(self.config.fit.seed + 1))

    def evaluate(self, step: int) -> dict[str, float]:
        test_corrupted = self.corrupted(self.x_test)
        nan = float("nan")
        return {
            "val_mse": mean_squared_error(self.model, self.x_val, self.corrupted(self.x_val)),
            "test_mse": mean_squared_error(self.model, self.x_test),
            "test_mse_corrupted": mean_squared_error(self.model, self.x_test, test_corrupted)
            if self.config.corrupting else nan,
            "baseline_mse": float((test_corrupted - self.x_test).pow(2).mean()) if self.config.corrupting else nan,
        }

    @torch.no_grad()
    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """Eight test digits for the trackers: the input (corrupted, for the corrupting variants) above the output."""
        from generative.tasks.density import grid_image

        inputs = self.corrupted(self.x_test[:8])
        with evaluating(self.model):
            outputs = self.model(inputs.to(self.device)).cpu()
        return {"reconstructions": grid_image(torch.cat([inputs, outputs]).clamp(0, 1).numpy())}


def train_autoencoder(config: AEConfig | None = None, run_dir: Path | str | RunFolder = "runs/autoencoder",
                      resume: bool = False) -> AEResult:
    """Fit the autoencoder ``config`` describes on the training images; errors from ``AEObjective.evaluate``."""
    config = config or AEConfig()
    split = load_split(config.data)
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = config.build(split.image_shape, split.levels).to(device)
    objective = AEObjective(model, split, config, device)
    start = time.perf_counter()
    result = fit(objective, config.fit, run_dir, resume=resume, desc=f"{config.variant} autoencoder", record=config)
    seconds = time.perf_counter() - start
    e = result.evaluation or objective.evaluate(result.steps)
    return AEResult(model, e["test_mse"], e["test_mse_corrupted"], e["baseline_mse"], e["val_mse"], seconds, result)


# --- figures ---------------------------------------------------------------------------------------------


def _grid(rows: list[tuple[str, np.ndarray]], title: str, cell: float = 0.9) -> Figure:
    """Rows of ``[N, 1, H, W]`` images (the same N), the row's label above its first image."""
    columns = len(rows[0][1])
    images, titles = [], []
    for label, row in rows:
        if row.ndim != 4 or row.shape[1] != 1 or len(row) != columns:
            raise ValueError(f"row {label!r} must be [{columns}, 1, H, W], got {row.shape}")
        images += [image[0] for image in row]
        titles += [label] + [""] * (columns - 1)
    return image_grid(images, titles, columns, title=title, cell=cell, cmap="gray_r", fontsize=8)


def reconstructions_figure(inputs: np.ndarray, outputs: np.ndarray, corrupted: np.ndarray | None = None,
                           title: str = "test digits and their reconstructions") -> Figure:
    """Rows input / corrupted (if given) / output of ``[N, 1, H, W]`` images in ``[0, 1]``."""
    rows = [("input", inputs)] + ([("corrupted", corrupted)] if corrupted is not None else []) + [("output", outputs)]
    return _grid([(label, np.asarray(row)) for label, row in rows], title)


def autoencoder_figure(model: nn.Module, config: AEConfig, x: Tensor, count: int = 10) -> Figure:
    """:func:`reconstructions_figure` of the first ``count`` images of ``x``, corrupted as in evaluation."""
    x = x[:count]
    inputs = config.corrupt(x, torch.Generator().manual_seed(config.fit.seed + 1))
    with evaluating(model), torch.no_grad():
        outputs = model(inputs.to(next(model.parameters()).device)).cpu()
    return reconstructions_figure(x.numpy(), outputs.numpy(), inputs.numpy() if config.corrupting else None,
                                  f"{config.variant} autoencoder: test digits and reconstructions")


@torch.no_grad()
def samples_figure(model: VAE, n: int = 40, generator: torch.Generator | None = None, columns: int = 10) -> Figure:
    """``n`` draws ``z ~ N(0, I)``: the decoder's mean ``E[x|z]`` and a sample ``x ~ p(x|z)``, rows alternating."""
    with evaluating(model):
        weight = model.decoder[0].weight
        z = torch.randn((n, model.latent), generator=generator, dtype=weight.dtype, device=weight.device)
        mean = model.decode_mean(z).cpu()
        logits = model.decode_logits(z)
        drawn = _draw(model, logits, generator).cpu()
    rows = []
    for start in range(0, n, columns):
        rows += [("E[x|z]", mean[start:start + columns].numpy()), ("x ~ p(x|z)", drawn[start:start + columns].numpy())]
    rows = [r for r in rows if len(r[1]) == columns]
    return _grid(rows, "VAE samples: z ~ N(0, I), decoder mean and one draw")


def _draw(model: VAE, logits: Tensor, generator: torch.Generator | None) -> Tensor:  # -> [B, C, H, W] in [0, 1]
    """``x ~ p(x|z)`` from the decoder's output, scaled to ``[0, 1]`` for a picture (Gaussian draws clipped)."""
    if model.decoder_kind == "gaussian":
        assert model.log_var_x is not None
        eps = torch.randn(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        std = torch.exp(0.5 * model.log_var_x).reshape(model.image_shape)
        return (torch.sigmoid(logits) + std * eps).clamp(0, 1)
    drawn = discrete_sample(logits, model.levels, generator)
    return drawn.float() / (model.levels - 1) if model.levels > 2 else drawn


@torch.no_grad()
def interpolation_figure(model: VAE, x_a: Tensor, x_b: Tensor, steps: int = 10) -> Figure:
    """Decoder means along the straight line between the posterior means of two images ``[1, C, H, W]``."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    with evaluating(model):
        mu_a, mu_b = model.encode(x_a)[0], model.encode(x_b)[0]  # [1, L]
        t = torch.linspace(0, 1, steps, dtype=mu_a.dtype, device=mu_a.device)[:, None]  # [steps, 1]
        images = model.decode_mean((1 - t) * mu_a + t * mu_b).cpu().numpy()
    return _grid([("mu_a -> mu_b", images)], "VAE latent interpolation between two test digits", cell=1.0)


@torch.no_grad()
def latent_map_figure(model: VAE, x: Tensor, y: Tensor | np.ndarray) -> Figure:
    """The posterior means of ``x`` as points coloured by class ``y``; above 2 latent dimensions, projected
    on the first two PCA directions of the means (the title says which)."""
    y = np.asarray(y)
    if y.shape != (len(x),):
        raise ValueError(f"y must be [N] for {len(x)} images, got {y.shape}")
    with evaluating(model):
        mu = model.encode(x)[0].double().cpu()  # [N, L]
    if mu.shape[1] == 1:
        points, title = torch.cat([mu, torch.zeros_like(mu)], 1), "VAE latent means (1-D latent)"
    elif mu.shape[1] == 2:
        points, title = mu, "VAE latent means (z_1, z_2)"
    else:
        mean, components, _ = pca(mu, 2)
        points = (mu - mean) @ components
        title = f"VAE latent means: first two PCA directions of the {mu.shape[1]}-D means"
    fig = Figure(figsize=(5.5, 4.8), layout="constrained")
    ax = fig.subplots()
    shown = ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=y, cmap="tab10", s=10, vmin=-0.5, vmax=9.5)
    fig.colorbar(shown, ax=ax, ticks=range(10), label="class")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("PC 1" if mu.shape[1] > 2 else "z_1")
    ax.set_ylabel("PC 2" if mu.shape[1] > 2 else "z_2")
    return fig


@torch.no_grad()
def traversal_figure(model: VAE, x: Tensor, values: tuple[float, ...] = (-3, -2, -1, 0, 1, 2, 3),
                     dims: list[int] | None = None) -> Figure:
    """Rows = latent dimensions ``dims`` (default all), columns = ``z_j`` set to each of ``values``, every other
    dimension fixed at the posterior mean of the image ``x [1, C, H, W]``; images are decoder means."""
    dims = list(range(model.latent)) if dims is None else dims
    if not dims or min(dims) < 0 or max(dims) >= model.latent:
        raise ValueError(f"dims must list latent dimensions in 0..{model.latent - 1}, got {dims}")
    with evaluating(model):
        mu = model.encode(x[:1])[0]  # [1, L]
        rows = []
        for j in dims:
            z = mu.repeat(len(values), 1)
            z[:, j] = torch.tensor(values, dtype=z.dtype, device=z.device)
            rows.append((f"z_{j}", model.decode_mean(z).cpu().numpy()))
    return _grid(rows, f"VAE latent traversals: z_j = {', '.join(f'{v:g}' for v in values)}, others at a test "
                       "digit's mean")


def kl_figure(kl: Tensor | np.ndarray, threshold: float = 0.01) -> Figure:
    """Bars of the mean KL per latent dimension ``[L]`` (nats), the active-unit threshold as a line."""
    kl = np.asarray(kl, dtype=np.float64)
    if kl.ndim != 1:
        raise ValueError(f"kl must be [L], got {kl.shape}")
    fig = Figure(figsize=(max(4.0, 0.3 * len(kl) + 1.5), 3.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(kl)), kl, color=np.where(kl > threshold, "C0", "0.6"))
    ax.axhline(threshold, color="C3", linewidth=1, linestyle="--")
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("KL(q(z_j|x) || N(0,1)), nats")
    ax.set_title(f"KL per dimension: {int((kl > threshold).sum())} of {len(kl)} active (> {threshold:g} nats), "
                 f"total {kl.sum():.2f}", fontsize=10)
    return fig


def vae_figures(model: VAE, x: Tensor, y: Tensor | np.ndarray, seed: int = 0) -> dict[str, Figure]:
    """The demo page's pictures of a trained VAE on test images ``x [N, C, H, W]`` (its data form) with labels."""
    generator = torch.Generator().manual_seed(seed)
    first, other = 0, int(np.flatnonzero(np.asarray(y) != np.asarray(y)[0])[0])  # two digits of different classes
    with torch.no_grad():
        kl = model.kl_per_dimension(x)
    active = [int(j) for j in torch.argsort(kl, descending=True)[:min(model.latent, 10)]]
    return {
        "samples": samples_figure(model, 30, generator),
        "interpolation": interpolation_figure(model, x[first:first + 1], x[other:other + 1]),
        "latent_map": latent_map_figure(model, x, y),
        "traversals": traversal_figure(model, x[:1], dims=sorted(active)),
        "kl": kl_figure(kl.cpu()),
    }


def sample_autoencoder(run_dir: Path, config: AEConfig, n: int, out: Path | None, seed: int) -> dict[str, Any]:
    """``n`` images decoded from codes ``z ~ N(m, S)``, the Gaussian fitted to the training images' codes: a plain
    autoencoder has no prior over ``z`` (notes §6.3: its latent space has holes, which these samples show)."""
    from generative.tasks.density import write_grid
    from generative.training import load_modules

    split = load_split(config.data)
    model = config.build(split.image_shape, split.levels)
    load_modules(Path(run_dir), {"model": model})
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        codes = model.encode(torch.from_numpy(split.x_train)).double()  # [N, k]
        mean, centred = codes.mean(0), codes - codes.mean(0)
        cov = centred.T @ centred / len(codes) + 1e-6 * torch.eye(codes.shape[1], dtype=torch.float64)
        z = mean + torch.randn(n, codes.shape[1], generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
        images = model.decode(z.float()).clamp(0, 1)
    seconds = time.perf_counter() - start
    path = write_grid(images.numpy(), 2, out or Path(run_dir) / "samples.png", columns=math.ceil(math.sqrt(n)))
    return {"n": n, "out": str(path), "seconds": seconds, "seconds_per_sample": seconds / n}
