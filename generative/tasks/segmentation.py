"""Semantic segmentation of procedural shapes with a U-Net (notes §3).

Every pixel gets one of four classes (background, disc, square, triangle;
:mod:`generative.data.shapes`); the U-Net (:mod:`generative.nn.unet`) is trained with the per-pixel
cross-entropy on batches generated on the fly and scored on a fixed test set by the intersection over
union of each class, ``IoU_c = |pred = c and true = c| / |pred = c or true = c|`` counted over all test
pixels, its mean over the classes (background included), and the pixel accuracy.
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
from generative.data.shapes import CLASSES, ShapesSpec, shapes_batch, test_set
from generative.nn.unet import Norm, UNet, UNetArchitecture
from generative.nn.upsampling import UpsamplingMethod
from generative.training import FitConfig, FitResult, fit, resolve_device, seed_everything


def _default_fit() -> FitConfig:
    return FitConfig(steps=1500, lr=5e-3, warmup_steps=50, log_every=50, eval_every=500)


@dataclass
class UNetConfig:
    """U-Net on the shapes data: optimisation, architecture, data."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation (steps, learning rate, seed, device, logging)."""
    depth: int = 3
    """Downsampling steps of the U-Net; ``size`` must be a multiple of ``2^depth``."""
    width: int = 16
    """Channels of the first stage (doubled at every downsampling)."""
    upsampling: UpsamplingMethod = "transposed"
    """Decoder upsampling (notes §3.1): transposed, nearest, bed_of_nails or max_unpool."""
    norm: Norm = "batch"
    """Normalisation after each 3x3 convolution: batch, group or none."""
    batch_size: int = 32
    """Images per step, generated fresh every step."""
    size: int = 32
    """Image height and width in pixels."""
    channels: int = 3
    """3 for RGB images, 1 for grey."""
    max_shapes: int = 4
    """Each image holds 1..max_shapes shapes."""
    test_size: int = 256
    """Images in the fixed test set."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.test_size < 1:
            raise ValueError(f"batch_size and test_size must be >= 1, got {self.batch_size}, {self.test_size}")
        self.architecture()  # checks depth, width, upsampling, norm
        if self.size % 2**self.depth:
            raise ValueError(f"size must be a multiple of 2^depth = {2**self.depth}, got size={self.size}")
        self.spec()

    def architecture(self) -> UNetArchitecture:
        """The network's shape."""
        return UNetArchitecture(self.channels, len(CLASSES), self.depth, self.width, self.upsampling, self.norm)

    def spec(self) -> ShapesSpec:
        """The generated images (shape sizes scale with the image size)."""
        scale = self.size / 32
        return ShapesSpec(size=self.size, channels=self.channels, max_shapes=self.max_shapes,
                          min_radius=4.0 * scale, max_radius=9.0 * scale)


class Scores(NamedTuple):
    """Segmentation scores over a whole test set."""

    mean_iou: float  # mean of per_class_iou over the classes present in labels or predictions
    per_class_iou: tuple[float, ...]  # one per class (nan where a class is in neither)
    pixel_accuracy: float


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``M[t, p]`` = number of pixels of true class ``t`` predicted as ``p``; inputs ``[N, H, W]`` ints."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions and labels must have the same shape, got {predictions.shape} and {labels.shape}")
    index = labels.astype(np.int64).ravel() * num_classes + predictions.astype(np.int64).ravel()
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_scores(predictions: np.ndarray, labels: np.ndarray, num_classes: int = len(CLASSES)) -> Scores:
    """Per-class IoU ``TP / (TP + FP + FN)`` counted over all pixels, its mean, and the pixel accuracy."""
    m = confusion_matrix(predictions, labels, num_classes).astype(np.float64)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return Scores(float(np.nanmean(iou)), tuple(float(v) for v in iou), float(tp.sum() / max(m.sum(), 1.0)))


