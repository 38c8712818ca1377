"""MADE (notes §7.3): the masks against their formula, the autoregressive property by the Jacobian, the
order-agnostic mask ensemble as an exact mixture likelihood, and samples that follow it."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from generative.models.base import log_mean_exp
from generative.models.exhaustive import (
    all_images,
    fit_distribution,
    image_frequencies,
    probabilities,
    randomised,
    sample_frequencies,
)
from generative.models.made import MADE, MADEConfig, direct_mask, made_degrees, made_masks

ORDERS = [torch.arange(1, 7), torch.arange(6, 0, -1), torch.tensor([3, 6, 1, 5, 2, 4])]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("hidden_sizes", [(5, 7, 4), (9,), ()])
def test_masks_follow_the_formula(order, hidden_sizes):
    m = made_degrees(order, hidden_sizes, torch.Generator().manual_seed(3))
    masks = made_masks(order, hidden_sizes, torch.Generator().manual_seed(3))  # the same degrees
    assert len(masks) == len(hidden_sizes) + 1 and torch.equal(m[0], order)
    for degrees in m[1:]:
        assert degrees.min() >= 1 and degrees.max() <= 5  # uniform on 1 .. n-1
    for l in range(1, len(m)):  # M^W(l)_ij = 1{m^(l-1)(j) <= m^(l)(i)}
        assert masks[l - 1].shape == (len(m[l]), len(m[l - 1]))
        for i in range(len(m[l])):
            for j in range(len(m[l - 1])):
                assert masks[l - 1][i, j] == float(m[l - 1][j] <= m[l][i])
    V = masks[-1]  # M^V_ij = 1{m^(L)(j) < m^(0)(i)}
    assert V.shape == (6, len(m[-1]))
    for i in range(6):
        for j in range(len(m[-1])):
            assert V[i, j] == float(m[-1][j] < order[i])
    D = direct_mask(order)
    assert all(D[i, j] == float(order[j] < order[i]) for i in range(6) for j in range(6))


def test_degrees_are_seeded_and_checked():
    a = made_degrees(ORDERS[2], (50, 50), torch.Generator().manual_seed(0))
    b = made_degrees(ORDERS[2], (50, 50), torch.Generator().manual_seed(0))
    c = made_degrees(ORDERS[2], (50, 50), torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])
    assert set(a[1].tolist()) == {1, 2, 3, 4, 5}  # every value of 1 .. n-1 drawn, none else
    with pytest.raises(ValueError, match="order must be a permutation"):
        made_masks(torch.tensor([1, 2, 2]), (4,), torch.Generator())
    with pytest.raises(ValueError, match="hidden_sizes"):
        made_masks(torch.tensor([1, 2, 3]), (0,), torch.Generator())


def nonzero_jacobian(model, k, levels, points=6):  # [n (outputs), n (inputs)]: any nonzero d logit / d input
    torch.manual_seed(123)
    pattern = torch.zeros(model.n, model.n, dtype=torch.bool)
    for _ in range(points):
        u = torch.rand(model.n, dtype=torch.float64)
        J = jacobian(lambda v: model.conditional_logits(v.unsqueeze(0), k)[0], u)  # [n, n] or [L, n, n]
        pattern |= (J != 0) if levels == 2 else (J != 0).any(0)
    return pattern


@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("direct", [False, True])
def test_output_k_has_zero_gradient_for_inputs_at_or_after_k(levels, seed, direct):
    # three mask sets, each its own random ordering, under three connectivity seeds
    model = MADE((1, 2, 3), levels, hidden_sizes=(32, 32), n_masks=3, order_agnostic=True, ordering="random",
                 connectivity_seed=seed, direct=direct, activation="relu").double()
    randomised(model, seed)
    assert len({tuple(o) for o in model.orders.tolist()}) == 3
    for k in range(3):
        m = model.orders[k]  # m(j): position of input j
        pattern = nonzero_jacobian(model, k, levels)
        later_or_same = m.unsqueeze(0) >= m.unsqueeze(1)  # [i, j]: m(j) >= m(i)
        assert not pattern[later_or_same].any()
        last = int(torch.argmax(m))  # the pixel at position n sees exactly the n - 1 before it
        assert torch.equal(pattern[last], m < model.n)
        assert not pattern[int(torch.argmin(m))].any()  # the first sees nothing


@pytest.mark.parametrize(("image_shape", "levels"), [((1, 1, 3), 2), ((3, 1, 1), 2), ((1, 2, 2), 2), ((1, 1, 2), 3),
                                                     ((1, 1, 1), 2)])
@pytest.mark.parametrize("n_masks", [1, 3])
def test_probabilities_of_all_images_sum_to_one(image_shape, levels, n_masks):
    model = MADEConfig(hidden_sizes=(8, 8), n_masks=n_masks, order_agnostic=True, direct=True).build(image_shape, levels)
    randomised(model)
    assert abs(probabilities(model).sum().item() - 1.0) < 1e-6


def test_ensemble_likelihood_is_the_mixture_and_loss_draws_one_mask():
    model = randomised(MADEConfig(hidden_sizes=(10,), n_masks=4, dropout=0.0).build((1, 2, 2), 2)).eval()
    x = all_images((1, 2, 2), 2)
    per_mask = torch.stack([model.log_prob_mask(x, k) for k in range(4)])  # [4, 16]
    assert (per_mask.max(0).values - per_mask.min(0).values).max() > 0.1  # the masks disagree
    torch.testing.assert_close(model.log_prob(x), torch.log(per_mask.exp().mean(0)))
    torch.testing.assert_close(model.log_prob(x), log_mean_exp(per_mask, 0))
    drawn = set()
    for seed in range(30):
        k = int(torch.randint(4, (1,), generator=torch.Generator().manual_seed(seed)))
        torch.testing.assert_close(model.loss(x, torch.Generator().manual_seed(seed)), -per_mask[k])
        drawn.add(k)
    assert drawn == {0, 1, 2, 3}


def test_mask_sets_share_the_ordering_unless_order_agnostic():
    plain = MADEConfig(hidden_sizes=(20,), n_masks=1).build((1, 3, 3), 2)
    assert torch.equal(plain.orders, torch.arange(1, 10).unsqueeze(0))  # plain MADE: natural order, one mask
    shared = MADEConfig(hidden_sizes=(20,), n_masks=3, order_agnostic=False).build((1, 3, 3), 2)
    assert all(torch.equal(o, shared.orders[0]) for o in shared.orders)
    assert not torch.equal(shared.mask_0[0], shared.mask_0[1])  # connectivity-agnostic: new hidden degrees
    agnostic = MADEConfig(hidden_sizes=(20,), n_masks=3, order_agnostic=True).build((1, 3, 3), 2)
    assert len({tuple(o) for o in agnostic.orders.tolist()}) == 3
    again = MADEConfig(hidden_sizes=(20,), n_masks=3, order_agnostic=True).build((1, 3, 3), 2)
    assert torch.equal(again.orders, agnostic.orders) and torch.equal(again.mask_1, agnostic.mask_1)


def test_dropout_only_in_training_and_seeded():
    model = randomised(MADEConfig(hidden_sizes=(16,), n_masks=1, dropout=0.5).build((1, 2, 2), 2))
    x = all_images((1, 2, 2), 2)
    model.train()
    a, b = model.loss(x, torch.Generator().manual_seed(0)), model.loss(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.allclose(a, -model.log_prob(x))
    model.eval()
    torch.testing.assert_close(model.loss(x, torch.Generator().manual_seed(0)), -model.log_prob(x))


@pytest.mark.parametrize("n_masks", [1, 3])
def test_sample_frequencies_match_the_likelihood(n_masks):
    model = MADEConfig(hidden_sizes=(8,), n_masks=n_masks, order_agnostic=True, activation="tanh").build((1, 1, 3), 2)
    randomised(model, scale=1.5)
    p = probabilities(model)
    assert (sample_frequencies(model, 20000, torch.Generator().manual_seed(0)) - p).abs().max() < 0.02
    assert p.max() - p.min() > 0.1


@pytest.mark.parametrize("levels", [2, 17])
def test_samples_have_the_data_form_and_follow_the_seed(levels):
    model = randomised(MADEConfig(hidden_sizes=(12,), n_masks=2, order_agnostic=True).build((2, 2, 3), levels))
    s = model.sample(5, torch.Generator().manual_seed(2))
    assert s.shape == (5, 2, 2, 3)
    # the data's form: float32 {0, 1} or int64 0 .. levels - 1
    assert s.dtype == (torch.float32 if levels == 2 else torch.int64)
    assert ((s == s.round()) & (s >= 0) & (s < levels)).all()
    assert torch.equal(s, model.sample(5, torch.Generator().manual_seed(2)))
    assert not torch.equal(s, model.sample(5, torch.Generator().manual_seed(3)))


def test_sampling_feeds_its_own_pixels_back():
    # only the direct layer and output biases: x_1 = 1, then x_i = 1 - x_{i-1} in the model's order
    for ordering in ["natural", "random"]:
        config = MADEConfig(hidden_sizes=(4,), n_masks=1, ordering=ordering, connectivity_seed=7, dropout=0.0)
        model = config.build((1, 1, 6), 2)
        pixel_at = torch.argsort(model.orders[0])  # pixel at position 1 .. n
        with torch.no_grad():
            model.output.weight.zero_()
            model.output.bias.fill_(50.0)
            model.direct.weight.zero_()
            model.direct.weight[pixel_at[1:], pixel_at[:-1]] = -100.0
        s = model.sample(3, torch.Generator().manual_seed(0))
        expected = torch.zeros(6)
        expected[pixel_at] = torch.tensor([1.0, 0, 1, 0, 1, 0])
        assert torch.equal(s.flatten(1), expected.expand(3, 6))


def test_training_learns_a_dependency():
    torch.manual_seed(0)
    x1 = torch.bernoulli(torch.full((256,), 0.5))
    x = torch.stack([x1, 1 - x1, x1, x1], 1).reshape(256, 1, 2, 2)  # entropy log 2 (independent: 4 log 2)
    model = MADEConfig(hidden_sizes=(16,), n_masks=1, direct=False, dropout=0.0).build((1, 2, 2), 2)
    fit_distribution(model, image_frequencies(x, 2), steps=300, lr=0.05)
    assert -model.log_prob(x).mean().item() < math.log(2) + 0.05


def test_wrong_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="n_masks"):
        MADEConfig(n_masks=0)
    with pytest.raises(ValueError, match="dropout"):
        MADEConfig(dropout=1.0)
    with pytest.raises(ValueError, match="ordering"):
        MADEConfig(ordering="raster")
    with pytest.raises(ValueError, match="hidden_sizes"):
        MADEConfig(hidden_sizes=(10, 0))
    model = MADEConfig(hidden_sizes=(4,), n_masks=1).build((1, 2, 2), 2)
    with pytest.raises(ValueError, match="u must be"):
        model.conditional_logits(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="k must be"):
        model.conditional_logits(torch.zeros(2, 4), k=1)
    with pytest.raises(ValueError, match="x must be"):
        model.log_prob(torch.zeros(2, 1, 4))
