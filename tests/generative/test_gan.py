"""The GAN maths of notes §9 (generative.models.gan): losses, saturation, penalties, unrolling, Theorems 9.1-9.2."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import nn

from generative.models.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    adam_step,
    discriminator_loss,
    gradient_penalty,
    jensen_shannon,
    minimax_generator_loss,
    non_saturating_generator_loss,
    optimal_discriminator,
    r1_penalty,
    unrolled_generator_loss,
    unrolled_parameters,
    value_at_optimum,
    value_function,
    wgan_critic_loss,
    wgan_generator_loss,
)

torch.set_num_threads(1)


def test_losses_equal_their_formulas():
    real = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    fake = torch.tensor([-3.0, 0.0, 1.5, 4.0], dtype=torch.float64)
    d_real, d_fake = 1 / (1 + np.exp(-real.numpy())), 1 / (1 + np.exp(-fake.numpy()))
    v = np.mean(np.log(d_real)) + np.mean(np.log(1 - d_fake))
    assert float(value_function(real, fake)) == pytest.approx(v, abs=1e-12)
    assert float(discriminator_loss(real, fake)) == pytest.approx(-v, abs=1e-12)
    assert float(minimax_generator_loss(fake)) == pytest.approx(np.mean(np.log(1 - d_fake)), abs=1e-12)
    assert float(non_saturating_generator_loss(fake)) == pytest.approx(-np.mean(np.log(d_fake)), abs=1e-12)
    assert float(wgan_critic_loss(real, fake)) == pytest.approx(float(fake.mean() - real.mean()), abs=1e-12)
    assert float(wgan_generator_loss(fake)) == pytest.approx(-float(fake.mean()), abs=1e-12)
    # logits far in the tails stay finite where sigmoid then log would give -inf
    assert torch.isfinite(discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_saturation_of_the_minimax_loss():
    """Figure 9.1: when D(G(z)) -> 0 the minimax loss's gradient vanishes; the non-saturating one does not."""
    for logit, (mm_bound, ns_bound) in ((-10.0, (1e-4, 0.99)), (-20.0, (1e-8, 0.999))):
        x = torch.tensor([logit], dtype=torch.float64, requires_grad=True)  # D(G(z)) = sigmoid(logit) ~ 0
        (g_mm,) = torch.autograd.grad(minimax_generator_loss(x), x)
        (g_ns,) = torch.autograd.grad(non_saturating_generator_loss(x), x)
        assert abs(float(g_mm)) < mm_bound  # d/dl log(1 - sigmoid(l)) = -sigmoid(l)
        assert abs(float(g_ns)) > ns_bound  # d/dl -log sigmoid(l) = -(1 - sigmoid(l))
        assert float(g_mm) == pytest.approx(-1 / (1 + math.exp(-logit)), rel=1e-9)
    # both push the logit up (descent increases D(G(z))), and agree in the middle: slopes -1/2 and -1/2
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    assert float(torch.autograd.grad(minimax_generator_loss(x), x)[0]) == pytest.approx(-0.5)
    assert float(torch.autograd.grad(non_saturating_generator_loss(x), x)[0]) == pytest.approx(-0.5)


def test_r1_penalty_equals_the_analytic_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert float(r1_penalty(lambda v: v @ w + 3.0, x, gamma=4.0)) == pytest.approx(2.0 * float(w @ w), rel=1e-12)
    A = torch.randn(3, 3, generator=g, dtype=torch.float64)
    quadratic = lambda v: ((v @ A) * v).sum(dim=1)
    expected = 0.5 * 10.0 * (x @ (A + A.T)).square().sum(dim=1).mean()
    assert float(r1_penalty(quadratic, x, gamma=10.0).detach()) == pytest.approx(float(expected), rel=1e-10)
    # the penalty trains the discriminator: its gradient w.r.t. w is gamma * w
    w = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(r1_penalty(lambda v: v @ w, x, gamma=4.0), w)
    torch.testing.assert_close(grad, 4.0 * w.detach())


