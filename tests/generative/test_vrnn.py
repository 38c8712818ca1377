"""The VRNN (notes §7.6) and its RNN baseline on pen strokes: the Gaussian KL in closed form equals its Monte
Carlo estimate, the output density is the bivariate Gaussian times a Bernoulli, ELBO <= IWAE bounds that rise
with k, generation draws z from the prior, and short training runs improve both models."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, MultivariateNormal, Normal

from generative.data.strokes import strokes_split
from generative.models.vrnn import (
    VRNN,
    StrokeRNN,
    StrokeRNNConfig,
    VRNNConfig,
    gaussian_kl,
    gaussian_log_prob,
    sample_stroke,
    stroke_log_prob,
)
from generative.tasks.strokes import (
    StrokeDataConfig,
    StrokeRNNTrainConfig,
    VRNNTrainConfig,
    mean_score,
    sampled_strokes_figure,
    train_stroke_rnn,
    train_vrnn,
)
from generative.training import FitConfig


def test_gaussian_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    logvar_q, logvar_p = (torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.5 for _ in range(2))
    kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    z = mu_q + (0.5 * logvar_q).exp() * torch.randn(200_000, 3, 4, generator=g, dtype=torch.float64)
    ratio = gaussian_log_prob(z, mu_q, logvar_q) - gaussian_log_prob(z, mu_p, logvar_p)  # [S, 3]
    stderr = ratio.std(0) / math.sqrt(len(ratio))
    assert torch.all((ratio.mean(0) - kl).abs() < 4 * stderr)
    assert kl.shape == (3,) and torch.all(kl > 0)
    assert torch.allclose(gaussian_kl(mu_q, logvar_q, mu_q, logvar_q), torch.zeros(3, dtype=torch.float64))
    reference = Normal(mu_q, (0.5 * logvar_q).exp()).log_prob(z[0]).sum(-1)
    assert torch.allclose(gaussian_log_prob(z[0], mu_q, logvar_q), reference)


def test_stroke_log_prob_is_bivariate_gaussian_times_bernoulli():
    g = torch.Generator().manual_seed(1)
    params = torch.randn(5, 6, generator=g, dtype=torch.float64)
    x = torch.cat([torch.randn(5, 2, generator=g, dtype=torch.float64), torch.tensor([[0.0], [1], [1], [0], [1]])], 1)
    sx, sy, rho = params[:, 2].exp(), params[:, 3].exp(), 0.99 * torch.tanh(params[:, 4])
    cov = torch.stack([torch.stack([sx**2, rho * sx * sy], -1), torch.stack([rho * sx * sy, sy**2], -1)], -2)
    expected = MultivariateNormal(params[:, :2], cov).log_prob(x[:, :2]) + Bernoulli(logits=params[:, 5]).log_prob(x[:, 2])
    assert torch.allclose(stroke_log_prob(params, x), expected)
    diagonal = (Normal(params[:, 0], sx).log_prob(x[:, 0]) + Normal(params[:, 1], sy).log_prob(x[:, 1])
                + Bernoulli(logits=params[:, 5]).log_prob(x[:, 2]))
    assert torch.allclose(stroke_log_prob(params, x, "diagonal"), diagonal)
    with pytest.raises(ValueError, match="params must be"):
        stroke_log_prob(params[:, :5], x)


def test_sample_stroke_has_the_moments_of_the_distribution():
    params = torch.tensor([[1.0, -2.0, math.log(0.5), math.log(2.0), math.atanh(0.6 / 0.99), 0.0]]).expand(100_000, 6)
    x = sample_stroke(params, torch.Generator().manual_seed(2))
    assert x.shape == (100_000, 3) and set(x[:, 2].unique().tolist()) == {0.0, 1.0}
    assert x[:, :2].mean(0) == pytest.approx([1.0, -2.0], abs=0.03)
    assert torch.cov(x[:, :2].T) == pytest.approx(torch.tensor([[0.25, 0.6], [0.6, 4.0]]), abs=0.03)
    assert x[:, 2].mean() == pytest.approx(0.5, abs=0.01)
    assert torch.equal(x, sample_stroke(params, torch.Generator().manual_seed(2)))


def _tiny_vrnn(cell="gru") -> VRNN:
    torch.manual_seed(0)
    return VRNN(hidden=8, z_dim=2, features=8, cell=cell).double()


def _strokes(B: int = 3, T: int = 4) -> torch.Tensor:
    return torch.from_numpy(strokes_split(B, 0, 0, T=max(T, 6)).train[:, :T]).double()


def test_elbo_is_reproducible_and_unbiased_for_the_sampled_log_ratio():
    model, x = _tiny_vrnn(), _strokes()
    a = model.elbo(x, torch.Generator().manual_seed(5))
    assert a.shape == (3,) and torch.equal(a, model.elbo(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, model.elbo(x, torch.Generator().manual_seed(6)))
    # the one-sample importance weight log p(x, z) - log q(z | x) has the ELBO's expectation
    with torch.no_grad():
        many = x.repeat(4000, 1, 1)
        g = torch.Generator().manual_seed(7)
        elbo, iwae1 = model.elbo(many, g).view(4000, 3), model.iwae(many, 1, g).view(4000, 3)
    stderr = (elbo.var(0) / 4000 + iwae1.var(0) / 4000).sqrt()
    assert torch.all((elbo.mean(0) - iwae1.mean(0)).abs() < 4 * stderr)
    assert torch.allclose(model.loss(x, torch.Generator().manual_seed(5)), -a)


def _log_p_by_quadrature(model: VRNN, x1: torch.Tensor) -> torch.Tensor:  # x1: [B, 3] -> [B], z_dim = 1
    """``log p(x_1) = log int p(z | h_0) p(x_1 | z, h_0) dz`` on a fine grid: the exact likelihood of one step."""
    h0 = torch.zeros(1, model.hidden, dtype=torch.float64)
    mu_p, logvar_p = model.prior(h0).chunk(2, -1)
    sd = (0.5 * logvar_p).exp()
    z = mu_p + sd * torch.linspace(-12.0, 12.0, 40_001, dtype=torch.float64)[:, None]  # [N, 1]
    params = model.decoder(torch.cat([model.phi_z(z), h0.expand(len(z), -1)], -1))  # [N, 6]
    log_joint = gaussian_log_prob(z, mu_p, logvar_p)[:, None] + stroke_log_prob(
        params[:, None].expand(-1, len(x1), -1), x1[None].expand(len(z), -1, -1))  # [N, B]
    return torch.logsumexp(log_joint, 0) + torch.log(z[1, 0] - z[0, 0])


def test_elbo_below_log_p_and_iwae_rises_with_k_to_the_exact_likelihood():
    torch.manual_seed(0)
    model = VRNN(hidden=8, z_dim=1, features=8).double()
    with torch.no_grad():  # make p(x | z) depend strongly on z, so that q(z | x) is far from the posterior
        model.phi_z[0].weight.mul_(4.0)
        model.decoder[2].weight.mul_(3.0)
    x = _strokes(3, 1)
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        log_p = _log_p_by_quadrature(model, x[:, 0])
        elbo = model.elbo(x.repeat(2000, 1, 1), g).view(2000, 3).mean(0)
        iwae = {k: torch.stack([model.iwae(x, k, g) for _ in range(20)]).mean(0) for k in (4, 64, 2048)}
    assert torch.all(elbo < iwae[4]) and torch.all(iwae[4] < iwae[64]) and torch.all(iwae[64] <= iwae[2048] + 1e-3)
    assert torch.allclose(iwae[2048], log_p, atol=0.02)  # (measured: within 0.002 nats)
    assert torch.all(log_p - elbo > 1.0)  # the gap is KL(q(z | x) || p(z | x)), large for this untrained q
    with pytest.raises(ValueError, match="k must be"):
        model.iwae(x, 0)


def test_generation_draws_z_from_the_prior_not_the_encoder():
    model = _tiny_vrnn()

    def refuse(*args):
        raise AssertionError("sample must not call the encoder q(z | x, h)")

    model.encoder.forward = refuse
    samples = model.sample(4, 7, torch.Generator().manual_seed(1))
    assert samples.shape == (4, 7, 3) and set(samples[:, :, 2].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(samples, model.sample(4, 7, torch.Generator().manual_seed(1)))
    assert not torch.equal(samples, model.sample(4, 7, torch.Generator().manual_seed(2)))
    lstm = _tiny_vrnn("lstm")
    assert lstm.sample(2, 5, torch.Generator().manual_seed(0)).shape == (2, 5, 3)
    assert lstm.elbo(_strokes(), torch.Generator().manual_seed(0)).shape == (3,)


def test_stroke_rnn_log_prob_is_exact_and_causal():
    torch.manual_seed(0)
    model = StrokeRNN(hidden=8, features=8).double()
    x = _strokes(2, 6)
    first = stroke_log_prob(model.decoder(torch.zeros(2, 8, dtype=torch.float64)), x[:, 0])
    assert torch.allclose(model.log_prob(x[:, :1]), first)  # p(x_1) from the initial state
    changed = x.clone()
    changed[:, 4:, :2] += 1.0
    assert torch.allclose(model.log_prob(changed[:, :4]), model.log_prob(x[:, :4]))
    assert not torch.allclose(model.log_prob(changed), model.log_prob(x))
    samples = model.sample(3, 5, torch.Generator().manual_seed(0))
    assert samples.shape == (3, 5, 3) and torch.equal(samples, model.sample(3, 5, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="x must be float strokes"):
        model.log_prob(x[..., :2])


def test_configs_validate_and_share_the_state_size():
    assert VRNNConfig().hidden == StrokeRNNConfig().hidden
    assert VRNNConfig(hidden=12).build().rnn.hidden == StrokeRNNConfig(hidden=12).build().rnn.hidden == 12
    with pytest.raises(ValueError, match="z_dim"):
        VRNNConfig(z_dim=0)
    with pytest.raises(ValueError, match="covariance"):
        StrokeRNNConfig(covariance="full")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="T must be"):
        StrokeDataConfig(T=3)


def test_short_training_improves_both_models(tmp_path):
    """T = 12, 16 state units, 50 steps each: from -8.9 nats per step (untrained) to about -4.4 (VRNN ELBO)
    and -4.2 (RNN log-likelihood)."""
    data = StrokeDataConfig(T=12, n_train=128, n_test=32)
    fit = FitConfig(steps=50, lr=1e-2, log_every=25, checkpoint_every=50, progress=False)
    split = data.split()
    test = torch.from_numpy(split.test)
    vrnn = train_vrnn(VRNNTrainConfig(VRNNConfig(hidden=16, z_dim=4, features=16), data, fit, 16, iwae_k=8),
                      tmp_path / "vrnn")
    rnn = train_stroke_rnn(StrokeRNNTrainConfig(StrokeRNNConfig(hidden=16, features=16), data, fit, 16),
                           tmp_path / "rnn")
    torch.manual_seed(0)
    untrained = mean_score(VRNNConfig(hidden=16, z_dim=4, features=16).build(), test) / 12
    assert vrnn.per_step > untrained + 2.0 and rnn.per_step > untrained + 2.0
    assert vrnn.test_iwae > vrnn.test_score and rnn.test_iwae == rnn.test_score
    assert vrnn.per_step == pytest.approx(vrnn.test_score / 12)
    assert np.isfinite(vrnn.fit.final_loss) and len(vrnn.fit.rows) >= 2
    figure = sampled_strokes_figure({"VRNN": vrnn.model, "RNN": rnn.model}, split, columns=4)
    assert len(figure.axes) == 12
