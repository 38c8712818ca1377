"""NADE (notes §7.2): the O(nd) recursion against the O(n^2 d) recomputation, 2nd + n + d parameters, the
autoregressive property in any ordering, a normalised likelihood and samples that feed themselves back."""

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
from generative.models.fvsbn import pixel_order
from generative.models.nade import (
    NADE,
    NADEConfig,
    nade_logits,
    nade_parameter_count,
    nade_preactivations,
    nade_preactivations_naive,
)


def test_recursion_equals_recomputation_from_scratch():
    torch.manual_seed(0)
    u, W = torch.rand(6, 40, dtype=torch.float64), torch.randn(30, 40, dtype=torch.float64)
    a = nade_preactivations(u, W)  # [6, 40, 30]
    torch.testing.assert_close(a, nade_preactivations_naive(u, W), rtol=0, atol=1e-10)
    assert torch.equal(a[:, 0], torch.zeros(6, 30, dtype=torch.float64))  # a_1 = 0
    # the recursion itself: a_{i+1} - a_i = W_{:, i} x_i
    torch.testing.assert_close(a[:, 1:] - a[:, :-1], u[:, :-1, None] * W.T[None, :-1], rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="u must be"):
        nade_preactivations(u, W[:, :39])


@pytest.mark.parametrize("levels", [2, 5])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_model_logits_equal_the_naive_reference(levels, activation):
    order = pixel_order("random", 12, seed=2)
    model = randomised(NADE((3, 2, 2), levels, d=9, activation=activation, order=order), scale=1.5).double()
    x = torch.randint(levels, (64, 3, 2, 2), generator=torch.Generator().manual_seed(0))  # random images
    x = x.float() if levels == 2 else x
    torch.testing.assert_close(model(x), model.reference_logits(x), rtol=0, atol=1e-10)


def test_output_logits_are_v_h_plus_c():
    h, V, c = torch.rand(2, 4, 3), torch.randn(4, 3), torch.randn(4)
    expected = torch.stack([h[:, i] @ V[i] + c[i] for i in range(4)], 1)
    torch.testing.assert_close(nade_logits(h, V, c), expected)
    V5, c5 = torch.randn(4, 5, 3), torch.randn(4, 5)
    expected = torch.stack([h[:, i] @ V5[i].T + c5[i] for i in range(4)], 2)  # [2, 5, 4]
    torch.testing.assert_close(nade_logits(h, V5, c5), expected)


def test_parameter_count_is_2nd_plus_n_plus_d():
    for image_shape, d in [((1, 8, 8), 500), ((2, 3, 1), 7)]:
        n = math.prod(image_shape)
        model = NADEConfig(d=d).build(image_shape, 2)
        assert sum(p.numel() for p in model.parameters()) == 2 * n * d + n + d == nade_parameter_count(n, d)
    model = NADEConfig(d=10).build((1, 8, 8), 17)
    assert sum(p.numel() for p in model.parameters()) == 64 * 10 + 10 + 17 * (64 * 10 + 64)


@pytest.mark.parametrize("ordering", ["raster", "random"])
def test_a_pixel_changes_only_the_conditionals_after_it(ordering):
    config = NADEConfig(d=8, activation="sigmoid", ordering=ordering, ordering_seed=5)
    model = randomised(config.build((1, 2, 3), 2), scale=1.5)
    x = torch.tensor([1.0, 0, 0, 1, 0, 1]).reshape(1, 1, 2, 3)
    for k, pixel in enumerate(model.order.tolist()):
        flipped = x.clone()
        flipped.view(-1)[pixel] = 1 - flipped.view(-1)[pixel]
        changed = (model(flipped) != model(x)).flatten()
        assert not changed[model.order[: k + 1]].any()
        assert changed[model.order[k + 1 :]].all()


@pytest.mark.parametrize(("image_shape", "levels"), [((1, 1, 3), 2), ((3, 1, 1), 2), ((1, 2, 2), 2), ((1, 1, 2), 3)])
@pytest.mark.parametrize("ordering", ["raster", "random"])
def test_probabilities_of_all_images_sum_to_one(image_shape, levels, ordering):
    model = randomised(NADEConfig(d=6, ordering=ordering, ordering_seed=1).build(image_shape, levels), scale=1.5)
    assert abs(probabilities(model).sum().item() - 1.0) < 1e-6


@pytest.mark.parametrize("ordering", ["raster", "random"])
def test_sample_frequencies_match_the_likelihood(ordering):
    model = randomised(NADEConfig(d=5, ordering=ordering, ordering_seed=1).build((1, 1, 3), 2), scale=2.0)
    p = probabilities(model)
    assert (sample_frequencies(model, 20000, torch.Generator().manual_seed(0)) - p).abs().max() < 0.02
    assert p.max() - p.min() > 0.1  # a distribution far from uniform, so the check has teeth


@pytest.mark.parametrize("levels", [2, 17])
def test_samples_have_the_data_form_and_follow_the_seed(levels):
    model = randomised(NADEConfig(d=4).build((1, 4, 3), levels), scale=1.5)
    s = model.sample(6, torch.Generator().manual_seed(9))
    assert s.shape == (6, 1, 4, 3)
    # the data's form: float32 {0, 1} or int64 0 .. levels - 1
    assert s.dtype == (torch.float32 if levels == 2 else torch.int64)
    assert ((s == s.round()) & (s >= 0) & (s < levels)).all()
    assert torch.equal(s, model.sample(6, torch.Generator().manual_seed(9)))
    assert not torch.equal(s, model.sample(6, torch.Generator().manual_seed(10)))


def test_sampling_feeds_its_own_pixels_back():
    # h_i[j] ~ x_j for j < i (W = 50 I, b = -25); V_i reads h_{i-1}: x_1 = 1, x_i = 1 - x_{i-1}
    n = 6
    for order in [torch.arange(n), torch.tensor([3, 5, 0, 1, 4, 2])]:
        model = NADE((1, 1, n), 2, d=n, order=order)
        with torch.no_grad():
            model.W.copy_(50.0 * torch.eye(n))
            model.b.fill_(-25.0)
            model.V.zero_()
            model.V[torch.arange(1, n), torch.arange(n - 1)] = -100.0
            model.c.fill_(50.0)
        s = model.sample(3, torch.Generator().manual_seed(0))
        expected = torch.zeros(n)
        expected[order] = torch.tensor([1.0, 0, 1, 0, 1, 0])
        assert torch.equal(s.flatten(1), expected.expand(3, n))
        assert model.log_prob(s).min() > -1e-6  # the pattern has probability ~1 under teacher forcing


def test_training_beats_independent_pixels_on_dependent_data():
    torch.manual_seed(0)
    x1 = torch.bernoulli(torch.full((256,), 0.5))
    x = torch.stack([x1, 1 - x1, x1, x1], 1).reshape(256, 1, 2, 2)  # entropy log 2 (independent: 4 log 2)
    model = fit_distribution(NADEConfig(d=8).build((1, 2, 2), 2), image_frequencies(x, 2), steps=300, lr=0.05)
    assert -model.log_prob(x).mean().item() < math.log(2) + 0.05


def test_wrong_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="d must be"):
        NADEConfig(d=0)
    with pytest.raises(ValueError, match="activation must be"):
        NADEConfig(activation="gelu")
    with pytest.raises(ValueError, match="ordering must be"):
        NADEConfig(ordering="zigzag")
    with pytest.raises(ValueError, match="order must be a permutation"):
        NADE((1, 1, 3), 2, d=2, order=torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="x must be"):
        NADEConfig(d=3).build((1, 2, 2), 2).log_prob(torch.zeros(3, 2, 2, 2))
