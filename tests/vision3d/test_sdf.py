"""Analytic SDFs: closed-form values and signs, agreement with a brute-force distance to dense surface
samples, numpy == torch, and the Eikonal property ||grad f|| = 1 (the Eikonal term of §12.2 is ~0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from vision3d.sdf import box_sdf, capsule_sdf, sphere_sdf, torus_sdf

HALF = (0.4, 0.3, 0.2)


def test_closed_form_values_and_signs():
    # sphere: outside, on, inside, centre
    pts = np.array([[0.8, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, -0.2], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(sphere_sdf(pts, 0.5), [0.3, 0.0, -0.3, -0.5], atol=1e-12)
    np.testing.assert_allclose(sphere_sdf(np.array([[1.0, 1.0, 1.0]]), 0.5, centre=(1.0, 1.0, 0.0)), [0.5], atol=1e-12)
    # box: outside a face, an edge, a corner; inside (nearest face is z); on a face
    pts = np.array([[0.6, 0.0, 0.0], [0.5, 0.4, 0.0], [0.5, 0.4, 0.3], [0.1, 0.0, 0.0], [0.0, 0.3, 0.1]])
    np.testing.assert_allclose(box_sdf(pts, HALF), [0.2, math.sqrt(0.02), math.sqrt(0.03), -0.2, 0.0], atol=1e-12)
    # torus R=0.35, r=0.12: outside the tube, in the hole's centre, on the core circle, above the core
    pts = np.array(
        [[0.55, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -0.35, 0.0], [0.35 / math.sqrt(2), 0.35 / math.sqrt(2), 0.2]]
    )
    np.testing.assert_allclose(torus_sdf(pts, 0.35, 0.12), [0.08, 0.23, -0.12, 0.08], atol=1e-12)
    # capsule from (0,0,-0.25) to (0,0,0.25), radius 0.2: beside the segment, beyond an end, on the axis
    pts = np.array([[0.0, 0.3, 0.25], [0.0, 0.0, 0.55], [0.0, 0.0, -0.1]])
    np.testing.assert_allclose(capsule_sdf(pts), [0.1, 0.1, -0.2], atol=1e-12)


def _box_surface(b: tuple[float, float, float], step: float) -> np.ndarray:
    """Dense grid samples on the six faces of the box [-b, b]."""
    faces = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        gu = np.arange(-b[u], b[u] + step / 2, step)
        gv = np.arange(-b[v], b[v] + step / 2, step)
        uu, vv = np.meshgrid(gu, gv, indexing="ij")
        for sign in (-1.0, 1.0):
            p = np.zeros((uu.size, 3))
            p[:, u], p[:, v], p[:, axis] = uu.ravel(), vv.ravel(), sign * b[axis]
            faces.append(p)
    return np.concatenate(faces)


def _torus_surface(R: float, r: float, n: int) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, n, endpoint=False), np.linspace(0, 2 * np.pi, n, endpoint=False))
    rho = R + r * np.cos(v)
    return np.stack([rho * np.cos(u), rho * np.sin(u), r * np.sin(v)], axis=-1).reshape(-1, 3)


@pytest.mark.parametrize(
    ("sdf", "surface", "spacing"),
    [
        (lambda x: box_sdf(x, HALF), _box_surface(HALF, 0.005), 0.005),
        (lambda x: torus_sdf(x, 0.35, 0.12), _torus_surface(0.35, 0.12, 800), 2 * np.pi * 0.47 / 800),
    ],
    ids=["box", "torus"],
)
def test_magnitude_is_the_distance_to_the_surface(sdf, surface, spacing):
    """|f(x)| equals the distance to dense surface samples up to their spacing, corners and edges of
    the box included (a slow, obviously correct reference)."""
    x = np.random.default_rng(0).uniform(-0.7, 0.7, size=(3000, 3))
    brute, _ = cKDTree(surface).query(x)
    f = sdf(x)
    assert np.all(np.abs(f) <= brute + 1e-12)  # the true distance never exceeds that to any sample
    assert np.max(brute - np.abs(f)) < spacing


def test_numpy_and_torch_agree_and_keep_dtype():
    x = np.random.default_rng(1).uniform(-0.6, 0.6, size=(500, 3))
    for f in (sphere_sdf, torus_sdf, box_sdf, capsule_sdf):
        t = f(torch.from_numpy(x))
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float64 and t.shape == (500,)
        np.testing.assert_allclose(t.numpy(), f(x), atol=1e-12)
        assert f(torch.from_numpy(x).float()).dtype == torch.float32
        assert f(x.astype(np.float32)).dtype == np.float32
        assert f(x.reshape(10, 50, 3)).shape == (10, 50)


@pytest.mark.parametrize("name", ["sphere", "torus", "box", "capsule"])
def test_eikonal_gradient_norm_is_one(name):
    """The Eikonal residual (||grad f|| - 1)^2 of an exact SDF is 0 off its singular set."""
    sdf = {"sphere": sphere_sdf, "torus": torus_sdf, "box": box_sdf, "capsule": capsule_sdf}[name]
    x = torch.from_numpy(np.random.default_rng(2).uniform(-0.6, 0.6, size=(2000, 3))).requires_grad_(True)
    (grad,) = torch.autograd.grad(sdf(x).sum(), x)
    eikonal = (grad.norm(dim=-1) - 1.0) ** 2
    assert eikonal.max().item() < 1e-12
    if name == "sphere":  # the gradient is the unit direction from the centre
        direction = x.detach() / x.detach().norm(dim=-1, keepdim=True)
        torch.testing.assert_close(grad, direction)


def test_finite_gradient_on_singular_sets():
    x = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    for f in (sphere_sdf, torus_sdf, box_sdf):
        (grad,) = torch.autograd.grad(f(x).sum(), x)
        assert torch.isfinite(grad).all()


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        sphere_sdf(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="radius"):
        sphere_sdf(np.zeros((4, 3)), radius=-1.0)
    with pytest.raises(ValueError, match="minor_radius"):
        torus_sdf(np.zeros((4, 3)), 0.1, 0.2)
    with pytest.raises(ValueError, match="half_extents"):
        box_sdf(np.zeros((4, 3)), (0.1, 0.2))
    with pytest.raises(ValueError, match="end points"):
        capsule_sdf(np.zeros((4, 3)), a=(0, 0, 0), b=(0, 0, 0))
