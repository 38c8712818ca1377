"""The maths of notes §10 (generative.models.diffusion) against closed forms and against diffusers' schedulers."""

from __future__ import annotations

import math

import pytest
import torch

from generative.models.diffusion import (
    Schedule,
    classifier_free_eps,
    classifier_gradient,
    classifier_guided_eps,
    classifier_guided_mean,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_mean,
    ddpm_sample,
    ddpm_step,
    make_schedule,
    posterior,
    posterior_coefficients,
    predict_x0,
    q_sample,
    q_step,
)

diffusers = pytest.importorskip("diffusers")
torch.set_num_threads(1)
PEER_KIND = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def in_float64(peer: object) -> Schedule:
    """The peer's own (float32) betas as our float64 schedule, the peer switched to float64 as well: the steps then
    compare to round-off, free of float32 cancellation near t = 0 (the schedules are compared separately)."""
    betas = peer.betas.double()  # type: ignore[attr-defined]
    peer.alphas_cumprod = torch.cumprod(1 - betas, 0)  # type: ignore[attr-defined]
    peer.one = torch.tensor(1.0, dtype=torch.float64)  # type: ignore[attr-defined]
    peer.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)  # type: ignore[attr-defined]
    return Schedule(betas, 1 - betas, peer.alphas_cumprod)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 50])
def test_schedule_equals_diffusers(kind: str, T: int) -> None:
    peer = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=PEER_KIND[kind])
    ours = make_schedule(T, kind)  # type: ignore[arg-type]
    torch.testing.assert_close(ours.betas.float(), peer.betas, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.alphas_cumprod.float(), peer.alphas_cumprod, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.alphas, 1 - ours.betas)


