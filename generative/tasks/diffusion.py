"""Training and sampling of the diffusion models of notes §10 on the engine (Ho et al. 2020; Song et al. 2021;
Ho and Salimans 2022; Dhariwal and Nichol 2021; Rombach et al. 2022).

* Data (``DiffusionTrainConfig.data``): the 8x8 digits in float form scaled to ``[-1, 1]`` (the U-Net of
  ``generative.models.diffusion_unet``), ``latent`` — the standardised encoder means of a VAE
  (``generative.models.vae``, Gaussian decoder, trained first in ``RUN/vae`` and frozen; notes §10.5) — or a 2-D
  toy of ``generative.data.toys`` (both with the residual MLP).
* Algorithm 2 is :class:`DiffusionObjective`: ``x_0`` from the data, ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, the MSE
  of the predicted noise; with ``cond_drop > 0`` the digit label is given and replaced by the null class with that
  probability (classifier-free guidance, notes §10.4). EMA weights are the result (``RUN/final.pt``).
* Samplers: Algorithm 3 (``ddpm``) or DDIM (``ddim`` with ``steps``), classifier-free guidance ``rho`` for a label,
  classifier guidance with a :class:`~generative.models.diffusion_unet.NoisyClassifier` trained on ``q_sample``
  images (:func:`generative.tasks.guidance.train_noisy_classifier`, which also judges guided samples).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.io.run import RunFolder, opened
from generative.data import toys
from generative.data.digits import DataConfig, load_split
from generative.models.diffusion import (
    Schedule,
    ScheduleKind,
    Variance,
    classifier_free_eps,
    classifier_gradient,
    classifier_guided_eps,
    ddim_sample,
    ddpm_sample,
    make_schedule,
    q_sample,
)
from generative.models.diffusion_unet import DiffusionMLP, DiffusionUNet, NoiseNetConfig
from generative.models.vae import VAE
from generative.training import (
    FitConfig,
    FitResult,
    OneModel,
    evaluating,
    fit,
    load_modules,
    resolve_device,
    seed_everything,
)

DataName = Literal["digits", "latent", "moons", "8gaussians", "25gaussians", "swissroll", "checkerboard"]
Sampler = Literal["ddpm", "ddim"]
VECTOR_FIT = FitConfig(steps=4000, lr=2e-3, warmup_steps=100, ema_decay=0.995, checkpoint_every=1000)
"""The budget of the MLP noise networks (latents, 2-D toys): 4000 steps reach what 10000 do on the digits' U-Net."""
FINAL = "final.pt"
"""The run folder's file with the EMA weights the run ends with (what sampling reads)."""
VAE_DIR = "vae"
"""Sub-folder of a latent run holding its VAE run."""
NUM_CLASSES = 10


