"""Fitting a body to 2D keypoints, notes §13.3: the parameters ``Theta``, the weak-perspective camera
``x = s Pi(R X) + t`` and the reprojection loss, and the optimisation baseline (SMPLify-style Adam).

``Theta`` is one flat vector per sample (:class:`Layout`): the body pose ``theta`` (69 axis-angle values), the
shape ``beta`` (10), the global rotation ``r`` (3, axis-angle), the scale ``s`` (1) and the offset ``t`` (2).
Keypoints are in normalised image coordinates ``(pixels - size / 2) / size``. The camera's rotation is
``R = F R(r)`` with ``F`` the half-turn about x that stands a body upright in front of the camera (OpenCV axes:
y down, z forward), so the notes' ``Theta_0 = 0`` is a rest-pose body facing the camera; the notes' "``R_0 = 0``"
cannot be a rotation matrix and is read as ``r_0 = 0``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from bodies.lbs import batch_rodrigues
from bodies.model import BodyModel
from bodies.prior import PosePrior
from bodies.skeleton import KEYPOINT_NAMES

__all__ = [
    "LAYOUT",
    "AdamConfig",
    "FitOutput",
    "Layout",
    "Problems",
    "camera_keypoints",
    "fit_adam",
    "fit_errors",
    "keypoint_problems",
    "normalise",
    "project",
    "reprojection_loss",
    "root_relative",
]

FACING = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
HIPS = (KEYPOINT_NAMES.index("left_hip"), KEYPOINT_NAMES.index("right_hip"))


class Layout(NamedTuple):
    """Slices of the parameter vector ``Theta``."""

    pose: slice = slice(0, 69)
    betas: slice = slice(69, 79)
    rot: slice = slice(79, 82)
    scale: slice = slice(82, 83)
    offset: slice = slice(83, 85)
    size: int = 85


LAYOUT = Layout()


def normalise(keypoints2d: np.ndarray | Tensor, size: int) -> np.ndarray | Tensor:
    """Pixel coordinates to the fitting's normalised image coordinates ``(x - size / 2) / size``."""
    return (keypoints2d - 0.5 * size) / size


def camera_keypoints(model: BodyModel, theta: Float[Tensor, "B 85"]) -> Float[Tensor, "B 14 3"]:
    """``R X``: the 14 keypoints of the body ``M(theta, beta)`` turned by the camera's rotation."""
    out = model.joints(theta[:, LAYOUT.betas], theta[:, LAYOUT.pose])
    X = model.keypoints(out)
    R = FACING.to(theta) @ batch_rodrigues(theta[:, LAYOUT.rot])  # [B, 3, 3]
    return X @ R.transpose(1, 2)


def project(model: BodyModel, theta: Float[Tensor, "B 85"]) -> Float[Tensor, "B 14 2"]:
    """``x = s Pi(R X) + t`` (Algorithm 7, line 4), in normalised image coordinates."""
    return theta[:, LAYOUT.scale, None] * camera_keypoints(model, theta)[..., :2] + theta[:, None, LAYOUT.offset]


def reprojection_loss(x_n: Float[Tensor, "B 14 2"], x: Float[Tensor, "B 14 2"],
                      visible: Float[Tensor, "B 14"]) -> Float[Tensor, " B"]:
    """``L_reproj``: the mean squared distance of the visible keypoints, per sample."""
    squared = ((x_n - x) ** 2).sum(-1) * visible
    return squared.sum(1) / visible.sum(1).clamp_min(1.0)


def root_relative(points: np.ndarray | Tensor) -> np.ndarray | Tensor:  # [..., 14, 3]
    """Keypoints relative to the midpoint of the hips (the 14 keypoints have no pelvis)."""
    return points - 0.5 * (points[..., HIPS[0]:HIPS[0] + 1, :] + points[..., HIPS[1]:HIPS[1] + 1, :])


class Problems(NamedTuple):
    """Bodies to fit from their 2D keypoints, and the truth that scores the fits."""

    x: Tensor  # [B, 14, 2] keypoints, normalised image coordinates
    visible: Tensor  # [B, 14] 1.0 where the keypoint is inside the image
    X: np.ndarray  # [B, 14, 3] the camera-frame 3D keypoints, root-relative (metres)
    size: int  # image size in pixels


def keypoint_problems(renders: Any, count: int | None = None) -> Problems:
    """The first ``count`` bodies of a rendered data set (:class:`bodies.data.Renders`) as fitting problems."""
    n = len(renders.keypoints2d) if count is None else min(count, len(renders.keypoints2d))
    size = int(renders.meta["size"])
    return Problems(torch.as_tensor(normalise(renders.keypoints2d[:n], size), dtype=torch.float32),
                    torch.as_tensor(renders.visible[:n], dtype=torch.float32),
                    root_relative(np.asarray(renders.keypoints3d[:n], dtype=np.float64)), size)


