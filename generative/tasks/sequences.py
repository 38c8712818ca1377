"""Training objectives for the Elman RNN and the LSTM on the adding problem (notes §4).

Both read a sequence of ``(value, marker)`` pairs and predict the sum of the two marked values from
the last output ``y_hat_T``; the loss is the mean squared error. Predicting the mean scores
``1/6`` (:data:`generative.data.sequences.BASELINE_MSE`); the result reports the test MSE on a fixed
test set next to that baseline. The LSTM (notes §4.2) bridges the ``T/2``-step gap to the first
marker and reaches a small fraction of the baseline; the Elman RNN (§4.1), with the same budget and
the same gradient clipping (§4.3, on by default), stays near the baseline: the gradient from the
target to the first marker vanishes over the steps between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.data.sequences import (
    BASELINE_MSE,
    AddingBatch,
    Placement,
    adding_problem,
    adding_test_set,
    baseline_mse,
)
from generative.nn.lstm import LSTMSequenceModel
from generative.nn.rnn import ElmanRNN
from generative.training import FitConfig, FitResult, OneModel, fit, resolve_device, seed_everything


def _default_fit() -> FitConfig:
    return FitConfig(steps=2500, lr=1e-2, clip_norm=1.0, warmup_steps=50, log_every=50, eval_every=500)


@dataclass
class AddingConfig:
    """The adding problem and the budget shared by both recurrent models."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation; gradient clipping (notes §4.3) at global norm ``clip_norm = 1`` by default."""
    hidden: int = 64
    """Hidden units ``H`` of the recurrent layer."""
    T: int = 100
    """Sequence length (``T >= 50`` for the long-range task); the first marker lies ``T/2 .. T`` steps back."""
    batch_size: int = 64
    """Sequences per step, drawn fresh every step."""
    placement: Placement = "halves"
    """Where the markers go: one in each half (``halves``) or ``anywhere``."""
    test_size: int = 1000
    """Sequences in the fixed test set."""

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.T < 2 or self.batch_size < 1 or self.test_size < 1:
            raise ValueError(
                f"need hidden >= 1, T >= 2, batch_size >= 1, test_size >= 1, got {self.hidden}, {self.T}, "
                f"{self.batch_size}, {self.test_size}"
            )


@dataclass
class RNNConfig(AddingConfig):
    """The Elman RNN (notes §4.1, ``torch.nn.RNN`` with tanh) on the adding problem."""


@dataclass
class LSTMConfig(AddingConfig):
    """The LSTM (notes §4.2, ``torch.nn.LSTM``) on the adding problem."""

    num_layers: int = 1
    """Chained LSTM layers."""
    forget_bias: float = 1.0
    """Initial forget-gate bias ``b_f`` (start by remembering)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")


class SequenceResult(NamedTuple):
    """A trained model and its error on the fixed test set."""

    model: nn.Module
    test_mse: float
    baseline_mse: float  # MSE of predicting the mean 1 on the same test set (about 1/6)
    seconds: float
    fit: FitResult

    @property
    def relative_mse(self) -> float:
        """``test_mse / baseline_mse``: 1 means nothing learnt."""
        return self.test_mse / self.baseline_mse


def _tensors(batch: AddingBatch, device: torch.device) -> tuple[Tensor, Tensor]:
    return torch.from_numpy(batch.x).to(device), torch.from_numpy(batch.y).to(device)


def predict_sum(model: nn.Module, x: Tensor) -> Tensor:  # x: [B, T, 2] -> [B]
    """The model's last output ``y_hat_T``: its estimate of the sum of the marked values."""
    if x.ndim != 3 or x.shape[2] != 2:
        raise ValueError(f"x must be [B, T, 2], got shape {tuple(x.shape)}")
    return model(x)[:, -1, 0]


class AddingObjective(OneModel):
    """MSE of the last output on fresh batches of the adding problem (``training.Objective``)."""

    def __init__(self, model: nn.Module, config: AddingConfig, device: torch.device) -> None:
        self.model, self.config, self.device = model, config, device
        self.test_x, self.test_y = _tensors(adding_test_set(config.T, config.test_size, config.placement), device)
        self.baseline = baseline_mse(self.test_y.cpu().numpy())

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
        x, y = _tensors(adding_problem(self.config.batch_size, self.config.T, rng, self.config.placement), self.device)
        loss = F.mse_loss(predict_sum(self.model, x), y)
        return loss, {"relative_mse": float(loss.detach()) / BASELINE_MSE}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        self.model.eval()
        mse = float(F.mse_loss(predict_sum(self.model, self.test_x), self.test_y))
        self.model.train()
        return {"test_mse": mse, "baseline_mse": self.baseline}


def _train(model_factory: Callable[[], nn.Module], config: AddingConfig, run_dir: Path | str | RunFolder, resume: bool,
           desc: str) -> SequenceResult:
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = model_factory().to(device)
    objective = AddingObjective(model, config, device)
    start = time.perf_counter()
    result = fit(objective, config.fit, run_dir, resume=resume, desc=desc, record=config)
    seconds = time.perf_counter() - start
    evaluation = result.evaluation or objective.evaluate(result.steps)
    return SequenceResult(model, evaluation["test_mse"], evaluation["baseline_mse"], seconds, result)


def train_rnn(
    config: RNNConfig | None = None, run_dir: Path | str | RunFolder = "runs/rnn", resume: bool = False
) -> SequenceResult:
    """Fit the Elman RNN (``nn.RNN``, tanh, ``hidden`` units) on the adding problem."""
    config = config or RNNConfig()
    return _train(lambda: ElmanRNN(2, config.hidden, 1), config, run_dir, resume, "rnn")


def train_lstm(
    config: LSTMConfig | None = None, run_dir: Path | str | RunFolder = "runs/lstm", resume: bool = False
) -> SequenceResult:
    """Fit the LSTM (``nn.LSTM``, ``num_layers`` chained layers) on the adding problem."""
    config = config or LSTMConfig()
    return _train(
        lambda: LSTMSequenceModel(2, config.hidden, 1, config.num_layers, config.forget_bias),
        config, run_dir, resume, "lstm",
    )
