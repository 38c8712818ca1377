"""Digit classification with the MLP (notes §1) and the CNN (notes §2) on the 8x8 digits or MNIST.

Both minimise the mean cross-entropy, the negative log-likelihood of a categorical over the softmax of
the logits (notes §1.2), on minibatches drawn from the training part of the fixed split
(``generative.data.digits``), each image translated by up to ``shift`` pixels: an augmentation that
suits the shift-equivariant CNN (its default of 1 pixel lifts the test accuracy on the 8x8 digits from
about 0.98 to about 0.99) but not the MLP, which sees a shifted digit as a new pattern (0.97 -> 0.95 at
the same budget; its default is 0). ``evaluate`` reports the accuracy on the validation and the test part.
The engine (``generative.training.fit``) runs the loop, logs, checkpoints and resumes.

The figures for the demo page: test digits with their predicted labels (mistakes marked), and the
confusion matrix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from envs.io.run import RunFolder
from generative.data.digits import DataConfig, Split, load_split
from generative.nn.cnn import CNN
from generative.nn.losses import cross_entropy
from generative.nn.mlp import MLP, Activation
from generative.training import FitConfig, FitResult, OneModel, evaluating, fit, resolve_device, seed_everything

N_CLASSES = 10


def _mlp_fit() -> FitConfig:
    return FitConfig(steps=2000, lr=1e-3, log_every=100, eval_every=500, checkpoint_every=1000)


def _cnn_fit() -> FitConfig:
    return FitConfig(steps=1500, lr=2e-3, log_every=100, eval_every=500, checkpoint_every=1000)


@dataclass
class MLPConfig:
    """An MLP on the flattened pixels (notes §1.1)."""

    fit: FitConfig = field(default_factory=_mlp_fit)
    """Optimisation (Adam, cosine schedule), seed, device, threads, logging."""
    hidden: tuple[int, ...] = (256, 128)
    """Widths of the hidden layers."""
    activation: Activation = "relu"
    """Non-linearity between the layers (notes §1.4)."""
    shift: int = 0
    """Augmentation: translate each training image by up to this many pixels (0: none)."""
    batch_size: int = 64
    """Training images per step, drawn with replacement."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which images (8x8 digits or MNIST); the form must be ``float``."""

    def __post_init__(self) -> None:
        _check_common(self.batch_size, self.data, self.shift)
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")


@dataclass
class CNNConfig:
    """A CNN of conv -> ReLU -> max-pool blocks and a dense head (notes §2.2)."""

    fit: FitConfig = field(default_factory=_cnn_fit)
    """Optimisation (Adam, cosine schedule), seed, device, threads, logging."""
    channels: tuple[int, ...] = (32, 64)
    """Output channels of the convolution of each block (each block halves the size)."""
    kernel_size: int = 3
    """Odd kernel size ``k`` of every convolution (zero padding ``k // 2``)."""
    hidden: int = 128
    """Units of the dense hidden layer before the output (0: none)."""
    dropout: float = 0.0
    """Dropout before the dense layers."""
    hand_written: bool = False
    """Use the hand-written convolution and max-pool backward passes of ``generative.nn.conv``."""
    shift: int = 1
    """Augmentation: translate each training image by up to this many pixels (0: none)."""
    batch_size: int = 64
    """Training images per step, drawn with replacement."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which images (8x8 digits or MNIST); the form must be ``float``."""

    def __post_init__(self) -> None:
        _check_common(self.batch_size, self.data, self.shift)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


def _check_common(batch_size: int, data: DataConfig, shift: int) -> None:
    if batch_size < 1 or shift < 0:
        raise ValueError(f"batch_size must be >= 1 and shift >= 0, got {batch_size} and {shift}")
    if data.form != "float":
        raise ValueError(f"classification reads the float form of the images, got data.form={data.form!r}")


