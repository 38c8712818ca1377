"""DVR (notes §12.3): loss terms, rendering of an analytic field, gradient flow, a small fit."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from generative.training import FitConfig, fit
from vision3d.camera import Intrinsics, image_rays, pixel_rays, sphere_poses
from vision3d.dataset import export_dataset, load_mesh
from vision3d.dvr import (
    DVRConfig,
    DVRModel,
    DVRObjective,
    dvr_losses,
    evaluate_dvr,
    fit_dvr,
    freespace_loss,
    load_dvr,
    occupied_loss,
    photometric_loss,
    render_field,
)
from vision3d.extraction import extract_mesh
from vision3d.fields import FieldConfig
from vision3d.metrics import evaluate_mesh, psnr, silhouette_iou
from vision3d.surface import find_surface


class AnalyticEllipsoid:
    """Occupancy logits ``s (1 - ||p / axes||)`` and a colour that varies with position."""

    tau_logit = 0.0

    def __init__(self, axes=(0.3, 0.3, 0.3), scale=20.0):
        self.axes = torch.tensor(axes)
        self.scale = scale

    def logits(self, p):
        return self.scale * (1.0 - torch.linalg.norm(p / self.axes.to(p), dim=-1))

    def color(self, p):
        return (0.5 + p).clamp(0.0, 1.0)


def tiny_config(steps=1, lr=1e-2, radius=0.35, texture_fourier=2, **overrides):
    return DVRConfig(
        fit=FitConfig(steps=steps, lr=lr, device="cpu", progress=False, checkpoint_every=5),
        occupancy=FieldConfig(hidden=32, layers=3, skip=(), activation="relu", radius=radius),
        texture=FieldConfig(hidden=32, layers=2, skip=(), out_dim=3, activation="relu", geometric_init=False,
                            fourier_levels=texture_fourier),
        **{"rays": 256, "n_steps": 32, "n_secant": 6, **overrides},
    )


# --- pure loss functions -------------------------------------------------------------------------------


def test_loss_terms_closed_forms():
    rgb = torch.tensor([[0.2, 0.5, 1.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.1, 0.7, 1.0], [1.0, 0.5, 0.25]])
    assert float(photometric_loss(rgb, target, n_rays=4)) == pytest.approx((0.1 + 0.2 + 0.0 + 1.0 + 0.5 + 0.25) / 4)
    zeros = torch.zeros(3)
    assert float(freespace_loss(zeros, n_rays=6)) == pytest.approx(3 * math.log(2) / 6)
    logits = torch.tensor([-3.0, 0.5, 4.0])
    expected_free = -torch.log(1 - torch.sigmoid(logits)).sum() / 5
    expected_occ = -torch.log(torch.sigmoid(logits)).sum() / 5
    torch.testing.assert_close(freespace_loss(logits, 5), expected_free)
    torch.testing.assert_close(occupied_loss(logits, 5), expected_occ)
    assert float(freespace_loss(torch.zeros(0), 5)) == 0.0  # no ray of that kind: no loss
    # Gradient directions: freespace lowers the logit, occupancy raises it.
    x = logits.clone().requires_grad_(True)
    (g_free,) = torch.autograd.grad(freespace_loss(x, 1), x)
    (g_occ,) = torch.autograd.grad(occupied_loss(x, 1), x)
    assert (g_free > 0).all() and (g_occ < 0).all()


def test_silhouette_iou_and_psnr_closed_forms():
    a = np.zeros((2, 4, 4), dtype=bool)
    b = np.zeros((2, 4, 4), dtype=bool)
    a[0, :2] = True  # 8 pixels
    b[0, 1:3] = True  # 8 pixels, 4 shared
    b[1, 0, 0] = True
    assert silhouette_iou(a, b) == pytest.approx(4 / 13)
    assert silhouette_iou(a, a) == 1.0
    assert silhouette_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    with pytest.raises(ValueError, match="pred_masks"):
        silhouette_iou(a, b[:1])
    img = np.zeros((2, 3, 3))
    assert psnr(img + 0.1, img) == pytest.approx(20.0)


# --- rendering ------------------------------------------------------------------------------------------


def test_render_field_matches_ray_sphere_closed_form():
    radius = 0.3
    field = AnalyticEllipsoid((radius,) * 3)
    intr = Intrinsics.from_fov(24, 20, 0.7)
    poses = sphere_poses(2, radius=2.0, seed=3)
    out = render_field(field, intr, poses, n_steps=128, n_secant=10, background=(1.0, 0.0, 1.0))
    assert out.rgb.shape == (2, 20, 24, 3) and out.mask.shape == out.depth.shape == (2, 20, 24)
    o, d = (x.astype(np.float64) for x in image_rays(intr, poses))
    a, b, c = (d * d).sum(-1), (o * d).sum(-1), (o * o).sum(-1) - radius**2
    disc = b * b - a * c
    chord = 2 * np.sqrt(np.maximum(disc, 0)) / a * np.sqrt(a)  # length of the ray inside the sphere
    clear = (disc < 0) | (chord > 0.05)  # skip grazing rays shorter than the coarse step
    assert clear.mean() > 0.9
    analytic_mask = disc > 0
    np.testing.assert_array_equal(out.mask[clear], analytic_mask[clear])
    assert 0.1 < analytic_mask.mean() < 0.9
    hit = out.mask & analytic_mask
    depth = (-b - np.sqrt(np.maximum(disc, 0))) / a
    np.testing.assert_allclose(out.depth[hit], depth[hit], atol=1e-4)
    assert (out.depth[~out.mask] == 0).all()
    points = o + depth[..., None] * d
    np.testing.assert_allclose(out.rgb[hit], np.clip(0.5 + points[hit], 0, 1), atol=1e-4)
    np.testing.assert_array_equal(out.rgb[~out.mask], np.tile([1.0, 0.0, 1.0], ((~out.mask).sum(), 1)))


# --- gradients --------------------------------------------------------------------------------------------


def test_photometric_loss_reaches_the_occupancy_network_through_the_surface_point():
    torch.manual_seed(0)
    model = DVRModel(tiny_config(texture_fourier=0)).double()
    intr = Intrinsics.from_fov(8, 8, 0.5)
    o, d = (torch.as_tensor(x, dtype=torch.float64).reshape(-1, 3) for x in pixel_rays(intr, sphere_poses(1, seed=1)[0]))
    with torch.no_grad():
        target = torch.rand(o.shape[0], 3, dtype=torch.float64)
    mask = torch.ones(o.shape[0], dtype=torch.bool)
    occ = list(model.occupancy.parameters())

    def photometric(params):
        with torch.no_grad():
            for p, v in zip(occ, params, strict=True):
                p.copy_(v)
        return dvr_losses(model, o, d, target, mask, n_steps=64, n_secant=30).photometric

    base = [p.detach().clone() for p in occ]
    terms = dvr_losses(model, o, d, target, mask, n_steps=64, n_secant=30)
    assert terms.n_photometric > 20  # most rays of the central view hit the initial sphere
    grads = torch.autograd.grad(terms.photometric, occ)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    gen = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in occ]
    eps = 1e-6
    plus = photometric([p + eps * dv for p, dv in zip(base, v, strict=True)])
    minus = photometric([p - eps * dv for p, dv in zip(base, v, strict=True)])
    fd = float((plus - minus).detach()) / (2 * eps)
    analytic = float(sum((g * dv).sum() for g, dv in zip(grads, v, strict=True)))
    assert analytic == pytest.approx(fd, rel=1e-3)


def test_loss_points_freespace_at_the_surface_point_and_no_occupancy_term_for_hits():
    torch.manual_seed(0)
    model = DVRModel(tiny_config())
    c2w = sphere_poses(1, seed=2)[0]
    o, d = (torch.as_tensor(x).reshape(-1, 3) for x in pixel_rays(Intrinsics.from_fov(6, 6, 0.15), c2w))
    rgb = torch.rand(o.shape[0], 3)
    # A narrow view of the initial sphere: every ray hits it.
    empty = dvr_losses(model, o, d, rgb, torch.zeros(o.shape[0], dtype=torch.bool), n_steps=64, n_secant=12)
    assert empty.n_freespace == o.shape[0] and empty.n_photometric == empty.n_occupancy == 0
    # On the surface the occupancy is tau = 0.5, so each mask-0 ray costs -log(1 - 0.5) = log 2.
    assert float(empty.freespace.detach()) == pytest.approx(math.log(2), abs=1e-4)
    assert float(empty.photometric.detach()) == float(empty.occupancy.detach()) == 0.0
    full = dvr_losses(model, o, d, rgb, torch.ones(o.shape[0], dtype=torch.bool), n_steps=64, n_secant=12)
    assert full.n_photometric == o.shape[0] and full.n_freespace == full.n_occupancy == 0
    with torch.no_grad():
        surf_rgb = model.color(o + surface_depths(model, o, d)[:, None] * d)
    assert float(full.photometric.detach()) == pytest.approx(float(photometric_loss(surf_rgb, rgb, o.shape[0])), rel=1e-5)


def surface_depths(model, o, d):
    return find_surface(model.logits, o, d, n_steps=64, n_secant=12, tau=model.tau_logit).depth


# --- a small fit ----------------------------------------------------------------------------------------


def test_dvr_fit_recovers_an_ellipsoid_silhouette(tmp_path):
    """From masks and colours of an analytic ellipsoid, DVR turns its initial sphere into the ellipsoid."""
    torch.manual_seed(0)
    target = AnalyticEllipsoid((0.42, 0.25, 0.18))
    intr = Intrinsics.from_fov(20, 20, 0.65)
    train_poses, test_poses = sphere_poses(16, mode="spiral"), sphere_poses(4, seed=7)
    train = render_field(target, intr, train_poses, n_steps=96)
    test = render_field(target, intr, test_poses, n_steps=96)
    config = tiny_config(steps=200)
    model = DVRModel(config)
    before = silhouette_iou(render_field(model, intr, test_poses, n_steps=64).mask, test.mask)
    o, d = (torch.as_tensor(x).reshape(-1, 3) for x in image_rays(intr, train_poses))
    objective = DVRObjective(model, o, d, torch.as_tensor(train.rgb).reshape(-1, 3),
                             torch.as_tensor(train.mask).reshape(-1), config)
    fit(objective, config.fit, tmp_path)
    after = render_field(model, intr, test_poses, n_steps=64)
    iou = silhouette_iou(after.mask, test.mask)
    assert before < 0.6  # the initial sphere is far from the ellipsoid ...
    assert iou > 0.87  # ... and the fit matches its 20x20 silhouettes up to boundary pixels
    assert psnr(after.rgb, test.rgb) > 15.0


def test_fit_dvr_writes_a_run_that_reloads_and_evaluates(tmp_path):
    data = export_dataset("sphere", tmp_path / "data", views=6, size=24, test_views=3, val_views=1,
                          n_uniform=100, n_surface=100, n_points=100)
    run = tmp_path / "run"
    config = tiny_config(steps=12, rays=128, size=16, max_views=4)
    (shape,) = fit_dvr(data, run, config).shapes
    assert (run / "checkpoint.pt").exists() and (run / "metrics.csv").exists() and (run / "dvr_config.json").exists()
    model = load_dvr(run)
    assert model.config == config
    points = np.random.default_rng(0).uniform(-0.5, 0.5, size=(64, 3)).astype(np.float32)
    with torch.no_grad():
        reloaded = model.sdf(torch.as_tensor(points)).numpy()
    np.testing.assert_allclose(shape.sdf(points), reloaded, atol=1e-6)
    result = evaluate_dvr(run, data)
    assert result.views == 3
    assert 0.0 <= result.silhouette_iou <= 1.0 and result.psnr > 5.0
    assert evaluate_dvr(model, data) == result
    with pytest.raises(ValueError, match="data"):
        fit_dvr(tmp_path / "missing", run, config)
    with pytest.raises(ValueError, match="tau"):
        DVRConfig(tau=1.0)
    with pytest.raises(ValueError, match="out_dim"):
        DVRConfig(texture=FieldConfig(out_dim=1))


def test_fit_dvr_resumes_to_the_same_numbers(tmp_path):
    data = export_dataset("capsule", tmp_path / "data", views=4, size=16, test_views=1, val_views=1,
                          n_uniform=100, n_surface=100, n_points=100)
    points = np.random.default_rng(1).uniform(-0.5, 0.5, size=(64, 3)).astype(np.float32)

    def config(steps):  # a constant learning rate: the first 3 steps do not depend on the total
        c = tiny_config(steps=steps, rays=64)
        return dataclasses.replace(c, fit=dataclasses.replace(c.fit, schedule="constant"))

    (straight,) = fit_dvr(data, tmp_path / "straight", config(8)).shapes
    fit_dvr(data, tmp_path / "resumed", config(3))
    (resumed,) = fit_dvr(data, tmp_path / "resumed", config(8), resume=True).shapes
    np.testing.assert_array_equal(straight.sdf(points), resumed.sdf(points))


@pytest.mark.slow
def test_dvr_reconstructs_the_torus_from_50_views_with_the_default_config(tmp_path, measured):
    """The acceptance check: silhouettes, colours and poses of 50 views at 64x64, no depth, no 3D data."""
    data = export_dataset("torus", tmp_path / "torus", views=100, size=128)
    config = DVRConfig()
    config.fit.progress = False
    # One thread (conftest): about 2 minutes on an idle core; the budget is 10 minutes on 2 cores.
    (shape,) = fit_dvr(data, tmp_path / "run", config).shapes
    evaluation = evaluate_dvr(tmp_path / "run", data)
    metrics = evaluate_mesh(extract_mesh(shape.sdf, resolution=128), load_mesh(data / "mesh.ply"))
    measured(f"test silhouette IoU {evaluation.silhouette_iou:.3f}, Chamfer-L1 {metrics.chamfer_l1:.4f}, "
             f"IoU {metrics.iou or float('nan'):.3f}")
    assert evaluation.silhouette_iou >= 0.90
    assert metrics.chamfer_l1 <= 0.02