def test_wgan_gp_penalty_vanishes_for_a_unit_gradient_critic():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(32, 2, generator=g, dtype=torch.float64)
    fake = torch.randn(32, 2, generator=g, dtype=torch.float64)
    w = torch.tensor([0.6, 0.8], dtype=torch.float64)  # |w| = 1
    assert float(gradient_penalty(lambda v: v @ w, real, fake, 10.0, g)) == pytest.approx(0.0, abs=1e-12)
    w2 = (2 * w).requires_grad_(True)  # |w| = 2: the penalty is lam (2 - 1)^2, its gradient 2 lam (|w| - 1) w / |w|
    penalty = gradient_penalty(lambda v: v @ w2, real, fake, 10.0, g)
    assert float(penalty.detach()) == pytest.approx(10.0, rel=1e-12)
    (grad,) = torch.autograd.grad(penalty, w2)
    torch.testing.assert_close(grad, 2 * 10.0 * (2 - 1) * w)
    # a non-linear critic: the interpolates are where its gradient is measured
    critic = lambda v: 0.5 * v.square().sum(dim=1)
    eps = torch.rand(32, generator=torch.Generator().manual_seed(5)).double()[:, None]
    x_hat = eps * real + (1 - eps) * fake
    expected = 3.0 * (x_hat.norm(dim=1) - 1).square().mean()
    got = gradient_penalty(critic, real, fake, 3.0, torch.Generator().manual_seed(5))
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-12)


def _tiny_problem():
    """A 1-D generator x = a z + b and a small tanh discriminator, float64, fixed batches."""
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    g = torch.Generator().manual_seed(3)
    z = torch.randn(24, 1, generator=g, dtype=torch.float64)
    real = 1.5 + 0.5 * torch.randn(24, 1, generator=g, dtype=torch.float64)
    theta = torch.tensor([0.7, -0.4], dtype=torch.float64, requires_grad=True)
    return disc, z, real, theta


class _Logit(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):  # [B, 1] -> [B]
        return self.net(x).squeeze(1)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_unrolling_differentiates_through_the_discriminator_steps(optimizer):
    disc, z, real, theta = _tiny_problem()
    model = _Logit(disc)

    def loss(th: torch.Tensor, steps: int, create_graph: bool = True) -> torch.Tensor:
        fake = th[0] * z + th[1]
        return unrolled_generator_loss("non-saturating", model, real, fake, steps, lr=0.3, optimizer=optimizer,
                                       create_graph=create_graph)

    plain = non_saturating_generator_loss(model(theta[0] * z + theta[1]))
    assert float(loss(theta, 0).detach()) == float(plain.detach())  # k = 0 is the plain loss
    (g0,) = torch.autograd.grad(loss(theta, 0), theta)
    (g3,) = torch.autograd.grad(loss(theta, 3), theta)
    # central finite differences of the unrolled loss (a function of theta through the fakes of every step)
    fd = torch.zeros(2, dtype=torch.float64)
    for i in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[i] = 1e-6
        with torch.enable_grad():
            fd[i] = (loss(theta.detach() + e, 3, False) - loss(theta.detach() - e, 3, False)) / 2e-6
    torch.testing.assert_close(g3, fd, rtol=1e-6, atol=1e-8)
    assert (g3 - g0).abs().max() > 1e-3  # looking ahead changes the generator's gradient
    # not differentiating through the steps (only the last discriminator) misses part of it
    (g_stop,) = torch.autograd.grad(loss(theta, 3, create_graph=False), theta)
    assert (g_stop - fd).abs().max() > 1e-4


def test_unrolled_adam_step_is_torch_adam():
    disc, z, real, theta = _tiny_problem()
    model = _Logit(disc)
    fake = (theta[0] * z + theta[1]).detach()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.5, 0.999))
    for _ in range(2):  # two real steps, so the moments are not zero
        opt.zero_grad()
        discriminator_loss(model(real), model(fake)).backward()
        opt.step()
    names = {p: k for k, p in model.named_parameters()}
    state = {key: {names[p]: opt.state[p][key].clone() for p in names} for key in ("exp_avg", "exp_avg_sq")}
    predicted = unrolled_parameters(model, real, fake, 1, 0.01, "adam", (0.5, 0.999), state, adam_step_count=2)
    opt.zero_grad()
    discriminator_loss(model(real), model(fake)).backward()
    opt.step()
    for key, p in model.named_parameters():
        torch.testing.assert_close(predicted[key].detach(), p.detach(), rtol=1e-10, atol=1e-12)
    # one by hand
    params = {"w": torch.tensor([1.0], dtype=torch.float64)}
    zero = {"w": torch.zeros(1, dtype=torch.float64)}
    new, _m, _v = adam_step(params, [torch.tensor([2.0], dtype=torch.float64)], zero, zero, 1, 0.1)
    assert float(new["w"]) == pytest.approx(1.0 - 0.1 * 2.0 / (2.0 + 1e-8))  # the first step moves by lr sign(g)


