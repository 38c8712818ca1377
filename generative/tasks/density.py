"""Maximum-likelihood training of every image model of notes §6-7 on the 8x8 digits (or MNIST), one task for all.

A model is an :class:`~generative.models.base.ImageDensity` (exact ``log p(x)``: FVSBN, NADE, MADE, the
PixelCNNs, Pixel-RNN, the pixel transformer) or a :class:`~generative.models.base.LatentDensity` (the VAE
and beta-VAE, trained on a bound). Each minibatch step minimises ``model.loss(x, generator).mean()``
(``-log p(x)``, or ``-ELBO``) on images drawn from the training part of the fixed split
(``generative.data.digits``); the engine (``generative.training.fit``) runs the loop, logs, checkpoints
and resumes.

Early stopping: the digits are a small data set (1257 training images), so every model overfits if
trained long enough. Every ``fit.eval_every`` steps the task measures the validation NLL (exact, or the
negative ELBO for latent models, with a fixed seed so that evaluations compare) and keeps the weights with
the best one (latent models: with the best value of their own objective, which for a beta-VAE is not the
ELBO, or, for a VAE, of the tighter IWAE bound with ``select_k`` samples); they are part of the checkpoint (a resumed run keeps them) and are written to ``RUN/best.pt`` at the end, which ``python -m generative sample RUN`` reads. The test numbers are those
of the best weights: the exact test NLL in nats per image and bits per dimension; for latent models the
ELBO and the importance-weighted bound with ``iwae_k`` samples (Burda et al. 2016).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

from envs.io.run import RunFolder, opened
from generative.data.digits import DataConfig, Split, load_split
from generative.metrics import evaluate_density
from generative.models.base import ImageDensity, LatentDensity, bits_per_dim, network_input
from generative.training import FitConfig, FitResult, OneModel, evaluating, fit, resolve_device, seed_everything

DataName = Literal["digits", "digits-grey"]
"""Binary digits (pixel >= 8 of 16; Bernoulli models) or their 17 grey levels (categorical models)."""
FORMS: dict[str, Literal["binary", "grey"]] = {"digits": "binary", "digits-grey": "grey"}
BEST = "best.pt"
"""The run folder's file with the weights of the best validation NLL."""
EVAL_SEED = 1234
"""Seed of the noise in the evaluation of latent models (the same every time, so evaluations compare)."""
PICTURES = 16
"""Samples in the grid that each evaluation shows in TensorBoard and W&B (``DensityObjective.pictures``)."""

Density = ImageDensity | LatentDensity


class ModelConfig(Protocol):
    """A model's hyperparameters: builds the model for images of a shape and a number of levels."""

    def build(self, image_shape: tuple[int, int, int], levels: int) -> Density: ...


