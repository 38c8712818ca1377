"""Where plausible bodies come from: joint limits, a pose sampler, and the pose and shape priors of fitting.

Notes §13.3 (Algorithm 7) samples ``theta, beta`` "from data"; with no motion-capture data to ship, the data are
drawn here from **joint limits**: each joint's rotation is ``R_z(c) R_y(b) R_x(a)`` with every Euler angle uniform
in an anatomical range (elbows and knees bend one way only, shoulders lower the arms from the T-pose, the spine
and the neck move a little). A fraction ``rest_fraction`` of the angles is drawn from a range shrunk by four
(bodies stand near neutral more often than at their limits). ``beta ~ N(0, I)`` as SMPL's shape space.

The fitting prior (SMPLify uses a Gaussian mixture learned from motion capture) is the Gaussian of these poses:
``E_theta = (theta - mu)^T Sigma^{-1} (theta - mu)``, with ``E_beta = |beta|^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from jaxtyping import Float
from scipy.spatial.transform import Rotation
from torch import Tensor

from bodies.skeleton import JOINT_NAMES, NUM_JOINTS

__all__ = ["JOINT_LIMITS", "PosePrior", "joint_limits", "sample_betas", "sample_poses"]

# (x, y, z) Euler ranges in radians of each body joint (1..23) about its parent's axes; SMPL's frame: +y up,
# facing +z, the body's left at +x. A hip rotating about -x swings the leg forward; a left shoulder about -z lowers
# the arm; a left elbow about -y bends the forearm forward (the right side mirrors the y and z signs).
_SIDE = {
    "hip": ((-1.6, 0.4), (-0.4, 0.4), (-0.2, 0.6)),
    "knee": ((0.0, 2.0), (-0.05, 0.05), (-0.05, 0.05)),
    "ankle": ((-0.5, 0.6), (-0.2, 0.2), (-0.2, 0.2)),
    "foot": ((-0.2, 0.2), (-0.1, 0.1), (-0.1, 0.1)),
    "collar": ((-0.1, 0.1), (-0.2, 0.2), (-0.2, 0.3)),
    "shoulder": ((-0.6, 0.6), (-1.2, 0.5), (-1.4, 0.6)),
    "elbow": ((-0.3, 0.3), (-2.3, 0.0), (-0.05, 0.05)),
    "wrist": ((-0.4, 0.4), (-0.4, 0.4), (-0.6, 0.6)),
    "hand": ((-0.2, 0.2), (-0.2, 0.2), (-0.2, 0.2)),
}
_CENTRE = {
    "spine1": ((-0.2, 0.4), (-0.3, 0.3), (-0.2, 0.2)),
    "spine2": ((-0.1, 0.3), (-0.2, 0.2), (-0.15, 0.15)),
    "spine3": ((-0.1, 0.3), (-0.2, 0.2), (-0.15, 0.15)),
    "neck": ((-0.3, 0.4), (-0.4, 0.4), (-0.2, 0.2)),
    "head": ((-0.3, 0.3), (-0.5, 0.5), (-0.2, 0.2)),
}


def joint_limits() -> np.ndarray:  # [23, 3, 2]
    """The Euler ranges ``[lo, hi]`` of joints 1..23 (x, y, z); right joints mirror the left's y and z."""
    limits = []
    for name in JOINT_NAMES[1:]:
        if name in _CENTRE:
            limits.append(_CENTRE[name])
            continue
        side, part = name.split("_", 1)
        x, y, z = _SIDE[part]
        if side == "right":
            y, z = (-y[1], -y[0]), (-z[1], -z[0])
        limits.append((x, y, z))
    return np.asarray(limits, dtype=np.float64)


JOINT_LIMITS = joint_limits()


def sample_poses(count: int, rng: np.random.Generator, rest_fraction: float = 0.3) -> np.ndarray:  # [count, 69]
    """Body poses (axis-angle of joints 1..23) with every Euler angle uniform within its joint limits."""
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    u = rng.random((count, NUM_JOINTS - 1, 3))
    near_rest = rng.random((count, NUM_JOINTS - 1, 3)) < rest_fraction
    angles = np.where(near_rest, 0.25 * (lo + u * (hi - lo)), lo + u * (hi - lo))
    rotvec = Rotation.from_euler("xyz", angles.reshape(-1, 3)).as_rotvec()  # extrinsic x, then y, then z
    return rotvec.reshape(count, 3 * (NUM_JOINTS - 1))


def sample_betas(count: int, rng: np.random.Generator, num_betas: int = 10, scale: float = 1.0) -> np.ndarray:
    """Shapes ``beta ~ N(0, scale^2 I)`` (SMPL's shape space is whitened: one unit is one standard deviation)."""
    return scale * rng.standard_normal((count, num_betas))


@cache
def _gaussian(samples: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    poses = sample_poses(samples, np.random.default_rng(seed))
    mean = poses.mean(0)
    covariance = np.cov(poses, rowvar=False) + 1e-4 * np.eye(poses.shape[1])
    return mean, np.linalg.inv(covariance)


@dataclass
class PosePrior:
    """The fitting priors: ``E_theta`` the Mahalanobis distance of a pose to the sampler's Gaussian, ``E_beta = |beta|^2``."""

    samples: int = 20000
    """Poses drawn to estimate the Gaussian's mean and covariance."""

    def __post_init__(self) -> None:
        mean, precision = _gaussian(self.samples)
        self.mean, self.precision = torch.as_tensor(mean), torch.as_tensor(precision)

    def pose(self, body_pose: Float[Tensor, "B 69"]) -> Float[Tensor, " B"]:
        d = body_pose - self.mean.to(body_pose)
        return torch.einsum("bi,ij,bj->b", d, self.precision.to(body_pose), d)

    @staticmethod
    def shape(betas: Float[Tensor, "B S"]) -> Float[Tensor, " B"]:
        return (betas * betas).sum(1)
