"""A RealNVP on the 2-D toy densities (notes §8.4-8.5; Dinh et al. 2016): maximum likelihood on the engine, the
test NLL beside the true density's and a single Gaussian's, and a figure of the learned density next to the true
one.

The data are ``n_train`` points of a toy of ``generative.data.toys`` (seed ``data_seed``) and ``n_test`` fresh
ones (seed ``data_seed + 1``). The true density's NLL on the test points, ``mean -log p_true(x)``, estimates its
entropy: no model can do better in expectation, so ``test_nll - true_nll`` (a KL divergence estimate) says how far
the flow is from the truth. A Gaussian fitted by maximum likelihood (sample mean and covariance) is the baseline a
flow must beat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from envs.io.figures import image_grid, save_figure
from envs.io.run import RunFolder, opened
from generative.data import toys
from generative.data.toys import ToyName
from generative.models.flows import ToyFlow, ToyFlowConfig
from generative.training import FitConfig, FitResult, OneModel, evaluating, fit, resolve_device, seed_everything

__all__ = ["FIGURE", "ToyFlowResult", "ToyFlowTrainConfig", "density_figure", "density_grid", "gaussian_nll",
           "toy_split", "train_toy_flow"]

FIGURE = "density.png"
"""The run folder's figure: learned density beside the true one."""


@dataclass
class ToyFlowTrainConfig:
    """The toy, its sample sizes, the flow and the optimisation."""

    toy: ToyName = "moons"
    """Which 2-D toy density of ``generative.data.toys``."""
    n_train: int = 20_000
    """Training points (drawn once with ``data_seed``)."""
    n_test: int = 5_000
    """Test points (drawn with ``data_seed + 1``)."""
    data_seed: int = 0
    """Seed of the training points; the test points use the next seed."""
    batch_size: int = 256
    """Points per step, drawn with replacement."""
    model: ToyFlowConfig = field(default_factory=ToyFlowConfig)
    """The RealNVP: couplings, hidden widths, bound of ``s``."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(steps=3000, lr=1e-3, eval_every=500, checkpoint_every=1000))
    """Optimisation (Adam, cosine schedule), seed, device, threads, logging."""

    def __post_init__(self) -> None:
        if self.toy not in toys.TOYS:
            raise ValueError(f"toy must be one of {', '.join(toys.TOYS)}, got {self.toy!r}")
        if min(self.n_train, self.n_test, self.batch_size) < 1:
            raise ValueError(f"n_train, n_test and batch_size must be >= 1, got {self.n_train}, {self.n_test}, "
                             f"{self.batch_size}")


class ToyFlowResult(NamedTuple):
    """A trained toy flow and its numbers on the test points (nats per point)."""

    model: ToyFlow
    test_nll: float  # mean -log p_flow(x) on the test points
    true_nll: float  # mean -log p_true(x) on the same points: the entropy estimate, the best any model can do
    gaussian_nll: float  # a Gaussian fitted to the training points, on the test points
    parameters: int
    train_seconds: float
    fit: FitResult


def toy_split(config: ToyFlowTrainConfig) -> tuple[Tensor, Tensor]:  # -> [n_train, 2], [n_test, 2]
    """The training and test points of ``config``."""
    return (toys.sample(config.toy, config.n_train, seed=config.data_seed),
            toys.sample(config.toy, config.n_test, seed=config.data_seed + 1))


def gaussian_nll(x_train: Tensor, x_test: Tensor) -> float:  # x_train: [N, D], x_test: [M, D]
    """Mean ``-log N(x_test; mu, Sigma)`` of the maximum-likelihood Gaussian of ``x_train``."""
    x_train, x_test = x_train.double(), x_test.double()
    mu = x_train.mean(0)
    sigma = torch.cov(x_train.T, correction=0)
    normal = torch.distributions.MultivariateNormal(mu, covariance_matrix=sigma)
    return float(-normal.log_prob(x_test).mean())


class ToyFlowObjective(OneModel):
    """Mean ``-log p(x)`` of minibatches of the training points; evaluation: the test NLL."""

    def __init__(self, model: ToyFlow, x_train: Tensor, x_test: Tensor, batch_size: int, device: torch.device) -> None:
        self.model, self.batch_size = model, batch_size
        self.x, self.x_test = x_train.to(device), x_test.to(device)  # [N, 2], [M, 2]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.x), (self.batch_size,), generator=generator).to(self.x.device)
        return -self.model.log_prob(self.x[index]).mean(), {}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        with evaluating(self.model):
            return {"test_nll": float(-self.model.log_prob(self.x_test).mean())}

    @torch.no_grad()
    def pictures(self, step: int) -> dict[str, np.ndarray]:
        """The flow's density on ``[-3.5, 3.5]^2`` (+y at the top), scaled to its maximum, for the trackers."""
        param = next(self.model.parameters())
        with evaluating(self.model):
            density = self.model.log_prob(density_grid(3.5, 96).to(param)).exp().view(96, 96).cpu()
        return {"density": np.round(255 * (density / density.max().clamp_min(1e-300)).numpy()).astype(np.uint8)}


def density_grid(extent: float, n: int) -> Tensor:  # -> [n * n, 2]
    """The ``n x n`` cell centres of ``[-extent, extent]^2``, rows from top (+y) to bottom, as an image reads."""
    step = 2 * extent / n
    axis = -extent + step * (torch.arange(n, dtype=torch.float64) + 0.5)
    ys, xs = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


@torch.no_grad()
def density_figure(model: ToyFlow, toy: ToyName, extent: float = 3.5, n: int = 150) -> Figure:
    """The flow's density beside the true one on ``[-extent, extent]^2`` (each scaled to its own maximum)."""
    points = density_grid(extent, n)
    param = next(model.parameters())
    with evaluating(model):
        learned = torch.cat([model.log_prob(c.to(param)).exp().cpu() for c in points.split(20_000)]).view(n, n)
    true = toys.log_density(toy, points).exp().view(n, n)
    images = [(d / d.max().clamp_min(1e-300)).float().numpy() for d in (learned, true)]
    return image_grid(images, [f"RealNVP on {toy}", f"true {toy} density"], cmap="viridis",
                      title=f"[-{extent:g}, {extent:g}]^2, each scaled to its maximum")


def train_toy_flow(config: ToyFlowTrainConfig, run_dir: Path | str | RunFolder, resume: bool = False,
                   desc: str = "toy-flow") -> ToyFlowResult:
    """Fit the RealNVP of ``config.model`` to the toy by maximum likelihood; write ``RUN/density.png``."""
    x_train, x_test = toy_split(config)
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = config.model.build(2).to(device)
    objective = ToyFlowObjective(model, x_train, x_test, config.batch_size, device)
    start = time.perf_counter()
    with opened(run_dir, config=config, resume=resume) as run:
        result = fit(objective, config.fit, run, resume=run.resume, desc=desc, record=config)
        seconds = time.perf_counter() - start
        save_figure(density_figure(model, config.toy), run.path / FIGURE)
    test_nll = objective.evaluate(config.fit.steps)["test_nll"]
    true_nll = float(-toys.log_density(config.toy, x_test).mean())
    return ToyFlowResult(model, test_nll, true_nll, gaussian_nll(x_train, x_test),
                         sum(p.numel() for p in model.parameters()), seconds, result)

