import dataclasses

import numpy as np
import pytest
import torch

from generative.training import FitConfig, fit
from vision3d.fields import FieldConfig, gradient
from vision3d.igr import (
    IGRConfig,
    IGRObjective,
    eikonal_points,
    eikonal_term,
    fit_igr,
    local_sigmas,
    normal_term,
    vanish_term,
)
from vision3d.sdf import box_sdf, sphere_sdf


def _sphere_points(n: int, radius: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return (radius * normals).astype(np.float32), normals.astype(np.float32)


def _grad_of(fn, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return gradient(fn(x)[:, None], x, create_graph=False)


def test_eikonal_term_of_a_sphere_sdf_is_zero_and_of_twice_it_is_one():
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5
    assert float(eikonal_term(_grad_of(lambda p: sphere_sdf(p, 0.3), x))) < 1e-12
    # ||grad (2 f)|| = 2 everywhere, so (2 - 1)^2 = 1
    assert float(eikonal_term(_grad_of(lambda p: 2.0 * sphere_sdf(p, 0.3), x))) == pytest.approx(1.0, abs=1e-12)
    # the box's exact SDF has a unit gradient too (away from its medial planes)
    assert float(eikonal_term(_grad_of(lambda p: box_sdf(p, (0.3, 0.2, 0.1)), x))) < 1e-10
    # a squared distance does not: ||grad r^2|| = 2 r, so E[(2r - 1)^2]
    r = x.norm(dim=1)
    expected = float(((2 * r - 1) ** 2).mean())
    assert float(eikonal_term(_grad_of(lambda p: (p**2).sum(dim=1), x))) == pytest.approx(expected, rel=1e-9)


def test_vanish_and_normal_terms_on_a_sphere():
    points, normals = _sphere_points(500, 0.3)
    p = torch.from_numpy(points).double()
    assert float(vanish_term(sphere_sdf(p, 0.3))) < 1e-12
    # a sphere of radius 0.25 is 0.05 away from every point: the mean square is 0.05^2
    assert float(vanish_term(sphere_sdf(p, 0.25))) == pytest.approx(0.05**2, rel=1e-6)
    grad = _grad_of(lambda q: sphere_sdf(q, 0.3), p)
    assert float(normal_term(grad, torch.from_numpy(normals).double())) < 1e-6
    # flipped normals are 2 apart
    assert float(normal_term(grad, -torch.from_numpy(normals).double())) == pytest.approx(2.0, rel=1e-6)


def test_local_sigmas_are_kth_neighbour_distances():
    # points on a line with spacing 0.1: the 2nd neighbour of an inner point is 0.1 away, of an end 0.2
    points = np.stack([np.arange(6) * 0.1, np.zeros(6), np.zeros(6)], axis=1)
    np.testing.assert_allclose(local_sigmas(points, 2), [0.2, 0.1, 0.1, 0.1, 0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(local_sigmas(points, 1), [0.1] * 6, rtol=1e-6)
    with pytest.raises(ValueError, match="N > k"):
        local_sigmas(points, 6)


def test_eikonal_points_follow_their_sigmas():
    centres = torch.zeros(20_000, 3)
    sigmas = torch.full((20_000,), 0.02)
    sigmas[10_000:] = 0.2
    x = eikonal_points(centres, sigmas, 5000, torch.Generator().manual_seed(0), bound=0.5)
    assert x.shape == (25_000, 3)
    assert float(x[:10_000].std()) == pytest.approx(0.02, rel=0.03)
    assert float(x[10_000:20_000].std()) == pytest.approx(0.2, rel=0.03)
    uniform = x[20_000:]
    assert float(uniform.abs().max()) <= 0.5 and float(uniform.std()) == pytest.approx(1 / 3**0.5 * 0.5, rel=0.03)


def _small_config(steps: int, **kw) -> IGRConfig:
    network = FieldConfig(hidden=64, layers=4, skip=(2,), activation="softplus", beta=100.0, radius=0.3)
    return IGRConfig(
        fit=FitConfig(steps=steps, lr=2e-3, log_every=50, checkpoint_every=steps, progress=False),
        network=network,
        batch_size=256,
        n_global=64,
        k_neighbours=10,
        **kw,
    )


def test_geometric_initialisation_starts_near_the_sphere():
    points, _ = _sphere_points(1000, 0.3)
    objective = IGRObjective(points, None, _small_config(1), torch.device("cpu"))
    with torch.no_grad():
        f_surface = objective.network(torch.from_numpy(points))[:, 0]
        f_centre = objective.network(torch.zeros(1, 3))[0, 0]
    assert float(f_surface.abs().mean()) < 0.05
    assert float(f_centre) < -0.15


@pytest.mark.parametrize("use_normals", [False, True])
def test_igr_recovers_a_box_from_its_points(tmp_path, use_normals):
    rng = np.random.default_rng(0)
    half = np.array([0.35, 0.25, 0.15])
    # points on the box surface: project uniform points onto the nearest face
    x = rng.uniform(-1, 1, size=(4000, 3)) * half
    axis = np.argmax(np.abs(x) / half, axis=1)
    rows = np.arange(len(x))
    x[rows, axis] = np.sign(x[rows, axis]) * half[axis]
    normals = np.zeros_like(x)
    normals[rows, axis] = np.sign(x[rows, axis])
    config = _small_config(200, use_normals=use_normals)
    objective = IGRObjective(x.astype(np.float32), normals.astype(np.float32), config, torch.device("cpu"))
    fit(objective, config.fit, tmp_path)
    probe = rng.uniform(-0.5, 0.5, size=(3000, 3)).astype(np.float32)
    truth = box_sdf(probe, tuple(half))
    with torch.no_grad():
        f = objective.network(torch.from_numpy(probe))[:, 0].numpy()
        on = objective.network(torch.from_numpy(x.astype(np.float32)))[:, 0].numpy()
    far = np.abs(truth) > 0.05
    assert np.mean((f[far] < 0) == (truth[far] < 0)) > 0.97
    assert np.mean(np.abs(on)) < 0.015


def test_fit_igr_reads_points_ply(tmp_path):
    from vision3d.dataset import save_point_cloud

    points, normals = _sphere_points(2000, 0.35)
    (tmp_path / "ball").mkdir()
    save_point_cloud(tmp_path / "ball" / "points.ply", points, normals)
    [shape] = fit_igr(tmp_path / "ball", tmp_path / "run", _small_config(60)).shapes
    assert shape.name == "ball"
    values = shape.sdf(np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=np.float32))
    assert values[0] < 0 < values[1]
    assert (tmp_path / "run" / "metrics.csv").exists()


def test_input_checks():
    points, _ = _sphere_points(100, 0.3)
    with pytest.raises(ValueError, match="no normals"):
        IGRObjective(points, None, _small_config(1, use_normals=True), torch.device("cpu"))
    with pytest.raises(ValueError, match="points must have shape"):
        IGRObjective(points[:, :2], None, _small_config(1), torch.device("cpu"))
    with pytest.raises(ValueError, match="latent_dim"):
        IGRConfig(network=dataclasses.replace(FieldConfig(), latent_dim=4))


@pytest.mark.slow
def test_igr_on_the_torus_from_points_alone_meets_the_quality_targets(tmp_path, measured):
    from vision3d.dataset import export_dataset, load_mesh
    from vision3d.extraction import extract_mesh
    from vision3d.metrics import evaluate_mesh

    data = export_dataset("torus", tmp_path / "torus", views=1, val_views=1, test_views=1, size=16)
    config = IGRConfig()  # the default configuration: no normals
    assert not config.use_normals
    [shape] = fit_igr(data, tmp_path / "run", config).shapes
    metrics = evaluate_mesh(extract_mesh(shape.sdf, resolution=128), load_mesh(data / "mesh.ply"))
    measured(f"Chamfer-L1 {metrics.chamfer_l1:.4f}, normal consistency {metrics.normal_consistency:.3f}")
    assert metrics.chamfer_l1 <= 0.01
    assert metrics.normal_consistency >= 0.90