def fit_errors(model: BodyModel, theta: Tensor, problems: Problems) -> dict[str, float]:
    """MPJPE and PA-MPJPE (mm) of the fitted camera-frame 3D keypoints, and the mean 2D error (px) of the visible ones."""
    from bodies.metrics import mpjpe, pa_mpjpe

    with torch.no_grad():
        pred = root_relative(camera_keypoints(model, theta)).numpy()
        error_2d = (project(model, theta) - problems.x).norm(dim=-1) * problems.size
    return {"mpjpe_mm": 1000 * mpjpe(pred, problems.X), "pa_mpjpe_mm": 1000 * pa_mpjpe(pred, problems.X),
            "error_2d_px": float((error_2d * problems.visible).sum() / problems.visible.sum())}


@dataclass
class AdamConfig:
    """The optimisation baseline: Adam on ``L_reproj + w_pose E_theta + w_shape E_beta`` from a few initial turns."""

    steps: int = 1000
    """Adam steps per sample."""
    lr: float = 0.02
    """Adam's learning rate."""
    w_pose: float = 1e-5
    """Weight of the pose prior (the Mahalanobis distance under the pose sampler's Gaussian); 1e-5 and 1e-4 tie for the
    best held-out PA-MPJPE in a sweep over 1e-6..1e-3 (79 mm against 144 mm at 1e-6 and 116 mm at 1e-3)."""
    w_shape: float = 1e-5
    """Weight of the shape prior ``|beta|^2``."""
    turns: int = 4
    """Initial turns about the vertical axis (0, 90, 180, 270 degrees for 4); the lowest final loss wins, as
    SMPLify tries a body and its flip."""


class FitOutput(NamedTuple):
    """Fitted parameters and what they cost."""

    theta: Tensor  # [B, 85]
    loss: Tensor  # [B] final reprojection loss
    losses: Tensor  # [steps + 1, B] the reprojection loss along the way
    seconds: float


def initial_theta(x: Tensor, visible: Tensor, model: BodyModel, turns: Tensor) -> Tensor:  # -> [B * T, 85]
    """SMPLify's camera initialisation: the scale from the keypoints' spread against the rest body's, the offset
    at their centroid, the body upright and turned by each of ``turns`` (radians) about its vertical axis."""
    B, T = x.shape[0], len(turns)
    rest = camera_keypoints(model, torch.zeros(1, LAYOUT.size, dtype=x.dtype))[0, :, :2]
    w = visible[..., None]
    centre = (x * w).sum(1) / w.sum(1).clamp_min(1.0)
    spread = (((x - centre[:, None]) ** 2).sum(-1) * visible).sum(1) / visible.sum(1).clamp_min(1.0)
    scale = spread.sqrt() / ((rest - rest.mean(0)) ** 2).sum(-1).mean().sqrt()
    theta = torch.zeros(B, T, LAYOUT.size, dtype=x.dtype)
    theta[..., LAYOUT.rot.start + 1] = turns
    theta[..., LAYOUT.scale.start] = scale[:, None]
    theta[..., LAYOUT.offset] = (centre - scale[:, None] * rest.mean(0))[:, None]
    return theta.reshape(B * T, LAYOUT.size)


def fit_adam(model: BodyModel, x: Tensor, visible: Tensor, config: AdamConfig | None = None) -> FitOutput:
    """Fit ``Theta`` to keypoints ``x [B, 14, 2]`` (normalised) by Adam; all samples and turns in one batch."""
    start = time.perf_counter()
    config = AdamConfig() if config is None else config
    B, T = x.shape[0], config.turns
    prior = PosePrior()
    turns = torch.arange(T, dtype=x.dtype) * (2 * math.pi / T)
    theta = initial_theta(x, visible, model, turns).requires_grad_(True)
    x_rep, vis_rep = x.repeat_interleave(T, 0), visible.repeat_interleave(T, 0)
    optimizer = torch.optim.Adam([theta], lr=config.lr)
    history = []
    for _ in range(config.steps):
        reproj = reprojection_loss(project(model, theta), x_rep, vis_rep)
        loss = reproj + config.w_pose * prior.pose(theta[:, LAYOUT.pose]) + config.w_shape * prior.shape(
            theta[:, LAYOUT.betas])
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        history.append(reproj.detach())
    with torch.no_grad():
        final = reprojection_loss(project(model, theta), x_rep, vis_rep)
    history.append(final)
    best = final.view(B, T).argmin(1) + torch.arange(B) * T
    losses = torch.stack(history)[:, best]
    return FitOutput(theta.detach()[best], final[best], losses, time.perf_counter() - start)