@dataclass
class DiffusionTrainConfig:
    """Data, schedule, noise network and optimisation of a diffusion model (notes §10)."""

    data: DataName = "digits"
    """digits (U-Net on pixels in [-1, 1]), latent (MLP on a frozen VAE's latents) or a 2-D toy (MLP)."""
    schedule: ScheduleKind = "linear"
    """Variance schedule: linear (Ho et al.) or cosine (Nichol and Dhariwal)."""
    T: int = 1000
    """Diffusion steps."""
    beta_start: float = 1e-4
    """Linear schedule: first beta."""
    beta_end: float = 0.02
    """Linear schedule: last beta."""
    net: NoiseNetConfig = field(default_factory=lambda: NoiseNetConfig(width=16, embed_dim=64))
    """Noise network shape (U-Net width/depth/residual, MLP hidden/layers, embedding width); narrow for CPU speed."""
    cond_drop: float = 0.0
    """Digits only: probability of the null class in training (classifier-free guidance); 0: unconditional."""
    batch_size: int = 128
    """Training examples per step."""
    toy_size: int = 20000
    """Toys: training points drawn once (seed ``data_seed``)."""
    data_seed: int = 0
    """Toys: seed of the training points."""
    latent: int = 8
    """Latent data: dimensions of the VAE's latent."""
    vae_fit: FitConfig = field(default_factory=lambda: FitConfig(steps=4000, lr=1e-3, checkpoint_every=1000))
    """Latent data: optimisation of the VAE (trained first, then frozen)."""
    variance: Variance = "beta_tilde"
    """Ancestral step variance sigma_t^2: beta or beta_tilde."""
    fdd_samples: int = 1000
    """Digits and latent: DDIM-50 samples for the Frechet digit distance at the end (0: none)."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(steps=8000, lr=2e-3, warmup_steps=100, ema_decay=0.999,
                                                             checkpoint_every=1000))
    """Optimisation (Adam, warm-up then cosine), EMA of the weights, seed, device, threads."""

    def __post_init__(self) -> None:
        if self.data not in ("digits", "latent", *toys.TOYS):
            raise ValueError(f"data must be digits, latent or one of {', '.join(toys.TOYS)}, got {self.data!r}")
        if not 0.0 <= self.cond_drop < 1.0 or (self.cond_drop > 0 and self.data != "digits"):
            raise ValueError(f"cond_drop must lie in [0, 1) and be 0 unless data is digits, got {self.cond_drop}")
        if min(self.T, self.batch_size, self.toy_size, self.latent) < 1 or self.fdd_samples < 0:
            raise ValueError(f"T, batch_size, toy_size and latent must be >= 1 and fdd_samples >= 0, got {self.T}, "
                             f"{self.batch_size}, {self.toy_size}, {self.latent}, {self.fdd_samples}")
        make_schedule(self.T, self.schedule, self.beta_start, self.beta_end)  # its own one-line errors

    def make_schedule(self) -> Schedule:
        return make_schedule(self.T, self.schedule, self.beta_start, self.beta_end)

    @property
    def conditional(self) -> bool:
        return self.cond_drop > 0

    @property
    def clip(self) -> float | None:
        """Pixels lie in [-1, 1]: the predicted x_0 is clamped there (DDIM re-derives eps from it); latents and toys
        are not clamped. With the residual U-Net the clamp changes the FDD by < 0.05 (DDPM and DDIM)."""
        return 1.0 if self.data == "digits" else None


# --- data -----------------------------------------------------------------------------------------------------


def digits_pm1(part: str = "train") -> tuple[Tensor, Tensor]:  # -> [N, 1, 8, 8] in [-1, 1], [N] int64
    """The digits of the fixed split in float form scaled to ``[-1, 1]``, and their labels."""
    split = load_split(DataConfig(form="float"))
    x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
    return torch.from_numpy(x) * 2 - 1, torch.from_numpy(y)


def build_vae(latent: int) -> VAE:
    """The latent model's VAE: MLP encoder/decoder, Gaussian decoder with a fixed pixel std of 0.1 on [0, 1] pixels."""
    return VAE((1, 8, 8), 17, latent, (256, 256), decoder="gaussian", gaussian_std=0.1)


class VAEObjective(OneModel):
    """``-ELBO`` of the VAE on minibatches of the float digits."""

    def __init__(self, model: VAE, x: Tensor, batch_size: int) -> None:  # x: [N, 1, 8, 8] in [0, 1]
        self.model, self.x, self.batch_size = model, x, batch_size

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.x), (self.batch_size,), generator=generator)
        return self.model.loss(self.x[index].to(self.model.encoder[0].weight.device), generator).mean(), {}


class LatentCodec(NamedTuple):
    """A frozen VAE and the standardisation of its encoder means: ``z = (mu(x) - shift) / scale``."""

    vae: VAE
    shift: Tensor  # [L]
    scale: Tensor  # [L]

    def encode(self, x01: Tensor) -> Tensor:  # [N, 1, 8, 8] in [0, 1] -> [N, L]
        with torch.no_grad(), evaluating(self.vae):
            return (self.vae.encode(x01)[0] - self.shift) / self.scale

    def decode(self, z: Tensor) -> Tensor:  # [N, L] -> [N, 1, 8, 8] in [0, 1]
        with torch.no_grad(), evaluating(self.vae):
            return self.vae.decode_mean(z * self.scale + self.shift).clamp(0, 1)


def latent_codec(vae: VAE, x01: Tensor) -> LatentCodec:  # x01: [N, 1, 8, 8] training digits in [0, 1]
    """Standardise the latents by the mean and std of the training images' encoder means (deterministic)."""
    with torch.no_grad(), evaluating(vae):
        mu = vae.encode(x01)[0]
    return LatentCodec(vae, mu.mean(0), mu.std(0).clamp(min=1e-6))


