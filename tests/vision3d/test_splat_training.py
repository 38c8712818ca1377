"""Training of 3D Gaussian splats (vision3d.splat_training): density control, schedules, fit, resume."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from generative.training import FitConfig
from vision3d.dataset import export_dataset
from vision3d.gaussians import Gaussians, covariance_3d, rgb_to_sh0
from vision3d.splat_ply import read_splat_ply
from vision3d.splat_training import (
    SPLIT_SCALE,
    GaussianState,
    SplatConfig,
    active_sh_degree,
    densify_and_prune,
    evaluate_gaussians,
    fit_gaussians,
    initial_gaussians,
    means_lr,
    reset_opacity,
    ssim,
    ssim_map,
)


def scene(log_scales, opacities) -> Gaussians:
    n = len(log_scales)
    q = torch.tensor([[0.9, 0.1, -0.3, 0.2]]).expand(n, 4).clone()
    sh = torch.randn(n, 4, 3, generator=torch.Generator().manual_seed(1))
    means = torch.arange(3 * n, dtype=torch.float32).reshape(n, 3) * 0.1
    logits = torch.logit(torch.tensor(opacities, dtype=torch.float32))
    return Gaussians(means, torch.tensor(log_scales, dtype=torch.float32), q, logits, sh)


CONFIG = SplatConfig(grad_threshold=1e-3, percent_dense=0.01, eps_alpha=0.005)
EXTENT = 2.0  # clone/split boundary: largest scale 0.02


def test_small_gaussian_with_large_gradient_is_cloned_unchanged():
    g = scene([[math.log(0.01)] * 3, [math.log(0.01)] * 3], [0.5, 0.5])
    out = densify_and_prune(g, torch.tensor([0.02, 0.0]), torch.tensor([10.0, 10.0]), CONFIG, EXTENT)
    assert (out.cloned, out.split, out.pruned) == (1, 0, 0) and len(out.gaussians) == 3
    assert out.parent.tolist() == [0, 1, 0] and out.fresh.tolist() == [False, False, True]
    for name in ("means", "log_scales", "quaternions", "opacity_logits", "sh"):
        assert torch.equal(getattr(out.gaussians, name)[2], getattr(g, name)[0])
        assert torch.equal(getattr(out.gaussians, name)[:2], getattr(g, name))
    # the mean gradient decides: the same sum over 30 views is below the threshold
    out = densify_and_prune(g, torch.tensor([0.02, 0.0]), torch.tensor([30.0, 10.0]), CONFIG, EXTENT)
    assert len(out.gaussians) == 2 and out.cloned == 0


def test_large_gaussian_is_split_into_two_samples_inside_it():
    g = scene([[math.log(0.3), math.log(0.1), math.log(0.05)], [math.log(0.01)] * 3], [0.5, 0.7])
    out = densify_and_prune(g, torch.tensor([0.01, 0.0]), torch.tensor([1.0, 1.0]), CONFIG, EXTENT,
                            torch.Generator().manual_seed(0))
    assert (out.cloned, out.split, out.pruned) == (0, 1, 0) and len(out.gaussians) == 3
    assert out.parent.tolist() == [1, 0, 0] and out.fresh.tolist() == [False, True, True]
    children = out.gaussians.means[1:]
    assert not torch.equal(children[0], children[1])
    torch.testing.assert_close(out.gaussians.log_scales[1:], (g.log_scales[0] - math.log(SPLIT_SCALE)).expand(2, 3))
    for name in ("quaternions", "opacity_logits", "sh"):
        assert torch.equal(getattr(out.gaussians, name)[1:], getattr(g, name)[[0, 0]])
    # the children lie in the parent's 3-sigma ellipsoid (Mahalanobis distance), seeded
    delta = children - g.means[0]
    inv = torch.linalg.inv(covariance_3d(g.log_scales[:1], g.quaternions[:1])[0].double())
    mahalanobis = torch.einsum("ni,ij,nj->n", delta.double(), inv, delta.double()).sqrt()
    assert (mahalanobis < 3.0).all() and (mahalanobis > 0.0).all()
    # over many draws the children are samples of N(mu, Sigma): mean squared Mahalanobis distance 3
    many = scene([[math.log(0.3), math.log(0.1), math.log(0.05)]] * 2000, [0.5] * 2000)
    many = Gaussians(torch.zeros(2000, 3), many.log_scales, many.quaternions, many.opacity_logits, many.sh)
    out = densify_and_prune(many, torch.ones(2000), torch.ones(2000), CONFIG, EXTENT, torch.Generator().manual_seed(0))
    d2 = torch.einsum("ni,ij,nj->n", out.gaussians.means.double(), inv, out.gaussians.means.double())
    assert len(out.gaussians) == 4000 and abs(float(d2.mean()) - 3.0) < 0.1


def test_low_opacity_and_oversized_gaussians_are_pruned():
    g = scene([[math.log(0.01)] * 3, [math.log(0.01)] * 3, [math.log(0.5)] * 3], [0.004, 0.006, 0.9])
    zeros = torch.zeros(3)
    out = densify_and_prune(g, zeros, zeros, CONFIG, EXTENT)
    assert out.pruned == 1 and out.parent.tolist() == [1, 2] and not out.fresh.any()
    # with the size test, the Gaussian larger than max_world_size * extent = 0.2 goes too
    out = densify_and_prune(g, zeros, zeros, CONFIG, EXTENT, max_radii=torch.zeros(3))
    assert out.pruned == 2 and out.parent.tolist() == [1]
    # and one whose screen radius exceeded max_screen_size * size = 6.4 px
    out = densify_and_prune(g, zeros, zeros, CONFIG, EXTENT, max_radii=torch.tensor([0.0, 7.0, 0.0]))
    assert out.parent.tolist() == []


def test_max_gaussians_keeps_the_largest_gradients():
    g = scene([[math.log(0.01)] * 3] * 4, [0.5] * 4)
    config = dataclasses.replace(CONFIG, max_gaussians=6)
    out = densify_and_prune(g, torch.tensor([0.01, 0.05, 0.002, 0.03]), torch.ones(4), config, EXTENT)
    assert out.cloned == 2 and out.parent.tolist() == [0, 1, 2, 3, 1, 3]


def test_adam_moments_follow_the_index_map():
    g = scene([[math.log(0.3)] * 3, [math.log(0.01)] * 3, [math.log(0.01)] * 3], [0.5, 0.5, 0.001])
    state = GaussianState.from_gaussians(g)
    for k, m in state.exp_avg.items():
        m.copy_(torch.arange(3, dtype=m.dtype).reshape(-1, *[1] * (m.ndim - 1)) + 1)
        state.exp_avg_sq[k].copy_(10 * state.exp_avg[k])
    state.adam_step = 7
    out = densify_and_prune(g, torch.tensor([1.0, 1.0, 0.0]), torch.ones(3), CONFIG, EXTENT,
                            torch.Generator().manual_seed(0))
    assert out.parent.tolist() == [1, 1, 0, 0]  # Gaussian 1 and its clone, then the two children of 0; 2 pruned
    new = state.remap(out.gaussians, out.parent, out.fresh)
    assert len(new) == 4 and new.adam_step == 7
    for k in new.exp_avg:
        assert new.exp_avg[k].shape[0] == 4 and new.params[k].requires_grad
        assert (new.exp_avg[k][0] == 2).all() and (new.exp_avg_sq[k][0] == 20).all()  # old row 1 kept its moments
        assert (new.exp_avg[k][1:] == 0).all() and (new.exp_avg_sq[k][1:] == 0).all()  # new ones start at zero
    torch.testing.assert_close(new.gaussians().sh, out.gaussians.sh)


def test_adam_step_matches_torch_adam():
    g = scene([[math.log(0.1)] * 3] * 5, [0.5] * 5)
    state = GaussianState.from_gaussians(g)
    reference = {k: v.detach().clone().requires_grad_(True) for k, v in state.params.items()}
    optim = torch.optim.Adam([{"params": [v], "lr": 0.01 * (i + 1)} for i, v in enumerate(reference.values())],
                             eps=1e-15)
    for _ in range(3):
        for params in (state.params, reference):
            loss = sum((v**3).sum() for v in params.values())
            loss.backward()
        state.adam({k: 0.01 * (i + 1) for i, k in enumerate(state.params)})
        optim.step()
        optim.zero_grad()
    for k in state.params:
        torch.testing.assert_close(state.params[k], reference[k])


def test_reset_opacity_lowers_to_the_value_and_keeps_gradients():
    logits = torch.logit(torch.tensor([0.9, 0.5, 0.005]))
    reset = reset_opacity(logits, 0.01)
    torch.testing.assert_close(torch.sigmoid(reset), torch.tensor([0.01, 0.01, 0.005]))
    assert torch.isfinite(reset).all()
    x = reset.clone().requires_grad_(True)
    torch.sigmoid(x).sum().backward()
    assert (x.grad > 0).all()  # what an opacity of exactly zero (logit -inf) would not give


def test_schedules():
    config = SplatConfig(sh_degree=3, sh_interval=1000, fit=FitConfig(steps=3000))
    degrees = [active_sh_degree(s, config) for s in (0, 998, 999, 1998, 1999, 2999, 10_000)]
    assert degrees == [0, 0, 1, 1, 2, 3, 3]
    assert active_sh_degree(10_000, dataclasses.replace(config, sh_degree=1)) == 1
    assert means_lr(0, config, 2.0) == pytest.approx(3.2e-4)
    assert means_lr(3000, config, 2.0) == pytest.approx(3.2e-6)
    assert means_lr(1500, config, 2.0) == pytest.approx(3.2e-5)  # log-linear: the geometric mean halfway


def test_ssim_map_equals_scikit_image_away_from_the_border():
    """The loss's SSIM (zero padding, the 3DGS code's) and the metric's (scikit-image, what metrics.json reports)
    are one formula: on the pixels the 11x11 window sees without padding, their means agree to float64 round-off."""
    from vision3d.appearance import ssim as skimage_ssim

    g = torch.Generator().manual_seed(3)
    image = torch.rand(40, 36, 3, generator=g, dtype=torch.float64)
    target = (0.7 * image + 0.3 * torch.rand(40, 36, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    interior = ssim_map(image, target)[:, 5:-5, 5:-5].mean().item()
    assert interior == pytest.approx(skimage_ssim(image.numpy(), target.numpy()), abs=1e-12)
    assert abs(ssim(image, target).item() - interior) > 1e-4  # the border (zero padding) makes the loss's differ


def test_ssim():
    image = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0))
    assert float(ssim(image, image)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim(image, 1 - image)) < 0.0
    assert float(ssim(image, (image + 0.05).clamp(0, 1))) > 0.9


# --- fitting ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphere_data(tmp_path_factory):
    return export_dataset("sphere", tmp_path_factory.mktemp("splat") / "sphere", views=8, size=16, test_views=2,
                          val_views=1, n_uniform=100, n_surface=100, n_points=300)


def tiny_config(steps: int = 300) -> SplatConfig:
    return SplatConfig(fit=FitConfig(steps=steps, schedule="constant", log_every=50, checkpoint_every=100,
                                     progress=False), size=16, n_init=200, sh_degree=1, sh_interval=100,
                       densify_from=100, densify_until=250, densify_interval=50, opacity_reset_interval=200,
                       means_decay_steps=300)


def test_initial_gaussians_sit_on_the_point_cloud(sphere_data):
    g = initial_gaussians(sphere_data, tiny_config(), torch.device("cpu"))
    assert len(g) == 200 and g.sh.shape == (200, 4, 3)
    torch.testing.assert_close(g.means.norm(dim=1), torch.full((200,), 0.5), atol=0.02, rtol=0)
    torch.testing.assert_close(g.opacities(), torch.full((200,), 0.1))
    torch.testing.assert_close(g.sh[:, 0], rgb_to_sh0(torch.full((200, 3), 0.5)))
    assert (g.sh[:, 1:] == 0).all() and (g.log_scales < math.log(0.2)).all()
    random = initial_gaussians(sphere_data, dataclasses.replace(tiny_config(), init="random"), torch.device("cpu"))
    assert len(random) == 200 and random.means.abs().max() <= 0.55


def test_fit_raises_the_training_psnr_and_writes_the_ply(sphere_data, tmp_path):
    config = tiny_config()
    before = evaluate_gaussians(initial_gaussians(sphere_data, config, torch.device("cpu")), sphere_data, config,
                                "train")
    fitted = fit_gaussians(sphere_data, tmp_path / "run", config)
    after = evaluate_gaussians(fitted.gaussians, sphere_data, config, "train")
    # measured: 9.7 dB before, 16.0 dB after (train), 13.3 dB on the test views; 200 -> 653 Gaussians
    assert after.views == 8 and after.psnr > before.psnr + 4.0
    assert evaluate_gaussians(fitted.ply, sphere_data, config).psnr > before.psnr + 2.0
    assert len(fitted.gaussians) > 200  # densification added Gaussians
    assert fitted.result.rows[-1]["train_psnr"] == pytest.approx(after.psnr, abs=1e-4)
    arrays = read_splat_ply(tmp_path / "run" / "point_cloud.ply")
    assert len(arrays.means) == len(fitted.gaussians) == fitted.result.rows[-1]["n_gaussians"]
    np.testing.assert_array_equal(arrays.sh, fitted.gaussians.sh.numpy())
    assert (tmp_path / "run" / "splat_config.json").exists()


def test_resume_equals_an_uninterrupted_run(sphere_data, tmp_path):
    # 300 steps straight vs 200 + resume to 300: at the checkpoint of step 200, densification (steps 150 and
    # 200) has changed the number of Gaussians and the opacities were just reset; the run carries on bit for bit.
    straight = fit_gaussians(sphere_data, tmp_path / "a", tiny_config(300))
    fit_gaussians(sphere_data, tmp_path / "b", tiny_config(200))
    resumed = fit_gaussians(sphere_data, tmp_path / "b", tiny_config(300), resume=True)

    def rows(result):  # the first run's last row also holds its final evaluation: compare the shared keys
        return [{k: v for k, v in row.items() if k != "seconds" and k in want} for row, want in
                zip(result.rows, [r.keys() for r in straight.result.rows])]

    assert len(resumed.result.rows) == len(straight.result.rows) == 6
    assert rows(resumed.result) == rows(straight.result)
    assert resumed.result.losses == straight.result.losses
    assert torch.equal(resumed.gaussians.means, straight.gaussians.means) and len(straight.gaussians) > 200


def test_the_dilation_is_the_configs_in_training_and_in_renders(sphere_data):
    """Every render of a fit (training loss, render_views, evaluate_gaussians) adds ``config.dilation`` to the 2D
    covariances, not the library's default, so a scene is scored as it was trained."""
    from vision3d.splat_training import render_views, training_views
    from vision3d.splatting import render

    config = tiny_config()
    g = initial_gaussians(sphere_data, config, torch.device("cpu"))
    views = training_views(sphere_data, config, torch.device("cpu"))
    background = torch.tensor(config.background)
    for dilation in (0.02, 0.3):
        c = dataclasses.replace(config, dilation=dilation)
        expected = render(g, views.poses[0], views.intrinsics, background, tile=c.tile, dilation=dilation).image
        np.testing.assert_array_equal(render_views(g, views.poses[:1], views.intrinsics, c)[0], expected.numpy())
    sharp, soft = (render_views(g, views.poses[:1], views.intrinsics, dataclasses.replace(config, dilation=d))
                   for d in (0.02, 0.3))
    assert np.abs(sharp - soft).max() > 0.02  # the two really differ (measured 0.04 at the initial opacity 0.1)
    with pytest.raises(ValueError, match="dilation must be >= 0"):
        SplatConfig(dilation=-0.1)
