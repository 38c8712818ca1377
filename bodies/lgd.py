"""Learned gradient descent, notes §13.3, Algorithm 7 (Song, Chen and Hilliges, "Human body model fitting by
learned gradient descent", ECCV 2020).

Training draws Algorithm 7's samples: ``theta, beta`` from the pose prior, ``R, t, s`` uniformly from the feasible
range of :class:`bodies.data.CameraRange`, ``x = s Pi(R X) + t``. From ``Theta_0 = 0`` (a rest body facing the
camera, see :mod:`bodies.fitting`) it runs ``N`` steps ``Theta_{n+1} = Theta_n + N_w(dL/dTheta_n, Theta_n, x)``
with ``L = L_reproj(x_n, x)``; the loss of training sums, over the steps, the error of the camera-frame 3D
keypoints (root-relative), the reprojection error and the pose and shape parameter errors, and is
backpropagated through the unrolled steps (the gradient fed to ``N_w`` is an input: it is not differentiated).
Each step has its own network. Fitting at test time uses only the 2D keypoints and their gradient.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bodies.data import CameraRange, camera_intrinsics, draw_cameras
from bodies.fitting import (
    LAYOUT,
    FitOutput,
    Problems,
    camera_keypoints,
    fit_errors,
    project,
    reprojection_loss,
    root_relative,
)
from bodies.model import BodyModel
from bodies.prior import sample_betas, sample_poses
from generative.nn.mlp import MLP
from generative.training import FitConfig, FitResult, fit

__all__ = ["LGDConfig", "LGDNet", "LGDObjective", "fit_lgd", "sample_problems", "train_lgd"]


def _default_fit() -> FitConfig:
    return FitConfig(steps=1500, lr=1e-3, warmup_steps=100, log_every=50, checkpoint_every=500)


@dataclass
class LGDConfig:
    """Learned gradient descent: the unrolled steps, the update networks and the training samples."""

    steps: int = 4
    """``N``, the learned update steps."""
    hidden: int = 512
    """Width of each step's update network (two hidden layers)."""
    batch: int = 256
    """Problems drawn per training step."""
    size: int = 128
    """Image size the keypoints are normalised by (``(x - size / 2) / size``)."""
    noise: float = 0.5
    """Standard deviation of the noise added to the training keypoints, in pixels (detections are not exact)."""
    w_3d: float = 1.0
    """Weight of the root-relative camera-frame keypoint error (metres, squared)."""
    w_2d: float = 1.0
    """Weight of the reprojection error (normalised image units, squared)."""
    w_params: float = 0.01
    """Weight of the pose and shape parameter errors."""
    camera: CameraRange = field(default_factory=CameraRange)
    fit: FitConfig = field(default_factory=_default_fit)


