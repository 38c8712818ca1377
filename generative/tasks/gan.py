"""Training GANs on the engine (notes §9.2, Algorithm 1), mode collapse on the 2-D mixtures, and a DCGAN on
the 8x8 digits (Goodfellow et al. 2014; Metz et al. 2017; Mescheder et al. 2018; Gulrajani et al. 2017;
Radford et al. 2016).

One objective for every variant (:class:`GANObjective`): two Adam optimizers through the engine's
``optimizers()`` hook and Algorithm 1 in ``train_step``: ``d_steps`` discriminator steps on fresh real and
fake batches, then one generator step, optionally against the discriminator unrolled ``unroll_steps`` times
(differentiated through). Batches and latents come from the engine's seeded generator, so a resumed run is
bit-identical to an uninterrupted one. Variants: ``minimax`` (the vanilla GAN of Algorithm 1),
``non-saturating`` (Figure 9.1), ``r1`` (non-saturating + the R1 penalty), ``wgan-gp``.

Mode metrics (:func:`mode_coverage`) on the 2-D ring and grid: a sample is high quality if it lies within
3 standard deviations of its nearest mode (VEEGAN's rule, Srivastava et al. 2017, the measure later papers
apply to the ring of Metz et al. 2017); a mode is covered if it receives at least a quarter of its fair share
of the samples as high-quality ones (``min_share * N / K``, our threshold; ``modes_any`` counts modes with at
least one, which a few stray samples of a collapsed generator can satisfy). Our mixtures have std 0.1
(radius 2, grid {-2..2}^2); Metz et al.'s ring has std 0.02, so "high quality" here means within 0.3 of a
mode and the modes are five times wider than theirs: an easier target, on which collapse is rarer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from envs.io.run import RunFolder, opened
from generative.data.digits import DataConfig, load_split
from generative.data.toys import MIXTURE_STD, TOYS, log_density, mixture_means, sample
from generative.models.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    GeneratorLoss,
    MLPDiscriminator,
    MLPGenerator,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
    unrolled_generator_loss,
    wgan_critic_loss,
)
from generative.training import FitConfig, FitResult, evaluating, fit, load_modules, resolve_device, seed_everything

Variant = Literal["minimax", "non-saturating", "wgan-gp", "r1"]
VARIANTS: tuple[str, ...] = ("minimax", "non-saturating", "wgan-gp", "r1")
GENERATOR_LOSS: dict[str, GeneratorLoss] = {"minimax": "minimax", "non-saturating": "non-saturating",
                                            "r1": "non-saturating", "wgan-gp": "wasserstein"}
EVAL_SEED = 4321
"""Seed of the latents of every evaluation (the same each time, so evaluations compare)."""
MIXTURES = ("8gaussians", "25gaussians")


def _gan_fit() -> FitConfig:
    return FitConfig(steps=5000, schedule="constant", log_every=100, checkpoint_every=1000)


@dataclass
class GANTrainConfig:
    """A GAN: data, variant, players, optimisers (notes §9)."""

    data: str = "8gaussians"
    """A 2-D toy of generative.data.toys (8gaussians, 25gaussians, moons, ...) or 'digits' (8x8 floats, DCGAN)."""
    variant: Variant = "non-saturating"
    """minimax (Algorithm 1), non-saturating (Figure 9.1), r1 (non-saturating + R1) or wgan-gp."""
    unroll_steps: int = 0
    """Unrolled GAN: discriminator steps the generator looks ahead through (0: none; Metz et al. use 5-10); the
    unrolled steps descend -V alone (no R1 penalty)."""
    unroll_optimizer: Literal["adam", "sgd"] = "adam"
    """The unrolled steps' update: Adam from the discriminator optimizer's state (as Metz et al.), or SGD."""
    unroll_lr: float | None = None
    """Learning rate of the unrolled steps; None: the discriminator's (lr_d)."""
    d_steps: int = 1
    """Discriminator steps per generator step (k of Algorithm 1; WGAN-GP uses 5)."""
    gamma: float = 1.0
    """R1 weight: the discriminator pays (gamma / 2) E ||grad_x D||^2 on real data."""
    lam: float = 0.1
    """WGAN-GP weight lambda (Gulrajani et al.: 0.1 in their 2-D toys, 10 for images)."""
    latent_dim: int = 256
    """Dimensions of z ~ N(0, I) (Metz et al.: 256)."""
    g_hidden: tuple[int, ...] = (128, 128)
    """Toy generator's hidden widths (tanh)."""
    d_hidden: tuple[int, ...] = (128, 128)
    """Toy discriminator's hidden widths (ReLU; it reads x / 4)."""
    conv_width: int = 32
    """Digits: channels of the DCGAN players' first (discriminator) / last (generator) convolution."""
    batch_size: int = 512
    """Real and fake samples per step (Metz et al.: 512)."""
    lr_g: float = 1e-3
    """Generator's Adam learning rate."""
    lr_d: float = 1e-4
    """Discriminator's Adam learning rate."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam's betas of both players (beta1 = 0.5 as DCGAN and Metz et al.)."""
    eval_samples: int = 2500
    """Samples of the evaluation: mode coverage on the mixtures; digits: FDD uses 1000."""
    fit: FitConfig = field(default_factory=_gan_fit)
    """Steps, seed, device, threads, logging, checkpoints (fit.lr is unused: lr_g and lr_d set the players')."""

    def __post_init__(self) -> None:
        if self.data not in (*TOYS, "digits"):
            raise ValueError(f"data must be one of {', '.join(TOYS)} or digits, got {self.data!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.unroll_steps < 0:
            raise ValueError(f"unroll_steps must be >= 0, got {self.unroll_steps}")
        if self.unroll_steps and self.variant == "wgan-gp":
            raise ValueError("unroll_steps must be 0 with variant wgan-gp (unrolling steps the logit loss)")
        if self.unroll_optimizer not in ("adam", "sgd"):
            raise ValueError(f"unroll_optimizer must be 'adam' or 'sgd', got {self.unroll_optimizer!r}")
        if self.unroll_lr is not None and not self.unroll_lr > 0:
            raise ValueError(f"unroll_lr must be > 0 or None, got {self.unroll_lr}")
        if self.d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, got {self.d_steps}")
        if not (self.gamma >= 0 and self.lam >= 0):
            raise ValueError(f"gamma and lam must be >= 0, got {self.gamma}, {self.lam}")
        if self.latent_dim < 1 or self.batch_size < 2 or self.conv_width < 1 or self.eval_samples < 2:
            raise ValueError(f"latent_dim, conv_width must be >= 1 and batch_size, eval_samples >= 2, got "
                             f"{self.latent_dim}, {self.conv_width}, {self.batch_size}, {self.eval_samples}")
        if not self.g_hidden or not self.d_hidden or min(*self.g_hidden, *self.d_hidden) < 1:
            raise ValueError(f"g_hidden and d_hidden must list positive widths, got {self.g_hidden}, {self.d_hidden}")
        if not (self.lr_g > 0 and self.lr_d > 0):
            raise ValueError(f"lr_g and lr_d must be > 0, got {self.lr_g}, {self.lr_d}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")

    def players(self) -> tuple[nn.Module, nn.Module]:
        """A fresh generator and discriminator for this data."""
        if self.data == "digits":
            return DCGANGenerator(self.latent_dim, self.conv_width), DCGANDiscriminator(self.conv_width)
        return (MLPGenerator(self.latent_dim, self.g_hidden, 2, "tanh"),
                MLPDiscriminator(2, self.d_hidden, "relu", input_scale=0.25))


# ------------------------------------------------------------------------------------------------ metrics
class ModeCoverage(NamedTuple):
    """How a sample set of a Gaussian mixture covers its modes."""

    modes: int  # modes with at least min_share of their fair share of high-quality samples
    modes_any: int  # modes with at least one high-quality sample
    high_quality_fraction: float  # samples within 3 std of their nearest mode
    counts: list[int]  # high-quality samples of each mode
    total_modes: int


def mode_coverage(samples: Tensor, means: Tensor, std: float, min_share: float = 0.25) -> ModeCoverage:
    """Mode metrics of samples ``[N, 2]`` against mixture ``means`` ``[K, 2]`` of standard deviation ``std``
    (see the module docstring): high quality = within ``3 std`` of the nearest mode; covered = at least
    ``min_share * N / K`` high-quality samples."""
    if samples.ndim != 2 or means.ndim != 2 or samples.shape[1] != means.shape[1] or len(samples) == 0:
        raise ValueError(f"samples [N >= 1, D] and means [K, D] need one D, got {tuple(samples.shape)}, "
                         f"{tuple(means.shape)}")
    d = torch.cdist(samples.detach().cpu().double(), means.double())  # [N, K]
    nearest, mode = d.min(dim=1)
    good = nearest <= 3 * std
    counts = torch.bincount(mode[good], minlength=len(means))
    need = min_share * len(samples) / len(means)
    return ModeCoverage(int((counts >= need).sum()), int((counts > 0).sum()), float(good.double().mean()),
                        counts.tolist(), len(means))


def _means(data: str) -> Tensor:  # -> [K, 2]
    return mixture_means(data)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ objective
class GANObjective:
    """Algorithm 1 on the engine: ``optimizers()`` for the two players, ``train_step`` for the alternation."""

    def __init__(self, config: GANTrainConfig, generator: nn.Module, discriminator: nn.Module, device: torch.device,
                 images: Tensor | None = None) -> None:  # images: [N, 1, 8, 8] for the digits
        self.config, self.G, self.D, self.device, self.images = config, generator, discriminator, device, images

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.G, "discriminator": self.D}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.G.parameters())}, {"params": list(self.D.parameters())}]

    def optimizers(self, fit_config: FitConfig) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {"generator": torch.optim.Adam(self.G.parameters(), lr=c.lr_g, betas=c.betas),
                "discriminator": torch.optim.Adam(self.D.parameters(), lr=c.lr_d, betas=c.betas)}

    def real(self, n: int, generator: torch.Generator) -> Tensor:  # -> [n, 2] or [n, 1, 8, 8]
        if self.images is not None:
            return self.images[torch.randint(0, len(self.images), (n,), generator=generator).to(self.device)]
        return sample(self.config.data, n, generator).to(self.device)  # type: ignore[arg-type]

    def latent(self, n: int, generator: torch.Generator) -> Tensor:  # -> [n, latent_dim]
        return torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The discriminator's loss on one batch (what ``train_step`` logs as ``loss``), no update."""
        n = self.config.batch_size
        real, fake = self.real(n, generator), self.G(self.latent(n, generator))
        return self.d_loss(real, fake.detach(), generator)

    def d_loss(self, real: Tensor, fake: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        real_out, fake_out = self.D(real), self.D(fake)
        if c.variant == "wgan-gp":
            penalty = gradient_penalty(self.D, real, fake, c.lam, generator)
            return wgan_critic_loss(real_out, fake_out) + penalty, {"penalty": float(penalty.detach())}
        loss, terms = discriminator_loss(real_out, fake_out), {"d_real": float(torch.sigmoid(real_out.detach()).mean()),
                                                               "d_fake": float(torch.sigmoid(fake_out.detach()).mean())}
        if c.variant == "r1":
            penalty = r1_penalty(self.D, real, c.gamma)
            loss, terms["penalty"] = loss + penalty, float(penalty.detach())
        return loss, terms

    def g_loss(self, fake: Tensor, real: Tensor, optimizer: torch.optim.Optimizer) -> Tensor:
        c = self.config
        if not c.unroll_steps:
            return generator_loss(GENERATOR_LOSS[c.variant], self.D(fake))
        names = {p: k for k, p in self.D.named_parameters()}
        state = optimizer.state
        first = next(iter(names))
        adam_state = None
        if c.unroll_optimizer == "adam" and first in state:
            adam_state = {key: {names[p]: state[p][key] for p in names} for key in ("exp_avg", "exp_avg_sq")}
        count = int(state[first]["step"]) if first in state else 0
        lr = c.unroll_lr if c.unroll_lr is not None else optimizer.param_groups[0]["lr"]
        return unrolled_generator_loss(GENERATOR_LOSS[c.variant], self.D, real, fake, c.unroll_steps, lr,
                                       optimizer=c.unroll_optimizer, betas=c.betas, state=adam_state,
                                       adam_step_count=count)

    def train_step(self, step: int, generator: torch.Generator, optimizers: dict[str, torch.optim.Optimizer]
                   ) -> dict[str, float]:
        c, opt_g, opt_d = self.config, optimizers["generator"], optimizers["discriminator"]
        for _ in range(c.d_steps):  # Algorithm 1, lines 2-7
            real = self.real(c.batch_size, generator)
            with torch.no_grad():
                fake = self.G(self.latent(c.batch_size, generator))
            d_loss, terms = self.d_loss(real, fake, generator)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        fake = self.G(self.latent(c.batch_size, generator))  # lines 8-10
        real = self.real(c.batch_size, generator) if c.unroll_steps else real
        g_loss = self.g_loss(fake, real, opt_d)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(self.G.parameters()))
        opt_g.step()
        g_value = float(g_loss.detach())
        # the engine stops on a non-finite "loss": let a diverged generator stop it too
        loss = float(d_loss.detach()) if math.isfinite(g_value) else math.nan
        return {"loss": loss, "g_loss": g_value, **terms}

    @torch.no_grad()
    def generate(self, n: int, seed: int = EVAL_SEED) -> Tensor:  # -> [n, 2] or [n, 1, 8, 8]
        """``n`` samples of the generator (eval mode) from latents seeded with ``seed``."""
        with evaluating(self.G):
            z = torch.randn(n, self.config.latent_dim, generator=torch.Generator().manual_seed(seed))
            return self.G(z.to(self.device)).cpu()

    def evaluate(self, step: int) -> dict[str, float]:
        c = self.config
        if c.data in MIXTURES:
            cover = mode_coverage(self.generate(c.eval_samples), _means(c.data), MIXTURE_STD)
            return {"modes": float(cover.modes), "high_quality": cover.high_quality_fraction}
        if c.data == "digits":
            from generative.metrics import frechet_digit_distance

            return {"fdd": frechet_digit_distance(self.generate(1000), self.images.cpu())}  # type: ignore[union-attr]
        x = self.generate(c.eval_samples)
        return {"log_density": float(log_density(c.data, x).clamp_min(-50.0).mean())}  # type: ignore[arg-type]

    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """The generator's samples from fixed latents, for the trackers: a grid of 16 digits, or a histogram
        of ``eval_samples`` points."""
        from generative.tasks.density import grid_image, points_image

        if self.config.data == "digits":
            return {"samples": grid_image(self.generate(16).clamp(0, 1).numpy())}
        return {"samples": points_image(self.generate(self.config.eval_samples).numpy())}


