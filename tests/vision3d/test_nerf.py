"""NeRF (notes §12.4): the network's structure, hierarchical rendering of an analytic field, a small fit."""

import csv
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from envs.io.config import dumps, loads
from generative.training import FitConfig
from vision3d.camera import Intrinsics, look_at, pixel_rays
from vision3d.dataset import export_dataset
from vision3d.nerf import (
    NeRFConfig,
    NeRFModel,
    NeRFNetwork,
    cpu_preset,
    evaluate_nerf,
    fit_nerf,
    load_nerf,
    near_far,
    render_image,
    render_rays,
)


def tiny_config(steps=1, lr=5e-3, **overrides):
    fit = FitConfig(steps=steps, lr=lr, device="cpu", progress=False, log_every=1, checkpoint_every=1000)
    options = {"depth": 3, "width": 32, "skip": 1, "levels": 4, "dir_levels": 2, "n_coarse": 16, "n_fine": 16,
               "rays": 256, "size": 16, **overrides}
    return NeRFConfig(fit=fit, **options)


class Ball(nn.Module):
    """A stub field: density ``sigma`` inside the ball of ``radius`` about the origin, 0 outside; colour = direction."""

    def __init__(self, sigma, radius):
        super().__init__()
        self.sigma, self.radius = sigma, radius
        self.anchor = nn.Parameter(torch.zeros(()))  # render_image reads the device from the parameters

    def density(self, points):
        return torch.where(points.norm(dim=-1) < self.radius, self.sigma, 0.0).to(points.dtype)

    def forward(self, points, dirs):
        return self.density(points), 0.5 + 0.5 * dirs


def chord(rays_o, rays_d, radius):  # float64 [R, 3] -> Euclidean length inside the ball and entry/exit t [R]
    a, b, c = (rays_d * rays_d).sum(-1), (rays_o * rays_d).sum(-1), (rays_o * rays_o).sum(-1) - radius**2
    root = np.sqrt(np.maximum(b * b - a * c, 0.0))
    t_in, t_out = (-b - root) / a, (-b + root) / a
    return (t_out - t_in) * np.sqrt(a), t_in, t_out


# --- the network ----------------------------------------------------------------------------------------


def test_density_depends_on_position_only_and_colour_on_direction_too():
    torch.manual_seed(0)
    net = NeRFNetwork(tiny_config())
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, generator=gen) - 0.5
    d1 = nn.functional.normalize(torch.randn(64, 3, generator=gen), dim=-1)
    d2 = nn.functional.normalize(torch.randn(64, 3, generator=gen), dim=-1)
    sigma1, rgb1 = net(x, d1)
    sigma2, rgb2 = net(x, d2)
    assert torch.equal(sigma1, sigma2)  # bit-identical: the direction enters after the density head
    assert (rgb1 - rgb2).abs().max() > 1e-4
    sigma3, _ = net(x + 0.05, d1)
    assert (sigma1 - sigma3).abs().max() > 1e-4
    assert torch.equal(net.density(x), sigma1)
    assert sigma1.shape == (64,) and rgb1.shape == (64, 3)
    assert (rgb1 >= 0).all() and (rgb1 <= 1).all() and (sigma1 >= 0).all()
    # the colour's gradient reaches the direction input, the density's does not exist
    d = d1.clone().requires_grad_(True)
    sigma, rgb = net(x, d)
    assert not sigma.requires_grad or torch.autograd.grad(sigma.sum(), d, allow_unused=True)[0] is None
    assert torch.autograd.grad(rgb.sum(), d)[0].abs().sum() > 0


def test_relu_density_is_non_negative_and_can_be_zero():
    torch.manual_seed(0)
    net = NeRFNetwork(tiny_config(density_activation="relu", density_bias=0.0))
    sigma, rgb = net(torch.rand(256, 3) - 0.5, nn.functional.normalize(torch.randn(256, 3), dim=-1))
    assert (sigma >= 0).all() and (sigma == 0).any()
    assert (rgb >= 0).all() and (rgb <= 1).all()