def train_latent_codec(config: DiffusionTrainConfig, run: RunFolder, resume: bool) -> LatentCodec:
    """Fit the VAE in ``RUN/vae`` (resuming it where it stopped) and freeze it."""
    x01 = (digits_pm1()[0] + 1) / 2
    seed_everything(config.vae_fit.seed)
    vae = build_vae(config.latent)
    folder = run.path / VAE_DIR
    fit(VAEObjective(vae, x01, config.batch_size), config.vae_fit, folder,
        resume=resume and (folder / "checkpoint.pt").is_file(), desc="vae")
    vae.requires_grad_(False)
    return latent_codec(vae.eval(), x01)


def training_data(config: DiffusionTrainConfig, codec: LatentCodec | None = None) -> tuple[Tensor, Tensor | None]:
    """``x_0`` examples ``[N, ...]`` and labels ``[N]`` (digits only, else None) of ``config.data``."""
    if config.data == "digits":
        return digits_pm1()
    if config.data == "latent":
        if codec is None:
            raise ValueError("data='latent' needs the VAE codec")
        return codec.encode((digits_pm1()[0] + 1) / 2), None
    return toys.sample(config.data, config.toy_size, seed=config.data_seed), None  # type: ignore[arg-type]


def build_network(config: DiffusionTrainConfig) -> nn.Module:
    """The U-Net for digits, the residual MLP for latents and toys."""
    classes = NUM_CLASSES if config.conditional else 0
    if config.data == "digits":
        return DiffusionUNet(1, config.net, classes)
    return DiffusionMLP(config.latent if config.data == "latent" else 2, config.net, classes)


# --- Algorithm 2 on the engine --------------------------------------------------------------------------------


class DiffusionObjective(OneModel):
    """Algorithm 2: ``|| eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t[, y]) ||^2`` (mean per entry)."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor | None, schedule: Schedule, batch_size: int,
                 cond_drop: float, device: torch.device, config: DiffusionTrainConfig | None = None,
                 codec: LatentCodec | None = None) -> None:  # x: [N, ...], y: [N] or None
        self.model, self.x, self.y, self.schedule = model, x, y, schedule
        self.batch_size, self.cond_drop, self.device = batch_size, cond_drop, device
        self.alphas_cumprod = schedule.alphas_cumprod.float()
        self.config, self.codec = config, codec  # with a config, evaluations show samples (``pictures``)

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        B = self.batch_size
        index = torch.randint(0, len(self.x), (B,), generator=generator)
        x0 = self.x[index]
        t = torch.randint(0, self.schedule.T, (B,), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        y = None
        if self.y is not None and self.cond_drop > 0:
            drop = torch.rand(B, generator=generator) < self.cond_drop
            y = torch.where(drop, torch.full_like(index, NUM_CLASSES), self.y[index]).to(self.device)
        x_t = q_sample(x0, t, eps, self.alphas_cumprod)
        d = self.device
        return F.mse_loss(self.model(x_t.to(d), t.to(d), y), eps.to(d)), {}

    @torch.no_grad()
    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """DDIM-20 samples from fixed noise, for the trackers: a grid of 16 digits, or a histogram of 1000 toy points."""
        from generative.tasks.density import grid_image, points_image

        if self.config is None:
            return {}
        toy = self.config.data in toys.TOYS
        x = generate(Loaded(self.model, self.config, self.codec), 1000 if toy else 16, torch.Generator().manual_seed(0),
                     "ddim", steps=min(20, self.config.T))
        return {"samples": points_image(x.numpy()) if toy else grid_image(x.clamp(0, 1).numpy())}


class DiffusionResult(NamedTuple):
    """A trained diffusion model (EMA weights) and its numbers."""

    model: nn.Module
    final_loss: float
    parameters: int
    train_seconds: float
    fdd_ddim50: float  # Frechet digit distance of fdd_samples DDIM-50 samples to the training digits; NaN if none
    toy_log_density: float  # toys: mean true log-density of 2000 DDIM-50 samples; NaN otherwise
    fit: FitResult


def train_diffusion(config: DiffusionTrainConfig, run_dir: Path | str | RunFolder, resume: bool = False,
                    desc: str = "diffusion") -> DiffusionResult:
    """Fit the noise network (Algorithm 2); the EMA weights go to ``RUN/final.pt``."""
    device = resolve_device(config.fit.device)
    start = time.perf_counter()
    with opened(run_dir, config=config, resume=resume) as run:
        codec = train_latent_codec(config, run, run.resume) if config.data == "latent" else None
        x, y = training_data(config, codec)
        seed_everything(config.fit.seed)
        model = build_network(config).to(device)
        objective = DiffusionObjective(model, x, y, config.make_schedule(), config.batch_size, config.cond_drop, device,
                                       config, codec)
        result = fit(objective, config.fit, run, resume=run.resume, desc=desc, record=config)
        run.save({"modules": {"model": model.state_dict()}, "step": result.steps}, FINAL)
    seconds = time.perf_counter() - start
    loaded = Loaded(model.eval(), config, codec)
    fdd = toy = math.nan
    if config.data in ("digits", "latent") and config.fdd_samples:
        from generative.metrics import frechet_digit_distance

        images = generate(loaded, config.fdd_samples, torch.Generator().manual_seed(0), "ddim")
        fdd = frechet_digit_distance(images, (digits_pm1()[0] + 1) / 2)
    elif config.data in toys.TOYS:
        points = generate(loaded, 2000, torch.Generator().manual_seed(0), "ddim")
        toy = float(toys.log_density(config.data, points).clamp(min=-50).mean())  # type: ignore[arg-type]
    return DiffusionResult(model, result.final_loss, sum(p.numel() for p in model.parameters()), seconds, fdd, toy,
                           result)


# --- a finished run: its model and its samples ----------------------------------------------------------------


class Loaded(NamedTuple):
    """A trained noise network with its config and, for latent runs, the VAE codec."""

    model: nn.Module
    config: DiffusionTrainConfig
    codec: LatentCodec | None


def load_diffusion(run_dir: Path, config: DiffusionTrainConfig) -> Loaded:
    """The run's noise network with its EMA weights (``final.pt``), and its VAE codec for latent runs."""
    run_dir = Path(run_dir)
    codec = None
    if config.data == "latent":
        vae = build_vae(config.latent)
        load_modules(run_dir / VAE_DIR, {"model": vae})
        codec = latent_codec(vae.eval().requires_grad_(False), (digits_pm1()[0] + 1) / 2)
    model = build_network(config)
    load_modules(run_dir, {"model": model}, FINAL)
    return Loaded(model.eval().requires_grad_(False), config, codec)