class ClassificationResult(NamedTuple):
    """A trained classifier and its accuracies."""

    model: nn.Module
    test_accuracy: float
    val_accuracy: float
    train_loss: float  # mean cross-entropy of the last 100 training steps (or fewer)
    seconds: float  # wall-clock seconds of the fit (this process; resumed time not included)
    fit: FitResult


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:  # x: [N, C, H, W] -> [N] int64
    """Arg-max class of every image, in evaluation mode, on the model's device."""
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got {tuple(x.shape)}")
    with evaluating(model):
        device = next(model.parameters()).device
        labels = [model(x[i:i + batch_size].to(device)).argmax(dim=1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:  # x: [N, C, H, W], y: [N] -> fraction right
    """Fraction of images whose arg-max class is the label."""
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must be [N] for x of shape {tuple(x.shape)}, got {tuple(y.shape)}")
    return int((predict(model, x) == y.cpu()).sum()) / max(len(y), 1)


def random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:  # x: [B, C, H, W] -> same
    """Translate every image by its own ``(dy, dx)``, uniform in ``{-shift, ..., shift}^2``, filling with zeros
    (drawn from ``generator``, so the augmentation is part of the reproducible, resumable batch stream)."""
    if x.ndim != 4:
        raise ValueError(f"x must be [B, C, H, W], got {tuple(x.shape)}")
    if shift == 0:
        return x
    B, _, H, W = x.shape
    padded = F.pad(x, (shift,) * 4)
    dy = torch.randint(0, 2 * shift + 1, (B,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * shift + 1, (B,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(H, device=x.device)  # [B, H] rows of the padded image
    cols = dx[:, None] + torch.arange(W, device=x.device)  # [B, W]
    batch = torch.arange(B, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]


class ClassificationObjective(OneModel):
    """Mean cross-entropy of a classifier on minibatches of the training images (``training.Objective``)."""

    def __init__(self, model: nn.Module, split: Split, batch_size: int, device: torch.device, shift: int = 0) -> None:
        if split.x_train.dtype != np.float32:
            raise ValueError(f"split must hold float32 images, got {split.x_train.dtype}")
        self.model, self.batch_size, self.device, self.shift = model, batch_size, device, shift
        self.x = torch.from_numpy(split.x_train).to(device)  # [N, C, H, W]
        self.y = torch.from_numpy(split.y_train).to(device)  # [N]
        self.x_val, self.y_val = torch.from_numpy(split.x_val), torch.from_numpy(split.y_val)
        self.x_test, self.y_test = torch.from_numpy(split.x_test), torch.from_numpy(split.y_test)

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.x), (self.batch_size,), generator=generator).to(self.device)
        logits = self.model(random_shift(self.x[index], self.shift, generator))
        loss = cross_entropy(logits, self.y[index], reduction="mean")
        correct = float((logits.detach().argmax(dim=1) == self.y[index]).float().mean())
        return loss, {"train_accuracy": correct}

    def evaluate(self, step: int) -> dict[str, float]:
        return {
            "val_accuracy": accuracy(self.model, self.x_val, self.y_val),
            "test_accuracy": accuracy(self.model, self.x_test, self.y_test),
        }


def _train(make_model: Any, config: MLPConfig | CNNConfig, run_dir: Path | str | RunFolder, resume: bool,
           desc: str) -> ClassificationResult:
    split = load_split(config.data)
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = make_model(split).to(device)
    objective = ClassificationObjective(model, split, config.batch_size, device, config.shift)
    start = time.perf_counter()
    result = fit(objective, config.fit, run_dir, resume=resume, desc=desc, record=config)
    seconds = time.perf_counter() - start
    evaluation = result.evaluation or objective.evaluate(result.steps)
    train_loss = float(np.mean(result.losses[-100:])) if result.losses else float("nan")
    return ClassificationResult(
        model, evaluation["test_accuracy"], evaluation["val_accuracy"], train_loss, seconds, result
    )


def train_mlp(config: MLPConfig | None = None, run_dir: Path | str | RunFolder = "runs/mlp", resume: bool = False
              ) -> ClassificationResult:
    """Fit an ``MLP`` (flattened pixels -> ``hidden`` -> 10 logits) on the training images."""
    config = config or MLPConfig()

    def make(split: Split) -> nn.Module:
        return MLP([int(np.prod(split.image_shape)), *config.hidden, N_CLASSES], config.activation)

    return _train(make, config, run_dir, resume, "mlp")


def train_cnn(config: CNNConfig | None = None, run_dir: Path | str | RunFolder = "runs/cnn", resume: bool = False
              ) -> ClassificationResult:
    """Fit a ``CNN`` (input size from the data) on the training images."""
    config = config or CNNConfig()

    def make(split: Split) -> nn.Module:
        c, h, w = split.image_shape
        return CNN((h, w), c, config.channels, config.kernel_size, config.hidden, N_CLASSES, config.dropout,
                   config.hand_written)

    return _train(make, config, run_dir, resume, "cnn")


# --- figures ---------------------------------------------------------------------------------------------


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """``C[i, j]`` = number of images of class ``i`` predicted as ``j`` (int64 ``[n_classes, n_classes]``)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must both be [N], got {y_true.shape} and {y_pred.shape}")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def predictions_figure(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, columns: int = 10,
                       title: str = "test digits: predicted label (red: wrong, true label in brackets)") -> Figure:
    """A grid of images ``[N, 1, H, W]`` titled with their predicted labels; mistakes in red with the true label."""
    if images.ndim != 4 or images.shape[1] != 1 or len(images) != len(y_true) or y_true.shape != y_pred.shape:
        raise ValueError(
            f"images must be [N, 1, H, W] with N labels, got {images.shape}, {np.shape(y_true)}, {np.shape(y_pred)}"
        )
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(1.1 * columns, 1.25 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, true, pred in zip(axes, images, y_true, y_pred):
        ax.imshow(image[0], cmap="gray_r", vmin=0, vmax=1)
        wrong = int(true) != int(pred)
        ax.set_title(f"{pred} ({true})" if wrong else f"{pred}", color="red" if wrong else "black", fontsize=10)
        if wrong:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    fig.suptitle(title, fontsize=10)
    return fig


def confusion_figure(matrix: np.ndarray, title: str = "confusion matrix (test set)") -> Figure:
    """The confusion matrix as an image with the counts written in the cells."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square [K, K], got {matrix.shape}")
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    shown = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(shown, ax=ax, shrink=0.8)
    k = len(matrix)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def classifier_figures(model: nn.Module, split: Split, count: int = 40, seed: int = 0) -> tuple[Figure, Figure]:
    """The demo page's two figures for a trained classifier: ``count`` test digits (the mistakes first,
    then a seeded random choice) with their predictions, and the test confusion matrix."""
    x_test = torch.from_numpy(split.x_test)
    y_pred = predict(model, x_test).numpy()
    wrong = np.flatnonzero(y_pred != split.y_test)
    right = np.random.default_rng(seed).permutation(np.flatnonzero(y_pred == split.y_test))
    chosen = np.concatenate([wrong, right])[:count]
    grid = predictions_figure(split.x_test[chosen], split.y_test[chosen], y_pred[chosen])
    return grid, confusion_figure(confusion_matrix(split.y_test, y_pred))