def test_schedule_rejects_bad_arguments() -> None:
    for kwargs in ({"T": 0}, {"T": 10, "kind": "quadratic"}, {"T": 10, "beta_start": 0.1, "beta_end": 0.01}):
        with pytest.raises(ValueError):
            make_schedule(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("t", [0, 9, 300])
def test_q_sample_matches_sequential_noising_in_distribution(t: int) -> None:
    s = make_schedule(1000, "linear")
    g = torch.Generator().manual_seed(0)
    n = 40000
    x0 = torch.tensor([1.5, -0.7, 0.0]).repeat(n, 1)  # [n, 3]
    x = x0.clone()
    for k in range(t + 1):  # code indices 0..t: t + 1 steps of the chain
        x = q_step(x, torch.full((n,), k), torch.randn(x.shape, generator=g), s.betas)
    direct = q_sample(x0, torch.full((n,), t), torch.randn(x0.shape, generator=g), s.alphas_cumprod)
    abar = float(s.alphas_cumprod[t])
    for sample in (x, direct):
        se_mean = math.sqrt((1 - abar) / n)
        se_var = (1 - abar) * math.sqrt(2 / (n - 1))
        assert (sample.mean(0) - math.sqrt(abar) * x0[0]).abs().max() < 5 * se_mean
        assert (sample.var(0) - (1 - abar)).abs().max() < 5 * se_var


def test_posterior_is_the_gaussian_product() -> None:
    """Bayes: q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0); in 1-D precisions add."""
    s = make_schedule(200, "cosine")
    t = torch.tensor([1, 5, 50, 199])
    x0, xt = torch.tensor([[0.3], [-1.0], [2.0], [0.5]], dtype=torch.float64), torch.tensor(
        [[0.1], [0.4], [-0.2], [1.3]], dtype=torch.float64)
    alpha, beta = s.alphas[t, None], s.betas[t, None]
    abar_prev = s.alphas_cumprod[t - 1, None]
    precision = alpha / beta + 1 / (1 - abar_prev)
    mean = (alpha.sqrt() * xt / beta + abar_prev.sqrt() * x0 / (1 - abar_prev)) / precision
    ours_mean, ours_var = posterior(x0, xt, t, s)
    torch.testing.assert_close(ours_mean, mean)
    torch.testing.assert_close(ours_var, 1 / precision)
    assert float(posterior_coefficients(s)[2][0]) == 0.0  # the first step back lands on the data


def test_notes_mu_q_with_the_true_noise_is_the_posterior_mean() -> None:
    """§10.3's mu_q(x_t, t) = (x_t - (1 - alpha_t) / sqrt(1 - abar_t) eps) / sqrt(alpha_t) with x_t = q_sample(x_0, eps)."""
    s = make_schedule(100, "linear")
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    for t in (1, 40, 99):
        tt = torch.full((6,), t)
        xt = q_sample(x0, tt, eps, s.alphas_cumprod)
        torch.testing.assert_close(ddpm_mean(xt, t, eps, s), posterior(x0, xt, tt, s)[0])
        torch.testing.assert_close(predict_x0(xt, tt, eps, s.alphas_cumprod), x0)


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddpm_step_equals_diffusers(variance: str, clip: float | None, kind: str) -> None:
    T = 1000
    peer = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=PEER_KIND[kind], clip_sample=clip is not None,
                                   variance_type="fixed_small" if variance == "beta_tilde" else "fixed_large")
    s = in_float64(peer)
    g = torch.Generator().manual_seed(3)
    f64 = torch.float64
    for t in (999, 500, 20, 1, 0):
        x, eps = 1.5 * torch.randn(4, 1, 8, 8, generator=g, dtype=f64), torch.randn(4, 1, 8, 8, generator=g, dtype=f64)
        expected = peer.step(eps, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t), dtype=f64)  # diffusers' own draw
        ours = ddpm_step(x, t, eps, s, noise, variance, clip)  # type: ignore[arg-type]
        torch.testing.assert_close(ours, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddim_step_equals_diffusers(eta: float, kind: str) -> None:
    T = 1000
    peer = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule=PEER_KIND[kind], clip_sample=False)
    peer.set_timesteps(50)
    times = ddim_timesteps(T, 50)
    assert times == peer.timesteps.tolist()
    s = in_float64(peer)
    g = torch.Generator().manual_seed(4)
    for t, t_prev in zip(times, [*times[1:], -1]):
        x, eps, z = (torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(3))
        expected = peer.step(eps, t, x, eta=eta, variance_noise=z if eta > 0 else None).prev_sample
        torch.testing.assert_close(ddim_step(x, t, t_prev, eps, s, eta, z), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("clipped_eps", [True, False])
def test_clipped_ddim_step_equals_diffusers(clipped_eps: bool) -> None:
    peer = diffusers.DDIMScheduler(num_train_timesteps=1000, clip_sample=True)
    peer.set_timesteps(50)
    s = in_float64(peer)
    g = torch.Generator().manual_seed(11)
    for t, t_prev in ((980, 960), (500, 480), (20, 0), (0, -1)):
        x, eps = 2 * torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
        expected = peer.step(eps, t, x, use_clipped_model_output=clipped_eps).prev_sample
        ours = ddim_step(x, t, t_prev, eps, s, clip=1.0, clipped_eps=clipped_eps)
        torch.testing.assert_close(ours, expected, atol=1e-10, rtol=1e-10)


def test_samplers_equal_diffusers_loops() -> None:
    """Whole chains with the same analytic noise model and the same generator draws."""
    T = 100
    s = make_schedule(T, "linear", 1e-4, 0.2)

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.3 * x + 0.001 * t.view(-1, 1).float()

    peer = diffusers.DDPMScheduler(num_train_timesteps=T, beta_end=0.2, clip_sample=False)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(5, 3, generator=g)
    for t in peer.timesteps:
        x = peer.step(eps_model(x, torch.full((5,), int(t))), int(t), x, generator=g).prev_sample
    ours = ddpm_sample(eps_model, (5, 3), s, torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)

    peer_ddim = diffusers.DDIMScheduler(num_train_timesteps=T, beta_end=0.2, clip_sample=False)
    peer_ddim.set_timesteps(10)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(6))
    for t in peer_ddim.timesteps:
        x = peer_ddim.step(eps_model(x, torch.full((5,), int(t))), int(t), x).prev_sample
    ours = ddim_sample(eps_model, (5, 3), s, 10, torch.Generator().manual_seed(6))
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)