@dataclass
class DensityTrainConfig:
    """Data, batch size, evaluation and optimisation of a density model; ``model`` is added per model."""

    data: DataName = "digits"
    """Binary 8x8 digits, or their 17 grey levels."""
    mnist_dir: Path | None = None
    """Train on MNIST instead: the folder holding the four IDX files (binarised or grey as ``data`` says)."""
    val_size: int | None = None
    """Validation images carved from the training part (early stopping); None: 180 (digits) or 5000 (MNIST)."""
    batch_size: int = 64
    """Training images per step, drawn with replacement."""
    iwae_k: int = 1000
    """Latent models: importance samples of the test bound (IWAE); the ELBO is reported beside it."""
    kl_warmup: int = 0
    """Latent models: steps over which the KL weight rises linearly from 0 to its full value (0: none)."""
    select_k: int = 0
    """Latent models: choose the weights by the validation IWAE bound with this many samples, a tighter estimate
    of the likelihood than the ELBO (only for a maximum-likelihood objective, beta = 1); 0: by the objective."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(steps=3000, eval_every=250, checkpoint_every=500))
    """Optimisation (Adam, cosine schedule), seed, device, threads, logging; ``eval_every`` sets early stopping."""

    def __post_init__(self) -> None:
        if self.data not in FORMS:
            raise ValueError(f"data must be one of {', '.join(FORMS)}, got {self.data!r}")
        if self.batch_size < 1 or self.iwae_k < 1 or self.kl_warmup < 0 or self.select_k < 0:
            raise ValueError(f"batch_size and iwae_k must be >= 1, kl_warmup and select_k >= 0, got {self.batch_size}, "
                             f"{self.iwae_k}, {self.kl_warmup}, {self.select_k}")
        if self.fit.eval_every < 1:
            raise ValueError(f"fit.eval_every must be >= 1 (it sets how often early stopping looks), got {self.fit.eval_every}")

    def data_config(self) -> DataConfig:
        """The split this config trains on."""
        dataset = "mnist" if self.mnist_dir is not None else "digits"
        return DataConfig(dataset=dataset, mnist_dir=self.mnist_dir, val_size=self.val_size, form=FORMS[self.data])


def levels_of(split: Split, data: DataName) -> int:
    """Levels of the model's pixels: 2 for binary data, the raw levels for grey data."""
    return 2 if FORMS[data] == "binary" else split.levels