# ------------------------------------------------------------------------------------------------ experiment
MODE_VARIANTS: tuple[str, ...] = ("minimax", "non-saturating", "unrolled-5", "unrolled-10", "r1", "wgan-gp")
"""Names of the mode-collapse experiment: a variant, or ``unrolled-K`` (the minimax GAN unrolled K steps)."""


def mode_experiment_config(name: str, data: str = "8gaussians", seed: int = 0, steps: int = 1000,
                           batch_size: int = 256, lr_g: float = 1e-3, lr_d: float = 1e-4,
                           threads: int = 1) -> GANTrainConfig:
    """The config of one run of the mode-collapse experiment (benchmarks/bench_gan_modes.py), after Metz et al.'s
    mixture setup: 256-d latent, generator of two tanh layers of 128, ReLU discriminator (two layers of 128
    here) reading ``x / 4``, Adam with beta1 0.5; the paper gives lr 1e-4 for both players and batch 512 for
    25k steps, we take lr 1e-3 for the generator (as public re-implementations of their notebook), batch 256
    and ``steps`` (1000) to fit a CPU. ``unrolled-K`` is the minimax GAN unrolled ``K`` Adam steps (the
    discriminator's optimizer state and lr); ``wgan-gp`` takes 5 critic steps per generator step with betas
    (0.5, 0.9) as Gulrajani et al."""
    fit = FitConfig(steps=steps, seed=seed, threads=threads, schedule="constant", progress=False, log_every=100,
                    checkpoint_every=max(steps, 1))
    kw: dict[str, Any] = {"variant": name}
    if name.startswith("unrolled-"):
        kw = {"variant": "minimax", "unroll_steps": int(name.split("-", 1)[1])}
    elif name == "wgan-gp":
        kw.update(d_steps=5, betas=(0.5, 0.9))
    elif name not in VARIANTS:
        raise ValueError(f"name must be one of {', '.join(MODE_VARIANTS)} (or unrolled-K), got {name!r}")
    base: dict[str, Any] = {"data": data, "batch_size": batch_size, "lr_g": lr_g, "lr_d": lr_d, "fit": fit}
    return GANTrainConfig(**{**base, **kw})


