import dataclasses
import math

import numpy as np
import pytest
import torch

from generative.training import FitConfig, fit
from vision3d import SCENE_BOUND
from vision3d.fields import FieldConfig
from vision3d.occupancy import OccupancyConfig, OccupancyObjective, fit_occupancy, logit, occupancy_loss
from vision3d.sdf import box_sdf, sphere_sdf


def test_loss_is_the_binary_cross_entropy_of_the_notes():
    logits = torch.tensor([-3.0, -0.2, 0.0, 0.7, 4.0], dtype=torch.float64)
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    f = 1.0 / (1.0 + torch.exp(-logits))
    expected = -(labels * torch.log(f) + (1 - labels) * torch.log(1 - f)).sum() / len(f)
    torch.testing.assert_close(occupancy_loss(logits, labels), expected)
    # stable where the probability saturates: log(1 - sigmoid(50)) would be -inf in floating point
    big = occupancy_loss(torch.tensor([50.0]), torch.tensor([0.0]))
    assert math.isclose(float(big), 50.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        occupancy_loss(logits, labels[:3])


def test_logit_threshold():
    assert logit(0.5) == 0.0
    assert math.isclose(1.0 / (1.0 + math.exp(-logit(0.8))), 0.8)
    with pytest.raises(ValueError, match="tau"):
        OccupancyConfig(tau=1.0)


def _labelled(sdf, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-SCENE_BOUND, SCENE_BOUND, size=(n, 3)).astype(np.float32)
    return points, sdf(points) < 0


def _small_config(steps: int = 300, **kw) -> OccupancyConfig:
    network = FieldConfig(
        hidden=64, layers=3, skip=(), latent_dim=8, activation="relu", geometric_init=False, fourier_levels=2
    )
    return OccupancyConfig(
        fit=FitConfig(steps=steps, lr=3e-3, log_every=100, checkpoint_every=steps, progress=False),
        network=network,
        **{"batch_size": 1024, **kw},
    )


def test_one_network_learns_two_shapes_with_their_codes(tmp_path):
    shapes = [lambda x: sphere_sdf(x, 0.35), lambda x: box_sdf(x, (0.45, 0.25, 0.15))]
    train = [_labelled(s, 20_000, seed=k) for k, s in enumerate(shapes)]
    objective = OccupancyObjective([p for p, _ in train], [o for _, o in train], _small_config(), torch.device("cpu"))
    fit(objective, objective.config.fit, tmp_path)
    fitted = objective.fitted(["sphere", "box"])
    held_out = [_labelled(s, 5_000, seed=10 + k) for k, s in enumerate(shapes)]
    for shape, (points, occupancy) in zip(fitted, held_out):
        inside = shape.sdf(points) < 0  # the sdf is negative inside
        assert np.mean(inside == occupancy) > 0.95, shape.name
    # the code selects the shape: where the box and the sphere disagree, the box's code is right
    # and the sphere's code is wrong
    points, occupancy = held_out[1]
    disagree = (shapes[0](points) < 0) != occupancy
    assert disagree.mean() > 0.05
    assert np.mean(((fitted[1].sdf(points) < 0) == occupancy)[disagree]) > 0.8
    assert np.mean(((fitted[0].sdf(points) < 0) == occupancy)[disagree]) < 0.2


def test_sdf_is_minus_the_logit_offset_by_tau(tmp_path):
    points, occupancy = _labelled(lambda x: sphere_sdf(x, 0.3), 2000, seed=0)
    config = _small_config(steps=5, tau=0.8)
    objective = OccupancyObjective([points], [occupancy], config, torch.device("cpu"))
    fit(objective, config.fit, tmp_path)
    x = points[:50]
    with torch.no_grad():
        logits = objective.logits(torch.from_numpy(x), 0).numpy()
    np.testing.assert_allclose(objective.fitted(["s"])[0].sdf(x), -(logits - logit(0.8)), rtol=1e-5, atol=1e-6)


def test_fit_occupancy_reads_data_folders_and_names_shapes(tmp_path):
    for name, radius in (("small", 0.2), ("large", 0.4)):
        points, occupancy = _labelled(lambda x, r=radius: sphere_sdf(x, r), 4000, seed=1)
        (tmp_path / name).mkdir()
        np.savez(
            tmp_path / name / "samples.npz",
            points=points,
            occupancy=occupancy,
            sdf=sphere_sdf(points, radius).astype(np.float32),
        )
    config = _small_config(steps=150)
    shapes = fit_occupancy([tmp_path / "small", tmp_path / "large"], tmp_path / "run", config).shapes
    assert [s.name for s in shapes] == ["small", "large"]
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "metrics.csv").exists()
    probe = np.array([[0.3, 0.0, 0.0]], dtype=np.float32)  # outside the small sphere, inside the large one
    assert shapes[0].sdf(probe)[0] > 0 > shapes[1].sdf(probe)[0]
    with pytest.raises(ValueError, match="missing"):
        fit_occupancy(tmp_path / "nowhere", tmp_path / "run2", config)


def test_input_checks():
    with pytest.raises(ValueError, match="points must be"):
        OccupancyObjective([np.zeros((5, 2))], [np.zeros(5, bool)], _small_config(), torch.device("cpu"))
    with pytest.raises(ValueError, match="same, non-zero number"):
        OccupancyObjective([], [], _small_config(), torch.device("cpu"))
    with pytest.raises(ValueError, match="latent_dim"):
        OccupancyConfig(network=dataclasses.replace(FieldConfig(), latent_dim=0))


@pytest.mark.slow
def test_occupancy_on_the_torus_meets_the_quality_targets(tmp_path, measured):
    from vision3d.dataset import export_dataset, load_mesh
    from vision3d.extraction import extract_mesh
    from vision3d.metrics import evaluate_mesh

    data = export_dataset("torus", tmp_path / "torus", views=1, val_views=1, test_views=1, size=16)
    [shape] = fit_occupancy(data, tmp_path / "run", OccupancyConfig()).shapes  # the default configuration
    metrics = evaluate_mesh(extract_mesh(shape.sdf, resolution=128), load_mesh(data / "mesh.ply"))
    measured(f"IoU {metrics.iou:.3f}, Chamfer-L1 {metrics.chamfer_l1:.4f}")
    assert metrics.iou is not None and metrics.iou >= 0.90
    assert metrics.chamfer_l1 <= 0.01
