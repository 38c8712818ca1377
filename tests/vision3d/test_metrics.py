"""Metrics against closed forms: Chamfer-L1 of parallel grids, F-score and normal consistency of
constructed cases, Monte Carlo IoU of overlapping boxes, and evaluate_mesh end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh

from vision3d.extraction import extract_mesh
from vision3d.metrics import (
    chamfer_l1,
    evaluate_mesh,
    fscore,
    normal_consistency,
    volumetric_iou,
)
from vision3d.sdf import box_sdf, sphere_sdf


def plane_grid(z: float, n: int = 20, step: float = 0.05) -> np.ndarray:  # [n*n, 3]
    g = np.arange(n) * step
    x, y = np.meshgrid(g, g, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), np.full(n * n, z)], axis=1)


def test_chamfer_closed_forms():
    a = plane_grid(0.0)
    assert chamfer_l1(a, a) == 0.0
    # the same lattice lifted by d < spacing: every nearest neighbour is straight above/below
    b = plane_grid(0.02)
    assert chamfer_l1(a, b) == pytest.approx(0.02, abs=1e-12)
    assert chamfer_l1(b, a) == chamfer_l1(a, b)
    # one extra point at distance D from the set: 0.5 * (0 + D / (N + 1)), in both argument orders
    extra = np.concatenate([a, [[0.0, 0.0, 1.0]]])
    expected = 0.5 * 1.0 / len(extra)
    assert chamfer_l1(a, extra) == pytest.approx(expected, abs=1e-12)
    assert chamfer_l1(extra, a) == pytest.approx(expected, abs=1e-12)


def test_fscore_closed_forms():
    a = plane_grid(0.0)
    assert fscore(a, a, 0.01) == 1.0
    assert fscore(a, a + 1.0, 0.01) == 0.0
    # k far points added to the prediction: precision N/(N+k), recall 1
    far = np.concatenate([a, plane_grid(5.0, n=10)])
    p = len(a) / len(far)
    assert fscore(far, a, 0.01) == pytest.approx(2 * p / (p + 1))
    # a shift just below / above the threshold
    assert fscore(a, plane_grid(0.009), 0.01) == 1.0
    assert fscore(a, plane_grid(0.011), 0.01) == 0.0


def test_normal_consistency_closed_forms():
    a = plane_grid(0.0)
    up = np.tile([0.0, 0.0, 1.0], (len(a), 1))
    assert normal_consistency(a, up, a, up) == pytest.approx(1.0)
    assert normal_consistency(a, up, a, -up) == pytest.approx(1.0)  # orientation does not count
    side = np.tile([1.0, 0.0, 0.0], (len(a), 1))
    assert normal_consistency(a, up, a, side) == pytest.approx(0.0)
    tilted = np.tile([1.0, 0.0, 1.0], (len(a), 1))  # 45 degrees, not unit length: normalised inside
    assert normal_consistency(a, up, plane_grid(0.01), tilted) == pytest.approx(math.cos(math.pi / 4))


def test_volumetric_iou_of_overlapping_boxes():
    assert volumetric_iou(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == pytest.approx(1 / 3)
    # two unit-ish boxes shifted by a third of their width: IoU (2/3) / (4/3) = 1/2
    x = np.random.default_rng(0).uniform(-0.6, 0.6, size=(200_000, 3))
    occ_a = box_sdf(x, (0.3, 0.3, 0.3)) < 0
    occ_b = box_sdf(x, (0.3, 0.3, 0.3), centre=(0.2, 0.0, 0.0)) < 0
    assert volumetric_iou(occ_a, occ_b) == pytest.approx(0.5, abs=0.01)


def test_evaluate_mesh_of_a_mesh_with_itself_is_perfect():
    mesh = extract_mesh(lambda p: sphere_sdf(p, 0.4), resolution=32)
    m = evaluate_mesh(mesh, mesh, n_points=5000)
    assert (m.iou, m.chamfer_l1, m.fscore) == (1.0, 0.0, 1.0)
    assert m.normal_consistency == pytest.approx(1.0)
    assert m.fscore_threshold == pytest.approx(0.01 * np.linalg.norm(np.diff(mesh.bounds, axis=0)))
    assert json.loads(json.dumps(m.to_dict())) == m.to_dict()


def test_evaluate_marching_cubes_sphere_against_a_fine_icosphere():
    pred = extract_mesh(lambda p: sphere_sdf(p, 0.4), resolution=64)
    reference = trimesh.creation.icosphere(subdivisions=6, radius=0.4)
    m = evaluate_mesh(pred, reference, n_points=50_000)
    assert m.iou > 0.995
    # the floor is the spacing of 50k random samples (~3e-3), far below the 1.4e-2 threshold
    assert m.chamfer_l1 < 0.25 * m.fscore_threshold
    assert m.normal_consistency > 0.995
    assert m.fscore > 0.99


def test_evaluate_mesh_iou_of_shifted_boxes_and_open_meshes():
    a = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    b = a.copy()
    b.apply_translation((0.25, 0.0, 0.0))
    m = evaluate_mesh(a, b, n_points=20_000)
    # the box bounding both is their union, so the estimate is binomial: standard deviation 0.0033
    assert m.iou == pytest.approx(1 / 3, abs=0.015)
    assert m.fscore < 0.6 and m.chamfer_l1 > 0.05
    opened = trimesh.Trimesh(a.vertices, a.faces[:-1], process=False)
    assert not opened.is_watertight
    assert evaluate_mesh(opened, b, n_points=2000).iou is None


def test_invalid_inputs():
    a = plane_grid(0.0)
    with pytest.raises(ValueError, match=r"points_b: expected shape \[N, 3\]"):
        chamfer_l1(a, a[:, :2])
    with pytest.raises(ValueError, match="empty"):
        chamfer_l1(a, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="normals_b"):
        normal_consistency(a, a + 1.0, a, a[:5] + 1.0)
    with pytest.raises(ValueError, match="zero-length"):
        normal_consistency(a, a, a, a + 1.0)  # a's first point is the origin
    with pytest.raises(ValueError, match="threshold"):
        fscore(a, a, 0.0)
    with pytest.raises(ValueError, match="bool"):
        volumetric_iou(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="same length"):
        volumetric_iou(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="pred: .*empty mesh"):
        evaluate_mesh(trimesh.Trimesh(), trimesh.creation.box())