class DensityObjective(OneModel):
    """Mean per-image loss of a density model on minibatches of the training images, with early stopping."""

    def __init__(self, model: Density, split: Split, batch_size: int, device: torch.device, kl_warmup: int = 0,
                 select_k: int = 0) -> None:
        if kl_warmup and not hasattr(model, "kl_scale"):
            raise ValueError(f"kl_warmup: {type(model).__name__} has no KL term to warm up")
        if select_k and getattr(model, "beta", None) != 1.0:
            raise ValueError(f"select_k: {type(model).__name__} does not maximise the likelihood's bound (beta = 1)")
        self.model, self.batch_size, self.device, self.kl_warmup = model, batch_size, device, kl_warmup
        self.select_k = select_k
        self.x = torch.from_numpy(split.x_train).to(device)  # [N, C, H, W]
        self.x_val = torch.from_numpy(split.x_val).to(device)
        self.dims = int(np.prod(split.image_shape))
        self.best_val, self.best_step = math.inf, 0
        self.best_state: dict[str, Tensor] = copy.deepcopy(model.state_dict())

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.x), (self.batch_size,), generator=generator).to(self.device)
        if self.kl_warmup:  # a function of the step alone, so a resumed run continues the same schedule
            self.model.kl_scale = min(1.0, (step + 1) / self.kl_warmup)  # type: ignore[union-attr]
        loss = self.model.loss(self.x[index], generator).mean()
        return loss, {"bits_per_dim": bits_per_dim(float(loss.detach()), self.dims)}

    def evaluate(self, step: int) -> dict[str, float]:
        val = held_out_nll(self.model, self.x_val, None)[0]
        if isinstance(self.model, ImageDensity):
            criterion = val
        elif self.select_k:
            criterion = held_out_nll(self.model, self.x_val, self.select_k)[0]
        else:
            criterion = held_out_objective(self.model, self.x_val)
        if criterion < self.best_val:
            self.best_val, self.best_step = criterion, step
            self.best_state = copy.deepcopy(self.model.state_dict())
        return {"val_nll": val, "best_val_objective": self.best_val}

    @torch.no_grad()
    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """A grid of samples drawn with a fixed seed (the same noise at every evaluation), for the trackers."""
        with evaluating(self.model):
            x = self.model.sample(PICTURES, torch.Generator(device=self.device).manual_seed(EVAL_SEED))
        return {"samples": grid_image(network_input(x, self.model.levels).cpu().numpy())}

    def state_dict(self) -> dict[str, Any]:
        return {"best_val": self.best_val, "best_step": self.best_step, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_val, self.best_step = float(state["best_val"]), int(state["best_step"])
        self.best_state = dict(state["best_state"])


class DensityResult(NamedTuple):
    """A trained density model (its best validation weights) and its numbers on the fixed test split."""

    model: Density
    test_nll: float  # nats per image: exact, or the IWAE bound for latent models
    test_bits_per_dim: float
    test_elbo_nll: float  # latent models: -ELBO in nats per image (a looser bound); NaN for exact models
    val_nll: float  # the best validation criterion, which chose the weights: NLL, or the latent model's objective
    best_step: int
    parameters: int
    train_seconds: float
    fit: FitResult


def held_out_nll(model: Density, x: Tensor, iwae_k: int | None, seed: int = EVAL_SEED) -> tuple[float, float]:
    """``(NLL, -ELBO)`` in nats per image of held-out images ``x``: the exact NLL and NaN, or the IWAE bound
    with ``iwae_k`` samples (the -ELBO itself when ``iwae_k`` is None) and the negative one-sample ELBO; the
    latent noise comes from a generator seeded with ``seed``, so that evaluations compare."""
    if isinstance(model, ImageDensity):
        return float(evaluate_density(model, x).mean()), math.nan
    generator = torch.Generator(device=x.device).manual_seed(seed)
    bounds = evaluate_density(model, x, k=iwae_k, generator=generator)
    elbo_nll = -float(bounds.elbo.mean())
    return (elbo_nll if bounds.iwae is None else -float(bounds.iwae.mean())), elbo_nll


@torch.no_grad()
def held_out_objective(model: LatentDensity, x: Tensor, seed: int = EVAL_SEED) -> float:
    """A latent model's own training objective (its full KL weight, no dropout) on held-out images ``x``:
    ``-ELBO`` for the VAE, the beta-weighted objective of §6.4 for a beta-VAE. Early stopping compares runs by
    it, so a beta-VAE is chosen by what it optimises, not by the ELBO of an earlier, less constrained state."""
    scale = getattr(model, "kl_scale", None)
    if scale is not None:
        model.kl_scale = 1.0
    try:
        with evaluating(model):
            generator = torch.Generator(device=x.device).manual_seed(seed)
            return float(torch.cat([model.loss(chunk, generator) for chunk in x.split(256)]).mean())
    finally:
        if scale is not None:
            model.kl_scale = scale


def train_density(config: Any, run_dir: Path | str | RunFolder, resume: bool = False, desc: str = "density"
                  ) -> DensityResult:
    """Fit ``config.model.build(...)`` by maximum likelihood (``config``: a :class:`DensityTrainConfig` with a
    ``model`` field); the result holds the weights of the best validation NLL."""
    split = load_split(config.data_config())
    levels = levels_of(split, config.data)
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = config.model.build(split.image_shape, levels).to(device)
    objective = DensityObjective(model, split, config.batch_size, device, config.kl_warmup, config.select_k)
    start = time.perf_counter()
    with opened(run_dir, config=config, resume=resume) as run:
        result = fit(objective, config.fit, run, resume=run.resume, desc=desc, record=config)
        seconds = time.perf_counter() - start
        model.load_state_dict(objective.best_state)
        run.save({"modules": {"model": objective.best_state}, "step": objective.best_step}, BEST)
    nll, elbo_nll = held_out_nll(model, torch.from_numpy(split.x_test).to(device), config.iwae_k)
    dims = int(np.prod(split.image_shape))
    return DensityResult(model, nll, bits_per_dim(nll, dims), elbo_nll, objective.best_val, objective.best_step,
                         sum(p.numel() for p in model.parameters()), seconds, result)


def density_trainer(desc: str) -> Callable[[Any, Path | str | RunFolder, bool], DensityResult]:
    """``train_density`` with the progress bar named ``desc`` (one entry of the command line's registry)."""

    def train(config: Any, run_dir: Path | str | RunFolder = f"runs/{desc}", resume: bool = False) -> DensityResult:
        return train_density(config, run_dir, resume, desc)

    train.__name__ = f"train_{desc.replace('-', '_')}"
    train.__doc__ = f"Fit the {desc} density model on the digits (see ``train_density``)."
    return train


# --- a finished run: its model and its samples ------------------------------------------------------------


def load_density(run_dir: Path, config: Any) -> tuple[Density, Split]:
    """The model of the run in ``run_dir`` (``config``: its training config) with its best weights, and its split."""
    from generative.training import CHECKPOINT, load_modules

    split = load_split(config.data_config())
    model = config.model.build(split.image_shape, levels_of(split, config.data))
    name = BEST if (Path(run_dir) / BEST).is_file() else CHECKPOINT
    load_modules(Path(run_dir), {"model": model}, name)
    return model.eval(), split


def tile(images: np.ndarray, columns: int, pad: int = 1, scale: int = 1) -> np.ndarray:
    """``[N, 1, H, W]`` images in ``[0, 1]`` as one ``[rows * (H + pad) + pad, ...]`` float image, grey gaps,
    each pixel repeated ``scale`` times (a sample grid that stays sharp when shown large)."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be [N, 1, H, W], got {images.shape}")
    n, _, h, w = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad), 0.5, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, columns)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[k, 0]
    return np.kron(canvas, np.ones((scale, scale), dtype=np.float32)) if scale > 1 else canvas


def grid_image(images: np.ndarray, columns: int = 8, scale: int = 4) -> np.ndarray:  # [N, 1, H, W] -> uint8 [H', W']
    """Images in ``[0, 1]`` tiled by :func:`tile` as one 8-bit grey picture (sample grids for files and trackers)."""
    grid = tile(np.asarray(images, dtype=np.float32), columns, scale=scale)
    return (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8)


def points_image(points: np.ndarray, extent: float = 3.0, size: int = 96) -> np.ndarray:  # [N, 2] -> uint8 [size, size]
    """2-D samples as a grey histogram of ``[-extent, extent]^2`` (+y at the top, as a plot reads): white where
    there are none, black in the fullest cell (square root scale, so that sparse modes show)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be [N, 2], got {list(points.shape)}")
    counts, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=size, range=[[-extent, extent]] * 2)
    shade = np.sqrt(counts[::-1] / max(counts.max(), 1.0))
    return np.round(255 * (1.0 - shade)).astype(np.uint8)


