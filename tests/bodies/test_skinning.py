"""Dual-quaternion skinning (bodies/skinning.py) against rigid transforms and LBS (notes §13.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from bodies.lbs import batch_rigid_transform, batch_rodrigues, skin
from bodies.skinning import dqs, matrix_to_quaternion, quaternion_multiply

torch.set_num_threads(1)
PARENTS = [-1, 0, 1, 2]  # a chain: root, shoulder, elbow, wrist along +x


def _chain(seed: int = 0, batch: int = 5, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    joints = torch.tensor([[0.0, 0, 0], [0.2, 0, 0], [0.5, 0.02, 0], [0.75, 0, 0.01]], dtype=torch.float64)
    rot_mats = batch_rodrigues(scale * torch.randn(batch, 4, 3, generator=g, dtype=torch.float64))
    vertices = torch.rand(50, 3, generator=g, dtype=torch.float64) * torch.tensor([0.9, 0.1, 0.1]) - 0.05
    return joints, rot_mats, vertices


def _quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def test_matrix_to_quaternion_round_trips_including_half_turns():
    g = torch.Generator().manual_seed(1)
    vecs = torch.randn(200, 3, generator=g, dtype=torch.float64)
    vecs = vecs / vecs.norm(dim=-1, keepdim=True) * torch.linspace(0.0, np.pi, 200, dtype=torch.float64)[:, None]
    R = batch_rodrigues(vecs)
    torch.testing.assert_close(_quat_to_matrix(matrix_to_quaternion(R)), R, atol=1e-10, rtol=0)
    # the Hamilton product composes rotations
    q = matrix_to_quaternion(R)
    torch.testing.assert_close(_quat_to_matrix(quaternion_multiply(q[:100], q[100:])), R[:100] @ R[100:], atol=1e-10,
                               rtol=0)


def test_one_bone_moves_rigidly():
    joints, rot_mats, vertices = _chain()
    weights = torch.zeros(50, 4, dtype=torch.float64)
    weights[:, 2] = 1.0
    _, A = batch_rigid_transform(rot_mats, joints[None].expand(5, -1, -1), PARENTS)
    expected = (A[:, 2, :3, :3] @ vertices.T).transpose(1, 2) + A[:, 2, None, :3, 3]
    torch.testing.assert_close(dqs(vertices, weights, rot_mats, joints, PARENTS), expected, atol=1e-10, rtol=0)


def test_identity_pose_returns_rest_and_single_joint_weights_equal_lbs():
    joints, rot_mats, vertices = _chain()
    g = torch.Generator().manual_seed(2)
    weights = torch.softmax(3 * torch.randn(50, 4, generator=g, dtype=torch.float64), dim=1)
    identity = torch.eye(3, dtype=torch.float64).expand(5, 4, 3, 3)
    torch.testing.assert_close(dqs(vertices, weights, identity, joints, PARENTS), vertices.expand(5, -1, -1),
                               atol=1e-12, rtol=0)
    hard = torch.nn.functional.one_hot(weights.argmax(1), 4).double()  # each vertex on one joint
    _, A = batch_rigid_transform(rot_mats, joints[None].expand(5, -1, -1), PARENTS)
    torch.testing.assert_close(dqs(vertices, hard, rot_mats, joints, PARENTS),
                               skin(vertices.expand(5, -1, -1), hard, A), atol=1e-10, rtol=0)
    # blended weights: the two deformers differ (otherwise the blend shapes would have nothing to learn)
    assert (dqs(vertices, weights, rot_mats, joints, PARENTS) - skin(vertices.expand(5, -1, -1), weights, A)).abs().max() > 1e-3


def _arm() -> tuple[trimesh.Trimesh, torch.Tensor, torch.Tensor]:
    """A cylinder 'arm' along +x (radius 4 cm, 60 cm) with its elbow at x = 0.3 and weights blended over 8 cm."""
    mesh = trimesh.creation.cylinder(radius=0.04, height=0.6, sections=48)
    mesh = mesh.subdivide_to_size(0.01)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    mesh.apply_translation([0.3, 0.0, 0.0])
    x = torch.as_tensor(mesh.vertices[:, 0])
    elbow = ((x - 0.26) / 0.08).clamp(0.0, 1.0)
    weights = torch.stack([torch.zeros_like(x), 1.0 - elbow, elbow], 1)  # root, shoulder (upper arm), elbow
    joints = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [0.3, 0, 0]], dtype=torch.float64)
    return mesh, weights, joints


@pytest.mark.parametrize("axis", [1, 0])  # a 90-degree bend about y, and a 90-degree twist about the arm
def test_dqs_keeps_more_volume_than_lbs_at_a_90_degree_elbow(axis):
    mesh, weights, joints = _arm()
    vecs = torch.zeros(1, 3, 3, dtype=torch.float64)
    vecs[0, 2, axis] = -np.pi / 2
    rot_mats = batch_rodrigues(vecs)
    vertices = torch.as_tensor(mesh.vertices)
    _, A = batch_rigid_transform(rot_mats, joints[None], [-1, 0, 1])
    rest = mesh.volume
    lbs_volume = trimesh.Trimesh(skin(vertices[None], weights, A)[0].numpy(), mesh.faces).volume
    dqs_volume = trimesh.Trimesh(dqs(vertices, weights, rot_mats, joints, [-1, 0, 1])[0].numpy(), mesh.faces).volume
    assert abs(dqs_volume - rest) < 0.5 * abs(lbs_volume - rest)
    assert lbs_volume < rest  # LBS's collapse at the joint
