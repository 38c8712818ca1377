"""Guidance of the digit diffusion models (notes §10.4): a classifier of noisy digits for classifier guidance
(Dhariwal and Nichol 2021) and the judge of class-conditional samples — accuracy under the shipped digit classifier,
within-class diversity and Frechet digit distance — for classifier guidance and classifier-free guidance (Ho and
Salimans 2022) at several strengths.

* :class:`NoisyClassifierConfig` / :func:`train_noisy_classifier`: ``log p(y | x_t, t)`` fitted on ``q_sample``
  images of the training digits with the schedule of the model it guides (``RUN/final.pt``).
* :func:`guidance_report`: one :class:`GuidanceRow` per strength, and sample grids.

The guidance maths (``classifier_free_eps``, ``classifier_guided_eps``) lives in ``generative.models.diffusion`` and
is folded into the noise function by ``generative.tasks.diffusion.eps_function``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.io.run import RunFolder, opened
from generative.models.diffusion import Schedule, ScheduleKind, make_schedule, q_sample
from generative.models.diffusion_unet import NoiseNetConfig, NoisyClassifier
from generative.tasks.diffusion import (
    FINAL,
    NUM_CLASSES,
    DiffusionTrainConfig,
    Loaded,
    Sampler,
    digits_pm1,
    generate,
    load_diffusion,
)
from generative.training import FitConfig, OneModel, evaluating, fit, load_modules, seed_everything

__all__ = ["GuidanceRow", "NoisyClassifierConfig", "NoisyClassifierObjective", "guidance_report", "guided_samples",
           "judge", "load_noisy_classifier", "mean_pairwise_distance", "noisy_accuracy", "train_noisy_classifier"]



@dataclass
class NoisyClassifierConfig:
    """A classifier of noisy digits ``q_sample(x_0, t)`` for classifier guidance; its schedule must be the model's."""

    schedule: ScheduleKind = "linear"
    """Variance schedule of the diffusion model it guides."""
    T: int = 1000
    """Diffusion steps of the diffusion model it guides."""
    beta_start: float = 1e-4
    """Linear schedule: first beta."""
    beta_end: float = 0.02
    """Linear schedule: last beta."""
    net: NoiseNetConfig = field(default_factory=lambda: NoiseNetConfig(width=16))
    """Encoder width/depth and embedding width."""
    batch_size: int = 128
    """Noisy images per step."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(steps=2000, lr=2e-3, warmup_steps=50, checkpoint_every=500))
    """Optimisation."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        make_schedule(self.T, self.schedule, self.beta_start, self.beta_end)

    def make_schedule(self) -> Schedule:
        return make_schedule(self.T, self.schedule, self.beta_start, self.beta_end)


class NoisyClassifierObjective(OneModel):
    """Cross-entropy of ``y`` under ``p(y | q_sample(x_0, t, eps), t)``, ``t ~ U{0..T-1}``."""

    def __init__(self, model: NoisyClassifier, x: Tensor, y: Tensor, schedule: Schedule, batch_size: int) -> None:
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.T, self.alphas_cumprod = schedule.T, schedule.alphas_cumprod.float()

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.x), (self.batch_size,), generator=generator)
        t = torch.randint(0, self.T, (self.batch_size,), generator=generator)
        x0 = self.x[index]
        x_t = q_sample(x0, t, torch.randn(x0.shape, generator=generator), self.alphas_cumprod)
        return F.nll_loss(self.model(x_t, t), self.y[index]), {}


def noisy_accuracy(model: NoisyClassifier, schedule: Schedule, t: int, seed: int = 0) -> float:
    """Accuracy of the noisy classifier on the test digits noised to step ``t``."""
    x, y = digits_pm1("test")
    x_t = q_sample(x, torch.full((len(x),), t), torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)),
                   schedule.alphas_cumprod.float())
    with torch.no_grad(), evaluating(model):
        return float((model(x_t, torch.full((len(x),), t)).argmax(1) == y).float().mean())


