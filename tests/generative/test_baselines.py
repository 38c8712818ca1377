"""The two non-neural baselines of the comparison (generative.models.baselines): their densities are the formulas
they claim, and their samples come from those densities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generative.models.baselines import (
    GaussianMixtureBaseline,
    MixtureConfig,
    NoiseConfig,
    NoisyTrainingSet,
    dequantised_nll,
)


def blobs(n: int = 300, seed: int = 0) -> torch.Tensor:  # [n, 1, 2, 2] in [0, 1]: two clusters
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.25] * 4, [0.75] * 4], dtype=torch.float64)
    x = centres[torch.randint(0, 2, (n,), generator=g)] + 0.05 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    return x.clamp(0, 1).reshape(n, 1, 2, 2)


def test_mixture_log_prob_is_the_weighted_sum_of_its_gaussians() -> None:
    model = GaussianMixtureBaseline(blobs(), MixtureConfig(components=2, reg_covar=1e-4))
    m = model.mixture
    y = blobs(20, seed=1)
    flat = y.flatten(1)
    parts = [math.log(w) + torch.distributions.MultivariateNormal(torch.from_numpy(mu), torch.from_numpy(c)).log_prob(flat)
             for w, mu, c in zip(m.weights_, m.means_, m.covariances_)]
    torch.testing.assert_close(model.log_prob(y), torch.logsumexp(torch.stack(parts), 0), rtol=1e-9, atol=1e-9)
    assert model.parameters == 2 * (1 + 4 + 10) - 1


def test_mixture_samples_follow_the_mixture() -> None:
    model = GaussianMixtureBaseline(blobs(), MixtureConfig(components=2, reg_covar=1e-4))
    s = model.sample(20000, torch.Generator().manual_seed(0)).flatten(1).double()
    mean = torch.from_numpy(model.mixture.weights_ @ model.mixture.means_)
    torch.testing.assert_close(s.mean(0), mean, atol=0.01, rtol=0)
    near_low = (s.mean(1) < 0.5).double().mean()
    assert abs(float(near_low) - float(model.mixture.weights_[np.argmin(model.mixture.means_[:, 0])])) < 0.02
    again = model.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(again, model.sample(5, torch.Generator().manual_seed(0)))


def test_noisy_training_set_is_a_kernel_density_estimate() -> None:
    train = blobs(50)
    model = NoisyTrainingSet(train, NoiseConfig(std=0.1))
    y = blobs(7, seed=3)
    brute = torch.stack([torch.distributions.Normal(train.flatten(1), 0.1).log_prob(v).sum(1).exp().mean().log()
                         for v in y.flatten(1)])
    torch.testing.assert_close(model.log_prob(y, chunk=3), brute, rtol=1e-9, atol=1e-9)
    apart = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)[:, None].expand(3, 4).reshape(3, 1, 2, 2)
    s = NoisyTrainingSet(apart, NoiseConfig(std=0.02)).sample(6000, torch.Generator().manual_seed(0)).flatten(1).double()
    d2 = torch.cdist(s, apart.flatten(1)).pow(2)  # [n, 3]: each sample is its image plus N(0, std^2 I)
    assert abs(float(d2.min(1).values.mean()) / (4 * 0.02**2) - 1) < 0.05
    counts = torch.bincount(d2.argmin(1), minlength=3).double() / len(s)
    torch.testing.assert_close(counts, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02, rtol=0)


def test_dequantised_nll_adds_d_log_levels() -> None:
    assert float(dequantised_nll(torch.tensor([-3.0]), 64, 17)) == pytest.approx(3.0 + 64 * math.log(17))


def test_bad_options_fail_in_one_line() -> None:
    with pytest.raises(ValueError, match="components must be >= 1"):
        MixtureConfig(components=0)
    with pytest.raises(ValueError, match="std must be > 0"):
        NoiseConfig(std=0.0)
    with pytest.raises(ValueError, match="fewer than components=50"):
        GaussianMixtureBaseline(blobs(10))
    with pytest.raises(ValueError, match=r"train must be \[N >= 2, C, H, W\]"):
        NoisyTrainingSet(torch.zeros(3, 4))
