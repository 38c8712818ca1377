"""Exhaustive checks on tiny images (generative.models.exhaustive): the enumeration and its inverse, exact
probabilities of a hand-made independent model, frequencies, a fit to a known distribution, and the errors."""

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from generative.models.base import ImageDensity, discrete_log_prob, discrete_sample
from generative.models.exhaustive import (
    MAX_IMAGES,
    all_images,
    fit_distribution,
    image_frequencies,
    image_index,
    probabilities,
    randomised,
    sample_frequencies,
)


class Independent(ImageDensity):
    """Independent pixels with per-pixel probabilities ``theta`` ``[C, H, W, levels]``: ``p(x) = prod_i theta_i[x_i]``."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.image_shape, self.levels = tuple(theta.shape[:3]), theta.shape[3]
        self.logits = nn.Parameter(theta.log())  # [C, H, W, levels]

    def _logits(self, batch: int) -> Tensor:  # [B, C, H, W] (Bernoulli) or [B, levels, C, H, W]
        logits = self.logits.movedim(-1, 0).unsqueeze(0).expand(batch, -1, -1, -1, -1)
        return logits[:, 1] - logits[:, 0] if self.levels == 2 else logits.log_softmax(1)

    def log_prob(self, x: Tensor) -> Tensor:
        return discrete_log_prob(self._logits(len(x)), x, self.levels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return discrete_sample(self._logits(n), self.levels, generator)


def _theta(image_shape: tuple[int, int, int], levels: int, seed: int = 0) -> Tensor:  # [C, H, W, levels]
    raw = torch.rand((*image_shape, levels), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (raw + 0.2) / (raw + 0.2).sum(-1, keepdim=True)


@pytest.mark.parametrize(("image_shape", "levels"), [((1, 1, 3), 2), ((2, 1, 2), 2), ((1, 2, 2), 3), ((1, 1, 1), 5)])
def test_all_images_are_every_image_once_in_product_order(image_shape, levels):
    x = all_images(image_shape, levels)
    n = math.prod(image_shape)
    assert x.shape == (levels**n, *image_shape)
    assert x.dtype == (torch.float32 if levels == 2 else torch.int64)
    expected = torch.tensor(list(itertools.product(range(levels), repeat=n)))  # most significant pixel first
    assert torch.equal(x.flatten(1).long(), expected)
    assert torch.equal(image_index(x, levels), torch.arange(levels**n))  # the inverse
    assert len({tuple(row) for row in x.flatten(1).tolist()}) == levels**n  # no image twice


def test_image_index_round_trips_on_random_images():
    x = torch.randint(0, 4, (50, 2, 2, 2), generator=torch.Generator().manual_seed(0))
    assert torch.equal(all_images((2, 2, 2), 4)[image_index(x, 4)], x)
    assert image_index(torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]]), 2).tolist() == [8 + 2 + 1]


@pytest.mark.parametrize(("image_shape", "levels"), [((1, 1, 3), 2), ((1, 2, 2), 3), ((2, 1, 1), 4)])
def test_probabilities_of_an_independent_model_are_the_product_formula(image_shape, levels):
    theta = _theta(image_shape, levels)
    model = Independent(theta).train()
    p = probabilities(model)
    x = all_images(image_shape, levels).flatten(1).long()  # [N, n] pixel values
    product = theta.reshape(-1, levels)[torch.arange(x.shape[1]), x].prod(1)  # prod_i theta_i[x_i]
    assert p.dtype == torch.float64 and p.shape == (levels ** math.prod(image_shape),)
    torch.testing.assert_close(p, product, rtol=1e-6, atol=0)  # base.discrete_log_prob: Bernoulli targets in float32
    assert abs(p.sum().item() - 1.0) < 1e-6
    assert model.training and model.logits.grad is None  # the mode restored, nothing recorded for backward


def test_frequencies_sum_to_one_and_count_images():
    x = all_images((1, 1, 2), 2)[torch.tensor([0, 3, 3, 1])]
    assert image_frequencies(x, 2).tolist() == [0.25, 0.25, 0.0, 0.5]
    model = Independent(_theta((1, 1, 3), 2, seed=1)).float()
    frequency = sample_frequencies(model, 4000, torch.Generator().manual_seed(0))
    assert frequency.shape == (8,) and abs(frequency.sum().item() - 1.0) < 1e-12
    assert torch.equal(frequency, sample_frequencies(model, 4000, torch.Generator().manual_seed(0)))  # seeded
    se = (probabilities(model) * (1 - probabilities(model)) / 4000).sqrt()
    assert ((frequency - probabilities(model)).abs() < 5 * se + 1e-9).all()


def test_fit_distribution_reaches_a_representable_target():
    theta = _theta((1, 1, 2), 3, seed=2)
    target = probabilities(Independent(theta))  # [9], a distribution independent pixels can represent
    model = fit_distribution(Independent(torch.full((1, 1, 2, 3), 1 / 3, dtype=torch.float64)), target, 300, 0.05)
    p = probabilities(model)
    assert (target * (target.log() - p.log())).sum().item() < 1e-6  # KL(target || model)


def test_randomised_is_seeded_and_scaled():
    a, b = randomised(nn.Linear(30, 40), seed=3, scale=2.0), randomised(nn.Linear(30, 40), seed=3, scale=2.0)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, randomised(nn.Linear(30, 40), seed=4, scale=2.0).weight)
    assert abs(a.weight.std().item() - 2.0) < 0.1


def test_wrong_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="levels must be >= 2"):
        all_images((1, 1, 2), 1)
    with pytest.raises(ValueError, match=r"image_shape \(1, 3, 7\) with 2 levels must have 1 to 1048576 images"):
        all_images((1, 3, 7), 2)  # 2^21 > MAX_IMAGES = 2^20
    assert MAX_IMAGES == 2**20
    with pytest.raises(ValueError, match="x must hold whole pixel values"):
        image_index(torch.full((1, 1, 1, 2), 2), 2)
    with pytest.raises(ValueError, match="x must be"):
        image_index(torch.zeros(3), 2)
    with pytest.raises(ValueError, match="x must hold at least one image"):
        image_frequencies(torch.zeros(0, 1, 1, 2), 2)
    model = Independent(_theta((1, 1, 2), 2))
    with pytest.raises(ValueError, match="n must be"):
        sample_frequencies(model, 0)
    with pytest.raises(ValueError, match="target must be"):
        fit_distribution(model, torch.ones(3) / 3, 10, 0.1)
    with pytest.raises(ValueError, match="steps must be"):
        fit_distribution(model, torch.ones(4) / 4, 0, 0.1)
    with pytest.raises(ValueError, match="scale must be"):
        randomised(model, scale=0.0)