def _normal(x, mu, s):
    return torch.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))


def test_theorem_9_1_a_trained_discriminator_approaches_d_star():
    """D trained on samples of p_data = N(0, 1) and p_model = N(1.5, 0.7^2) approaches p_data / (p_data + p_model)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    disc = MLPDiscriminator(1, (32, 32), "tanh")
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)
    for _ in range(1500):
        real = torch.randn(256, 1, generator=g)
        fake = 1.5 + 0.7 * torch.randn(256, 1, generator=g)
        opt.zero_grad()
        discriminator_loss(disc(real), disc(fake)).backward()
        opt.step()
    x = torch.linspace(-2.0, 3.0, 201)
    d_star = optimal_discriminator(_normal(x, 0.0, 1.0), _normal(x, 1.5, 0.7))
    with torch.no_grad():
        d = torch.sigmoid(disc(x[:, None]))
    err = (d - d_star).abs()
    print(f"Theorem 9.1: |D - D*| on [-2, 3]: mean {float(err.mean()):.4f}, max {float(err.max()):.4f}")
    assert float(err.mean()) < 0.05
    assert float(err.max()) < 0.15


def test_optimal_discriminator_closed_form():
    p, q = torch.tensor([0.2, 0.0, 1.0, 0.0]), torch.tensor([0.6, 0.5, 0.0, 0.0])
    torch.testing.assert_close(optimal_discriminator(p, q), torch.tensor([0.25, 0.0, 1.0, 0.5]))


def test_theorem_9_2_value_at_the_optimum():
    x = torch.linspace(-15.0, 15.0, 30001, dtype=torch.float64)
    p = _normal(x, 0.0, 1.0)
    assert value_at_optimum(p, p, x) == pytest.approx(-math.log(4), abs=1e-6)  # V(G*, D*) = -log 4
    for mu, s in ((1.0, 1.0), (2.0, 0.5), (-0.5, 2.0)):
        q = _normal(x, mu, s)
        # JSD independently: scipy's quadrature of KL(p || m) + KL(q || m) with scipy's normal densities
        P, Q = stats.norm(0.0, 1.0), stats.norm(mu, s)
        m = lambda t: 0.5 * (P.pdf(t) + Q.pdf(t))  # noqa: B023
        kl_p = integrate.quad(lambda t: P.pdf(t) * np.log(P.pdf(t) / m(t)), -12, 12, limit=200)[0]  # noqa: B023
        lo, hi = mu - 12 * s, mu + 12 * s
        kl_q = integrate.quad(lambda t: Q.pdf(t) * np.log(Q.pdf(t) / m(t)), lo, hi, limit=200)[0]  # noqa: B023
        jsd = 0.5 * (kl_p + kl_q)
        assert 0 < jsd < math.log(2)
        assert jensen_shannon(p, q, x) == pytest.approx(jsd, abs=1e-6)
        assert value_at_optimum(p, q, x) == pytest.approx(2 * jsd - math.log(4), abs=1e-6)
    # disjoint supports: JSD = log 2 and V(G, D*) = 0 (the perfect discriminator of §9.2)
    a, b = (x.abs() < 1).double() / 2, ((x - 5).abs() < 1).double() / 2
    assert jensen_shannon(a, b, x) == pytest.approx(math.log(2), abs=1e-3)
    assert value_at_optimum(a, b, x) == pytest.approx(0.0, abs=1e-3)


def test_dcgan_shapes():
    torch.manual_seed(0)
    gen, disc = DCGANGenerator(16, 8), DCGANDiscriminator(8)
    with torch.no_grad():
        x = gen(torch.randn(5, 16))
    assert x.shape == (5, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert disc(x).shape == (5,)
    with pytest.raises(ValueError, match="x must be"):
        disc(torch.zeros(2, 1, 7, 7))