def test_position_enters_twice_through_the_skip_concatenation():
    paper = NeRFNetwork(NeRFConfig())
    assert len(paper.layers) == 8 and paper.pos_dim == 3 + 6 * 10 and paper.dir_dim == 3 + 6 * 4
    ins = [layer.in_features for layer in paper.layers]
    assert ins == [63, 256, 256, 256, 256, 256 + 63, 256, 256]  # gamma(x) joins the fifth layer's activation
    assert paper.view.in_features == 256 + 27 and paper.view.out_features == 128
    small = NeRFNetwork(tiny_config(depth=4, width=16, skip=2, levels=3))
    assert [layer.in_features for layer in small.layers] == [21, 16, 16, 16 + 21]
    none = NeRFNetwork(tiny_config(skip=None))
    assert all(layer.in_features == 32 for layer in none.layers[1:])
    with pytest.raises(ValueError, match="skip"):
        tiny_config(depth=3, skip=2)


def test_config_round_trips_through_json_and_rejects_bad_values():
    config = tiny_config(background=(0.0, 0.0, 0.0), coarse_only=True)
    assert loads(NeRFConfig, dumps(config)) == config
    assert not config.hierarchical and not tiny_config(n_fine=0).hierarchical and tiny_config().hierarchical
    with pytest.raises(ValueError, match="background"):
        tiny_config(background=(2.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="n_coarse"):
        tiny_config(n_coarse=0)


# --- rendering ------------------------------------------------------------------------------------------


def centre_rays(scale=1.0):
    """Rays from (0, 0, 2) towards the ball at offsets up to 0.2 from its centre, plus one that misses the box."""
    target = np.stack([np.linspace(-0.2, 0.2, 9), np.linspace(0.1, -0.1, 9), np.zeros(9)], axis=1)
    target = np.concatenate([target, [[3.0, 0.0, 0.0]]])
    o = np.tile([0.0, 0.0, 2.0], (len(target), 1))
    d = (target - o) / np.abs(target - o)[:, 2:] * scale  # unit depth component, like pixel_rays
    return torch.as_tensor(o), torch.as_tensor(d)


@pytest.mark.parametrize("perturb", [False, True])
def test_opacity_of_a_constant_density_ball_matches_the_closed_form(perturb):
    sigma, radius = 3.0, 0.3
    ball = Ball(sigma, radius)
    config = tiny_config(n_coarse=64, n_fine=64)
    o, d = centre_rays()
    near, far, hit = near_far(o, d, config.bound)
    gen = torch.Generator().manual_seed(0)
    out = render_rays(ball, ball, o, d, near, far, config, gen, perturb, hit)
    length, _, _ = chord(o.numpy(), d.numpy(), radius)
    expected = 1.0 - np.exp(-sigma * length)
    assert 0.6 < expected[:9].min() and expected[9] == 0.0
    np.testing.assert_allclose(out.coarse.opacity.numpy(), expected, atol=0.02)
    np.testing.assert_allclose(out.fine.opacity.numpy(), expected, atol=0.01)
    # the ray that misses the box shows the background (white) and nothing else
    np.testing.assert_allclose(out.fine.rgb[9].numpy(), [1.0, 1.0, 1.0])
    # colour: the constant per-ray colour 0.5 + 0.5 d/|d| composited over white
    unit = d / d.norm(dim=-1, keepdim=True)
    colour = torch.as_tensor(expected)[:, None] * (0.5 + 0.5 * unit) + (1 - torch.as_tensor(expected))[:, None]
    torch.testing.assert_close(out.fine.rgb, colour, atol=0.01, rtol=0)
    # the density is per unit of length: scaling the directions changes t, not what is seen
    o2, d2 = centre_rays(scale=2.5)
    near2, far2, hit2 = near_far(o2, d2, config.bound)
    out2 = render_rays(ball, ball, o2, d2, near2, far2, config, None, False, hit2)
    if not perturb:
        torch.testing.assert_close(out2.fine.opacity, out.fine.opacity, atol=1e-6, rtol=0)
        torch.testing.assert_close(out2.fine.depth * 2.5, out.fine.depth, atol=1e-6, rtol=0)


def test_fine_samples_stay_in_near_far_and_gather_where_the_coarse_weights_are():
    radius = 0.12
    ball = Ball(20.0, radius)
    config = tiny_config(n_coarse=32, n_fine=64)
    o, d = centre_rays()
    o, d = o[:9], d[:9]
    near, far, hit = near_far(o, d, config.bound)
    out = render_rays(ball, ball, o, d, near, far, config, torch.Generator().manual_seed(3), True, hit)
    t_fine = out.t_fine
    assert t_fine.shape == (9, 64) and out.fine.weights.shape == (9, 32 + 64)
    assert (t_fine >= near[:, None]).all() and (t_fine <= far[:, None]).all()
    length, t_in, t_out = chord(o.numpy(), d.numpy(), radius)
    rays = length > 0.1  # rays that cross the small ball well inside
    assert rays.sum() >= 3
    spacing = ((far - near) / config.n_coarse).numpy()[:, None]
    inside = (t_fine.numpy() >= t_in[:, None] - spacing) & (t_fine.numpy() <= t_out[:, None] + spacing)
    share_of_chord = ((t_out - t_in + 2 * spacing[:, 0]) / (far - near).numpy())[rays]
    assert share_of_chord.max() < 0.45  # uniform samples would mostly miss the ball ...
    assert inside[rays].mean() > 0.9  # ... the fine ones land on it


def test_coarse_only_renders_one_pass():
    torch.manual_seed(0)
    o, d = centre_rays()
    for config in (tiny_config(coarse_only=True), tiny_config(n_fine=0)):
        model = NeRFModel(config)
        assert model.fine is None
        near, far, hit = near_far(o, d, config.bound)
        out = render_rays(model.coarse, model.fine, o.float(), d.float(), near.float(), far.float(), config, None,
                          True, hit)
        assert out.fine is None and out.t_fine is None and out.final is out.coarse
        assert out.coarse.weights.shape == (10, config.n_coarse)
    # a fine network given with coarse_only is not used
    config = tiny_config(coarse_only=True)
    net = NeRFNetwork(config)
    near, far, hit = near_far(o, d, config.bound)
    assert render_rays(net, net, o.float(), d.float(), near.float(), far.float(), config, None, False).fine is None


def test_render_image_depth_is_the_viewing_axis_depth_of_the_surface():
    radius = 0.3
    model = NeRFModel(tiny_config(n_coarse=64, n_fine=64))
    model.coarse = model.fine = Ball(200.0, radius)
    intr = Intrinsics.from_fov(12, 10, 0.45)
    pose = look_at(np.array([0.4, -1.2, 1.5]))
    image = render_image(model, pose, intr, chunk=37)
    assert image.rgb.shape == (10, 12, 3) and image.depth.shape == image.opacity.shape == (10, 12)
    o, d = (x.reshape(-1, 3).astype(np.float64) for x in pixel_rays(intr, pose))
    length, t_in, _ = chord(o, d, radius)
    opaque, empty = (length > 0.05).reshape(10, 12), (length == 0).reshape(10, 12)
    assert opaque.mean() > 0.3 and empty.mean() > 0.2
    np.testing.assert_allclose(image.opacity[opaque], 1.0, atol=1e-3)
    # Sampling error: where the surface lies in a bin the coarse pass saw as empty, the first sample inside can
    # come up to half a coarse spacing late; the exponential then adds a mean free path 1 / sigma.
    near, far, _ = near_far(torch.as_tensor(o), torch.as_tensor(d), model.config.bound)
    tolerance = 0.5 * float((far - near).max()) / model.config.n_coarse + 2.0 / 200.0
    np.testing.assert_allclose(image.depth[opaque], t_in.reshape(10, 12)[opaque], atol=tolerance)
    assert (image.depth[opaque] >= t_in.reshape(10, 12)[opaque] - 1e-3).all()
    assert (image.opacity[empty] == 0).all() and (image.rgb[empty] == 1).all()


# --- fitting ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphere_data(tmp_path_factory):
    return export_dataset("sphere", tmp_path_factory.mktemp("nerf") / "sphere", views=8, size=16, test_views=2,
                          val_views=1, n_uniform=100, n_surface=100, n_points=100)


def test_fit_nerf_raises_the_training_psnr_and_reloads(sphere_data, tmp_path):
    config = tiny_config(steps=200, lr=1e-2)
    config.fit.log_every = 50
    torch.manual_seed(0)
    before = evaluate_nerf(NeRFModel(config), sphere_data, "train")
    (shape,), model = fit_nerf(sphere_data, tmp_path / "run", config)
    after = evaluate_nerf(model, sphere_data, "train")
    # measured over seeds 0-2: about 7 dB before; 18.1-19.5 dB on the training views after, 15.0-16.1 on the test ones
    assert after.views == 8 and after.psnr > before.psnr + 7.0
    assert evaluate_nerf(model, sphere_data, "test").psnr > before.psnr + 5.0
    reloaded = load_nerf(tmp_path / "run")
    assert reloaded.config == config
    assert evaluate_nerf(tmp_path / "run", sphere_data, "train") == after
    points = np.random.default_rng(0).uniform(-0.5, 0.5, size=(64, 3)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(shape.sdf(points), reloaded.sdf(torch.as_tensor(points)).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="data"):
        fit_nerf(tmp_path / "missing", tmp_path / "run2", config)


def test_fit_nerf_resumes_to_the_same_numbers(sphere_data, tmp_path):
    def config(steps):  # a constant learning rate: the first steps do not depend on the total
        c = tiny_config(steps=steps, rays=64)
        return dataclasses.replace(c, fit=dataclasses.replace(c.fit, schedule="constant"))

    def rows(run):
        with open(run / "metrics.csv") as f:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]

    straight = fit_nerf(sphere_data, tmp_path / "straight", config(8)).model
    fit_nerf(sphere_data, tmp_path / "resumed", config(3))
    resumed = fit_nerf(sphere_data, tmp_path / "resumed", config(8), resume=True).model
    assert len(rows(tmp_path / "straight")) == 8
    assert rows(tmp_path / "straight") == rows(tmp_path / "resumed")
    points = torch.rand(32, 3) - 0.5
    with torch.no_grad():
        assert torch.equal(straight.density(points), resumed.density(points))
    assert all(math.isfinite(float(r["loss"])) for r in rows(tmp_path / "resumed"))


def fast_config(steps=150, **overrides):
    options = {"network": "hash", "occupancy_grid": True, "hash_levels": 4, "hash_table_size": 2**12, "hash_min_res": 4,
               "hash_max_res": 32, "hash_hidden": 16, "grid_resolution": 16, "grid_update_every": 8,
               "march_steps": 48, "grid_warmup": 16, **overrides}
    return tiny_config(steps=steps, lr=1e-2, **options)


def test_the_fast_path_fits_prunes_empty_space_and_reloads_with_its_grid(sphere_data, tmp_path):
    config = fast_config()
    assert not config.hierarchical and loads(NeRFConfig, dumps(config)) == config
    torch.manual_seed(0)
    before = evaluate_nerf(NeRFModel(config), sphere_data, "train")
    _, model = fit_nerf(sphere_data, tmp_path / "run", config)
    assert model.fine is None and model.grid is not None
    after = evaluate_nerf(model, sphere_data, "train")
    # measured over seeds 0-2: about 7 dB before, 15.4-16.4 dB after (test views: 13.5-14.0)
    assert after.psnr > before.psnr + 7.0
    assert not model.grid.mask.all()  # the box corners are empty (the sphere fills most of the box)
    reloaded = load_nerf(tmp_path / "run")
    assert torch.equal(reloaded.grid.mask, model.grid.mask)
    assert evaluate_nerf(tmp_path / "run", sphere_data, "train") == after


def test_the_fast_path_resumes_to_the_same_numbers(sphere_data, tmp_path):
    def config(steps):
        c = fast_config(steps=steps, rays=64)
        return dataclasses.replace(c, fit=dataclasses.replace(c.fit, schedule="constant"))

    straight = fit_nerf(sphere_data, tmp_path / "straight", config(20)).model
    fit_nerf(sphere_data, tmp_path / "resumed", config(10))
    resumed = fit_nerf(sphere_data, tmp_path / "resumed", config(20), resume=True).model
    assert torch.equal(straight.grid.density_ema, resumed.grid.density_ema)
    points = torch.rand(32, 3) - 0.5
    with torch.no_grad():
        assert torch.equal(straight.density(points), resumed.density(points))


def test_cpu_presets_build():
    for kind in ("nerf", "ngp"):
        config = cpu_preset(kind, steps=10)
        assert config.fit.steps == 10 and config.fit.device == "cpu"
        NeRFModel(config)
    assert cpu_preset("ngp").occupancy_grid and cpu_preset("ngp").network == "hash"
    with pytest.raises(ValueError, match="kind"):
        cpu_preset("mesh")
