"""The VRNN and its plain RNN baseline on procedural pen strokes (notes §7.6), on the engine.

Both objectives minimise a per-step loss on minibatches of training drawings (``generative.data.strokes``):
the VRNN its negative ELBO (one reparameterised ``z_t`` per step from the batch generator), the RNN its
exact negative log-likelihood. The results report, on the fixed test drawings, the VRNN's ELBO (a lower
bound of ``log p(x)``) and an importance-weighted bound with ``k`` samples (tighter), against the RNN's exact
log-likelihood at the same state size; all in nats per sequence and per step. The offsets are continuous,
so these are densities: the numbers can be negative and compare only between models on the same data.

Figure: sampled drawings next to real ones (:func:`strokes_figure`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.data.strokes import StrokeSplit, strokes_split, strokes_to_polylines
from generative.models.vrnn import VRNN, StrokeRNN, StrokeRNNConfig, VRNNConfig
from generative.training import FitConfig, FitResult, OneModel, evaluating, fit, resolve_device, seed_everything


def _strokes_fit() -> FitConfig:
    return FitConfig(steps=1000, lr=2e-3, warmup_steps=50, clip_norm=5.0, log_every=50, checkpoint_every=500)


@dataclass
class StrokeDataConfig:
    """Which drawings: how many, how long."""

    T: int = 40
    """Points per drawing."""
    n_train: int = 2048
    """Training drawings."""
    n_test: int = 256
    """Test drawings (the validation part holds half as many)."""

    def __post_init__(self) -> None:
        if self.T < 6:
            raise ValueError(f"T must be >= 6, got {self.T}")
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"n_train and n_test must be >= 1, got {self.n_train}, {self.n_test}")

    def split(self) -> StrokeSplit:
        """The fixed drawings of this config."""
        return strokes_split(self.n_train, max(self.n_test // 2, 1), self.n_test, self.T)


@dataclass
class VRNNTrainConfig:
    """The VRNN trained by maximising the ELBO."""

    model: VRNNConfig = field(default_factory=VRNNConfig)
    """The network (state size, latent size, output covariance, cell)."""
    data: StrokeDataConfig = field(default_factory=StrokeDataConfig)
    """The drawings."""
    fit: FitConfig = field(default_factory=_strokes_fit)
    """Optimisation (Adam, cosine schedule, clipping), seed, device, threads, logging."""
    batch_size: int = 32
    """Training drawings per step, drawn with replacement."""
    iwae_k: int = 32
    """Importance samples of the test bound ``iwae`` (1 would be another one-sample ELBO)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iwae_k < 1:
            raise ValueError(f"batch_size and iwae_k must be >= 1, got {self.batch_size}, {self.iwae_k}")


@dataclass
class StrokeRNNTrainConfig:
    """The RNN baseline trained by maximum likelihood."""

    model: StrokeRNNConfig = field(default_factory=StrokeRNNConfig)
    """The network (state size, output covariance, cell)."""
    data: StrokeDataConfig = field(default_factory=StrokeDataConfig)
    """The drawings."""
    fit: FitConfig = field(default_factory=_strokes_fit)
    """Optimisation (Adam, cosine schedule, clipping), seed, device, threads, logging."""
    batch_size: int = 32
    """Training drawings per step, drawn with replacement."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class StrokeResult(NamedTuple):
    """A trained stroke model and its test score: the VRNN's ELBO and IWAE bound, or the RNN's exact
    log-likelihood (then ``test_iwae == test_score``); nats per sequence, and per step."""

    model: nn.Module
    test_score: float  # VRNN: mean ELBO; RNN: mean log p(x); nats per sequence (higher is better)
    test_iwae: float  # VRNN: mean importance-weighted bound with k samples; RNN: log p(x) again
    per_step: float  # test_score / T
    seconds: float
    fit: FitResult


@torch.no_grad()
def mean_score(model: nn.Module, x: Tensor, k: int = 0, seed: int = 0, batch_size: int = 256) -> float:
    """Mean over the drawings ``x [N, T, 3]`` of ``log p(x)`` (RNN), the ELBO (VRNN, ``k = 0``) or the IWAE
    bound with ``k`` samples (VRNN), in nats per sequence; the VRNN's draws are seeded."""
    with evaluating(model):
        generator = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        total = 0.0
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size].to(device)
            if isinstance(model, VRNN):
                total += float((model.iwae(batch, k, generator) if k else model.elbo(batch, generator)).sum())
            else:
                total += float(model.log_prob(batch).sum())
    return total / max(len(x), 1)