def train_noisy_classifier(config: NoisyClassifierConfig, run_dir: Path | str | RunFolder,
                           resume: bool = False) -> tuple[NoisyClassifier, dict[str, float]]:
    """Fit the classifier on noisy training digits; ``RUN/final.pt``; test accuracy at a few noise levels."""
    x, y = digits_pm1()
    seed_everything(config.fit.seed)
    model = NoisyClassifier(1, config.net, NUM_CLASSES)
    schedule = config.make_schedule()
    with opened(run_dir, config=config, resume=resume) as run:
        result = fit(NoisyClassifierObjective(model, x, y, schedule, config.batch_size), config.fit, run,
                     resume=run.resume, desc="noisy-classifier", record=config)
        run.save({"modules": {"model": model.state_dict()}, "step": result.steps}, FINAL)
    model.eval().requires_grad_(False)
    times = sorted({0, config.T // 4, config.T // 2, 3 * config.T // 4})
    return model, {f"accuracy_t{t}": noisy_accuracy(model, schedule, t) for t in times}


def load_noisy_classifier(run_dir: Path, config: NoisyClassifierConfig) -> NoisyClassifier:
    model = NoisyClassifier(1, config.net, NUM_CLASSES)
    load_modules(Path(run_dir), {"model": model}, FINAL)
    return model.eval().requires_grad_(False)


class GuidanceRow(NamedTuple):
    """Class-conditional samples at one guidance strength, judged by the shipped digit classifier."""

    strength: float  # rho (classifier-free) or the classifier scale s
    accuracy: float  # fraction of samples the digit classifier assigns to their label
    diversity: float  # mean pairwise Euclidean distance of samples of one class (pixels in [0, 1]), over classes
    fdd: float  # Frechet digit distance of all samples to the training digits


def mean_pairwise_distance(images: Tensor) -> float:  # [N, 1, 8, 8] -> mean over pairs i != j of ||x_i - x_j||
    """Within-set spread: the mean Euclidean distance over distinct pairs."""
    flat = images.flatten(1).double()
    n = len(flat)
    if n < 2:
        raise ValueError(f"images must hold at least 2 samples, got {n}")
    return float(torch.cdist(flat, flat).sum() / (n * (n - 1)))


def judge(images: Tensor, labels: Tensor, strength: float) -> GuidanceRow:  # [N, 1, 8, 8] in [0, 1], [N]
    """Accuracy (shipped digit classifier), within-class diversity and FDD of labelled samples."""
    from generative.digit_features import load_digit_classifier
    from generative.metrics import frechet_digit_distance

    classifier = load_digit_classifier()
    with torch.no_grad(), evaluating(classifier):
        accuracy = float((classifier(images).argmax(1) == labels).float().mean())
    diversity = float(np.mean([mean_pairwise_distance(images[labels == k]) for k in labels.unique().tolist()]))
    return GuidanceRow(strength, accuracy, diversity, frechet_digit_distance(images, (digits_pm1()[0] + 1) / 2))


def guided_samples(loaded: Loaded, per_class: int, seed: int, sampler: Sampler = "ddpm", steps: int | None = None,
                   rho: float = 0.0, classifier: nn.Module | None = None, scale: float = 0.0) -> tuple[Tensor, Tensor]:
    """``per_class`` samples of every digit (classifier-free ``rho`` or classifier ``scale``): images, labels."""
    images = [generate(loaded, per_class, torch.Generator().manual_seed(seed + k), sampler, steps, k, rho, classifier,
                       scale) for k in range(NUM_CLASSES)]
    return torch.cat(images), torch.arange(NUM_CLASSES).repeat_interleave(per_class)


def guidance_report(run_dir: Path, config: DiffusionTrainConfig, strengths: tuple[float, ...] = (0.0, 1.0, 3.0),
                    per_class: int = 50, seed: int = 0, classifier: nn.Module | None = None, out: Path | None = None,
                    sampler: Sampler = "ddpm", steps: int | None = None) -> list[GuidanceRow]:
    """Classifier-free guidance (``rho`` = each strength; a model trained with ``cond_drop``) or, given a noisy
    ``classifier``, classifier guidance of the unconditional model (``scale`` = each strength); grids to ``out``.
    DDPM by default; DDIM works too since it re-derives ``eps`` from the clamped ``x0_hat`` (clamping alone drifted
    the black background grey as the strength grew, see ``generative.models.diffusion.ddim_step``)."""
    from generative.tasks.density import write_grid

    loaded = load_diffusion(run_dir, config)
    rows = []
    for strength in strengths:
        kw = {"classifier": classifier, "scale": strength} if classifier is not None else {"rho": strength}
        images, labels = guided_samples(loaded, per_class, seed, sampler, steps, **kw)  # type: ignore[arg-type]
        rows.append(judge(images, labels, strength))
        if out is not None:
            shown = images.view(NUM_CLASSES, per_class, 1, 8, 8)[:, :min(per_class, 10)].reshape(-1, 1, 8, 8)
            kind = "scale" if classifier is not None else "rho"
            write_grid(shown.numpy(), 2, Path(out) / f"guidance_{kind}{strength:g}.png", columns=min(per_class, 10))
    return rows