class SegmentationObjective:
    """Per-pixel cross-entropy of the U-Net on fresh shape images (``training.Objective``)."""

    def __init__(self, model: UNet, config: UNetConfig, device: torch.device) -> None:
        self.model, self.config, self.device = model, config, device
        fixed = test_set(config.test_size, config.spec())
        self.test_images = torch.from_numpy(fixed.images)
        self.test_labels = fixed.labels

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.model}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
        batch = shapes_batch(self.config.batch_size, rng, self.config.spec())
        images = torch.from_numpy(batch.images).to(self.device)
        labels = torch.from_numpy(batch.labels).to(self.device)
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = float((logits.detach().argmax(1) == labels).float().mean())
        return loss, {"pixel_accuracy": accuracy}

    @torch.no_grad()
    def predict(self, images: Tensor, chunk: int = 64) -> np.ndarray:  # [N, C, H, W] -> [N, H, W] int64
        """Classes of every pixel, in evaluation mode (batch norm's running statistics)."""
        was_training = self.model.training
        self.model.eval()
        out = [self.model.predict(images[i : i + chunk].to(self.device)).cpu() for i in range(0, len(images), chunk)]
        self.model.train(was_training)
        return torch.cat(out).numpy()

    def evaluate(self, step: int) -> dict[str, float]:
        scores = segmentation_scores(self.predict(self.test_images), self.test_labels)
        row = {"test_mean_iou": scores.mean_iou, "test_pixel_accuracy": scores.pixel_accuracy}
        row.update({f"test_iou_{name}": v for name, v in zip(CLASSES, scores.per_class_iou)})
        return row


class SegmentationResult(NamedTuple):
    """A trained U-Net and its scores on the fixed test set."""

    model: UNet
    mean_iou: float
    per_class_iou: dict[str, float]
    pixel_accuracy: float
    seconds: float
    fit: FitResult


def train_unet(
    config: UNetConfig | None = None, run_dir: Path | str | RunFolder = "runs/unet", resume: bool = False
) -> SegmentationResult:
    """Fit a U-Net on generated shapes; scores on the fixed test set (target: mean IoU >= 0.90)."""
    config = config or UNetConfig()
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = UNet(config.architecture()).to(device)
    objective = SegmentationObjective(model, config, device)
    start = time.perf_counter()
    result = fit(objective, config.fit, run_dir, resume=resume, desc="unet", record=config)
    seconds = time.perf_counter() - start
    scores = segmentation_scores(objective.predict(objective.test_images), objective.test_labels)
    return SegmentationResult(model, scores.mean_iou, dict(zip(CLASSES, scores.per_class_iou)),
                              scores.pixel_accuracy, seconds, result)


def segmentation_figure(
    images: np.ndarray,  # [N, C, H, W] float in [0, 1]
    labels: np.ndarray,  # [N, H, W] int
    predictions: np.ndarray,  # [N, H, W] int
    n: int = 8,
) -> Figure:
    """Three rows: test images, true masks, predicted masks (the first ``n``), with the class colours."""
    if images.ndim != 4 or labels.shape != (images.shape[0], *images.shape[2:]) or predictions.shape != labels.shape:
        raise ValueError(
            f"images must be [N, C, H, W] with labels and predictions [N, H, W], got {images.shape}, "
            f"{labels.shape} and {predictions.shape}"
        )
    n = min(n, len(images))
    figure = Figure(figsize=(1.3 * n, 4.2), layout="constrained")
    axes = figure.subplots(3, n, squeeze=False)
    colours = np.array([[0.1, 0.1, 0.1], [0.9, 0.3, 0.2], [0.2, 0.6, 0.9], [0.95, 0.8, 0.2]])
    for k in range(n):
        picture = images[k].transpose(1, 2, 0)
        axes[0, k].imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=1)
        axes[1, k].imshow(colours[labels[k]])
        axes[2, k].imshow(colours[predictions[k]])
    for row, title in enumerate(("image", "true", "predicted")):
        axes[row, 0].set_ylabel(title)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle("U-Net segmentation: " + ", ".join(f"{c}" for c in CLASSES[1:]) + " (red, blue, yellow)")
    return figure