def eps_function(loaded: Loaded, label: int | None = None, rho: float = 0.0, classifier: nn.Module | None = None,
                 scale: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
    """``eps(x_t, t)`` for the samplers: unconditional (the null class of a conditional model), conditional on
    ``label`` with classifier-free guidance ``rho``, or guided by ``classifier`` with ``scale`` toward ``label``."""
    model, config = loaded.model, loaded.config
    abar = config.make_schedule().alphas_cumprod
    if label is not None and not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must lie in 0..{NUM_CLASSES - 1} or be None, got {label}")
    if label is not None and classifier is None and not config.conditional:
        raise ValueError("label needs a conditional model (cond_drop > 0) or a classifier for guidance")
    if classifier is not None and label is None:
        raise ValueError("classifier guidance needs a label")

    def eps(x: Tensor, t: Tensor) -> Tensor:  # x: [B, ...], t: [B]
        if label is None or classifier is not None:
            out = model(x, t)
            if classifier is not None and scale:
                y = torch.full_like(t, label)  # type: ignore[arg-type]
                out = classifier_guided_eps(out, classifier_gradient(classifier, x, t, y), scale, t, abar)
            return out
        y = torch.full_like(t, label)
        if rho == 0:
            return model(x, t, y)
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(t, NUM_CLASSES)]))
        return classifier_free_eps(*both.chunk(2), rho)

    return eps


