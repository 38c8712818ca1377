"""The VAE's math (notes §6.3-6.4): closed-form KL, reparameterisation, ELBO <= IWAE_k <= log p(x) by quadrature."""

from __future__ import annotations

import math

import pytest
import torch

from generative.data.digits import load_digits_split
from generative.models.exhaustive import all_images
from generative.models.vae import (
    VAE,
    VAEConfig,
    dequantised_bound,
    gaussian_kl,
    gaussian_kl_elementwise,
    gaussian_log_density,
    reparameterise,
)


@pytest.mark.parametrize("mu, sigma", [(0.0, 1.0), (1.5, 0.3), (-2.0, 2.5), (0.3, 0.05)])
def test_gaussian_kl_matches_monte_carlo(mu: float, sigma: float) -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.tensor([[mu, -0.5 * mu]], dtype=torch.float64)  # [1, 2]
    log_var = torch.tensor([[2 * math.log(sigma), 2 * math.log(sigma) + 0.4]], dtype=torch.float64)
    eps = torch.randn((100_000, 2), generator=g, dtype=torch.float64)
    z = reparameterise(m, log_var, eps)  # [N, 2] samples of q
    log_ratio = gaussian_log_density(z, m, log_var) - gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
    se = log_ratio.std() / math.sqrt(len(z))
    closed = gaussian_kl(m, log_var)[0]
    assert abs(log_ratio.mean() - closed) < 3 * se
    assert torch.allclose(gaussian_kl_elementwise(m, log_var).sum(-1), gaussian_kl(m, log_var))


def test_kl_is_zero_only_at_the_prior() -> None:
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0
    assert (gaussian_kl(torch.randn(3, 4), torch.randn(3, 4)) > 0).all()
    with pytest.raises(ValueError, match="log_var"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_reparameterisation_moments_and_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.7, -1.2], dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    eps = torch.randn((200_000, 2), generator=g, dtype=torch.float64)
    z = reparameterise(mu, 2 * sigma.log(), eps)  # [N, 2]
    n = len(z)
    assert ((z.mean(0) - mu).abs() < 3 * sigma / math.sqrt(n)).all()
    var_se = sigma**2 * math.sqrt(2 / (n - 1))  # standard error of a Gaussian sample variance
    assert ((z.var(0) - sigma**2).abs() < 3 * var_se).all()
    # d z / d mu = 1 and d z / d sigma = eps: the gradients of the loss z.sum() are exact
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.full((2,), float(n), dtype=torch.float64))
    assert torch.allclose(sigma.grad, eps.sum(0))


def _toy(seed: int = 0) -> VAE:
    """A VAE on 2x2 binary images with a 1-D latent, so that ``log p(x)`` is a 1-D integral; float64."""
    torch.manual_seed(seed)
    model = VAE((1, 2, 2), 2, latent=1, hidden=(8,), activation="tanh").double()
    with torch.no_grad():  # a decoder whose p(x|z) depends strongly on z: the posterior is far from q
        for p in model.decoder.parameters():
            p.mul_(2.0)
    return model


def _quadrature(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # -> log p(x) [B], KL(q||post) [B]
    z = torch.linspace(-10, 10, 10_001, dtype=torch.float64)  # [S]
    dz = float(z[1] - z[0])
    grid = z[:, None, None].expand(-1, len(x), 1)  # [S, B, 1]
    with torch.no_grad():
        log_joint = model.log_likelihood(x, grid) + gaussian_log_density(grid, torch.zeros(1), torch.zeros(1))  # [S, B]
        log_px = torch.logsumexp(log_joint, 0) + math.log(dz)  # [B]
        mu, log_var = model.encode(x)
        log_q = gaussian_log_density(grid, mu, log_var)  # [S, B]
        kl_post = (log_q.exp() * (log_q - (log_joint - log_px))).sum(0) * dz  # KL(q(z|x) || p(z|x))
    return log_px, kl_post


X_TOY = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.float64).reshape(4, 1, 2, 2)


def test_quadrature_is_a_normalised_density() -> None:
    model = _toy()
    log_px, kl_post = _quadrature(model, all_images((1, 2, 2), 2).double())
    assert abs(float(torch.logsumexp(log_px, 0))) < 1e-8  # the 16 images' probabilities sum to 1
    assert (kl_post > 0).all()
    assert (_quadrature(model, X_TOY)[1] > 0.1).all()  # q is far from the posterior: the bounds have gaps to show


