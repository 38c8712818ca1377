import numpy as np
import pytest
import torch

from generative.training import FitConfig, fit
from vision3d import SCENE_BOUND
from vision3d.deepsdf import (
    DeepSDFConfig,
    DeepSDFObjective,
    clamped_l1,
    code_regularisation,
    fit_code,
    fit_deepsdf,
    fit_deepsdf_model,
    interpolate,
)
from vision3d.fields import FieldConfig
from vision3d.sdf import sphere_sdf


def test_clamped_l1_formula():
    pred = torch.tensor([0.05, 0.3, -0.5, 0.0, -0.02])
    target = torch.tensor([0.0, 0.2, 0.05, -0.3, -0.02])
    delta = 0.1
    # by hand: |0.05-0| + |0.1-0.1| + |-0.1-0.05| + |0-(-0.1)| + 0
    expected = (0.05 + 0.0 + 0.15 + 0.1 + 0.0) / 5
    assert float(clamped_l1(pred, target, delta)) == pytest.approx(expected, rel=1e-6)
    # beyond delta on the same side, the loss and its gradient vanish
    p = torch.tensor([0.5], requires_grad=True)
    loss = clamped_l1(p, torch.tensor([0.9]), delta)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(p.grad) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        clamped_l1(pred, target[:2])


def test_code_regularisation_formula():
    z = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    # (1/sigma^2) * mean_k ||z_k||^2 with 1/sigma^2 = 0.5: 0.5 * (5 + 9) / 2
    assert float(code_regularisation(z, 0.5)) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="shape"):
        code_regularisation(z[0], 0.5)


def _samples(radius: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    uniform = rng.uniform(-SCENE_BOUND, SCENE_BOUND, size=(n // 2, 3))
    directions = rng.normal(size=(n - n // 2, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    near = directions * (radius + rng.normal(0.0, 0.03, size=(len(directions), 1)))
    points = np.concatenate([uniform, near]).astype(np.float32)
    return points, sphere_sdf(points, radius).astype(np.float32)


def _config(steps: int = 300, schedule: str = "cosine") -> DeepSDFConfig:
    network = FieldConfig(
        hidden=64, layers=4, skip=(2,), latent_dim=8, activation="relu", geometric_init=True, radius=0.3
    )
    return DeepSDFConfig(
        fit=FitConfig(steps=steps, lr=2e-3, schedule=schedule, log_every=100, checkpoint_every=steps, progress=False),
        network=network,
        batch_size=1536,
        code_lr=1e-2,
        infer_steps=150,
        infer_lr=2e-2,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    radii = (0.15, 0.3, 0.45)
    data = [_samples(r, 8000, seed=k) for k, r in enumerate(radii)]
    config = _config()
    objective = DeepSDFObjective([p for p, _ in data], [s for _, s in data], config, torch.device("cpu"))
    fit(objective, config.fit, tmp_path_factory.mktemp("deepsdf"))
    return objective, config, radii


def _clamped_error(decoder, z, radius: float) -> float:
    points, sdf = _samples(radius, 4000, seed=99)
    with torch.no_grad():
        pred = decoder(torch.from_numpy(points), z)[:, 0]
    return float(clamped_l1(pred, torch.from_numpy(sdf)))


def test_auto_decoder_fits_every_training_shape(trained):
    objective, _, radii = trained
    decoder = objective.decoder
    for k, radius in enumerate(radii):
        own = _clamped_error(decoder.field, decoder.codes.weight[k].detach(), radius)
        assert own < 0.01, (radius, own)


def test_fit_code_leaves_the_decoder_unchanged_and_beats_the_zero_and_mean_codes(trained):
    objective, config, _ = trained
    decoder = objective.decoder.field
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    points, sdf = _samples(0.4, 6000, seed=7)  # a new shape between the training spheres, not their mean
    z = fit_code(decoder, points, sdf, config)
    for key, value in decoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in decoder.parameters())
    assert z.shape == (8,)
    fitted = _clamped_error(decoder, z, 0.4)
    zero = _clamped_error(decoder, torch.zeros(8), 0.4)
    mean = _clamped_error(decoder, objective.decoder.codes.weight.detach().mean(dim=0), 0.4)
    assert fitted < 0.5 * min(zero, mean) and fitted < 0.01


def test_interpolation_moves_between_codes(trained):
    objective, _, _ = trained
    codes = objective.decoder.codes.weight.detach()
    field = objective.decoder.field
    probe = np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]], dtype=np.float32)
    start = interpolate(field, codes[0], codes[2], 0.0)(probe)
    end = interpolate(field, codes[0], codes[2], 1.0)(probe)
    with torch.no_grad():
        np.testing.assert_allclose(start, field(torch.from_numpy(probe), codes[0])[:, 0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(end, field(torch.from_numpy(probe), codes[2])[:, 0].numpy(), rtol=1e-6)
    # the point at radius 0.3 is outside the small sphere and inside the large one
    assert start[1] > 0 > end[1]
    with pytest.raises(ValueError, match="z_a and z_b"):
        interpolate(field, codes[0], codes[:2], 0.5)


def test_fit_deepsdf_reads_folders_and_resumes(tmp_path):
    for name, radius in (("a", 0.2), ("b", 0.4)):
        points, sdf = _samples(radius, 3000, seed=3)
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "samples.npz", points=points, occupancy=sdf < 0, sdf=sdf)
    folders = [tmp_path / "a", tmp_path / "b"]
    model = fit_deepsdf_model(folders, tmp_path / "run", _config(steps=20, schedule="constant"))
    assert model.names == ["a", "b"] and [s.name for s in model.shapes()] == ["a", "b"]
    fit_deepsdf_model(folders, tmp_path / "split", _config(steps=10, schedule="constant"))
    split = fit_deepsdf_model(folders, tmp_path / "split", _config(steps=20, schedule="constant"), resume=True)
    for key, value in model.decoder.state_dict().items():
        torch.testing.assert_close(split.decoder.state_dict()[key], value, rtol=0, atol=0)


def test_config_checks():
    with pytest.raises(ValueError, match="latent_dim"):
        DeepSDFConfig(network=FieldConfig(latent_dim=0))
    with pytest.raises(ValueError, match="delta"):
        DeepSDFConfig(delta=0.0)


@pytest.mark.slow
def test_deepsdf_on_four_shapes_meets_the_quality_targets(tmp_path, measured):
    from vision3d.dataset import export_dataset, load_mesh
    from vision3d.extraction import extract_mesh
    from vision3d.metrics import evaluate_mesh

    names = ["sphere", "torus", "box", "capsule"]
    folders = [export_dataset(name, tmp_path / name, views=1, val_views=1, test_views=1, size=16) for name in names]
    shapes = fit_deepsdf(folders, tmp_path / "run", DeepSDFConfig()).shapes  # the default configuration
    assert [s.name for s in shapes] == names
    for shape, folder in zip(shapes, folders):
        metrics = evaluate_mesh(extract_mesh(shape.sdf, resolution=128), load_mesh(folder / "mesh.ply"))
        measured(f"{shape.name}: Chamfer-L1 {metrics.chamfer_l1:.4f}, IoU {metrics.iou or float('nan'):.3f}")
        assert metrics.chamfer_l1 <= 0.015, (shape.name, metrics)
