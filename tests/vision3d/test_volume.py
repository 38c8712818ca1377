import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from vision3d.volume import (
    merge_samples,
    midpoints_to_bins,
    positional_encoding,
    render_rays_reference,
    sample_pdf,
    stratified_samples,
    volume_render,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_rays(rays: int = 5, samples: int = 7, seed: int = 0, dtype: torch.dtype = F64):
    g = _gen(seed)
    t = torch.sort(torch.rand(rays, samples, generator=g, dtype=dtype) * 4 + 2, dim=1).values
    sigma = torch.rand(rays, samples, generator=g, dtype=dtype) * 3
    sigma[0] = 0.0  # one empty ray
    rgb = torch.rand(rays, samples, 3, generator=g, dtype=dtype)
    return sigma, rgb, t


# --- positional encoding -------------------------------------------------------------------------------------


def test_positional_encoding_values_at_a_point():
    p = torch.tensor([0.25], dtype=F64)
    expected = []
    for k in range(3):  # the notes' gamma(p), written out
        expected += [math.sin(2**k * math.pi * 0.25), math.cos(2**k * math.pi * 0.25)]
    torch.testing.assert_close(positional_encoding(p, 3), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-15)
    # sin(pi/4) = cos(pi/4), sin(pi/2) = 1, cos(pi/2) = 0, sin(pi) = 0, cos(pi) = -1
    h = math.sqrt(0.5)
    torch.testing.assert_close(positional_encoding(p, 3), torch.tensor([h, h, 1, 0, 0, -1], dtype=F64))


def test_positional_encoding_is_per_coordinate_and_shaped():
    p = torch.rand(4, 5, 3, generator=_gen(), dtype=F64)
    out = positional_encoding(p, 4)
    assert out.shape == (4, 5, 24)
    for d in range(3):  # coordinate-major: out[..., 8 d : 8 d + 8] = gamma(p_d)
        torch.testing.assert_close(out[..., 8 * d : 8 * d + 8], positional_encoding(p[..., d : d + 1], 4))
    torch.testing.assert_close(out.reshape(4, 5, 3, 4, 2)[..., 2, 3, 1], torch.cos(8 * math.pi * p[..., 2]))
    with_input = positional_encoding(p, 4, include_input=True)
    assert with_input.shape == (4, 5, 27)
    torch.testing.assert_close(with_input[..., :3], p)
    torch.testing.assert_close(with_input[..., 3:], out)
    assert positional_encoding(p, 0).shape == (4, 5, 0)
    with pytest.raises(ValueError, match="levels"):
        positional_encoding(p, -1)


# --- volume rendering ----------------------------------------------------------------------------------------


def test_constant_slab_opacity_is_beer_lambert():
    a, b, density = 0.3, 0.7, 2.5
    t = torch.linspace(0.0, 1.0, 101, dtype=F64)[None]  # edges of the slab fall on samples
    spacing = 0.01
    # sigma_i holds on the segment [t_i, t_i + delta_i]; inside the slab when that segment is
    sigma = torch.where((t >= a - 1e-9) & (t < b - 1e-9), density, 0.0)
    rgb = torch.ones(1, 101, 3, dtype=F64)
    out = volume_render(sigma, rgb, t, far_delta=spacing)
    expected = 1 - math.exp(-density * (b - a))
    torch.testing.assert_close(out.opacity, torch.tensor([expected], dtype=F64), rtol=0, atol=1e-12)
    # the light stops in the slab, more of it near the front: the normalised depth lies in [a, (a + b) / 2)
    assert a <= float(out.depth[0] / out.opacity[0]) < (a + b) / 2


def _analytic_optical_depth(t: np.ndarray, pieces: list[tuple[float, float, float]]) -> np.ndarray:
    """integral_0^t sigma(s) ds for sigma piecewise constant: ``pieces`` of (start, end, density)."""
    return sum(density * np.clip(np.minimum(t, end) - start, 0.0, None) for start, end, density in pieces)


def test_weights_equal_the_analytic_ones_for_piecewise_constant_density():
    pieces = [(0.2, 0.4, 1.0), (0.4, 0.5, 3.0), (0.7, 0.9, 0.5)]
    t_np = np.linspace(0.0, 1.0, 41)  # spacing 0.025: every piece edge is a sample
    mid = 0.5 * (t_np[1:] + t_np[:-1])
    sigma_np = np.zeros_like(t_np)
    for start, end, density in pieces:
        sigma_np[:-1][(mid > start) & (mid < end)] = density
    t, sigma = torch.tensor(t_np)[None], torch.tensor(sigma_np)[None]
    out = volume_render(sigma, torch.rand(1, 41, 3, dtype=F64), t, far_delta=0.025)
    T = np.exp(-_analytic_optical_depth(np.append(t_np, 1.025), pieces))  # T(t_i) = exp(-integral_0^t_i sigma)
    expected = T[:-1] - T[1:]  # the probability that the light stops in [t_i, t_{i+1}]
    np.testing.assert_allclose(out.weights[0].numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(float(out.opacity[0]), 1 - math.exp(-(0.2 + 0.3 + 0.1)), atol=1e-12)


@pytest.mark.parametrize("far_delta", [1e10, 0.3])
def test_weights_sum_to_at_most_one(far_delta):
    sigma, rgb, t = _random_rays(64, 16, seed=3, dtype=torch.float32)
    sigma = sigma * 10
    out = volume_render(sigma, rgb, t, far_delta=far_delta)
    assert bool((out.weights >= 0).all()) and bool((out.opacity <= 1 + 1e-6).all())
    torch.testing.assert_close(out.opacity, out.weights.sum(1))
    if far_delta == 1e10:  # the last sample absorbs what is left: every ray with density there is opaque
        torch.testing.assert_close(out.opacity[1:], torch.ones(63))


@pytest.mark.parametrize("background", [None, 0.7, torch.tensor([0.1, 0.5, 0.9], dtype=F64), "per-ray"])
@pytest.mark.parametrize("far_delta", [1e10, 0.25])
def test_vectorised_render_equals_the_reference_loop(background, far_delta):
    sigma, rgb, t = _random_rays(6, 9, seed=1)
    if isinstance(background, str):
        background = torch.rand(6, 3, generator=_gen(9), dtype=F64)
    fast = volume_render(sigma, rgb, t, background, far_delta)
    slow = render_rays_reference(sigma, rgb, t, background, far_delta)
    for name in fast._fields:
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=0, atol=1e-12, msg=name)


def test_background_compositing():
    _, rgb, t = _random_rays(3, 5)
    background = torch.tensor([0.2, 0.4, 0.6], dtype=F64)
    empty = volume_render(torch.zeros(3, 5, dtype=F64), rgb, t, background)
    torch.testing.assert_close(empty.rgb, background.expand(3, 3))
    torch.testing.assert_close(empty.opacity, torch.zeros(3, dtype=F64))
    wall = torch.zeros(3, 5, dtype=F64)
    wall[:, 0] = 1e6  # opaque first sample
    hit = volume_render(wall, rgb, t, background)
    torch.testing.assert_close(hit.rgb, rgb[:, 0])
    torch.testing.assert_close(hit.depth, t[:, 0])
    torch.testing.assert_close(hit.weights[:, 1:], torch.zeros(3, 4, dtype=F64))


def test_depth_is_the_unnormalised_expectation():
    sigma, rgb, t = _random_rays(4, 6, seed=5)
    out = volume_render(sigma, rgb, t, far_delta=0.1)
    torch.testing.assert_close(out.depth, (out.weights * t).sum(1))
    assert bool((out.opacity[1:] < 1).all())  # half-transparent rays: the depth is not divided by the opacity


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_every_function_keeps_device_and_dtype(device, dtype):
    sigma, rgb, t = (x.to(device) for x in _random_rays(4, 8, seed=8, dtype=dtype))
    out = volume_render(sigma, rgb, t, 0.5)
    slow = render_rays_reference(sigma, rgb, t, 0.5)
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    for name in out._fields:
        value = getattr(out, name)
        assert value.device.type == device and value.dtype == dtype
        torch.testing.assert_close(value, getattr(slow, name), rtol=0, atol=atol)
    near, far = torch.full((4,), 2.0, dtype=dtype, device=device), torch.full((4,), 6.0, dtype=dtype, device=device)
    coarse = stratified_samples(near, far, 8, None)
    fine = sample_pdf(midpoints_to_bins(coarse, near, far), out.weights, 16, None)
    merged = merge_samples(coarse, fine)
    gamma = positional_encoding(merged[..., None], 2, include_input=True)
    for value in (coarse, fine, merged, gamma):
        assert value.device.type == device and value.dtype == dtype


def test_gradcheck_with_respect_to_sigma_and_rgb():
    sigma, rgb, t = _random_rays(2, 4, seed=2)
    sigma = (sigma + 0.1).requires_grad_()
    rgb = rgb.requires_grad_()
    background = torch.tensor([0.3, 0.2, 0.1], dtype=F64)

    def render(s, c, far_delta):
        out = volume_render(s, c, t, background, far_delta)
        return out.rgb, out.depth, out.opacity, out.weights

    assert torch.autograd.gradcheck(lambda s, c: render(s, c, 0.5), (sigma, rgb))
    assert torch.autograd.gradcheck(lambda s, c: render(s, c, 1e10), (sigma, rgb))


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((torch.zeros(4), torch.zeros(4, 3), torch.zeros(4)), "sigma"),
        ((torch.zeros(4, 5), torch.zeros(4, 5, 3), torch.zeros(4, 6)), "t must have the shape of sigma"),
        ((torch.zeros(4, 5), torch.zeros(4, 5, 4), torch.zeros(4, 5)), "rgb"),
        ((torch.zeros(4, 5), torch.zeros(4, 3), torch.zeros(4, 5)), "rgb"),
    ],
)
def test_render_shape_errors_name_the_argument(args, name):
    with pytest.raises(ValueError, match=name):
        volume_render(*args)
    with pytest.raises(ValueError, match=name):
        render_rays_reference(*args)


