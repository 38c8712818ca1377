"""Pose metrics against hand-worked cases: PCK at 0.19 / 0.21 of a known torso, MPJPE of a constant offset,
PA-MPJPE of a similarity copy, and the reflection fix on a hand-solved mirrored triangle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bodies.metrics import (
    mpjpe,
    pa_mpjpe,
    pck,
    per_vertex_error,
    procrustes_align,
    similarity_transform,
)
from bodies.skeleton import HEAD_PAIR, NUM_KEYPOINTS, TORSO_PAIR


def pose_with_torso(length: float) -> np.ndarray:  # [14, 2]
    points = np.random.default_rng(0).uniform(0, 100, (NUM_KEYPOINTS, 2))
    points[TORSO_PAIR[0]] = [50.0, 20.0]
    points[TORSO_PAIR[1]] = [50.0, 20.0 + length]
    return points


def test_pck_threshold_on_known_torso():
    truth = pose_with_torso(50.0)[None]  # torso 50 px: threshold 0.2 * 50 = 10 px
    pred = truth.copy()
    direction = np.array([0.6, 0.8])  # unit
    moved = [0, 3, 7]
    for k in moved[:2]:
        pred[0, k] += 0.19 * 50 * direction  # 9.5 px: correct
    pred[0, moved[2]] += 0.21 * 50 * direction  # 10.5 px: wrong
    visible = np.ones((1, NUM_KEYPOINTS), dtype=bool)
    result = pck(pred, truth, visible)
    assert result.overall == pytest.approx((NUM_KEYPOINTS - 1) / NUM_KEYPOINTS)
    expected = np.ones(NUM_KEYPOINTS)
    expected[7] = 0.0
    np.testing.assert_array_equal(result.per_keypoint, expected)
    # hiding the wrong keypoint leaves only correct ones; its per-keypoint value is undefined
    visible[0, 7] = False
    hidden = pck(pred, truth, visible)
    assert hidden.overall == 1.0 and np.isnan(hidden.per_keypoint[7])
    # a larger threshold accepts it
    assert pck(pred, truth, np.ones_like(visible), threshold=0.22).overall == 1.0


def test_pckh_uses_the_head_segment_per_sample():
    truth = np.zeros((2, NUM_KEYPOINTS, 2))
    truth[:, HEAD_PAIR[1]] = [30.0, 30.0]
    truth[0, HEAD_PAIR[0]] = [30.0, 10.0]  # head 20 px: 0.5 * 20 = 10 px
    truth[1, HEAD_PAIR[0]] = [30.0, 26.0]  # head 4 px: 2 px
    pred = truth.copy()
    pred[:, 5] += [6.0, 0.0]  # 6 px off: correct in sample 0 only
    visible = np.ones((2, NUM_KEYPOINTS), dtype=bool)
    result = pck(pred, truth, visible, threshold=0.5, scale="head")
    assert result.per_keypoint[5] == 0.5
    assert result.overall == pytest.approx((2 * NUM_KEYPOINTS - 1) / (2 * NUM_KEYPOINTS))


def test_mpjpe_of_a_constant_offset_and_vertex_error():
    truth = np.random.default_rng(1).normal(size=(4, 24, 3))
    offset = np.array([3.0, -4.0, 12.0])  # length 13
    assert mpjpe(truth + offset, truth) == pytest.approx(13.0)
    assert per_vertex_error(truth + offset, truth) == pytest.approx(13.0)
    # a translation is removed by the alignment
    assert pa_mpjpe(truth + offset, truth) == pytest.approx(0.0, abs=1e-12)


def test_pa_mpjpe_is_zero_for_a_similarity_copy():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(5, 24, 3))  # [5, 24, 3]
    rotations = Rotation.random(5, random_state=3).as_matrix()  # [5, 3, 3]
    scales = rng.uniform(0.5, 2.0, 5)
    pred = scales[:, None, None] * np.einsum("nij,nkj->nki", rotations, truth) + rng.normal(size=(5, 1, 3))
    assert mpjpe(pred, truth) > 0.1
    assert pa_mpjpe(pred, truth) == pytest.approx(0.0, abs=1e-10)
    t = similarity_transform(truth, pred)  # the inverse direction recovers the parameters
    np.testing.assert_allclose(t.scale, scales, rtol=1e-10)
    np.testing.assert_allclose(t.rotation, rotations, atol=1e-10)


def test_reflection_fix_on_a_hand_worked_triangle():
    # truth (1, 0), (0, 1), (-1, -1) and its mirror image x -> -x, both centred at the origin.
    # X^T Y = [[-2, -1], [1, 2]]; a rotation by angle t scores tr(R X^T Y) = -2 sin t, best at t = -90 deg
    # (value 2 = 3 - 1, the singular values with the last one negated); scale 2 / ||X||^2 = 2 / 4.
    # The aligned points are 0.5 * (y, -x): (0, 0.5), (0.5, 0), (-0.5, -0.5).
    truth = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]])
    mirrored = truth * [-1.0, 1.0]
    t = similarity_transform(mirrored, truth)
    np.testing.assert_allclose(t.rotation[0], [[0.0, 1.0], [-1.0, 0.0]], atol=1e-12)
    assert np.linalg.det(t.rotation[0]) == pytest.approx(1.0)
    assert t.scale[0] == pytest.approx(0.5)
    aligned = procrustes_align(mirrored, truth)
    np.testing.assert_allclose(aligned[0], [[0.0, 0.5], [0.5, 0.0], [-0.5, -0.5]], atol=1e-12)
    expected = (2 * np.sqrt(1.25) + np.sqrt(0.5)) / 3
    assert mpjpe(aligned, truth) == pytest.approx(expected)
    # an unconstrained orthogonal fit (a reflection) would have reached zero
    assert mpjpe(mirrored * [-1.0, 1.0], truth) == 0.0


def test_mirrored_3d_skeleton_keeps_an_error_and_gets_the_best_proper_rotation():
    rng = np.random.default_rng(4)
    truth = rng.normal(size=(1, 24, 3))
    mirrored = truth * [-1.0, 1.0, 1.0]
    assert pa_mpjpe(mirrored, truth) > 0.1
    t = similarity_transform(mirrored, truth)
    assert np.linalg.det(t.rotation[0]) == pytest.approx(1.0)
    # the best rotation does not depend on the scale: scipy's Kabsch solution on the centred points agrees
    x = mirrored[0] - mirrored[0].mean(0)
    y = truth[0] - truth[0].mean(0)
    reference, _ = Rotation.align_vectors(y, x)
    np.testing.assert_allclose(t.rotation[0], reference.as_matrix(), atol=1e-10)
    # a planar set is different: its mirror image is a rotated copy (turn it over), so the error vanishes
    flat = truth * [1.0, 1.0, 0.0]
    assert pa_mpjpe(flat * [-1.0, 1.0, 1.0], flat) == pytest.approx(0.0, abs=1e-10)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="truth"):
        mpjpe(np.zeros((2, 24, 3)), np.zeros((2, 23, 3)))
    with pytest.raises(ValueError, match="visible"):
        pck(np.zeros((2, 14, 2)), np.zeros((2, 14, 2)), np.ones((2, 13), dtype=bool))
    with pytest.raises(ValueError, match="pred"):
        per_vertex_error(np.zeros((10, 3)), np.zeros((10, 3)))
