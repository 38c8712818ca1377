"""The pose sampler stays within its joint limits; the fitting prior prefers sampled poses to implausible ones."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from bodies.prior import JOINT_LIMITS, PosePrior, sample_poses
from bodies.skeleton import JOINT_NAMES


def test_sampled_poses_respect_the_joint_limits():
    poses = sample_poses(2000, np.random.default_rng(0))
    assert poses.shape == (2000, 69)
    # Euler angles are recovered uniquely while the middle (y) angle stays within +-pi/2: every joint but the elbows
    angles = Rotation.from_rotvec(poses.reshape(-1, 3)).as_euler("xyz").reshape(2000, 23, 3)
    unique = np.abs(JOINT_LIMITS[:, 1]).max(1) < np.pi / 2
    assert unique.sum() == 21
    inside = (angles >= JOINT_LIMITS[..., 0] - 1e-9) & (angles <= JOINT_LIMITS[..., 1] + 1e-9)
    assert inside[:, unique].all()
    knee, elbow = JOINT_NAMES.index("left_knee") - 1, JOINT_NAMES.index("right_elbow") - 1
    assert angles[:, knee, 0].min() >= 0 and angles[:, knee, 0].max() > 1.5  # bends backwards only, and far
    bend = poses.reshape(2000, 23, 3)[:, elbow]  # mostly about +y (the right forearm swings forward)
    assert np.linalg.norm(bend, axis=1).max() > 1.8 and (bend[:, 1] >= 0).mean() > 0.99
    # each range is used: the spread of every angle is a sizeable part of its range
    spread = angles.std(0) / np.maximum(JOINT_LIMITS[..., 1] - JOINT_LIMITS[..., 0], 1e-9)
    assert spread.min() > 0.15


def test_the_rights_mirror_the_lefts():
    left, right = JOINT_NAMES.index("left_shoulder") - 1, JOINT_NAMES.index("right_shoulder") - 1
    np.testing.assert_array_equal(JOINT_LIMITS[left, 0], JOINT_LIMITS[right, 0])
    np.testing.assert_array_equal(JOINT_LIMITS[left, 1:], -JOINT_LIMITS[right, 1:, ::-1])


def test_pose_prior_prefers_plausible_poses():
    prior = PosePrior(samples=5000)
    plausible = torch.as_tensor(sample_poses(200, np.random.default_rng(1)))
    knees_forward = plausible.clone()
    for name in ("left_knee", "right_knee"):
        k = 3 * (JOINT_NAMES.index(name) - 1)
        knees_forward[:, k] = -1.5  # a knee bent the wrong way
    assert (prior.pose(plausible) < prior.pose(knees_forward)).float().mean() > 0.95
    assert prior.shape(torch.ones(2, 10)).tolist() == [10.0, 10.0]