def test_other_shape_errors_name_the_argument():
    sigma, rgb, t = _random_rays(4, 5)
    with pytest.raises(ValueError, match=r"background.*\(2, 3\)"):
        volume_render(sigma, rgb, t, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"weights.*\(4, 5\).*\(4, 4\)"):
        sample_pdf(torch.zeros(4, 6), torch.zeros(4, 4), 8, None)
    with pytest.raises(ValueError, match="bins"):
        sample_pdf(torch.zeros(6), torch.zeros(5), 8, None)
    with pytest.raises(ValueError, match="near"):
        midpoints_to_bins(t, torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="t_coarse and t_fine"):
        merge_samples(torch.zeros(4, 5), torch.zeros(3, 5))


# --- stratified samples ----------------------------------------------------------------------------------------


def test_stratified_samples_one_per_bin_and_reproducible():
    near = torch.tensor([0.0, 2.0, -1.0], dtype=F64)
    far = torch.tensor([1.0, 6.0, 3.0], dtype=F64)
    t = stratified_samples(near, far, 32, _gen(7))
    assert t.shape == (3, 32)
    assert bool((t[:, 1:] >= t[:, :-1]).all())
    assert bool((t >= near[:, None]).all()) and bool((t <= far[:, None]).all())
    bin_index = torch.floor((t - near[:, None]) / (far - near)[:, None] * 32)
    torch.testing.assert_close(bin_index, torch.arange(32, dtype=F64).expand(3, 32))
    torch.testing.assert_close(stratified_samples(near, far, 32, _gen(7)), t, rtol=0, atol=0)
    assert not torch.equal(stratified_samples(near, far, 32, _gen(8)), t)
    # each offset inside its bin is uniform: over many rays the mean offset is 1/2
    many = stratified_samples(torch.tensor(0.0), torch.tensor(1.0), 4, _gen(1))
    assert many.shape == (1, 4)
    offsets = stratified_samples(torch.zeros(4000), torch.ones(4000), 4, _gen(2)) * 4 % 1
    assert abs(float(offsets.mean()) - 0.5) < 0.01