def ddim_gain(s: Schedule, steps: int, v: float) -> float:
    """Deterministic DDIM with the exact noise model of N(m, v) data maps x_t - sqrt(abar_t) m linearly; the product of
    the per-step gains k = (sqrt(abar' abar) v + sqrt((1 - abar')(1 - abar))) / (abar v + 1 - abar), from x_T ~ N(0, 1)."""
    times = ddim_timesteps(s.T, steps)
    gain = 1.0
    for t, t_prev in zip(times, [*times[1:], -1]):
        a, a_prev = float(s.alphas_cumprod[t]), float(s.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
        gain *= (math.sqrt(a_prev * a) * v + math.sqrt((1 - a_prev) * (1 - a))) / (a * v + 1 - a)
    return gain


@pytest.mark.parametrize("sampler", ["ddpm", "ddim-50", "ddim-1000"])
def test_samplers_recover_a_gaussian_with_its_exact_noise_model(sampler: str) -> None:
    """For data N(m, v) the optimal eps is sqrt(1 - abar)(x_t - sqrt(abar) m) / (abar v + 1 - abar). DDPM returns
    N(m, v); DDIM the mean m and the variance of its step gains (a collapsed DDIM would not), which tends to v as the
    steps grow (a little below v at 50 steps: the deterministic steps lose some spread)."""
    m, v, n = 0.7, 0.05, 20000
    s = make_schedule(1000, "linear")

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = s.alphas_cumprod[t].view(-1, 1).to(x.dtype)
        return (1 - abar).sqrt() * (x - abar.sqrt() * m) / (abar * v + 1 - abar)

    g = torch.Generator().manual_seed(7)
    if sampler == "ddpm":
        x, var = ddpm_sample(eps_model, (n, 1), s, g), v
    else:
        steps = int(sampler.split("-")[1])
        x, var = ddim_sample(eps_model, (n, 1), s, steps, g), ddim_gain(s, steps, v) ** 2
    assert abs(float(x.mean()) - m) < 5 * math.sqrt(var / n) + 1e-4
    assert abs(float(x.var()) - var) < 5 * var * math.sqrt(2 / n) + 1e-4
    assert abs(ddim_gain(s, 1000, v) ** 2 - v) < 0.02 * v < abs(ddim_gain(s, 50, v) ** 2 - v)


def test_classifier_free_guidance() -> None:
    g = torch.Generator().manual_seed(8)
    cond, uncond = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    torch.testing.assert_close(classifier_free_eps(cond, uncond, 0.0), cond)
    torch.testing.assert_close(classifier_free_eps(cond, uncond, -1.0), uncond)
    torch.testing.assert_close(classifier_free_eps(cond, uncond, 3.0), cond + 3.0 * (cond - uncond))
    with pytest.raises(ValueError):
        classifier_free_eps(cond, uncond[:2], 1.0)


def test_classifier_gradient_of_a_linear_softmax_is_analytic() -> None:
    """log p(y | x) = w_y x + b_y - logsumexp(W x + b): the gradient is w_y - sum_k p_k w_k."""
    g = torch.Generator().manual_seed(9)
    W, b = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randn(10, generator=g, dtype=torch.float64)
    x, y = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.tensor([0, 3, 9, 3, 1])

    def log_prob(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x @ W.T + b, dim=1)

    grad = classifier_gradient(log_prob, x, torch.zeros(5, dtype=torch.long), y)
    p = torch.softmax(x @ W.T + b, dim=1)
    torch.testing.assert_close(grad, W[y] - p @ W)


def test_classifier_guidance_eps_form_shifts_the_mean_by_beta_over_sqrt_alpha() -> None:
    """Substituting eps - s sqrt(1 - abar) g into Algorithm 3's mean adds s beta_t / sqrt(alpha_t) g: the mean form
    with Sigma = beta_t / sqrt(alpha_t) (~ beta_t)."""
    s = make_schedule(1000, "cosine")
    gen = torch.Generator().manual_seed(10)
    x, eps, grad = (torch.randn(3, 1, 8, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    for t in (5, 500, 990):
        tt = torch.full((3,), t)
        guided = ddpm_mean(x, t, classifier_guided_eps(eps, grad, 2.0, tt, s.alphas_cumprod), s)
        sigma = s.betas[t] / s.alphas[t].sqrt()
        torch.testing.assert_close(guided, classifier_guided_mean(ddpm_mean(x, t, eps, s), float(sigma), grad, 2.0))


def test_step_arguments_are_checked() -> None:
    s = make_schedule(10, "linear")
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="noise"):
        ddpm_step(x, 5, x, s, None)
    with pytest.raises(ValueError, match="t must lie"):
        q_sample(x, torch.tensor([0, 10]), x, s.alphas_cumprod)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(x, 3, 5, x, s)
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(10, 11)