class LGDNet(nn.Module):
    """``N_w``: one MLP per step from ``[dL/dTheta / |dL/dTheta|, log |dL/dTheta|, Theta, x, x', visible]`` to
    ``Delta``, where ``x'`` is ``x`` centred on its visible keypoints and divided by their spread (the pose's shape
    without its place and size in the image)."""

    def __init__(self, steps: int, hidden: int, keypoints: int = 14) -> None:
        super().__init__()
        inputs = 2 * LAYOUT.size + 1 + 5 * keypoints
        self.nets = nn.ModuleList(MLP([inputs, hidden, hidden, LAYOUT.size]) for _ in range(steps))
        for net in self.nets:  # start close to "no update"
            last = net.net[-1]
            nn.init.zeros_(last.bias)
            last.weight.data.mul_(0.1)

    def forward(self, n: int, grad: Tensor, theta: Tensor, x: Tensor, visible: Tensor) -> Tensor:
        norm = grad.norm(dim=1, keepdim=True)
        w = visible[..., None]
        centre = (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
        spread = ((((x - centre) ** 2).sum(-1) * visible).sum(1) / visible.sum(1).clamp_min(1.0)).sqrt()
        shape = (x - centre) * w / (spread[:, None, None] + 1e-6)
        features = [grad / (norm + 1e-12), torch.log(norm + 1e-12), theta, x.flatten(1), shape.flatten(1), visible]
        return self.nets[n](torch.cat(features, dim=1))


def sample_problems(count: int, rng: np.random.Generator, config: LGDConfig, model: BodyModel) -> dict[str, Tensor]:
    """Algorithm 7, lines 1-4: ``theta, beta`` from the prior, ``R, t, s`` from the feasible range, ``x``."""
    cam = config.camera
    pose = torch.as_tensor(sample_poses(count, rng), dtype=torch.float32)
    betas = torch.as_tensor(sample_betas(count, rng), dtype=torch.float32)
    draw = draw_cameras(count, rng, cam)
    rot = torch.as_tensor(draw.rotation().as_rotvec(), dtype=torch.float32)
    scale = camera_intrinsics(cam, config.size).fx / draw.depth / config.size  # s of normalised coordinates
    offset = draw.offset
    theta = torch.cat([pose, betas, rot, torch.as_tensor(scale, dtype=torch.float32)[:, None],
                       torch.as_tensor(offset, dtype=torch.float32)], 1)
    with torch.no_grad():
        X = camera_keypoints(model, theta)
        x = theta[:, LAYOUT.scale, None] * X[..., :2] + theta[:, None, LAYOUT.offset]
    x = x + torch.as_tensor(rng.normal(0.0, config.noise / config.size, x.shape), dtype=torch.float32)
    return {"theta": theta, "x": x, "visible": torch.ones(count, x.shape[1]), "X": root_relative(X)}


def _gradient(model: BodyModel, theta: Tensor, x: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
    """``L_reproj(Theta)`` per sample and ``dL/dTheta`` (an input of the update network, not differentiated)."""
    with torch.enable_grad():
        leaf = theta.detach().requires_grad_(True)
        loss = reprojection_loss(project(model, leaf), x, visible)
        (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return loss.detach(), grad


def unroll(net: LGDNet, model: BodyModel, x: Tensor, visible: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Algorithm 7, lines 5-12: the iterates ``Theta_0..Theta_N`` and the reprojection loss at each of them."""
    theta = x.new_zeros(x.shape[0], LAYOUT.size)
    thetas, losses = [theta], []
    for n in range(len(net.nets)):
        loss, grad = _gradient(model, theta, x, visible)
        theta = theta + net(n, grad, theta, x, visible)
        thetas.append(theta)
        losses.append(loss)
    losses.append(_gradient(model, theta, x, visible)[0])
    return thetas, losses


class LGDObjective:
    """Trains the update networks through the unrolled steps on freshly drawn problems."""

    def __init__(self, model: BodyModel, config: LGDConfig, held_out: Problems | None = None) -> None:
        self.model, self.config, self.held_out = model, config, held_out
        self.net = LGDNet(config.steps, config.hidden)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.net.parameters())}]

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        batch = sample_problems(c.batch, rng, c, self.model)
        thetas, losses = unroll(self.net, self.model, batch["x"], batch["visible"])
        total, terms = 0.0, {}
        for n, theta in enumerate(thetas[1:], start=1):
            error_3d = ((root_relative(camera_keypoints(self.model, theta)) - batch["X"]) ** 2).sum(-1).mean()
            error_2d = reprojection_loss(project(self.model, theta), batch["x"], batch["visible"]).mean()
            params = ((theta[:, :LAYOUT.betas.stop] - batch["theta"][:, :LAYOUT.betas.stop]) ** 2).sum(1).mean()
            total = total + c.w_3d * error_3d + c.w_2d * error_2d + c.w_params * params
            terms[f"mpjpe_{n}"] = float(error_3d.detach().sqrt())
        return total, {**terms, "reproj_final": float(losses[-1].mean())}

    def evaluate(self, step: int) -> dict[str, float]:
        if self.held_out is None:
            return {}
        out = fit_lgd(self.net, self.model, self.held_out.x, self.held_out.visible)
        return {"held_out_pa_mpjpe": fit_errors(self.model, out.theta, self.held_out)["pa_mpjpe_mm"] / 1000}


def fit_lgd(net: LGDNet, model: BodyModel, x: Tensor, visible: Tensor) -> FitOutput:
    """Fit ``Theta`` to keypoints ``x [B, 14, 2]`` (normalised) with the learned steps: only 2D information is used."""
    start = time.perf_counter()
    with torch.no_grad():
        thetas, losses = unroll(net, model, x, visible)
    return FitOutput(thetas[-1], losses[-1], torch.stack(losses), time.perf_counter() - start)


def train_lgd(model: BodyModel, config: LGDConfig, run_dir: str | Path, resume: bool = False,
              held_out: Problems | None = None, progress: bool = True) -> tuple[LGDNet, FitResult]:
    """Train the update networks with the engine (run folder, checkpoints, resume)."""
    from generative.training import seed_everything

    seed_everything(config.fit.seed)
    objective = LGDObjective(model, config, held_out)
    fit_config = config.fit if progress else dataclasses.replace(config.fit, progress=False)
    result = fit(objective, fit_config, run_dir, resume=resume, desc="lgd", record=config)
    return objective.net, result