def test_stratified_midpoints_and_checks():
    t = stratified_samples(torch.tensor([0.0]), torch.tensor([2.0]), 4, None, perturb=False)
    torch.testing.assert_close(t, torch.tensor([[0.25, 0.75, 1.25, 1.75]]))
    t = stratified_samples(torch.tensor(1.0), torch.tensor([2.0, 3.0]), 2, None, perturb=False)
    torch.testing.assert_close(t, torch.tensor([[1.25, 1.75], [1.5, 2.5]]))
    with pytest.raises(ValueError, match="n must be"):
        stratified_samples(torch.tensor(0.0), torch.tensor(1.0), 0, None)
    with pytest.raises(ValueError, match="far must be > near"):
        stratified_samples(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]), 4, None)
    with pytest.raises(ValueError, match="near and far"):
        stratified_samples(torch.zeros(2), torch.ones(3), 4, None)


# --- hierarchical sampling -------------------------------------------------------------------------------------


def _half_bin_counts(samples: np.ndarray, edges: np.ndarray) -> np.ndarray:
    halves = np.sort(np.concatenate([edges, 0.5 * (edges[1:] + edges[:-1])]))
    return np.histogram(samples, bins=halves)[0]


def test_sample_pdf_follows_the_piecewise_constant_pdf():
    edges = np.array([0.0, 0.1, 0.3, 0.35, 0.7, 1.0])
    w = np.array([1.0, 2.0, 4.0, 0.5, 2.5])
    n = 20000
    samples = sample_pdf(torch.tensor(edges)[None], torch.tensor(w)[None], n, _gen(11))[0].numpy()
    counts = _half_bin_counts(samples, edges)  # two cells a bin: checks the linear inverse inside bins too

    def expected(weights: np.ndarray) -> np.ndarray:
        return np.repeat(n * weights / weights.sum() / 2, 2)

    assert chisquare(counts, expected(w)).pvalue > 1e-3
    wrong = w[[2, 1, 0, 3, 4]]  # two bins' weights swapped
    assert chisquare(counts, expected(wrong)).pvalue < 1e-6
    widths = np.diff(edges)  # uniform in t instead of the pdf
    assert chisquare(counts, expected(widths)).pvalue < 1e-6


