"""Generative adversarial networks (notes §9): the value function, the players' losses, gradient penalties,
unrolling, the theory of §9.1 on known densities, and the networks (Goodfellow et al. 2014).

Every discriminator here returns a LOGIT ``l(x)``, ``D(x) = sigmoid(l(x))``, so every log is a stable
``logsigmoid``: ``log D = logsigmoid(l)`` and ``log(1 - D) = logsigmoid(-l)``.

* value function ``V(D, G) = E_data[log D(x)] + E_z[log(1 - D(G(z)))]`` (:func:`value_function`); the
  discriminator minimises ``-V`` (:func:`discriminator_loss`, Algorithm 1 line 5);
  Notes slip: the notes' V writes ``E_data[D(x)]``; the log belongs in both terms (as in their own proof of Thm 9.1).
* generator: the minimax (saturating) loss ``E log(1 - D(G(z)))`` of Algorithm 1 line 9, or the
  non-saturating ``-E log D(G(z))`` of Figure 9.1 (:func:`minimax_generator_loss`,
  :func:`non_saturating_generator_loss`);
* R1 (Mescheder et al. 2018): ``(gamma / 2) E_data ||grad_x l(x)||^2``, a penalty the discriminator PAYS
  (added to its loss; the notes' ``+ lambda ||grad D||^2`` inside the V it maximises would reward steep
  discriminators), :func:`r1_penalty`;
* WGAN-GP (Arjovsky et al. 2017; Gulrajani et al. 2017): critic loss ``E[f(fake)] - E[f(real)] +
  lambda E[(||grad f(x_hat)|| - 1)^2]`` on random interpolates ``x_hat``, generator loss ``-E[f(fake)]``;
* unrolled GAN (Metz et al. 2017): the generator's loss against the discriminator after ``k`` differentiable
  update steps (SGD or Adam) on the discriminator loss with the current generator's fakes
  (:func:`unrolled_parameters`, :func:`unrolled_generator_loss`);
* theory: ``D* = p_data / (p_data + p_model)`` (Theorem 9.1), and 1-D quadratures of ``V(G, D*)`` and of the
  Jensen-Shannon divergence (Theorem 9.2: ``V(G, D*) = 2 JSD(p || q) - log 4``).

Networks: MLP generator and discriminator for the 2-D toys (Metz et al.'s mixture experiment: tanh
generator, ReLU discriminator reading ``x / 4``), and DCGAN-style convolutional players for the 8x8 digits
(Radford et al. 2016: transposed convolutions with batch norm and ReLU in the generator, strided
convolutions with LeakyReLU in the discriminator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from generative.nn.mlp import MLP, Activation

GeneratorLoss = Literal["minimax", "non-saturating", "wasserstein"]
Params = dict[str, Tensor]

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "adam_step",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "jensen_shannon",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "optimal_discriminator",
    "r1_penalty",
    "unrolled_generator_loss",
    "unrolled_parameters",
    "value_at_optimum",
    "value_function",
    "wgan_critic_loss",
    "wgan_generator_loss",
]


# ------------------------------------------------------------------------------------------------ losses
def value_function(real_logits: Tensor, fake_logits: Tensor) -> Tensor:  # [B] or [B, 1], [B'] -> []
    """``V = mean log D(x) + mean log(1 - D(G(z)))`` with ``D = sigmoid(logit)``."""
    return F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:  # [B], [B'] -> []
    """``-V``: the discriminator's cross-entropy, real labelled 1 and fake labelled 0."""
    return -value_function(real_logits, fake_logits)


def minimax_generator_loss(fake_logits: Tensor) -> Tensor:  # [B] -> []
    """``E log(1 - D(G(z)))`` (Algorithm 1, line 9): saturates when ``D(G(z)) -> 0``."""
    return F.logsigmoid(-fake_logits).mean()


def non_saturating_generator_loss(fake_logits: Tensor) -> Tensor:  # [B] -> []
    """``-E log D(G(z))`` (Figure 9.1): its gradient stays large when ``D(G(z)) -> 0``."""
    return -F.logsigmoid(fake_logits).mean()


