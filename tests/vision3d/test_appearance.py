"""Appearance metrics and outputs (vision3d.appearance): SSIM against an independent Gaussian-window SSIM,
evaluate_views on a stub renderer with a known error, the orbit videos."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.signal import convolve2d

from vision3d.appearance import colorize_depth, evaluate_views, orbit_videos, ssim
from vision3d.camera import Intrinsics
from vision3d.dataset import BlenderDataset


def reference_ssim(a, b, sigma=1.5, radius=5, k1=0.01, k2=0.03):
    """Wang et al. (2004) written out: an 11x11 Gaussian window, valid windows only, mean over pixels and channels."""
    x = np.arange(-radius, radius + 1)
    g = np.exp(-(x**2) / (2 * sigma**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = k1**2, k2**2
    values = []
    for ch in range(a.shape[2]):
        x_, y_ = a[..., ch], b[..., ch]

        def blur(img):
            return convolve2d(img, window, mode="valid")

        mx, my = blur(x_), blur(y_)
        vx, vy, cxy = blur(x_ * x_) - mx**2, blur(y_ * y_) - my**2, blur(x_ * y_) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(s.mean())
    return float(np.mean(values))


def test_ssim_matches_the_paper_formula_and_its_invariants():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(24, 20, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    noisier = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1)
    assert ssim(a, noisier) < ssim(a, b) < 1.0
    with pytest.raises(ValueError, match="RGB images"):
        ssim(a, b[..., :2])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[:8, :8], b[:8, :8])


class StubView:
    def __init__(self, rgb, depth):
        self.rgb, self.depth = rgb, depth


def stub_views(n=3, size=16):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 128, size=(n, size, size, 3)).astype(np.float32) / 255.0  # on the 8-bit grid
    return BlenderDataset(images=np.concatenate([rgb, np.ones_like(rgb[..., :1])], -1), rgb=rgb,
                          masks=np.ones(rgb.shape[:3], bool), poses=np.stack([np.eye(4, dtype=np.float32)] * n),
                          intrinsics=Intrinsics.from_fov(size, size, 0.69), depths=None, background=(1.0, 1.0, 1.0),
                          file_paths=[f"test/r_{i}" for i in range(n)])


def test_evaluate_views_scores_a_known_error_and_saves_render_beside_truth(tmp_path):
    views = stub_views()
    calls = iter(range(len(views)))

    def render_fn(pose, intrinsics):  # the truth of the view, 10/255 brighter
        return StubView(views.rgb[next(calls)] + 10 / 255, np.ones((16, 16)))

    metrics = evaluate_views(render_fn, views, tmp_path)
    assert metrics.psnr == pytest.approx(-10 * np.log10((10 / 255) ** 2), abs=1e-3)  # float32 truth: 1e-3 dB
    assert all(v["psnr"] == pytest.approx(metrics.psnr, abs=1e-3) for v in metrics.per_view)
    assert 0.0 < metrics.ssim < 1.0 and metrics.views == 3 and metrics.fps > 0 and metrics.size == (16, 16)
    for i in range(3):
        saved = iio.imread(tmp_path / "test_renders" / f"{i}.png")
        assert saved.shape == (16, 32, 3)
        truth = np.round(views.rgb[i] * 255).astype(int)
        np.testing.assert_array_equal(saved[:, 16:], truth)
        np.testing.assert_array_equal(saved[:, :16], truth + 10)
    assert not list((tmp_path / "test_renders").glob(".*"))  # no temporaries left
    with pytest.raises(ValueError, match="render_fn returned rgb of shape"):
        evaluate_views(lambda pose, intrinsics: StubView(np.zeros((8, 8, 3)), None), views)


def test_orbit_videos_write_colour_and_depth_turntables(tmp_path):
    intrinsics = Intrinsics.from_fov(16, 16, 0.69)
    seen = []

    def render_fn(pose, intr):
        seen.append(pose)
        depth = np.zeros((16, 16))
        depth[4:12, 4:12] = np.linalg.norm(pose[:3, 3]) - 0.5
        return StubView(np.full((16, 16, 3), 0.5), depth)

    colour, depth = orbit_videos(render_fn, intrinsics, tmp_path, radius=3.0, frames=6, fps=6)
    assert colour == tmp_path / "orbit.mp4" and depth == tmp_path / "orbit_depth.mp4"
    for path in (colour, depth):
        frames = iio.imread(path, index=None)
        assert frames.shape == (6, 16, 16, 3)
    assert np.allclose([np.linalg.norm(p[:3, 3]) for p in seen], 3.0)  # the turntable's radius


def test_colorize_depth_maps_the_range_and_leaves_the_background_white():
    depth = np.array([[0.0, 1.0, 2.0]])
    rgb = colorize_depth(depth, 1.0, 2.0, cmap="gray")
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(rgb[0, 1], [0, 0, 0])
    np.testing.assert_array_equal(rgb[0, 2], [255, 255, 255])