def test_sample_pdf_inverts_the_cdf_exactly():
    bins = torch.tensor([[0.0, 1.0, 2.0]], dtype=F64)
    weights = torch.tensor([[1.0, 3.0]], dtype=F64)  # cdf 0, 1/4, 1
    t = sample_pdf(bins, weights, 4, None, deterministic=True, eps=0.0)  # u = 1/8, 3/8, 5/8, 7/8
    expected = torch.tensor([[0.5, 1 + 1 / 6, 1.5, 1 + 5 / 6]], dtype=F64)
    torch.testing.assert_close(t, expected, rtol=0, atol=1e-12)


def test_sample_pdf_deterministic_is_monotone_and_inside_the_bins():
    sigma, rgb, t = _random_rays(8, 12, seed=4)
    out = volume_render(sigma, rgb, t)
    bins = midpoints_to_bins(t, 2.0, 6.0)
    assert bins.shape == (8, 13)
    fine = sample_pdf(bins, out.weights, 64, None, deterministic=True)
    assert fine.shape == (8, 64)
    assert bool((fine[:, 1:] >= fine[:, :-1]).all())
    assert bool((fine >= bins[:, :1]).all()) and bool((fine <= bins[:, -1:]).all())
    torch.testing.assert_close(sample_pdf(bins, out.weights, 64, None, deterministic=True), fine, rtol=0, atol=0)
    merged = merge_samples(t, fine)
    assert merged.shape == (8, 76)
    assert bool((merged[:, 1:] >= merged[:, :-1]).all())
    torch.testing.assert_close(merged.sort(1).values, torch.cat([t, fine], 1).sort(1).values)


def test_sample_pdf_with_zero_weights_is_uniform_and_finite():
    bins = torch.linspace(0.0, 1.0, 9).expand(3, 9)
    t = sample_pdf(bins, torch.zeros(3, 8), 10, None, deterministic=True)
    assert bool(torch.isfinite(t).all())
    torch.testing.assert_close(t, ((torch.arange(10) + 0.5) / 10).expand(3, 10))
    random = sample_pdf(bins, torch.zeros(3, 8), 1000, _gen(3))
    assert bool(torch.isfinite(random).all()) and abs(float(random.mean()) - 0.5) < 0.02


def test_sample_pdf_does_not_backpropagate_into_the_weights():
    sigma, rgb, t = _random_rays(2, 6, seed=6)
    sigma.requires_grad_()
    weights = volume_render(sigma, rgb, t).weights
    fine = sample_pdf(midpoints_to_bins(t, 2.0, 6.0), weights, 8, _gen(0))
    assert not fine.requires_grad
    bins = midpoints_to_bins(t, 2.0, 6.0).requires_grad_()
    through_bins = sample_pdf(bins, weights, 8, _gen(0))
    (grad,) = torch.autograd.grad(through_bins.sum(), bins)
    assert grad.abs().sum() > 0 and sigma.grad is None


def test_midpoints_to_bins():
    t = torch.tensor([[1.0, 2.0, 4.0], [0.5, 1.0, 1.5]])
    bins = midpoints_to_bins(t, torch.tensor([0.0, 0.25]), 5.0)
    torch.testing.assert_close(bins, torch.tensor([[0.0, 1.5, 3.0, 5.0], [0.25, 0.75, 1.25, 5.0]]))