def test_elbo_equals_log_px_minus_kl_to_posterior() -> None:
    model, R = _toy(), 20_000
    log_px, kl_post = _quadrature(model, X_TOY)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        elbo = model.elbo(X_TOY.repeat(R, 1, 1, 1), g).reshape(R, len(X_TOY))  # [R, B]
    se = elbo.std(0) / math.sqrt(R)
    assert ((elbo.mean(0) - (log_px - kl_post)).abs() < 4 * se).all()
    assert (elbo.mean(0) < log_px - 0.04).all()


def test_iwae_rises_with_k_towards_log_px() -> None:
    model = _toy()
    log_px, kl_post = _quadrature(model, X_TOY)
    g = torch.Generator().manual_seed(3)
    means, ses = {}, {}
    for k, R in [(1, 20_000), (10, 4000), (100, 1000), (2000, 200)]:  # R independent bounds of each image
        bound = model.iwae(X_TOY.repeat(R, 1, 1, 1), k, g, chunk=500).reshape(R, len(X_TOY))
        means[k], ses[k] = bound.mean(0), bound.std(0) / math.sqrt(R)
    with torch.no_grad():
        elbo = model.elbo(X_TOY.repeat(20_000, 1, 1, 1), g).reshape(20_000, len(X_TOY))
    assert ((means[1] - elbo.mean(0)).abs() < 4 * (ses[1] ** 2 + elbo.var(0) / 20_000).sqrt()).all()  # IWAE_1 = ELBO
    for k, k_next in [(1, 10), (10, 100)]:  # clearly apart
        assert (means[k] + 3 * (ses[k] ** 2 + ses[k_next] ** 2).sqrt() < means[k_next]).all()
    assert (means[100] < means[2000] + 3 * (ses[100] ** 2 + ses[2000] ** 2).sqrt()).all()  # close to log p(x) here
    gap = log_px - means[2000]  # >= 0 in expectation, and small next to the ELBO's gap KL(q || p(z|x))
    assert (gap > -4 * ses[2000]).all()
    assert (gap < 4 * ses[2000] + 0.02).all() and (gap < 0.1 * kl_post).all()


def test_beta_scales_the_kl_term_of_the_loss() -> None:
    torch.manual_seed(0)
    model = VAE((1, 2, 2), 2, latent=3, hidden=(8,)).double()
    with torch.no_grad():
        mu, log_var = model.encode(X_TOY)
        kl = gaussian_kl(mu, log_var)
        elbo = model.elbo(X_TOY, torch.Generator().manual_seed(5))
        for beta in (0.0, 1.0, 4.0):
            model.beta = beta
            loss = model.loss(X_TOY, torch.Generator().manual_seed(5))
            assert torch.allclose(loss, -(elbo + kl) + beta * kl)  # -(E log p(x|z) - beta KL)
    model.beta = 1.0
    assert torch.allclose(model.loss(X_TOY, torch.Generator().manual_seed(5)), -elbo)


def test_free_bits_floor_the_kl_without_gradient() -> None:
    torch.manual_seed(0)
    model = VAE((1, 2, 2), 2, latent=3, hidden=(8,), free_bits=10.0).double()  # every dimension under the floor
    with torch.no_grad():
        mu, log_var = model.encode(X_TOY)
    loss = model.loss(X_TOY, torch.Generator().manual_seed(0))
    floored = [torch.autograd.grad(loss.sum(), p)[0] if p is not None else None for p in [model.encoder[0].weight]]
    model.free_bits, model.beta = 0.0, 0.0  # loss = -E log p(x|z): the reconstruction term alone
    rec = -model.loss(X_TOY, torch.Generator().manual_seed(0))
    assert torch.allclose(loss, -rec + 3 * 10.0)  # the floored KL counts as 3 dims x 10 nats
    assert torch.allclose(floored[0], torch.autograd.grad(-rec.sum(), model.encoder[0].weight)[0])
    assert (gaussian_kl_elementwise(mu, log_var).mean(0) < 10.0).all()