def write_grid(images: np.ndarray, levels: int, path: Path, columns: int = 8, scale: int = 8) -> Path:
    """Samples ``[N, 1, H, W]`` (binary floats or int levels) as a grey PNG grid, written atomically."""
    import imageio.v3 as iio

    from envs.io.files import atomic_path

    grid = grid_image(np.asarray(images, dtype=np.float32) / (levels - 1), columns, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, grid, extension=".png")
    return path


def density_images(run_dir: Path, config: Any, n: int, seed: int) -> Tensor:  # -> [n, C, H, W] float in [0, 1]
    """``n`` samples of the run's density model (best weights) as float images in ``[0, 1]`` (grey levels divided by
    ``levels - 1``), drawn with a generator seeded with ``seed``: what the comparison of every model measures."""
    model, _ = load_density(run_dir, config)
    with torch.no_grad():
        return network_input(model.sample(n, torch.Generator().manual_seed(seed)), model.levels).cpu()


def sample_density(run_dir: Path, config: Any, n: int, out: Path | None, seed: int) -> dict[str, Any]:
    """``n`` samples of the run's density model (best weights) as a PNG grid; seconds per sample."""
    model, _ = load_density(run_dir, config)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        images = model.sample(n, generator)
    seconds = time.perf_counter() - start
    path = write_grid(images.cpu().numpy(), model.levels, out or Path(run_dir) / "samples.png",
                      columns=math.ceil(math.sqrt(n)))
    return {"n": n, "out": str(path), "seconds": seconds, "seconds_per_sample": seconds / n}
