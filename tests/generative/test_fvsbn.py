"""Independent pixels and FVSBN (notes §7 footnote 13, §7.1): closed-form MLE, the masked layer against the
per-pixel loop, the n(n+1)/2 parameters, a normalised likelihood, and samples that follow it."""

import math

import pytest
import torch

from generative.models.exhaustive import (
    fit_distribution,
    image_frequencies,
    probabilities,
    randomised,
    sample_frequencies,
)
from generative.models.fvsbn import (
    FVSBN,
    FVSBNConfig,
    IndependentBernoulli,
    IndependentConfig,
    fvsbn_logits,
    fvsbn_logits_loop,
    lower_triangular,
    pixel_frequencies,
    pixel_order,
)


def build_all(image_shape, levels):
    order = pixel_order("random", math.prod(image_shape), seed=3)
    return [randomised(IndependentBernoulli(image_shape, levels), scale=1.5),
            randomised(FVSBN(image_shape, levels), scale=1.5),
            randomised(FVSBN(image_shape, levels, order=order), seed=1, scale=1.5)]


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_fvsbn_has_n_n_plus_1_over_2_parameters():
    assert count(FVSBNConfig().build((1, 8, 8), 2)) == 2080 == 64 * 65 // 2
    assert count(FVSBNConfig().build((3, 2, 2), 2)) == 78 == 12 * 13 // 2
    assert count(FVSBNConfig().build((1, 3, 3), 17)) == 17 * 45  # a softmax regression per pixel
    assert count(IndependentConfig().build((1, 8, 8), 2)) == 64
    assert count(IndependentConfig().build((1, 8, 8), 17)) == 17 * 64


def test_weights_are_strictly_lower_triangular():
    alpha = torch.arange(1.0, 7.0).unsqueeze(0)  # n = 4: 6 entries
    A = lower_triangular(alpha, 4)[0]
    assert torch.equal(A, torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0], [2, 3, 0, 0], [4, 5, 6, 0]]))
    with pytest.raises(ValueError, match="alpha must be"):
        lower_triangular(torch.zeros(1, 5), 4)