def digits_gan_config(**overrides: Any) -> GANTrainConfig:
    """The DCGAN on the 8x8 float digits: non-saturating loss, 32-d latent, width 32, batch 64, Adam lr 2e-4 for
    both players (DCGAN's), 12000 steps (about 8 minutes on one busy CPU thread), FDD every 2000 steps."""
    fit = FitConfig(steps=12000, schedule="constant", log_every=250, eval_every=2000, checkpoint_every=2000)
    base: dict[str, Any] = {"data": "digits", "variant": "non-saturating", "latent_dim": 32, "conv_width": 32,
                            "batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4, "fit": fit}
    return GANTrainConfig(**{**base, **overrides})


# ------------------------------------------------------------------------------------------------ runs
class GANResult(NamedTuple):
    """A trained GAN and its numbers (NaN where they do not apply to the data)."""

    generator: nn.Module
    discriminator: nn.Module
    modes: float  # mixtures: modes covered (min_share rule) by eval_samples samples
    modes_any: float  # mixtures: modes with at least one high-quality sample
    total_modes: float  # mixtures: 8 or 25
    high_quality_fraction: float  # mixtures: samples within 3 std of a mode
    fdd: float  # digits: Frechet digit distance of 1000 samples to the training images (real test: 1.40)
    mean_log_density: float  # other toys: mean true log-density of the samples (clamped at -50)
    parameters: int  # generator + discriminator
    train_seconds: float
    fit: FitResult


def _digit_images(device: torch.device) -> Tensor:  # -> [N, 1, 8, 8] float in [0, 1]
    return torch.from_numpy(load_split(DataConfig(form="float")).x_train).to(device)


def train_gan(config: GANTrainConfig, run_dir: Path | str | RunFolder = "runs/gan", resume: bool = False) -> GANResult:
    """Train the GAN of ``config`` on the engine (run folder, checkpoints, bit-identical ``resume``)."""
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    generator, discriminator = (m.to(device) for m in config.players())
    images = _digit_images(device) if config.data == "digits" else None
    objective = GANObjective(config, generator, discriminator, device, images)
    start = time.perf_counter()
    with opened(run_dir, config=config, resume=resume) as run:
        result = fit(objective, config.fit, run, resume=run.resume, desc=f"gan-{config.variant}", record=config)
    seconds = time.perf_counter() - start
    nan = math.nan
    modes = modes_any = total = hq = fdd = logp = nan
    if config.data in MIXTURES:
        cover = mode_coverage(objective.generate(config.eval_samples), _means(config.data), MIXTURE_STD)
        modes, modes_any, total, hq = cover.modes, cover.modes_any, cover.total_modes, cover.high_quality_fraction
    elif config.data == "digits":
        fdd = result.evaluation.get("fdd", nan)
    else:
        logp = result.evaluation.get("log_density", nan)
    parameters = sum(p.numel() for m in (generator, discriminator) for p in m.parameters())
    return GANResult(generator, discriminator, modes, modes_any, total, hq, fdd, logp, parameters, seconds, result)


def load_gan(run_dir: Path, config: GANTrainConfig) -> nn.Module:
    """The generator of the finished run in ``run_dir`` (``config``: its training config), in eval mode."""
    generator, _ = config.players()
    load_modules(Path(run_dir), {"generator": generator})
    return generator.eval()


def gan_images(run_dir: Path, config: GANTrainConfig, n: int, seed: int) -> Tensor:  # -> [n, 1, 8, 8] in [0, 1]
    """``n`` digits of a digits run's generator, from latents seeded with ``seed`` (for the comparison table)."""
    if config.data != "digits":
        raise ValueError(f"gan_images needs a digits run, got data={config.data!r}")
    generator = load_gan(run_dir, config)
    with torch.no_grad():
        return generator(torch.randn(n, config.latent_dim, generator=torch.Generator().manual_seed(seed)))


def toy_figure(samples: np.ndarray, data: str, title: str = "") -> Any:  # samples: [N, 2]
    """Samples (dots) over the true density of the toy ``data`` (shaded), on ``[-3, 3]^2``."""
    from matplotlib.figure import Figure

    from envs.io.figures import PALETTE

    grid = torch.linspace(-3, 3, 200)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)  # [200 * 200, 2]
    density = log_density(data, points).exp().view(200, 200)  # type: ignore[arg-type]
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.imshow(density.numpy(), extent=(-3, 3, -3, 3), origin="lower", cmap="Greys")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c=PALETTE.learned, alpha=0.5)
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=title)
    return fig


