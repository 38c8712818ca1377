"""Convolutional pose machines (notes §13.1; Wei, Ramakrishna, Kanade and Sheikh, CVPR 2016).

A sequence of predictors, each producing belief maps ``b_t`` ``[K + 1, h, w]`` (one per keypoint plus a
background map) at stride ``s``. Stage 1 sees only image features; every later stage sees the same
image features concatenated with the previous stage's beliefs, through dilated 3x3 convolutions
(the cheap way to the paper's large kernels), so the effective receptive field grows with the stages and
later stages can use the context of the other parts (a wrist found from where the elbow is believed to be).

Here the image features come from one strided trunk that stage 1 also uses (the paper gives stage 1 its own
image network; sharing it saves compute and does not change the argument), ending in residual blocks at
stride ``s``: on the 128-pixel renders (bodies seen from every yaw) most errors were a limb given the other
side's position, which needs the body's facing, and two blocks lifted held-out PCK@0.2 after 600 steps from
0.57 to 0.62 (wider targets, ``sigma`` 1.5 cells, and a larger learning rate gave 0.41 -> 0.57 before). A later
stage predicts a correction, ``b_t = b_{t-1} + g_t([phi(x), b_{t-1}])`` (the paper outputs ``b_t``
directly; without the shortcut our stages 2-3 trailed stage 1 after short runs, 0.92 against 0.97 PCK@0.2
on 64-pixel stick figures, with it they lead; the receptive field is unchanged). Training is
intermediate supervision: ``L = sum_t f_t``, ``f_t = mean_batch sum_{k, p} w_k (b_t^k(p) - b*^k(p))^2``
with Gaussian targets ``b*`` (width ``sigma`` heatmap cells, :mod:`bodies.heatmaps`) and background
``1 - max_k b*^k``; keypoints that are not visible get weight ``w_k = 0`` (their map is left free).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from bodies.heatmaps import as_tensors, decode_heatmaps, gaussian_heatmaps, sample_batch, with_background
from bodies.skeleton import NUM_KEYPOINTS
from envs.io.run import RunFolder
from generative.training import FitConfig, FitResult, fit, resolve_device, seed_everything

__all__ = [
    "CPM", "CPMConfig", "CPMObjective", "CPMPrediction", "CPMResult", "cpm_loss", "cpm_targets", "layer_geometry",
    "predict", "receptive_field", "train_cpm",
]


def _default_fit() -> FitConfig:
    # 4400 renders (3960 to train), one CPU thread: 2400 steps at lr 2e-2 took 7.2 min for held-out PCK@0.2
    # 0.843 / 0.897 / 0.897 per stage; lr 1e-2 gave 0.843 / 0.884 / 0.886 (7.2 min), lr 5e-3 and 2000 steps
    # 0.806 / 0.825 / 0.827 (6.5 min). PCK was still rising at the end of every run, so the default trains 2800 steps
    # (about 8.4 min on a busy machine, within the 10-minute budget).
    return FitConfig(steps=2800, lr=2e-2, warmup_steps=100, log_every=50, eval_every=700, checkpoint_every=700)


@dataclass
class CPMConfig:
    """Convolutional pose machine: architecture, targets, batches, augmentation and optimisation."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation (steps, learning rate, seed, device, logging)."""
    stages: int = 3
    """Number of predictors ``T`` (stage 1 on image features, stages 2..T also on the previous beliefs)."""
    channels: int = 32
    """Width of the trunk and of every stage."""
    stride: int = 4
    """Heatmap stride ``s`` (a power of two): a 128-pixel image gives 32x32 belief maps."""
    dilations: tuple[int, ...] = (1, 2, 4)
    """Dilations of the 3x3 convolutions of stages >= 2 (each adds ``2 d`` cells to the receptive field)."""
    first_stage_layers: int = 2
    """Plain 3x3 convolutions of stage 1 (a small receptive field, as the paper's first stage)."""
    trunk_blocks: int = 2
    """Residual blocks (two 3x3 convolutions and an identity shortcut) at the end of the trunk, at stride ``s``."""
    sigma: float = 1.5
    """Width of the Gaussian targets in heatmap cells (``sigma * stride`` image pixels); 1 cell learned slower."""
    batch_size: int = 16
    """Images per step."""
    flip: bool = True
    """Random horizontal flips (left/right keypoints swapped by ``skeleton.FLIP_PERMUTATION``)."""
    scale_jitter: float = 0.1
    """Random zoom by a factor in ``[1 - j, 1 + j]`` about the image centre."""
    shift_jitter: float = 0.05
    """Random move by up to this fraction of the image size on each axis."""
    pck_threshold: float = 0.2
    """PCK threshold (fraction of the torso diameter) of the held-out evaluation."""

    def __post_init__(self) -> None:
        if self.trunk_blocks < 0:
            raise ValueError(f"trunk_blocks must be >= 0, got {self.trunk_blocks}")
        if self.stages < 1 or self.channels < 1 or self.batch_size < 1 or self.first_stage_layers < 1:
            raise ValueError(f"stages, channels, batch_size and first_stage_layers must be >= 1, got {self.stages}, "
                             f"{self.channels}, {self.batch_size}, {self.first_stage_layers}")
        if self.stride < 1 or self.stride & (self.stride - 1):
            raise ValueError(f"stride must be a power of two, got {self.stride}")
        if self.sigma <= 0 or not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"need sigma > 0 and dilations >= 1, got {self.sigma}, {self.dilations}")
        if not (0 <= self.scale_jitter < 1 and 0 <= self.shift_jitter < 0.5):
            raise ValueError(f"need 0 <= scale_jitter < 1, 0 <= shift_jitter < 0.5, got {self.scale_jitter}, "
                             f"{self.shift_jitter}")


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``conv(k, stride, dilation, size-keeping padding) -> batch norm -> ReLU``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """``x -> relu(x + bn(conv(relu(bn(conv(x))))))`` with 3x3 convolutions that keep the size and width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:  # [B, C, h, w] -> [B, C, h, w]
        return torch.relu(x + self.body(x))


class CPM(nn.Module):
    """Trunk ``x -> phi(x)`` at stride ``s``; stage 1 ``phi -> b_1``; stage ``t``: ``b_{t-1} + g_t([phi, b_{t-1}])``."""

    def __init__(self, config: CPMConfig, keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        c, maps = config.channels, keypoints + 1
        self.stride, self.keypoints = config.stride, keypoints
        # strided trunk: a 5x5/2 convolution, 3x3/2 ones until the stride, then two 3x3 at full width
        layers, c_prev = [], 3
        for i in range(int(math.log2(config.stride))):
            c_next = max(c // 2, 8) if i == 0 else c
            layers.append(_conv(c_prev, c_next, 5 if i == 0 else 3, stride=2))
            c_prev = c_next
        layers += [_conv(c_prev, c), _conv(c, c)] + [ResidualBlock(c) for _ in range(config.trunk_blocks)]
        self.trunk = nn.Sequential(*layers)
        first = [_conv(c, c) for _ in range(config.first_stage_layers)]
        stages = [nn.Sequential(*first, nn.Conv2d(c, maps, 1))]
        for _ in range(config.stages - 1):
            body = [_conv(c + maps if i == 0 else c, c, dilation=d) for i, d in enumerate(config.dilations)]
            stages.append(nn.Sequential(*body, nn.Conv2d(c, maps, 1)))
        self.stages = nn.ModuleList(stages)

    def forward(self, images: Tensor) -> Tensor:  # [B, 3, H, W] in [0, 1] -> [T, B, K + 1, H / s, W / s]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        features = self.trunk(images - 0.5)
        beliefs = [self.stages[0](features)]
        for stage in self.stages[1:]:
            beliefs.append(beliefs[-1] + stage(torch.cat([features, beliefs[-1]], dim=1)))
        return torch.stack(beliefs)


# ---------------------------------------------------------------------- receptive field
def layer_geometry(module: nn.Module) -> list[tuple[int, int, int]]:
    """``(kernel, stride, dilation)`` of every convolution and pooling inside ``module``, in order."""
    def side(v: int | tuple[int, ...]) -> int:  # the layers here are square
        return int(v[0] if isinstance(v, tuple) else v)

    return [(side(m.kernel_size), side(m.stride), side(getattr(m, "dilation", 1))) for m in module.modules()
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]


def receptive_field(model: CPM, stage: int) -> int:
    """Side in image pixels of the receptive field of one belief-map cell of ``stage`` (1-based).

    The longest path runs through the trunk and then every stage up to ``stage`` (stage ``t`` reads the
    beliefs of ``t - 1``; a residual block's shortcut is shorter than its two convolutions), so
    ``r = 1 + sum_l (k_l - 1) d_l j_l`` over those layers, with ``j_l`` the product of the strides before layer ``l``.
    """
    if not 1 <= stage <= len(model.stages):
        raise ValueError(f"stage must be in 1..{len(model.stages)}, got {stage}")
    layers = layer_geometry(model.trunk) + [g for s in model.stages[:stage] for g in layer_geometry(s)]
    r, jump = 1, 1
    for k, s, d in layers:
        r += (k - 1) * d * jump
        jump *= s
    return r


# ---------------------------------------------------------------------- loss and decoding
def cpm_targets(
    keypoints: Tensor, visible: Tensor, size: int, stride: int, sigma: float
) -> tuple[Tensor, Tensor]:  # [B, K + 1, size, size], [B, K + 1]
    """Gaussian belief targets with the background map, and the per-map loss weights (0 for invisible keypoints)."""
    targets = with_background(gaussian_heatmaps(keypoints, size, stride, sigma, visible))
    weights = torch.cat([visible.float(), torch.ones_like(visible[:, :1], dtype=torch.float32)], dim=1)
    return targets, weights


def cpm_loss(beliefs: Tensor, targets: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Intermediate supervision: ``(sum_t f_t, [f_1 .. f_T])`` for beliefs ``[T, B, M, h, w]``, targets
    ``[B, M, h, w]`` and map weights ``[B, M]``; ``f_t = mean_b sum_{m, p} w_{bm} (b_t - b*)^2``."""
    if beliefs.ndim != 5 or beliefs.shape[1:] != targets.shape or weights.shape != targets.shape[:2]:
        raise ValueError(f"beliefs must be [T, *targets.shape] and weights targets.shape[:2], got "
                         f"{tuple(beliefs.shape)}, {tuple(targets.shape)}, {tuple(weights.shape)}")
    per_stage = (weights[None, :, :, None, None] * (beliefs - targets[None]) ** 2).sum((2, 3, 4)).mean(1)  # [T]
    return per_stage.sum(), per_stage


class CPMPrediction(NamedTuple):
    """What the model says about a set of images."""

    keypoints: np.ndarray  # [N, K, 2] pixels, from the last stage
    stage_keypoints: np.ndarray  # [T, N, K, 2] pixels, decoded from every stage
    heatmaps: np.ndarray  # [T, N, K + 1, h, w] float32 belief maps


@torch.no_grad()
def predict(model: CPM, images: np.ndarray | Tensor, chunk: int = 64) -> CPMPrediction:
    """Decode every stage's beliefs on uint8 images ``[N, H, W, 3]`` (evaluation mode, in chunks)."""
    images = torch.as_tensor(np.asarray(images))
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3], got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    maps = []
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to(device).permute(0, 3, 1, 2).float() / 255.0
        maps.append(model(x).cpu())
    model.train(was_training)
    heatmaps = torch.cat(maps, dim=1)  # [T, N, K + 1, h, w]
    t, n = heatmaps.shape[:2]
    points, _ = decode_heatmaps(heatmaps[:, :, : model.keypoints].flatten(0, 1), model.stride)
    stage_keypoints = points.reshape(t, n, model.keypoints, 2).numpy()
    return CPMPrediction(stage_keypoints[-1], stage_keypoints, heatmaps.numpy())


