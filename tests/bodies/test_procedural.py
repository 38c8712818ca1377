"""The procedural body (bodies/procedural.py, bodies/body_shapes.py): a closed mannequin, valid skinning weights,
and a shape space, joint regressor and pose blend shapes that are learned as notes §13.2 describes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from bodies import body_shapes as bs
from bodies.procedural import (
    BodyBuildConfig,
    best_betas,
    blend_shape_errors,
    build_body,
    sample_poses,
    write_body,
)
from bodies.skeleton import EXTRA_KEYPOINT_NAMES, JOINT_NAMES, NUM_POSE_FEATURES, kintree_table

torch.set_num_threads(1)
SMALL = BodyBuildConfig(resolution=110, target_vertices=1000, num_samples=40, train_poses=300, heldout_poses=100)


@pytest.fixture(scope="module")
def build():
    return build_body(SMALL)


def test_template_is_one_closed_outward_surface_of_a_person(build):
    mesh = trimesh.Trimesh(build.v_template, build.f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume > 0  # outward normals: positive signed volume
    assert 0.04 < mesh.volume < 0.1  # a ~70 kg person is ~0.07 m^3
    lo, hi = mesh.bounds
    assert 1.6 < hi[1] - lo[1] < 1.85  # stature
    assert 1.55 < hi[0] - lo[0] < 1.9  # T-pose arm span ~ stature
    assert abs(lo[0] + hi[0]) < 0.01  # left-right symmetric
    nose = build.v_template[build.extra_vertex_ids[EXTRA_KEYPOINT_NAMES.index("nose")]]
    assert nose[2] > 0.08 and nose[1] > 0.3  # the face looks along +z
    left = build.v_template[build.extra_vertex_ids[EXTRA_KEYPOINT_NAMES.index("left_middle")]]
    assert left[0] > 0.8  # the body's left hand at +x


def test_arrays_have_smpl_shapes_and_weights_are_sparse_convex(build):
    N = len(build.v_template)
    arrays = build.arrays()
    assert arrays["shapedirs"].shape == (N, 3, 10) and arrays["posedirs"].shape == (N, 3, NUM_POSE_FEATURES)
    assert arrays["J_regressor"].shape == (24, N) and arrays["weights"].shape == (N, 24)
    assert arrays["extra_vertex_ids"].shape == (len(EXTRA_KEYPOINT_NAMES),)
    assert arrays["vertex_colors"].dtype == np.uint8 and arrays["vertex_colors"].shape == (N, 3)
    np.testing.assert_array_equal(arrays["kintree_table"], kintree_table())
    w = build.weights
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert (w >= 0).all() and ((w > 0).sum(1) <= 4).all()
    # the bone of joint k is driven by G_k: mid-thigh vertices belong to the hip, mid-forearm ones to the elbow
    J, E = bs.skeleton_joints(bs.PHENOTYPE_MEAN)
    for joint in ("left_hip", "right_elbow", "head", "spine3"):
        k = JOINT_NAMES.index(joint)
        mid = (J[k] + E[k]) / 2
        near = np.argmin(np.linalg.norm(build.v_template - mid, axis=1))
        assert np.argmax(w[near]) == k, joint


def test_shape_space_is_pca_of_the_registered_samples(build):
    S = build.shapedirs.reshape(-1, 10)
    gram = S.T @ S
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-6 * np.abs(gram).max())
    assert np.all(np.diff(np.diag(gram)) <= 1e-9)  # sorted by variance
    assert 0.9 < build.report["pca_variance_explained"] <= 1.0
    # a phenotype not in the training samples: its best betas reconstruct it much better than the mean does
    rng = np.random.default_rng(123)
    phenotype = bs.sample_phenotypes(rng, 1)[0]
    target, _ = bs.register(build.base_vertices, build.weights, phenotype, bs.PHENOTYPE_MEAN)
    betas = best_betas(target, build.v_template, build.shapedirs)
    fitted = build.v_template + build.shapedirs @ betas
    err_mean = np.linalg.norm(target - build.v_template, axis=1).mean()
    err_fit = np.linalg.norm(target - fitted, axis=1).mean()
    assert err_fit < 0.25 * err_mean
    assert np.all(np.abs(betas) < 5)  # betas of a typical body are O(1): the components carry their std


def test_registration_of_the_base_phenotype_is_the_identity(build):
    again, joints = bs.register(build.base_vertices, build.weights, bs.PHENOTYPE_MEAN, bs.PHENOTYPE_MEAN)
    np.testing.assert_allclose(again, build.base_vertices, atol=1e-12)
    np.testing.assert_allclose(joints, bs.skeleton_joints(bs.PHENOTYPE_MEAN)[0])


def test_joint_regressor_is_convex_and_reproduces_the_joints(build):
    R = build.J_regressor
    assert (R >= 0).all()
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-9)
    assert build.report["joint_regressor_rest_error_mean_mm"] < 1.0
    assert build.report["joint_regressor_sample_error_mean_mm"] < 5.0
    # the regressed rest joints sit where the skeleton puts the mean body's joints (within a few mm)
    J, _ = bs.skeleton_joints(bs.PHENOTYPE_MEAN)
    assert np.linalg.norm(R @ build.v_template - J, axis=1).max() < 0.01


def test_learned_pose_blend_shapes_reduce_heldout_error_against_dqs(build):
    assert build.report["heldout_error_lbs_blend_shapes_mm"] < 0.6 * build.report["heldout_error_lbs_mm"]
    # recomputed on fresh poses from the prior, and zero blend shapes give back plain LBS's error
    poses = sample_poses(np.random.default_rng(7), 40)
    joints = build.J_regressor @ build.v_template
    plain, learned = blend_shape_errors(build.v_template, build.weights, joints, build.posedirs, poses)
    assert learned < 0.6 * plain
    plain0, zero = blend_shape_errors(build.v_template, build.weights, joints, 0 * build.posedirs, poses)
    assert zero == pytest.approx(plain0) and plain0 == pytest.approx(plain)


def test_build_is_deterministic_and_the_file_round_trips(build, tmp_path):
    again = build_body(SMALL)
    for key, value in build.arrays().items():
        np.testing.assert_array_equal(again.arrays()[key], value, err_msg=key)
    path = write_body(build, tmp_path / "body.npz")
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == set(build.arrays())
        for key, value in build.arrays().items():
            assert data[key].dtype == value.dtype
            np.testing.assert_array_equal(data[key], value)
        assert data["v_template"].dtype == np.float32 and data["f"].dtype == np.int64
