"""Marching cubes of analytic SDFs: world coordinates, outward orientation, volume, accuracy,
batching, the no-surface error, largest component and the atomic PLY writer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from vision3d import SCENE_BOUND
from vision3d.extraction import evaluate_grid, extract_mesh, grid_axis, grid_points, mesh_from_grid, save_mesh
from vision3d.metrics import chamfer_l1
from vision3d.sdf import box_sdf, sphere_sdf

R = 0.4


@pytest.fixture(scope="module")
def sphere_mesh() -> trimesh.Trimesh:
    return extract_mesh(lambda p: sphere_sdf(p, R), resolution=64)


def test_grid_points_match_meshgrid():
    axis = grid_axis(5, 0.5)
    np.testing.assert_allclose(axis, [-0.5, -0.25, 0.0, 0.25, 0.5])
    reference = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    got = np.concatenate([grid_points(axis, s, min(s + 7, 125)) for s in range(0, 125, 7)])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference, atol=1e-7)


def test_sphere_volume_normals_and_accuracy(sphere_mesh):
    mesh = sphere_mesh
    assert mesh.is_watertight and mesh.is_winding_consistent
    exact = 4.0 / 3.0 * math.pi * R**3
    assert mesh.volume > 0  # outward-facing triangles
    assert abs(mesh.volume - exact) / exact < 0.01
    # vertex normals point away from the centre
    cos = np.sum(mesh.vertex_normals * mesh.vertices, axis=1) / np.linalg.norm(mesh.vertices, axis=1)
    assert cos.min() > 0.9
    # vertices lie on the sphere up to the linear interpolation error, far below the grid spacing
    spacing = 2 * SCENE_BOUND / 63
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - R).max() < 0.02 * spacing
    # surface samples against the same points projected exactly onto the sphere
    samples, _ = trimesh.sample.sample_surface(mesh, 20000, seed=0)
    on_sphere = R * samples / np.linalg.norm(samples, axis=1, keepdims=True)
    assert chamfer_l1(samples, on_sphere) < 1e-3


def test_world_coordinates_of_an_off_centre_box():
    """An off-centre box whose faces fall on grid planes comes back at its exact place and size."""
    # resolution 45 over [-0.55, 0.55]: spacing 0.025, so these faces are on grid planes and marching
    # cubes puts vertices exactly there
    half, centre = (0.1, 0.2, 0.3), (0.1, -0.05, 0.025)
    mesh = extract_mesh(lambda p: box_sdf(p, half, centre), resolution=45)
    lo = np.subtract(centre, half)
    hi = np.add(centre, half)
    np.testing.assert_allclose(mesh.bounds, [lo, hi], atol=1e-5)
    # marching cubes bevels the 12 edges (a triangle of legs ~spacing along each): about 2% less volume
    assert 0.97 * 0.048 < mesh.volume < 0.048


def test_level_set_other_than_zero():
    mesh = extract_mesh(lambda p: sphere_sdf(p, 0.3), resolution=48, level=0.1)
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 0.4, atol=2e-3)


def test_batches_give_the_same_grid_and_respect_batch_size():
    sizes = []

    def sdf(p: np.ndarray) -> np.ndarray:
        assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 3
        sizes.append(len(p))
        return sphere_sdf(p, R)

    small = evaluate_grid(sdf, resolution=20, batch_size=999)
    assert max(sizes) == 999 and sum(sizes) == 20**3
    whole = evaluate_grid(sdf, resolution=20, batch_size=10**6)
    np.testing.assert_array_equal(small, whole)
    axis = grid_axis(20, SCENE_BOUND)
    assert small[3, 7, 11] == pytest.approx(np.linalg.norm([axis[3], axis[7], axis[11]]) - R, abs=1e-6)


def test_no_surface_raises():
    with pytest.raises(ValueError, match=r"no surface at level 0.0 .*min .*max"):
        extract_mesh(lambda p: sphere_sdf(p, 2.0), resolution=16)  # everything inside
    with pytest.raises(ValueError, match="no surface at level 5"):
        extract_mesh(lambda p: sphere_sdf(p, R), resolution=16, level=5.0)


def test_bad_callables_raise():
    with pytest.raises(ValueError, match="shape"):
        extract_mesh(lambda p: np.zeros((len(p), 1)), resolution=8)
    with pytest.raises(ValueError, match="non-finite"):
        extract_mesh(lambda p: np.full(len(p), np.nan), resolution=8)
    with pytest.raises(ValueError, match="resolution"):
        extract_mesh(lambda p: sphere_sdf(p, R), resolution=1)


def test_largest_component_drops_the_small_sphere():
    def two_spheres(p: np.ndarray) -> np.ndarray:
        return np.minimum(sphere_sdf(p, 0.25, (-0.2, 0, 0)), sphere_sdf(p, 0.1, (0.38, 0, 0)))

    both = extract_mesh(two_spheres, resolution=48)
    assert len(both.split(only_watertight=False)) == 2
    big = extract_mesh(two_spheres, resolution=48, largest_component=True)
    assert len(big.split(only_watertight=False)) == 1
    assert big.volume == pytest.approx(4 / 3 * math.pi * 0.25**3, rel=0.02)
    assert big.bounds[1, 0] < 0.1


def test_save_mesh_round_trip(sphere_mesh, tmp_path):
    path = save_mesh(sphere_mesh, tmp_path / "out" / "mesh.ply")
    loaded = trimesh.load(path, process=False)
    np.testing.assert_allclose(loaded.vertices, sphere_mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, sphere_mesh.faces)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mesh.ply"]  # no temp file left
    with pytest.raises(ValueError, match=".ply"):
        save_mesh(sphere_mesh, tmp_path / "mesh.obj")


def test_a_surface_cut_by_the_grid_boundary_is_capped_watertight():
    # The half-space z < 0 is inside at five faces of the box: without the cap the mesh would be a
    # single open square, and IoU (inside/outside) would be undefined.
    mesh = extract_mesh(lambda x: x[:, 2], resolution=17, bound=0.5)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(0.5, rel=0.15)
    open_mesh = mesh_from_grid(np.stack(np.meshgrid(*[np.linspace(-0.5, 0.5, 17)] * 3, indexing="ij"))[2], 0.5,
                               close_boundary=False)
    assert not open_mesh.is_watertight