@pytest.mark.parametrize("levels", [2, 4])
def test_masked_layer_equals_the_per_pixel_loop(levels):
    torch.manual_seed(0)
    L, n = (1 if levels == 2 else levels), 10
    u, alpha_0 = torch.rand(5, n, dtype=torch.float64), torch.randn(L, n, dtype=torch.float64)
    A = lower_triangular(torch.randn(L, n * (n - 1) // 2, dtype=torch.float64), n)
    torch.testing.assert_close(fvsbn_logits(u, alpha_0, A), fvsbn_logits_loop(u, alpha_0, A), rtol=0, atol=1e-12)
    # the model, in a random ordering, on real images
    model = randomised(FVSBN((2, 1, 5), levels, order=pixel_order("random", n, seed=1)), scale=1.5).double()
    x = torch.randint(levels, (50, 2, 1, 5), generator=torch.Generator().manual_seed(0))  # random images
    x = x.float() if levels == 2 else x
    torch.testing.assert_close(model(x), model.reference_logits(x), rtol=0, atol=1e-12)


def test_logit_i_depends_only_on_earlier_pixels():
    model = randomised(FVSBN((1, 2, 3), 2, order=torch.tensor([4, 0, 5, 2, 1, 3])), scale=1.5)
    x = torch.tensor([1.0, 0, 0, 0, 1, 0]).reshape(1, 1, 2, 3)
    for k, pixel in enumerate(model.order.tolist()):
        flipped = x.clone()
        flipped.view(-1)[pixel] = 1 - flipped.view(-1)[pixel]
        changed = (model(flipped) != model(x)).flatten()
        assert not changed[model.order[: k + 1]].any()  # itself and everything before it in the order
        assert changed[model.order[k + 1 :]].all()  # random weights: every later pixel sees it


@pytest.mark.parametrize(("image_shape", "levels"), [((1, 1, 3), 2), ((3, 1, 1), 2), ((1, 2, 2), 2), ((1, 1, 2), 3)])
def test_probabilities_of_all_images_sum_to_one(image_shape, levels):
    for model in build_all(image_shape, levels):
        assert abs(probabilities(model).sum().item() - 1.0) < 1e-6


def test_sample_frequencies_match_the_likelihood():
    for model in build_all((1, 1, 3), 2):
        frequency = sample_frequencies(model, 20000, torch.Generator().manual_seed(0))
        assert (frequency - probabilities(model)).abs().max() < 0.02


@pytest.mark.parametrize("levels", [2, 5])
def test_samples_have_the_data_form_and_follow_the_seed(levels):
    for model in build_all((1, 3, 2), levels):
        s = model.sample(7, torch.Generator().manual_seed(4))
        assert s.shape == (7, 1, 3, 2)
        # the data's form: float32 {0, 1} or int64 0 .. levels - 1
        assert s.dtype == (torch.float32 if levels == 2 else torch.int64)
        assert ((s == s.round()) & (s >= 0) & (s < levels)).all()
        assert torch.equal(s, model.sample(7, torch.Generator().manual_seed(4)))
        assert model.log_prob(s).shape == (7,)


def test_sampling_feeds_the_drawn_pixels_back():
    # x_1 = 1, then x_i = 1 - x_{i-1} with near-certain conditionals: an alternating pattern
    model = FVSBN((1, 1, 6), 2)
    with torch.no_grad():
        model.alpha_0.fill_(50.0)
        A = torch.zeros(6, 6)
        A[torch.arange(1, 6), torch.arange(5)] = -100.0
        rows, cols = torch.tril_indices(6, 6, offset=-1)
        model.alpha.copy_(A[rows, cols].unsqueeze(0))
    s = model.sample(4, torch.Generator().manual_seed(0))
    assert torch.equal(s.flatten(1), torch.tensor([1.0, 0, 1, 0, 1, 0]).expand(4, 6))
    # categorical: x_1 = 3, then x_i = 3 - x_{i-1} (input scaled to [0, 1])
    model = FVSBN((1, 1, 4), 4)
    with torch.no_grad():
        model.alpha_0.copy_(torch.tensor([[-50.0] * 4, [-50.0] * 4, [-50.0] * 4, [50.0] * 4]))  # [L, n]: level 3
        A = torch.zeros(4, 4, 4)
        A[0, torch.arange(1, 4), torch.arange(3)] = 100.0  # level 0 if the previous pixel was 3
        A[3, torch.arange(1, 4), torch.arange(3)] = -100.0  # level 3 if it was 0
        rows, cols = torch.tril_indices(4, 4, offset=-1)
        model.alpha.copy_(A[:, rows, cols])
    s = model.sample(3, torch.Generator().manual_seed(0))
    assert torch.equal(s.flatten(1), torch.tensor([3, 0, 3, 0]).expand(3, 4))


def test_frequencies_are_the_maximum_likelihood_estimate():
    torch.manual_seed(0)
    p = torch.linspace(0.1, 0.9, 6).reshape(1, 2, 3)
    x = torch.bernoulli(p.expand(400, 1, 2, 3))
    model = IndependentBernoulli((1, 2, 3), 2).fit_frequencies(x, alpha=0.0)
    torch.testing.assert_close(torch.sigmoid(model.theta), x.mean(0))
    nll = -model.log_prob(x).mean()
    (grad,) = torch.autograd.grad(nll, model.theta)
    assert grad.abs().max() < 1e-5  # a stationary point of a convex objective: the minimum
    # gradient training (Adam on the mean NLL) approaches the closed form
    trained = fit_distribution(IndependentBernoulli((1, 2, 3), 2), image_frequencies(x, 2), steps=400, lr=0.05)
    torch.testing.assert_close(trained.theta, model.theta, atol=1e-2, rtol=0)
    assert 0 <= -trained.log_prob(x).mean().item() - nll.item() < 1e-4


def test_frequencies_smooth_and_count_levels():
    x = torch.zeros(8, 1, 1, 2)
    x[:2, 0, 0, 1] = 1.0  # pixel 0 never on, pixel 1 on 2 of 8 times
    p = torch.sigmoid(pixel_frequencies(x, 2, alpha=1.0)).flatten()
    torch.testing.assert_close(p, torch.tensor([1 / 10, 3 / 10]))
    assert torch.sigmoid(pixel_frequencies(x, 2, alpha=0.0)).flatten()[0] < 1e-20  # clipped, not -inf
    grey = torch.tensor([0, 0, 2, 1, 2, 2]).reshape(6, 1, 1, 1)
    model = IndependentConfig(alpha=0.5).build((1, 1, 1), 3).fit_frequencies(grey)
    torch.testing.assert_close(torch.softmax(model.theta.flatten(), 0), torch.tensor([2.5, 1.5, 3.5]) / 7.5)
    torch.testing.assert_close(model.log_prob(grey[:1]), torch.log(torch.tensor([2.5 / 7.5])))


def test_fvsbn_learns_what_independent_pixels_cannot():
    # x_1 ~ Bernoulli(1/2), x_2 = x_1, x_3 = 1 - x_1: entropy log 2; independent pixels pay 3 log 2
    torch.manual_seed(0)
    x1 = torch.bernoulli(torch.full((256,), 0.5))
    x = torch.stack([x1, x1, 1 - x1], 1).reshape(256, 1, 1, 3)
    independent = IndependentBernoulli((1, 1, 3), 2).fit_frequencies(x, alpha=0.0)
    model = fit_distribution(FVSBNConfig().build((1, 1, 3), 2), image_frequencies(x, 2), steps=300, lr=0.1)
    assert -independent.log_prob(x).mean().item() > 2.0
    assert -model.log_prob(x).mean().item() < math.log(2) + 0.05


def test_wrong_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="alpha must be"):
        IndependentConfig(alpha=-1.0)
    with pytest.raises(ValueError, match="ordering must be"):
        FVSBNConfig(ordering="spiral")
    with pytest.raises(ValueError, match="order must be a permutation"):
        FVSBN((1, 1, 3), 2, order=torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="x must be"):
        FVSBN((1, 2, 2), 2).log_prob(torch.zeros(3, 1, 2, 3))
    with pytest.raises(ValueError, match="int64"):
        FVSBN((1, 2, 2), 5).log_prob(torch.zeros(3, 1, 2, 2))
    with pytest.raises(ValueError, match="levels must be"):
        IndependentBernoulli((1, 2, 2), 1)