def stage_pck(prediction: CPMPrediction, keypoints: np.ndarray, visible: np.ndarray, threshold: float) -> list[float]:
    """PCK at ``threshold`` x torso diameter of each stage's keypoints (``bodies.metrics.pck``)."""
    from bodies.metrics import pck

    return [float(pck(p, keypoints, visible, threshold=threshold, scale="torso").overall)
            for p in prediction.stage_keypoints]


# ---------------------------------------------------------------------- training
class CPMObjective:
    """Intermediate-supervision loss of a CPM on augmented batches (``training.Objective``)."""

    def __init__(self, model: CPM, config: CPMConfig, data: tuple[np.ndarray, np.ndarray, np.ndarray],
                 device: torch.device, held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.model, self.config, self.device = model, config, device
        self.images, self.keypoints, self.visible = as_tensors(*data)
        if self.images.shape[1] % config.stride:
            raise ValueError(f"image size {self.images.shape[1]} must be a multiple of stride {config.stride}")
        self.held_out = held_out

    def modules(self) -> dict[str, nn.Module]:
        return {"cpm": self.model}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        batch = sample_batch(self.images, self.keypoints, self.visible, c.batch_size, generator, flip=c.flip,
                             scale_jitter=c.scale_jitter, shift_jitter=c.shift_jitter, device=self.device)
        beliefs = self.model(batch.images)  # [T, B, K + 1, h, w]
        targets, weights = cpm_targets(batch.keypoints, batch.visible, beliefs.shape[-1], c.stride, c.sigma)
        total, per_stage = cpm_loss(beliefs, targets, weights)
        return total, {f"loss_stage{t + 1}": float(v) for t, v in enumerate(per_stage.detach())}

    def evaluate(self, step: int) -> dict[str, float]:
        if self.held_out is None:
            return {}
        images, keypoints, visible = self.held_out
        scores = stage_pck(predict(self.model, images), keypoints, visible, self.config.pck_threshold)
        return {f"pck_stage{t + 1}": v for t, v in enumerate(scores)}


class CPMResult(NamedTuple):
    """A trained pose machine and its held-out PCK per stage (empty without a held-out set)."""

    model: CPM
    stage_pck: tuple[float, ...]
    seconds: float
    fit: FitResult


def train_cpm(
    images: np.ndarray,  # [N, H, H, 3] uint8
    keypoints2d: np.ndarray,  # [N, K, 2] pixels
    visible: np.ndarray,  # [N, K] bool
    config: CPMConfig | None = None,
    run_dir: Path | str | RunFolder = "runs/cpm",
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    resume: bool = False,
) -> CPMResult:
    """Fit a convolutional pose machine with the engine; PCK of every stage on ``held_out`` when given."""
    config = config or CPMConfig()
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = CPM(config, keypoints=np.asarray(keypoints2d).shape[1]).to(device)
    objective = CPMObjective(model, config, (images, keypoints2d, visible), device, held_out)
    start = time.perf_counter()
    result = fit(objective, config.fit, run_dir, resume=resume, desc="cpm", record=config)
    seconds = time.perf_counter() - start
    scores = tuple(result.evaluation[f"pck_stage{t + 1}"] for t in range(config.stages)) if held_out else ()
    return CPMResult(model, scores, seconds, result)