class StrokeObjective(OneModel):
    """Mean loss per step of a stroke model (``-ELBO / T`` or ``-log p(x) / T``) on training minibatches."""

    def __init__(self, model: VRNN | StrokeRNN, split: StrokeSplit, batch_size: int, device: torch.device) -> None:
        self.model, self.batch_size, self.device = model, batch_size, device
        self.train = torch.from_numpy(split.train).to(device)  # [N, T, 3]
        self.val = torch.from_numpy(split.val)

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.train), (self.batch_size,), generator=generator).to(self.device)
        x = self.train[index]
        return self.model.loss(x, generator).mean() / x.shape[1], {}

    def evaluate(self, step: int) -> dict[str, float]:
        return {"val_score_per_step": mean_score(self.model, self.val) / self.val.shape[1]}


def _train(model: nn.Module, config: VRNNTrainConfig | StrokeRNNTrainConfig, run_dir: Path | str | RunFolder,
           resume: bool, desc: str, k: int) -> StrokeResult:
    split = config.data.split()
    device = resolve_device(config.fit.device)
    model = model.to(device)
    objective = StrokeObjective(model, split, config.batch_size, device)  # type: ignore[arg-type]
    start = time.perf_counter()
    result = fit(objective, config.fit, run_dir, resume=resume, desc=desc, record=config)
    seconds = time.perf_counter() - start
    test = torch.from_numpy(split.test)
    score = mean_score(model, test)
    bound = mean_score(model, test, k) if isinstance(model, VRNN) else score
    return StrokeResult(model, score, bound, score / split.test.shape[1], seconds, result)


def train_vrnn(config: VRNNTrainConfig | None = None, run_dir: Path | str | RunFolder = "runs/vrnn",
               resume: bool = False) -> StrokeResult:
    """Fit a VRNN by maximising the ELBO; report its test ELBO and IWAE bound."""
    config = config or VRNNTrainConfig()
    seed_everything(config.fit.seed)
    return _train(config.model.build(), config, run_dir, resume, "vrnn", config.iwae_k)


def train_stroke_rnn(config: StrokeRNNTrainConfig | None = None, run_dir: Path | str | RunFolder = "runs/stroke_rnn",
                     resume: bool = False) -> StrokeResult:
    """Fit the RNN baseline by maximum likelihood; report its exact test log-likelihood."""
    config = config or StrokeRNNTrainConfig()
    seed_everything(config.fit.seed)
    return _train(config.model.build(), config, run_dir, resume, "stroke_rnn", 0)


# --- figures ---------------------------------------------------------------------------------------------


def _draw(ax: Any, drawing: np.ndarray) -> None:
    for line in strokes_to_polylines(drawing):
        ax.plot(line[:, 0], line[:, 1], "-", color="black", lw=1.2)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])


def strokes_figure(rows: dict[str, np.ndarray], columns: int = 8) -> Figure:
    """One row of drawings ``[N, T, 3]`` per entry of ``rows`` (e.g. ``{"real": ..., "VRNN": ..., "RNN": ...}``)."""
    if not rows:
        raise ValueError("rows must hold at least one set of drawings")
    for name, drawings in rows.items():
        if drawings.ndim != 3 or drawings.shape[-1] != 3:
            raise ValueError(f"rows[{name!r}] must be [N, T, 3], got {drawings.shape}")
    fig = Figure(figsize=(1.4 * columns, 1.5 * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (name, drawings) in enumerate(rows.items()):
        for c in range(columns):
            if c < len(drawings):
                _draw(axes[r, c], drawings[c])
            else:
                axes[r, c].axis("off")
        axes[r, 0].set_ylabel(name)
    return fig


def sampled_strokes_figure(models: dict[str, VRNN | StrokeRNN], split: StrokeSplit, columns: int = 8,
                           seed: int = 0) -> Figure:
    """Real test drawings in the first row, then ``columns`` drawings sampled from each model (seeded)."""
    T = split.test.shape[1]
    rows = {"real": split.test[:columns]}
    for name, model in models.items():
        with evaluating(model):
            rows[name] = model.sample(columns, T, torch.Generator().manual_seed(seed)).cpu().numpy()
    return strokes_figure(rows, columns)


def sample_strokes(run_dir: Path, config: VRNNTrainConfig | StrokeRNNTrainConfig, n: int, out: Path | None, seed: int
                   ) -> dict[str, Any]:
    """``n`` drawings sampled from the stroke model trained in ``run_dir``, drawn 8 to a row in a PNG
    (default RUN/samples.png)."""
    from envs.io.figures import save_figure
    from generative.training import load_modules

    model = config.model.build()
    load_modules(Path(run_dir), {"model": model})
    start = time.perf_counter()
    with torch.no_grad():
        drawings = model.eval().sample(n, config.data.T, torch.Generator().manual_seed(seed)).cpu().numpy()
    elapsed = time.perf_counter() - start
    columns = min(n, 8)
    rows = {f"{i + 1}-{min(i + columns, n)}": drawings[i:i + columns] for i in range(0, n, columns)}
    path = save_figure(strokes_figure(rows, columns), Path(out) if out is not None else Path(run_dir) / "samples.png")
    return {"n": n, "out": str(path), "seconds": elapsed, "seconds_per_sample": elapsed / n}
