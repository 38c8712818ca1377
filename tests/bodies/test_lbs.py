"""Notes §13.2: the SMPL function against a slow per-vertex loop, and the invariants that define it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from bodies.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, lbs, pose_features, vertices2joints
from bodies.skeleton import PARENTS
from tests.bodies.conftest import random_model_arrays


def _arrays(dtype=torch.float64):
    return {k: torch.as_tensor(v, dtype=dtype) if v.dtype.kind == "f" else v for k, v in random_model_arrays().items()}


def loop_reference(betas, pose, a):
    """One body, one vertex and one joint at a time, straight from the notes (numpy, float64)."""
    v_template, shapedirs, posedirs = (a[k].numpy() for k in ("v_template", "shapedirs", "posedirs"))
    J_regressor, weights = a["J_regressor"].numpy(), a["weights"].numpy()
    N, J = weights.shape
    R = [Rotation.from_rotvec(pose[3 * k:3 * k + 3]).as_matrix() for k in range(J)]
    features = np.concatenate([(R[k] - np.eye(3)).ravel() for k in range(1, J)])
    T_shaped = np.array([v_template[i] + shapedirs[i] @ betas for i in range(N)])
    rest_joints = np.array([sum(J_regressor[k, i] * T_shaped[i] for i in range(N)) for k in range(J)])
    T_posed = np.array([T_shaped[i] + posedirs[i] @ features for i in range(N)])
    G = []  # the global transform of each joint, by walking the chain from the root
    for k in range(J):
        local = np.eye(4)
        local[:3, :3] = R[k]
        local[:3, 3] = rest_joints[k] - (rest_joints[PARENTS[k]] if k else 0.0)
        G.append(local if k == 0 else G[PARENTS[k]] @ local)
    posed_joints = np.array([g[:3, 3] for g in G])
    unrest = [g @ np.block([[np.eye(3), -rest_joints[k][:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
              for k, g in enumerate(G)]
    vertices = np.array([(sum(weights[i, k] * unrest[k] for k in range(J)) @ np.append(T_posed[i], 1.0))[:3]
                         for i in range(N)])
    return vertices, posed_joints


def test_lbs_equals_the_per_vertex_loop():
    a = _arrays()
    rng = np.random.default_rng(1)
    betas, pose = rng.normal(size=(2, 10)), rng.normal(0.0, 0.5, (2, 72))
    vertices, joints = lbs(torch.as_tensor(betas), torch.as_tensor(pose), a["v_template"], a["shapedirs"],
                           a["posedirs"], a["J_regressor"], PARENTS, a["weights"])
    for b in range(2):
        v_ref, j_ref = loop_reference(betas[b], pose[b], a)
        np.testing.assert_allclose(vertices[b].numpy(), v_ref, atol=1e-12)
        np.testing.assert_allclose(joints[b].numpy(), j_ref, atol=1e-12)


def test_zero_pose_and_shape_return_the_template():
    a = _arrays()
    vertices, joints = lbs(torch.zeros(3, 10, dtype=torch.float64), torch.zeros(3, 72, dtype=torch.float64),
                           a["v_template"], a["shapedirs"], a["posedirs"], a["J_regressor"], PARENTS, a["weights"])
    torch.testing.assert_close(vertices, a["v_template"].expand(3, -1, -1), atol=1e-12, rtol=0)
    torch.testing.assert_close(joints, (a["J_regressor"] @ a["v_template"]).expand(3, -1, -1), atol=1e-12, rtol=0)


def test_rodrigues_equals_scipy_and_is_a_rotation():
    rot_vecs = torch.as_tensor(np.random.default_rng(2).normal(0.0, 1.5, (5, 7, 3)))
    R = batch_rodrigues(rot_vecs)
    expected = Rotation.from_rotvec(rot_vecs.reshape(-1, 3).numpy()).as_matrix().reshape(5, 7, 3, 3)
    np.testing.assert_allclose(R.numpy(), expected, atol=1e-12)
    torch.testing.assert_close(batch_rodrigues(torch.zeros(4, 3, dtype=torch.float64)),
                               torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    with pytest.raises(ValueError, match="rot_vecs must be"):
        batch_rodrigues(torch.zeros(4, 2))


def test_pose_features_vanish_at_rest_and_ignore_the_root():
    rot = batch_rodrigues(torch.zeros(2, 24, 3, dtype=torch.float64))
    assert pose_features(rot).shape == (2, 207) and pose_features(rot).abs().max() == 0
    rot[:, 0] = batch_rodrigues(torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64))
    assert pose_features(rot).abs().max() == 0  # turning the whole body deforms nothing


def test_blend_shapes_and_regressor_are_linear():
    a = _arrays()
    b1, b2 = torch.randn(1, 10, dtype=torch.float64), torch.randn(1, 10, dtype=torch.float64)
    torch.testing.assert_close(blend_shapes(b1 + 2 * b2, a["shapedirs"]),
                               blend_shapes(b1, a["shapedirs"]) + 2 * blend_shapes(b2, a["shapedirs"]))
    V = torch.randn(2, len(a["v_template"]), 3, dtype=torch.float64)
    torch.testing.assert_close(vertices2joints(a["J_regressor"], V), torch.stack([a["J_regressor"] @ v for v in V]))


def test_rigid_transform_keeps_bone_lengths_and_fixes_the_joints():
    joints = torch.as_tensor(random_model_arrays()["v_template"][:24])[None]
    rot = batch_rodrigues(torch.randn(1, 24, 3, dtype=torch.float64))
    posed, A = batch_rigid_transform(rot, joints, PARENTS)
    parents = list(PARENTS[1:])
    torch.testing.assert_close((posed[0, 1:] - posed[0, parents]).norm(dim=-1),
                               (joints[0, 1:] - joints[0, parents]).norm(dim=-1))
    # G_k maps the rest joint k to the posed joint k; its rotation block is a rotation.
    homogeneous = torch.cat([joints, torch.ones(1, 24, 1, dtype=torch.float64)], -1)[..., None]
    torch.testing.assert_close((A @ homogeneous)[0, :, :3, 0], posed[0])
    torch.testing.assert_close(torch.linalg.det(A[0, :, :3, :3]), torch.ones(24, dtype=torch.float64))


def test_rodrigues_gradient_is_exact_at_and_near_zero():
    # Fitting starts at theta = 0: the Jacobian there is the cross-product generator of each axis.
    jacobian = torch.autograd.functional.jacobian(batch_rodrigues, torch.zeros(3, dtype=torch.float64))
    generators = torch.tensor([[[0, 0, 0], [0, 0, -1], [0, 1, 0]], [[0, 0, 1], [0, 0, 0], [-1, 0, 0]],
                               [[0, -1, 0], [1, 0, 0], [0, 0, 0]]], dtype=torch.float64)
    torch.testing.assert_close(jacobian.permute(2, 0, 1), generators)
    for scale in (1e-6, 1e-3, 1.0, 3.0):
        assert torch.autograd.gradcheck(batch_rodrigues, (scale * torch.randn(4, 3, dtype=torch.float64,
                                                                                requires_grad=True),))