def sample_gan(run_dir: Path, config: GANTrainConfig, n: int, out: Path | None, seed: int) -> dict[str, Any]:
    """``n`` samples of the run's generator as a PNG: a scatter over the true density (toys) or a grid of digits."""
    from envs.io.figures import save_figure
    from generative.tasks.density import write_grid

    generator = load_gan(run_dir, config)
    start = time.perf_counter()
    with torch.no_grad():
        x = generator(torch.randn(n, config.latent_dim, generator=torch.Generator().manual_seed(seed)))
    seconds = time.perf_counter() - start
    path = Path(out or Path(run_dir) / "samples.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"n": n, "out": str(path), "seconds": seconds, "seconds_per_sample": seconds / n}
    if config.data == "digits":  # floats in [0, 1]: write_grid's division by levels - 1 = 1 keeps them
        write_grid(x.numpy(), 2, path, columns=math.ceil(math.sqrt(n)))
        return summary
    title = f"{config.variant}" + (f", unrolled {config.unroll_steps}" if config.unroll_steps else "")
    if config.data in MIXTURES:
        cover = mode_coverage(x, _means(config.data), MIXTURE_STD)
        summary.update(modes=cover.modes, high_quality_fraction=cover.high_quality_fraction)
        title += f": {cover.modes}/{cover.total_modes} modes, {100 * cover.high_quality_fraction:.0f}% high quality"
    save_figure(toy_figure(x.numpy(), config.data, title), path)
    return summary