def test_decoders_sample_and_likelihoods() -> None:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    grey = VAEConfig(latent=4, hidden=(16,), dropout=0.0).build((1, 8, 8), 17)
    assert grey.decoder_kind == "categorical"
    x = torch.randint(0, 17, (5, 1, 8, 8), generator=g)
    assert grey.elbo(x, g).shape == (5,) and grey.iwae(x, 7, g).shape == (5,)
    assert grey.decode_logits(torch.zeros(5, 4)).shape == (5, 17, 1, 8, 8)
    mean = grey.decode_mean(torch.zeros(5, 4))
    assert mean.shape == (5, 1, 8, 8) and 0 <= mean.min() and mean.max() <= 1
    s1, s2 = grey.sample(6, torch.Generator().manual_seed(9)), grey.sample(6, torch.Generator().manual_seed(9))
    assert s1.dtype == torch.int64 and torch.equal(s1, s2) and s1.max() <= 16
    binary = VAEConfig(latent=4, hidden=(16,), dropout=0.0).build((1, 8, 8), 2)
    assert binary.decoder_kind == "bernoulli" and set(binary.sample(6, g).unique().tolist()) <= {0.0, 1.0}
    gauss = VAEConfig(latent=4, hidden=(16,), decoder="gaussian", gaussian_std=0.2, dropout=0.0).build((1, 8, 8), 17)
    xc = torch.rand((5, 1, 8, 8), generator=g)
    z = torch.randn((2, 5, 4), generator=g)
    expected = torch.distributions.Normal(gauss.decode_mean(z.reshape(10, 4)).reshape(2, 5, 64), 0.2)
    assert torch.allclose(gauss.log_likelihood(xc, z), expected.log_prob(xc.flatten(1)).sum(-1), atol=1e-4)
    assert not gauss.log_var_x.requires_grad
    assert VAEConfig(decoder="gaussian").build((1, 8, 8), 17).log_var_x.requires_grad  # learned by default
    assert torch.allclose(dequantised_bound(torch.tensor([0.0]), 64, 17), torch.tensor([-64 * math.log(17)]))
    assert torch.allclose(binary.kl_per_dimension(x.float().clamp(max=1)).sum(),
                          gaussian_kl(*binary.encode(x.float().clamp(max=1))).mean())


def test_bad_arguments_raise_one_line_errors() -> None:
    for bad in [{"latent": 0}, {"hidden": ()}, {"beta": -1.0}, {"dropout": 1.0}, {"free_bits": -1.0},
                {"decoder": "poisson"}, {"gaussian_std": 0.0}]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            VAEConfig(**bad)
    with pytest.raises(ValueError, match="bernoulli"):
        VAEConfig(decoder="bernoulli").build((1, 8, 8), 17)
    with pytest.raises(ValueError, match="categorical"):
        VAEConfig(decoder="categorical").build((1, 8, 8), 2)
    model = VAEConfig(latent=2, hidden=(8,)).build((1, 8, 8), 2)
    with pytest.raises(ValueError, match="x must be"):
        model.elbo(torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="k must be"):
        model.iwae(torch.zeros(3, 1, 8, 8), 0)


def test_beta_vae_has_lower_kl_after_short_training() -> None:
    split = load_digits_split(form="binary")
    x_train, x_test = torch.from_numpy(split.x_train), torch.from_numpy(split.x_test)
    kls = {}
    for beta in (1.0, 4.0):
        torch.manual_seed(0)
        model = VAEConfig(latent=8, hidden=(64,), beta=beta, dropout=0.0).build((1, 8, 8), 2)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(300):
            loss = model.loss(x_train[torch.randint(0, len(x_train), (64,), generator=g)], g).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        kls[beta] = float(model.kl_per_dimension(x_test).sum())
    assert kls[4.0] < 0.7 * kls[1.0]


def test_sample_and_iwae_run_without_dropout_and_keep_the_mode() -> None:
    torch.manual_seed(0)
    model = VAEConfig(latent=4, hidden=(16,), dropout=0.5).build((1, 8, 8), 2)
    x = (torch.rand((6, 1, 8, 8), generator=torch.Generator().manual_seed(0)) > 0.5).float()
    for draw in (lambda s: model.sample(5, torch.Generator().manual_seed(s)),
                 lambda s: model.iwae(x, 4, torch.Generator().manual_seed(s))):
        assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))  # the generator decides
    assert model.training  # the mode is restored
    assert torch.equal(model.kl_per_dimension(x), model.kl_per_dimension(x))