def wgan_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:  # [B], [B'] -> []
    """``E[f(fake)] - E[f(real)]``: the critic's estimate of the negative Wasserstein-1 distance (no penalty)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: Tensor) -> Tensor:  # [B] -> []
    """``-E[f(G(z))]``."""
    return -fake_scores.mean()


def generator_loss(kind: GeneratorLoss, fake_out: Tensor) -> Tensor:  # [B] logits or critic scores -> []
    """The generator's loss of ``kind`` on the discriminator's outputs for its samples."""
    if kind == "minimax":
        return minimax_generator_loss(fake_out)
    if kind == "non-saturating":
        return non_saturating_generator_loss(fake_out)
    if kind == "wasserstein":
        return wgan_generator_loss(fake_out)
    raise ValueError(f"kind must be minimax, non-saturating or wasserstein, got {kind!r}")


def _input_gradient(discriminator: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:  # [B, ...] -> [B, D]
    """``grad_x`` of the summed outputs (each row's gradient is its own: the rows are independent), kept in
    the graph so that a penalty on it trains the discriminator (double backpropagation)."""
    x = x.detach().requires_grad_(True)
    out = discriminator(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1)


def r1_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, gamma: float) -> Tensor:  # real: [B, ...]
    """R1 of Mescheder et al. (2018): ``(gamma / 2) E_data ||grad_x l(x)||^2`` on real data (``l``: the logit);
    the discriminator adds it to its loss.

    Notes slip: §9.2 puts ``+ lambda ||grad D||^2`` inside the V that D maximises (a reward); it is a penalty D pays.
    """
    return 0.5 * gamma * _input_gradient(discriminator, real).square().sum(dim=1).mean()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, lam: float,
                     generator: torch.Generator | None = None) -> Tensor:  # real, fake: [B, ...] -> []
    """WGAN-GP: ``lam E[(||grad f(x_hat)|| - 1)^2]`` at ``x_hat = eps x + (1 - eps) x~``, ``eps ~ U[0, 1]`` per
    row (drawn from ``generator`` on the CPU)."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have one shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    eps = torch.rand(len(real), generator=generator).to(real.device, real.dtype)
    eps = eps.view(-1, *([1] * (real.ndim - 1)))
    x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    return lam * (_input_gradient(critic, x_hat).norm(dim=1) - 1).square().mean()


# ------------------------------------------------------------------------------------------------ unrolling
def adam_step(params: Mapping[str, Tensor], grads: Sequence[Tensor], exp_avg: Mapping[str, Tensor],
              exp_avg_sq: Mapping[str, Tensor], step: int, lr: float, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-8) -> tuple[Params, Params, Params]:
    """One differentiable Adam step (``step``: its count, from 1) as torch.optim.Adam takes it; returns the
    new parameters and moments. ``sqrt`` reads its argument clamped at 1e-30, so the backward pass stays
    finite for a parameter whose gradient is exactly 0."""
    b1, b2 = betas
    new_p, new_m, new_v = {}, {}, {}
    for (key, p), g in zip(params.items(), grads):
        m = b1 * exp_avg[key] + (1 - b1) * g
        v = b2 * exp_avg_sq[key] + (1 - b2) * g * g
        denom = (v / (1 - b2**step)).clamp_min(1e-30).sqrt() + eps
        new_p[key] = p - lr * (m / (1 - b1**step)) / denom
        new_m[key], new_v[key] = m, v
    return new_p, new_m, new_v


def unrolled_parameters(discriminator: nn.Module, real: Tensor, fake: Tensor, steps: int, lr: float,
                        optimizer: Literal["sgd", "adam"] = "sgd", betas: tuple[float, float] = (0.9, 0.999),
                        state: Mapping[str, Mapping[str, Tensor]] | None = None, adam_step_count: int = 0,
                        create_graph: bool = True) -> Params:  # real: [B, ...], fake: [B', ...]
    """The discriminator's parameters after ``steps`` updates on ``discriminator_loss`` with the batch ``real``
    and the generator's ``fake`` (Metz et al. 2017, eq. 4), as tensors that keep the graph back to ``fake``
    and to the current parameters (``create_graph``; False gives the same numbers, not differentiated
    through). Adam starts from ``state`` (``{"exp_avg": {...}, "exp_avg_sq": {...}}`` keyed like
    ``named_parameters``; zeros if None) at step ``adam_step_count``."""
    params: Params = dict(discriminator.named_parameters())
    if optimizer == "adam":
        m = dict(state["exp_avg"]) if state else {k: torch.zeros_like(p) for k, p in params.items()}
        v = dict(state["exp_avg_sq"]) if state else {k: torch.zeros_like(p) for k, p in params.items()}
    for k in range(steps):
        real_logits = functional_call(discriminator, params, (real,))
        fake_logits = functional_call(discriminator, params, (fake,))
        loss = discriminator_loss(real_logits, fake_logits)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        if optimizer == "sgd":
            params = {key: p - lr * g for (key, p), g in zip(params.items(), grads)}
        elif optimizer == "adam":
            params, m, v = adam_step(params, grads, m, v, adam_step_count + k + 1, lr, betas)
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        if not create_graph:
            params = {key: p.detach().requires_grad_(True) for key, p in params.items()}
    return params


def unrolled_generator_loss(kind: GeneratorLoss, discriminator: nn.Module, real: Tensor, fake: Tensor, steps: int,
                            lr: float, **unroll: object) -> Tensor:  # real: [B, ...], fake: [B', ...] -> []
    """The generator's loss of ``kind`` against the discriminator unrolled ``steps`` times (0: the plain loss
    against the current discriminator); ``unroll``: the options of :func:`unrolled_parameters`."""
    if steps == 0:
        return generator_loss(kind, discriminator(fake))
    params = unrolled_parameters(discriminator, real, fake, steps, lr, **unroll)  # type: ignore[arg-type]
    return generator_loss(kind, functional_call(discriminator, params, (fake,)))


# ------------------------------------------------------------------------------------------------ theory
def optimal_discriminator(p_data: Tensor, p_model: Tensor) -> Tensor:  # densities at points [N] -> [N]
    """Theorem 9.1: ``D*(x) = p_data(x) / (p_data(x) + p_model(x))`` (1/2 where both vanish)."""
    total = p_data + p_model
    return torch.where(total > 0, p_data / total.clamp_min(torch.finfo(total.dtype).tiny), 0.5)


def _trapezoid(y: Tensor, x: Tensor) -> float:  # [N], [N] -> number
    return float(torch.trapezoid(y.double(), x.double()))


def value_at_optimum(p_data: Tensor, p_model: Tensor, x: Tensor) -> float:  # densities [N] on a 1-D grid x [N]
    """``V(G, D*) = int p log D* + q log(1 - D*) dx`` by the trapezoid rule on the grid ``x`` (``0 log 0 = 0``)."""
    p, q = p_data.double(), p_model.double()
    total = p + q  # log D* = log p - log(p + q), which stays finite where D* itself would underflow to 0
    integrand = torch.xlogy(p, p) - torch.xlogy(p, total) + torch.xlogy(q, q) - torch.xlogy(q, total)
    return _trapezoid(integrand, x)


def jensen_shannon(p: Tensor, q: Tensor, x: Tensor) -> float:  # densities [N] on a 1-D grid x [N]
    """``JSD(p || q) = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``, by the trapezoid rule."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    safe = m.clamp_min(torch.finfo(torch.float64).tiny)
    kl_p = torch.xlogy(p, p) - torch.xlogy(p, safe)
    kl_q = torch.xlogy(q, q) - torch.xlogy(q, safe)
    return 0.5 * _trapezoid(kl_p + kl_q, x)


# ------------------------------------------------------------------------------------------------ networks
class MLPGenerator(nn.Module):
    """``z ~ N(0, I_latent) -> x``: an MLP with a linear output (Metz et al.: two tanh layers of 128)."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], out_dim: int = 2, activation: Activation = "tanh"):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = MLP([latent_dim, *hidden, out_dim], activation)

    def forward(self, z: Tensor) -> Tensor:  # z: [B, latent_dim] -> [B, out_dim]
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """``x -> logit``: an MLP on ``input_scale * x`` (Metz et al. divide the ring's points by 4)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], activation: Activation = "relu", input_scale: float = 1.0):
        super().__init__()
        self.input_scale = input_scale
        self.net = MLP([in_dim, *hidden, 1], activation)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, in_dim] -> [B] logits
        return self.net(self.input_scale * x).squeeze(1)


class DCGANGenerator(nn.Module):
    """``z -> [B, 1, 8, 8]`` in ``[0, 1]``: a linear map to ``2 width x 2 x 2``, two stride-2 transposed
    convolutions (2 -> 4 -> 8) with batch norm and ReLU between them, and a sigmoid output."""

    def __init__(self, latent_dim: int, width: int = 32) -> None:
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        self.project = nn.Sequential(nn.Linear(latent_dim, 2 * width * 4, bias=False), nn.BatchNorm1d(2 * width * 4),
                                     nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:  # z: [B, latent_dim] -> [B, 1, 8, 8]
        h = self.project(z).view(len(z), 2 * self.width, 2, 2)
        return torch.sigmoid(self.up(h))


class DCGANDiscriminator(nn.Module):
    """``[B, 1, 8, 8] -> logit``: two stride-2 convolutions (8 -> 4 -> 2) with LeakyReLU(0.2) and a linear
    read-out; no batch norm, so that gradient penalties see each image alone."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * 4, 1),
        )

    def forward(self, x: Tensor) -> Tensor:  # x: [B, 1, 8, 8] -> [B] logits
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"x must be [B, 1, 8, 8], got {tuple(x.shape)}")
        return self.net(x).squeeze(1)

