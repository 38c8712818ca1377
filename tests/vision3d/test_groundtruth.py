import math

import numpy as np
import pytest
import trimesh

from vision3d import SCENE_BOUND
from vision3d.groundtruth import GroundTruth, near_surface_points, sample_points, surface_samples
from vision3d.shapes import TORUS_R, TORUS_r, load_shape


def torus_sdf(points):
    """The analytic torus signed distance, written out here so the test does not share code with the library."""
    q = np.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2) - TORUS_R
    return np.sqrt(q**2 + points[:, 2] ** 2) - TORUS_r


@pytest.fixture(scope="module")
def torus():
    return load_shape("torus")


@pytest.fixture(scope="module")
def torus_gt(torus):
    return GroundTruth(torus)


def test_signed_distance_sign_on_the_torus(torus_gt):
    tube_centre = [TORUS_R, 0.0, 0.0]
    hole = [0.0, 0.0, 0.0]
    far = [2.0, -1.0, 3.0]
    sdf = torus_gt.signed_distance(np.array([tube_centre, hole, far]))
    assert sdf[0] < 0 and sdf[1] > 0 and sdf[2] > 0
    np.testing.assert_allclose(sdf, torus_sdf(np.array([tube_centre, hole, far])), atol=2e-3)


def test_signed_distance_matches_the_analytic_torus(torus_gt, rng):
    points = rng.uniform(-SCENE_BOUND, SCENE_BOUND, size=(20_000, 3))
    sdf = torus_gt.signed_distance(points)
    assert sdf.shape == (20_000,)
    # 96 x 48 sections: the facets lie within R(1 - cos(pi/96)) + r(1 - cos(pi/48)) < 1e-3 of the surface
    np.testing.assert_allclose(sdf, torus_sdf(points), atol=1.5e-3)


def test_occupancy_agrees_with_the_sign_of_the_distance(torus_gt, rng):
    points = rng.uniform(-SCENE_BOUND, SCENE_BOUND, size=(20_000, 3))
    occupancy = torus_gt.occupancy(points)
    sdf = torus_gt.signed_distance(points)
    assert occupancy.dtype == bool
    np.testing.assert_array_equal(occupancy, sdf < 0)
    # and the inside fraction is the torus volume 2 pi^2 R r^2 over the box volume
    expected = 2 * math.pi**2 * TORUS_R * TORUS_r**2 / (2 * SCENE_BOUND) ** 3
    assert occupancy.mean() == pytest.approx(expected, abs=4 * math.sqrt(expected / len(points)))


def test_non_watertight_mesh_is_rejected_for_sign_queries(torus):
    open_mesh = torus.copy()
    open_mesh.update_faces(np.arange(len(open_mesh.faces)) > 10)  # punch a hole
    assert not open_mesh.is_watertight
    gt = GroundTruth(open_mesh)
    points = np.zeros((3, 3))
    for query in (gt.signed_distance, gt.occupancy):
        with pytest.raises(ValueError, match="watertight"):
            query(points)
    with pytest.raises(ValueError, match="watertight"):
        sample_points(open_mesh, 10, 10)
    # unsigned distance is still defined: the origin is R - r from the tube
    assert gt.distance(points)[0] == pytest.approx(TORUS_R - TORUS_r, abs=2e-3)


def test_closest_points_on_a_sphere(rng):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    gt = GroundTruth(sphere)
    points = rng.normal(size=(500, 3))
    closest = gt.closest(points)
    distance = gt.distance(points)
    # the closest point realises the distance, lies on the mesh, and carries its triangle's normal
    np.testing.assert_allclose(np.linalg.norm(closest.points - points, axis=1), distance, rtol=1e-5)
    assert gt.distance(closest.points).max() < 1e-5
    np.testing.assert_allclose(closest.normals, sphere.face_normals[closest.face_ids], atol=1e-5)
    # the facets are within 3e-4 of the true sphere, whose distance is | |p| - 0.5 |
    np.testing.assert_allclose(distance, np.abs(np.linalg.norm(points, axis=1) - 0.5), atol=5e-4)
    radial = points / np.linalg.norm(points, axis=1, keepdims=True)
    assert np.sum(closest.normals * radial, axis=1).min() > 0.99


def test_surface_samples_lie_on_the_surface_with_true_normals(torus_gt, torus):
    points, normals = surface_samples(torus, 5000, seed=1)
    assert points.dtype == normals.dtype == np.float32
    assert np.abs(torus_gt.signed_distance(points)).max() < 1e-4
    # normal of the analytic torus: from the tube's centre circle to the point
    p = points.astype(np.float64)
    ring = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2)
    centre = np.stack([p[:, 0] / ring * TORUS_R, p[:, 1] / ring * TORUS_R, np.zeros_like(ring)], axis=1)
    analytic = (p - centre) / np.linalg.norm(p - centre, axis=1, keepdims=True)
    assert np.sum(normals * analytic, axis=1).min() > 0.99


def test_near_surface_points_use_each_sigma(rng):
    surface = np.zeros((30_000, 3))
    noisy = near_surface_points(surface, (0.01, 0.1), rng, bound=10.0)
    np.testing.assert_allclose(noisy[:15_000].std(), 0.01, rtol=0.03)
    np.testing.assert_allclose(noisy[15_000:].std(), 0.1, rtol=0.03)
    clipped = near_surface_points(surface + 0.5, (0.1,), rng, bound=0.55)
    assert clipped.max() <= 0.55


def test_sample_points_labels_and_seed(torus):
    samples = sample_points(torus, n_uniform=3000, n_surface=4000, seed=5)
    assert samples.points.shape == (7000, 3) and samples.points.dtype == np.float32
    assert samples.sdf.shape == (7000,) and samples.sdf.dtype == np.float32
    np.testing.assert_array_equal(samples.occupancy, samples.sdf < 0)
    assert np.abs(samples.points).max() <= SCENE_BOUND
    np.testing.assert_allclose(samples.sdf, torus_sdf(samples.points.astype(np.float64)), atol=1.5e-3)
    # half of the near-surface points have sigma 0.005: almost all within 3 sigma of the surface
    assert np.mean(np.abs(samples.sdf[3000:5000]) < 0.015) > 0.97
    again = sample_points(torus, n_uniform=3000, n_surface=4000, seed=5)
    np.testing.assert_array_equal(again.points, samples.points)
    other = sample_points(torus, n_uniform=3000, n_surface=4000, seed=6)
    assert not np.array_equal(other.points, samples.points)


def test_input_checks(torus_gt):
    with pytest.raises(ValueError, match="points"):
        torus_gt.signed_distance(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="nsamples"):
        GroundTruth(trimesh.creation.box(), nsamples=2)
