"""The pixel transformer (notes §7.7): autoregressive property, exact normalisation, sampling, the cache."""

from __future__ import annotations

import time

import pytest
import torch

from generative.models.exhaustive import all_images, fit_distribution, image_frequencies, probabilities, randomised
from generative.models.transformer import PixelTransformer, TransformerConfig, image_to_tokens, tokens_to_image


def _tiny(image_shape: tuple[int, int, int], levels: int, seed: int = 0, std: float | None = None) -> PixelTransformer:
    """A small model in eval mode; ``std`` redraws every weight so the distribution is far from uniform."""
    torch.manual_seed(seed)
    model = TransformerConfig(d_model=16, heads=2, layers=2, mlp_ratio=2, dropout=0.0).build(image_shape, levels)
    return (model if std is None else randomised(model, seed, std)).eval()


def test_tokens_round_trip_in_raster_order_with_channels_innermost() -> None:
    x = torch.arange(2 * 2 * 3).reshape(1, 2, 2, 3)  # [B, C, H, W]
    tokens = image_to_tokens(x, 17)
    assert tokens[0, :4].tolist() == [x[0, 0, 0, 0], x[0, 1, 0, 0], x[0, 0, 0, 1], x[0, 1, 0, 1]]
    assert torch.equal(tokens_to_image(tokens, (2, 2, 3), 17), x)


def test_logit_i_has_zero_gradient_wrt_the_embeddings_of_pixels_at_or_after_i() -> None:
    model = _tiny((1, 3, 3), 2, std=0.3)
    n = model.n
    x = torch.bernoulli(torch.full((2, 1, 3, 3), 0.5), generator=torch.Generator().manual_seed(0))
    h = model.embed(model.shifted_tokens(x)).detach()  # [B, n, d]: position j holds pixel j - 1

    jacobian = torch.autograd.functional.jacobian(lambda h: model.network(h)[0], h)  # [B, n, 1, B, n, d]
    per_position = jacobian.abs().sum(dim=(0, 2, 3, 5))  # [n logits, n input positions]
    for i in range(n):
        for j in range(n):
            # logit i (of pixel i) sees input position j <= i, i.e. the start token and pixels < i.
            assert (per_position[i, j] > 0) == (j <= i), (i, j)


@pytest.mark.parametrize("image_shape,levels", [((1, 3, 3), 2), ((2, 3, 2), 2), ((1, 2, 3), 17)])
def test_changing_pixel_j_never_changes_the_logits_of_pixels_up_to_j(image_shape: tuple[int, int, int],
                                                                     levels: int) -> None:
    model = _tiny(image_shape, levels, seed=1, std=0.3)
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, levels, (3, *image_shape), generator=g)
    x = x.float() if levels == 2 else x

    def raster_logits(x: torch.Tensor) -> torch.Tensor:  # [B, n, levels or 1] in the model's order
        out = model.logits(x)  # [B, C, H, W] or [B, levels, C, H, W]
        out = out.unsqueeze(1) if levels == 2 else out
        return out.permute(0, 3, 4, 2, 1).reshape(x.shape[0], model.n, -1)

    before = raster_logits(x)
    for j in range(model.n):
        tokens = image_to_tokens(x, levels).clone()
        tokens[:, j] = (tokens[:, j] + 1) % levels
        after = raster_logits(tokens_to_image(tokens, image_shape, levels))
        assert torch.equal(after[:, : j + 1], before[:, : j + 1])  # exactly
        if j + 1 < model.n:
            assert not torch.equal(after[:, j + 1], before[:, j + 1])


def test_tiny_binary_image_normalises_and_samples_match_the_likelihood() -> None:
    model = _tiny((1, 2, 2), 2, seed=3, std=0.5)
    p = probabilities(model)  # all 16 images
    assert abs(p.sum().item() - 1.0) < 1e-5
    assert p.max() > 0.15 and p.min() < 0.04  # far from uniform (1/16), so the comparison below has teeth

    samples = model.sample(20000, torch.Generator().manual_seed(0))
    assert samples.dtype == torch.float32 and samples.shape == (20000, 1, 2, 2)
    assert (image_frequencies(samples, 2) - p).abs().max() < 0.02


