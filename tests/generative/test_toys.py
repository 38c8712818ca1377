"""2-D toy densities: seeded samplers whose histograms match their log-densities, which integrate to 1."""

import math

import pytest
import torch

from generative.data.toys import TOYS, log_density, mixture_means, sample

BOX = {"moons": (-2.0, 2.5, -1.5, 1.5), "swissroll": (-3.5, 3.5, -3.5, 3.5)}
DEFAULT_BOX = (-3.0, 3.0, -3.0, 3.0)


def _grid(box, step):
    x0, x1, y0, y1 = box
    xs = torch.arange(x0 + step / 2, x1, step, dtype=torch.float64)
    ys = torch.arange(y0 + step / 2, y1, step, dtype=torch.float64)
    return torch.cartesian_prod(xs, ys), len(xs), len(ys)


@pytest.mark.parametrize("name", TOYS)
def test_log_density_integrates_to_one(name):
    step = 0.04  # 0.4 standard deviations: the midpoint rule is already exact to ~1e-6 for a Gaussian
    points, _, _ = _grid(BOX.get(name, DEFAULT_BOX), step)
    mass = float(log_density(name, points).exp().sum()) * step**2
    assert mass == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("name", TOYS)
def test_sample_histogram_matches_the_density(name):
    box = BOX.get(name, DEFAULT_BOX)
    n, cell, sub = 100_000, 0.25, 5  # histogram cells of 0.25, density integrated on 5x5 points per cell
    x = sample(name, n, seed=1).to(torch.float64)
    x0, x1, y0, y1 = box
    nx, ny = round((x1 - x0) / cell), round((y1 - y0) / cell)
    ix = torch.floor((x[:, 0] - x0) / cell).long()
    iy = torch.floor((x[:, 1] - y0) / cell).long()
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    empirical = torch.bincount(ix[inside] * ny + iy[inside], minlength=nx * ny).double() / n
    points, gx, gy = _grid(box, cell / sub)
    density = log_density(name, points).exp().reshape(gx, gy) * (cell / sub) ** 2
    expected = density.reshape(nx, sub, ny, sub).sum(dim=(1, 3)).reshape(-1)
    total_variation = 0.5 * float((empirical - expected).abs().sum())
    assert total_variation < 0.03, total_variation
    # and the samples of a wrong density do not match: the test can fail
    other = "25gaussians" if name != "25gaussians" else "8gaussians"
    wrong = log_density(other, points).exp().reshape(gx, gy) * (cell / sub) ** 2
    wrong = wrong.reshape(nx, sub, ny, sub).sum(dim=(1, 3)).reshape(-1)
    assert 0.5 * float((empirical - wrong).abs().sum()) > 0.3


def test_sampling_is_seeded_and_typed():
    for name in TOYS:
        a, b, c = sample(name, 500, seed=3), sample(name, 500, seed=3), sample(name, 500, seed=4)
        assert a.shape == (500, 2) and a.dtype == torch.float32
        assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(sample("moons", 10, generator=g1), sample("moons", 10, generator=g2))


def test_exact_values():
    # checkerboard: 1/8 on the squares with an even sum of floors, 0 elsewhere
    pts = torch.tensor([[-1.5, -1.5], [-1.5, -0.5], [0.5, 0.5], [2.5, 0.5], [1.2, 0.3]])
    expected = [math.log(1 / 8), -math.inf, math.log(1 / 8), -math.inf, -math.inf]
    assert log_density("checkerboard", pts).tolist() == expected
    assert bool((log_density("checkerboard", sample("checkerboard", 2000)) == math.log(1 / 8)).all())
    # a mixture component's centre: the Gaussians are far apart, so p ~ N(0; 0, s^2 I) / K
    for name, k in [("8gaussians", 8), ("25gaussians", 25)]:
        means = mixture_means(name)
        assert means.shape == (k, 2)
        value = float(log_density(name, means[:1]))
        assert value == pytest.approx(-math.log(2 * math.pi * 0.1**2) - math.log(k), abs=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        log_density("moons", torch.zeros(3))
    with pytest.raises(ValueError, match="name"):
        sample("spiral", 3)