def generate(loaded: Loaded, n: int, generator: torch.Generator, sampler: Sampler = "ddpm", steps: int | None = None,
             label: int | None = None, rho: float = 0.0, classifier: nn.Module | None = None, scale: float = 0.0,
             on_step: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """``n`` samples in data space: digits ``[n, 1, 8, 8]`` in ``[0, 1]`` (latent runs decoded), toys ``[n, 2]``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    config = loaded.config
    eps = eps_function(loaded, label, rho, classifier, scale)
    device = next(loaded.model.parameters()).device
    shape = {"digits": (n, 1, 8, 8), "latent": (n, config.latent)}.get(config.data, (n, 2))
    schedule = config.make_schedule()
    with evaluating(loaded.model):
        if sampler == "ddpm":
            x = ddpm_sample(eps, shape, schedule, generator, config.variance, config.clip, on_step, device)
        elif sampler == "ddim":
            x = ddim_sample(eps, shape, schedule, steps or min(50, config.T), generator, 0.0, config.clip, on_step, device, True)
        else:
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    x = x.cpu()
    if config.data == "digits":
        return ((x.clamp(-1, 1) + 1) / 2).float()
    if config.data == "latent":
        return loaded.codec.decode(x.float())  # type: ignore[union-attr]
    return x.float()


def diffusion_images(run_dir: Path, config: DiffusionTrainConfig, n: int, seed: int, sampler: Sampler = "ddpm",
                     steps: int | None = None, label: int | None = None, rho: float = 0.0) -> Tensor:
    """``n`` digit samples ``[n, 1, 8, 8]`` float in ``[0, 1]`` of a finished digits or latent run (the comparison
    table's entry point)."""
    if config.data not in ("digits", "latent"):
        raise ValueError(f"diffusion_images needs a digits or latent run, got data={config.data!r}")
    return generate(load_diffusion(run_dir, config), n, torch.Generator().manual_seed(seed), sampler, steps, label, rho)


def scatter_image(points: Tensor, size: int = 256, extent: float = 3.0,
                  background: Tensor | None = None) -> np.ndarray:  # points: [N, 2] -> [size, size, 3] uint8
    """Points as dark dots on white (or on a grey ``background`` ``[size, size]`` in [0, 1]) over ``[-extent, extent]^2``."""
    image = np.full((size, size, 3), 255, np.uint8)
    if background is not None:
        image[:] = (255 - 90 * background.numpy()[..., None]).astype(np.uint8)
    p = points.detach().cpu().numpy()
    col = np.floor((p[:, 0] + extent) / (2 * extent) * size).astype(int)
    row = np.floor((extent - p[:, 1]) / (2 * extent) * size).astype(int)
    keep = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    image[row[keep], col[keep]] = (20, 60, 160)
    return image


def density_background(name: str, size: int = 256, extent: float = 3.0) -> Tensor:  # -> [size, size] in [0, 1]
    """The toy's true density on the pixel grid of :func:`scatter_image`, scaled to a maximum of 1."""
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 * extent - extent
    grid = torch.stack(torch.meshgrid(centres, centres.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
    p = toys.log_density(name, grid).exp().reshape(size, size)  # type: ignore[arg-type]
    return (p / p.max()).float()


def sample_diffusion(run_dir: Path, config: DiffusionTrainConfig, n: int, out: Path | None, seed: int,
                     sampler: Sampler = "ddpm", steps: int | None = None) -> dict[str, Any]:
    """``n`` samples of a finished run: a PNG grid of digits, or for a toy a scatter over its true density."""
    import imageio.v3 as iio

    from envs.io.files import atomic_path
    from generative.tasks.density import write_grid

    loaded = load_diffusion(run_dir, config)
    start = time.perf_counter()
    x = generate(loaded, n, torch.Generator().manual_seed(seed), sampler, steps)
    seconds = time.perf_counter() - start
    path = Path(out or Path(run_dir) / "samples.png")
    if config.data in ("digits", "latent"):
        write_grid(x.numpy(), 2, path, columns=math.ceil(math.sqrt(n)))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            iio.imwrite(tmp, scatter_image(x, background=density_background(config.data)), extension=".png")
    return {"n": n, "out": str(path), "sampler": sampler, "steps": steps or (config.T if sampler == "ddpm" else 50),
            "seconds": seconds, "seconds_per_sample": seconds / n}


def toy_video(run_dir: Path, config: DiffusionTrainConfig, out: Path, n: int = 2000, seed: int = 0, frames: int = 50,
              fps: float = 12) -> Path:
    """MP4 of ``n`` particles flowing from noise to the toy density along the DDPM chain, over its true density."""
    from envs.io.video import write_video

    if config.data not in toys.TOYS:
        raise ValueError(f"toy_video needs a toy run, got data={config.data!r}")
    background = density_background(config.data)
    every = max(config.T // frames, 1)
    shots: list[np.ndarray] = []

    def record(t: int, x: Tensor) -> None:  # x: [n, 2], the state x_{t-1} after the step at t
        if t % every == 0:
            shots.append(scatter_image(x, background=background))

    loaded = load_diffusion(run_dir, config)
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    shots.append(scatter_image(x_T, background=background))
    generate(loaded, n, torch.Generator().manual_seed(seed), "ddpm", on_step=record)
    return write_video([*shots, *[shots[-1]] * int(fps)], out, fps=fps)