def test_seventeen_levels_normalise_and_sample_in_range() -> None:
    model = _tiny((1, 1, 3), 17, seed=4, std=0.3)
    logits = model.logits(all_images((1, 1, 3), 17)[:5])
    assert logits.shape == (5, 17, 1, 1, 3)
    assert abs(probabilities(model).sum().item() - 1.0) < 1e-5  # 17^3 images
    samples = model.sample(50, torch.Generator().manual_seed(1))
    assert samples.dtype == torch.int64 and samples.shape == (50, 1, 1, 3)
    assert samples.min() >= 0 and samples.max() <= 16


@pytest.mark.parametrize("image_shape,levels", [((1, 8, 8), 2), ((1, 4, 4), 17)])
def test_cached_and_uncached_sampling_draw_identical_images(image_shape: tuple[int, int, int], levels: int) -> None:
    model = _tiny(image_shape, levels, seed=5, std=0.2)
    t0 = time.perf_counter()
    cached = model.sample(32, torch.Generator().manual_seed(7), cache=True)
    t1 = time.perf_counter()
    full = model.sample(32, torch.Generator().manual_seed(7), cache=False)
    t2 = time.perf_counter()
    assert torch.equal(cached, full)
    assert 0 < cached.float().mean() < levels - 1  # not a constant image
    print(f"{image_shape} levels={levels}: {1e3 * (t1 - t0) / 32:.2f} ms/sample with the cache, "
          f"{1e3 * (t2 - t1) / 32:.2f} ms/sample without")


def test_seeded_sampling_is_reproducible_and_restores_training_mode() -> None:
    model = _tiny((1, 4, 4), 2, seed=6, std=0.2).train()
    a = model.sample(16, torch.Generator().manual_seed(3))
    b = model.sample(16, torch.Generator().manual_seed(3))
    c = model.sample(16, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training


def test_training_learns_a_two_by_two_distribution() -> None:
    torch.manual_seed(0)
    model = TransformerConfig(d_model=16, heads=2, layers=2, mlp_ratio=2, dropout=0.0).build((1, 2, 2), 2)
    x_all = all_images((1, 2, 2), 2)
    target = torch.tensor([0.3, 0.02, 0.02, 0.1, 0.02, 0.02, 0.05, 0.02,
                           0.02, 0.05, 0.02, 0.02, 0.1, 0.02, 0.02, 0.2])
    fit_distribution(model, target, steps=150, lr=1e-2)  # E_target[-log p(x)] = H(target) + KL(target || model)
    with torch.no_grad():
        log_p = model.eval().log_prob(x_all)
    kl = (target * (target.log() - log_p)).sum().item()
    assert torch.allclose(model.loss(x_all), -log_p)
    assert 0 <= kl < 1e-3  # KL(target || model) in nats


def test_config_validates_and_builds() -> None:
    model = TransformerConfig().build((1, 8, 8), 2)
    assert isinstance(model, PixelTransformer) and model.n == 64 and model.image_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="heads"):
        TransformerConfig(d_model=30, heads=4)
    with pytest.raises(ValueError, match="dropout"):
        TransformerConfig(dropout=1.0)
    with pytest.raises(ValueError, match="layers"):
        TransformerConfig(layers=0)
    with pytest.raises(ValueError, match="levels"):
        TransformerConfig().build((1, 8, 8), 1)
    with pytest.raises(ValueError, match=r"x must be \[B, 1, 8, 8\]"):
        model.log_prob(torch.zeros(2, 1, 7, 8))
    with pytest.raises(ValueError, match="int64"):
        TransformerConfig().build((1, 8, 8), 17).log_prob(torch.zeros(2, 1, 8, 8))
