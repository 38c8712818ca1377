"""DeepPose: a cascade of pose regressors (notes §13.1; Toshev and Szegedy, CVPR 2014).

Stage 1 is a CNN that regresses all ``K`` keypoints at once from the whole image, in coordinates
normalised to the image, ``N(y) = y / W - 1/2``, with the L2 loss ``sum_k ||N(y_k) - psi(x)_k||^2``.
Each later stage ``s`` refines every keypoint separately from a crop around its previous estimate
``y_k^{s-1}``: a square box of side ``L = sigma * diam(y^{s-1})`` centred there, resampled to
``P x P`` pixels, and a regressor predicts the displacement ``(y_k - y_k^{s-1}) / L`` in box units, so
``y_k^s = y_k^{s-1} + L psi_s(crop)_k``. One network serves every keypoint (it outputs ``2K`` numbers and
keypoint ``k`` reads its own pair), where the paper trains one per keypoint; ``diam`` is the largest side
of the pose's bounding box, where the paper uses the torso diameter (a foreshortened torso would give a
useless box). Stage ``s`` trains on the previous stage's predictions on the training set and on
simulated ones, ``y_k + L delta`` with ``delta`` drawn from a normal fitted per keypoint to the previous
stage's displacements (the paper's augmentation), so every image gives many different crops.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bodies.heatmaps import as_tensors, sample_batch
from bodies.skeleton import NUM_KEYPOINTS
from generative.training import FitConfig, FitResult, fit, resolve_device, seed_everything

__all__ = [
    "DeepPose", "DeepPoseConfig", "DeepPosePrediction", "DeepPoseResult", "PoseRegressor", "RefineObjective",
    "RegressObjective", "crop_images", "crop_theta", "crop_to_image", "denormalise", "image_to_crop", "normalise",
    "pose_extent", "predict", "train_deeppose",
]


def _default_fit() -> FitConfig:
    return FitConfig(steps=1200, lr=2e-3, warmup_steps=50, log_every=50, eval_every=0, checkpoint_every=500)


def _default_refine_fit() -> FitConfig:
    return FitConfig(steps=800, lr=2e-3, warmup_steps=50, log_every=50, eval_every=0, checkpoint_every=500)


@dataclass
class DeepPoseConfig:
    """DeepPose cascade: networks, crops, batches, augmentation and optimisation of each stage."""

    fit: FitConfig = field(default_factory=_default_fit)
    """Optimisation of stage 1 (its seed also seeds every network's initialisation)."""
    refine_fit: FitConfig = field(default_factory=_default_refine_fit)
    """Optimisation of each refinement stage: its steps, learning rate and schedule; the seed (plus the stage
    number), device, threads and progress bar follow ``fit``."""
    stages: int = 2
    """Stage 1 on the whole image, stages 2..S on crops around the previous estimates."""
    channels: int = 32
    """Channels of the first convolution (doubled at each stride-2 block, at most 4x)."""
    hidden: int = 256
    """Width of the dense layer before the regression output."""
    crop_size: int = 32
    """Side ``P`` of the resampled crops of the refinement stages, in pixels."""
    sigma: float = 0.4
    """Crop side as a fraction of the previous pose's extent (the paper's ``sigma * diam``)."""
    batch_size: int = 32
    """Images per step (a refinement step sees all ``K`` crops of each)."""
    simulated_fraction: float = 0.5
    """Share of refinement samples whose estimate is simulated (truth plus a sampled displacement)."""
    flip: bool = True
    """Random horizontal flips in stage 1 (left/right keypoints swapped)."""
    scale_jitter: float = 0.1
    """Random zoom of stage 1's images by a factor in ``[1 - j, 1 + j]``."""
    shift_jitter: float = 0.05
    """Random move of stage 1's images by up to this fraction of their size."""
    pck_threshold: float = 0.2
    """PCK threshold (fraction of the torso diameter) of the held-out evaluation."""

    def __post_init__(self) -> None:
        if min(self.stages, self.channels, self.hidden, self.batch_size) < 1 or self.crop_size < 8:
            raise ValueError(f"stages, channels, hidden, batch_size must be >= 1 and crop_size >= 8, got "
                             f"{self.stages}, {self.channels}, {self.hidden}, {self.batch_size}, {self.crop_size}")
        if not (self.sigma > 0 and 0 <= self.simulated_fraction <= 1):
            raise ValueError(f"need sigma > 0 and simulated_fraction in [0, 1], got {self.sigma}, "
                             f"{self.simulated_fraction}")


# ---------------------------------------------------------------------- coordinates and crops
def normalise(points: Tensor, size: int) -> Tensor:  # [..., 2] pixels -> [..., 2] in [-1/2, 1/2]
    """``N(y) = y / size - 1/2``: pixels to coordinates relative to the image (centre 0, side 1)."""
    return points / size - 0.5


def denormalise(points: Tensor, size: int) -> Tensor:  # inverse of normalise
    return (points + 0.5) * size


def pose_extent(points: Tensor) -> Tensor:  # [B, K, 2] -> [B]
    """``diam(y)``: the largest side of the bounding box of the keypoints."""
    return (points.amax(-2) - points.amin(-2)).amax(-1)


def image_to_crop(points: Tensor, centre: Tensor, side: Tensor, crop_size: int) -> Tensor:
    """Image pixels ``[..., 2]`` to pixels of the crop of side ``side`` ``[...]`` (image pixels) centred at
    ``centre`` ``[..., 2]`` and resampled to ``crop_size``: ``u = ((x - c) / L + 1/2) P``."""
    return ((points - centre) / side[..., None] + 0.5) * crop_size


def crop_to_image(points: Tensor, centre: Tensor, side: Tensor, crop_size: int) -> Tensor:
    """Inverse of :func:`image_to_crop`: ``x = c + (u / P - 1/2) L`` (the crop's centre ``P/2`` maps to ``c``)."""
    return centre + (points / crop_size - 0.5) * side[..., None]


def crop_theta(centre: Tensor, side: Tensor, image_size: int) -> Tensor:  # [M, 2], [M] -> [M, 2, 3]
    """``affine_grid`` matrices (``align_corners=False``) of square crops: crop coordinate ``q`` in [-1, 1]
    samples the image at normalised ``q L / W + (2 c / W - 1)``."""
    theta = torch.zeros(*centre.shape[:-1], 2, 3, dtype=centre.dtype, device=centre.device)
    theta[..., 0, 0] = theta[..., 1, 1] = side / image_size
    theta[..., :, 2] = 2 * centre / image_size - 1
    return theta


def crop_images(images: Tensor, centre: Tensor, side: Tensor, crop_size: int) -> Tensor:
    """Bilinear crops ``[B, K, 3, P, P]`` of images ``[B, 3, W, W]`` around ``centre`` ``[B, K, 2]`` with
    sides ``side`` ``[B]`` (zeros outside the image)."""
    b, k = centre.shape[:2]
    if images.ndim != 4 or images.shape[0] != b or side.shape != (b,):
        raise ValueError(f"need images [B, 3, W, W], centre [B, K, 2], side [B], got {tuple(images.shape)}, "
                         f"{tuple(centre.shape)}, {tuple(side.shape)}")
    theta = crop_theta(centre.reshape(b * k, 2), side[:, None].expand(b, k).reshape(b * k), images.shape[-1])
    grid = F.affine_grid(theta, [b * k, 1, crop_size, crop_size], align_corners=False)  # [B K, P, P, 2]
    # the K crops of one image side by side along x, so each image is sampled once without copies
    grid = grid.reshape(b, k, crop_size, crop_size, 2).permute(0, 2, 1, 3, 4).reshape(b, crop_size, k * crop_size, 2)
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.reshape(b, 3, crop_size, k, crop_size).permute(0, 3, 1, 2, 4)


# ---------------------------------------------------------------------- networks
class PoseRegressor(nn.Module):
    """``[conv 3x3 stride 2 -> BN -> ReLU] x n -> flatten -> dense -> ReLU -> dense`` to ``2K`` numbers,
    with ``n`` the stride-2 blocks that bring ``size`` down to 8 pixels."""

    def __init__(self, size: int, channels: int, hidden: int, keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        layers, c_in, side, c = [], 3, size, channels
        while side > 8:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in, side, c = c, (side + 1) // 2, min(2 * c, 4 * channels)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 2 * keypoints))
        self.keypoints = keypoints

    def forward(self, images: Tensor) -> Tensor:  # [B, 3, size, size] in [0, 1] -> [B, K, 2]
        return self.head(self.features(images - 0.5)).reshape(-1, self.keypoints, 2)


class DeepPose(nn.Module):
    """The cascade: ``stages[0]`` on whole images, ``stages[s]`` on crops (see the module docstring)."""

    def __init__(self, config: DeepPoseConfig, image_size: int, keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        self.image_size, self.crop_size, self.sigma, self.keypoints = image_size, config.crop_size, config.sigma, keypoints
        self.stages = nn.ModuleList(
            [PoseRegressor(image_size, config.channels, config.hidden, keypoints)]
            + [PoseRegressor(config.crop_size, config.channels, config.hidden, keypoints)
               for _ in range(config.stages - 1)]
        )

    def boxes(self, estimate: Tensor) -> Tensor:  # [B, K, 2] -> [B]
        """Crop sides ``L = sigma diam(y)`` in image pixels (at least 4, for a collapsed estimate)."""
        return (self.sigma * pose_extent(estimate)).clamp_min(4.0)

    def refine(self, stage: int, images: Tensor, estimate: Tensor) -> Tensor:  # -> [B, K, 2] pixels
        """One refinement stage (``stage`` >= 1, 0-based): crops around ``estimate`` and their displacements."""
        side = self.boxes(estimate)  # [B]
        crops = crop_images(images, estimate, side, self.crop_size)  # [B, K, 3, P, P]
        out = self.stages[stage](crops.flatten(0, 1)).reshape(*estimate.shape[:2], self.keypoints, 2)
        delta = out.diagonal(dim1=1, dim2=2).transpose(1, 2)  # keypoint k reads its own pair: [B, K, 2]
        return estimate + side[:, None, None] * delta

    def forward(self, images: Tensor, stages: int | None = None) -> Tensor:  # [B, 3, W, W] -> [S, B, K, 2] pixels
        """The pose after each of the first ``stages`` stages (all by default)."""
        poses = [denormalise(self.stages[0](images), self.image_size)]
        for s in range(1, len(self.stages) if stages is None else stages):
            poses.append(self.refine(s, images, poses[-1]))
        return torch.stack(poses)


class DeepPosePrediction(NamedTuple):
    """Poses of a set of images."""

    keypoints: np.ndarray  # [N, K, 2] pixels, from the last stage
    stage_keypoints: np.ndarray  # [S, N, K, 2] pixels, after every stage


@torch.no_grad()
def predict(model: DeepPose, images: np.ndarray | Tensor, stages: int | None = None, chunk: int = 64) -> DeepPosePrediction:
    """Run the first ``stages`` stages (all by default) on uint8 images ``[N, W, W, 3]`` in evaluation mode."""
    images = torch.as_tensor(np.asarray(images))
    if images.ndim != 4 or images.shape[1:] != (model.image_size, model.image_size, 3):
        raise ValueError(f"images must be [N, {model.image_size}, {model.image_size}, 3], got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), chunk):
        out.append(model(images[i : i + chunk].to(device).permute(0, 3, 1, 2).float() / 255.0, stages).cpu())
    model.train(was_training)
    stage_keypoints = torch.cat(out, dim=1).numpy()
    return DeepPosePrediction(stage_keypoints[-1], stage_keypoints)


def _pck(points: np.ndarray, held_out: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float) -> float:
    from bodies.metrics import pck

    return float(pck(points, held_out[1], held_out[2], threshold=threshold, scale="torso").overall)


# ---------------------------------------------------------------------- objectives
def masked_l2(pred: Tensor, target: Tensor, visible: Tensor) -> Tensor:
    """``sum_k ||pred_k - target_k||^2`` over visible keypoints, averaged over the batch."""
    return (((pred - target) ** 2).sum(-1) * visible.float()).sum(-1).mean()


class RegressObjective:
    """Stage 1: L2 regression of the normalised keypoints from the whole image (``training.Objective``)."""

    def __init__(self, model: DeepPose, config: DeepPoseConfig, data: tuple[Tensor, Tensor, Tensor],
                 device: torch.device, held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.model, self.net, self.config, self.device, self.held_out = model, model.stages[0], config, device, held_out
        self.images, self.keypoints, self.visible = data

    def modules(self) -> dict[str, nn.Module]:
        return {"stage1": self.net}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.net.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        batch = sample_batch(self.images, self.keypoints, self.visible, c.batch_size, generator, flip=c.flip,
                             scale_jitter=c.scale_jitter, shift_jitter=c.shift_jitter, device=self.device)
        size = self.model.image_size
        loss = masked_l2(self.net(batch.images), normalise(batch.keypoints, size), batch.visible)
        return loss, {}

    def evaluate(self, step: int) -> dict[str, float]:
        if self.held_out is None:
            return {}
        return {"pck_stage1": _pck(predict(self.model, self.held_out[0], 1).keypoints, self.held_out, self.config.pck_threshold)}


class RefineObjective:
    """Stage ``s`` >= 2: displacement of each keypoint within its crop, from the previous stage's estimates on the
    training set (``previous`` ``[N, K, 2]``) or simulated ones (``training.Objective``)."""

    def __init__(self, model: DeepPose, stage: int, config: DeepPoseConfig, data: tuple[Tensor, Tensor, Tensor],
                 previous: Tensor, device: torch.device,
                 held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.model, self.stage, self.net, self.config, self.device = model, stage, model.stages[stage - 1], config, device
        self.images, self.keypoints, self.visible = data
        self.previous, self.held_out = previous, held_out
        self.mean, self.std = displacement_statistics(previous, self.keypoints, self.visible, model.boxes(previous))

    def modules(self) -> dict[str, nn.Module]:
        return {f"stage{self.stage}": self.net}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.net.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        b, k = self.config.batch_size, self.keypoints.shape[1]
        index = torch.randint(len(self.images), (b,), generator=generator)
        truth, visible, previous = self.keypoints[index], self.visible[index], self.previous[index]  # [B, K, 2]
        side = self.model.boxes(previous)  # [B]
        simulated = truth + side[:, None, None] * (self.mean + self.std * torch.randn(b, k, 2, generator=generator))
        use = torch.rand(b, 1, 1, generator=generator) < self.config.simulated_fraction
        estimate = torch.where(use, simulated, previous).to(self.device)
        images = self.images[index].to(self.device).permute(0, 3, 1, 2).float() / 255.0
        crops = crop_images(images, estimate, side.to(self.device), self.model.crop_size)  # [B, K, 3, P, P]
        out = self.net(crops.flatten(0, 1)).reshape(b, k, k, 2).diagonal(dim1=1, dim2=2).transpose(1, 2)  # [B, K, 2]
        target = (truth.to(self.device) - estimate) / side.to(self.device)[:, None, None]
        return masked_l2(out, target, visible.to(self.device)), {}

    def evaluate(self, step: int) -> dict[str, float]:
        if self.held_out is None:
            return {}
        points = predict(self.model, self.held_out[0], self.stage).keypoints
        return {f"pck_stage{self.stage}": _pck(points, self.held_out, self.config.pck_threshold)}


def displacement_statistics(previous: Tensor, truth: Tensor, visible: Tensor, side: Tensor) -> tuple[Tensor, Tensor]:
    """Per-keypoint mean and standard deviation ``[K, 2]`` of ``(y^{s-1} - y) / L`` over the visible keypoints
    (the normal the paper draws simulated estimates from; diagonal here)."""
    d = (previous - truth) / side[:, None, None]  # [N, K, 2]
    w = visible.float()[..., None]  # [N, K, 1]
    count = w.sum(0).clamp_min(1.0)
    mean = (d * w).sum(0) / count
    std = (((d - mean) ** 2 * w).sum(0) / count).sqrt()
    return mean, std


class DeepPoseResult(NamedTuple):
    """A trained cascade, its held-out PCK after every stage (empty without a held-out set) and each stage's fit."""

    model: DeepPose
    stage_pck: tuple[float, ...]
    seconds: float
    fits: tuple[FitResult, ...]


def train_deeppose(
    images: np.ndarray,  # [N, W, W, 3] uint8
    keypoints2d: np.ndarray,  # [N, K, 2] pixels
    visible: np.ndarray,  # [N, K] bool
    config: DeepPoseConfig | None = None,
    run_dir: Path | str = "runs/deeppose",
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> DeepPoseResult:
    """Fit the cascade stage by stage with the engine (``run_dir/stage<s>``); each refinement stage trains on
    the cascade's predictions so far on the training images."""
    config = config or DeepPoseConfig()
    data = as_tensors(images, keypoints2d, visible)
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = DeepPose(config, data[0].shape[1], data[1].shape[1]).to(device)
    start, fits = time.perf_counter(), []
    objective: Any = RegressObjective(model, config, data, device, held_out)
    fits.append(fit(objective, config.fit, Path(run_dir) / "stage1", desc="deeppose stage 1", record=config))
    for s in range(2, config.stages + 1):
        previous = torch.from_numpy(predict(model, data[0], s - 1).keypoints)
        objective = RefineObjective(model, s, config, data, previous, device, held_out)
        f = config.fit
        refine = dataclasses.replace(config.refine_fit, seed=f.seed + s, device=f.device, threads=f.threads,
                                     progress=f.progress, tensorboard=f.tensorboard, wandb=f.wandb)
        fits.append(fit(objective, refine, Path(run_dir) / f"stage{s}", desc=f"deeppose stage {s}", record=config))
    seconds = time.perf_counter() - start
    scores = ()
    if held_out is not None:
        stage_keypoints = predict(model, held_out[0]).stage_keypoints
        scores = tuple(_pck(p, held_out, config.pck_threshold) for p in stage_keypoints)
    return DeepPoseResult(model, scores, seconds, tuple(fits))
