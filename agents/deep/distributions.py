"""Stochastic policies for policy search (notes §11.3): categorical for ``Discrete`` actions and a
diagonal Gaussian ``N(mu_theta(s), sigma_theta^2)`` for ``Box`` actions.

The Gaussian's log-density is written out here (and tested against ``torch.distributions``):
``log pi(a | s) = -sum_i [ (a_i - mu_i)^2 / (2 sigma_i^2) + log sigma_i + log(2 pi) / 2 ]``.
A sample ``u`` is unbounded; the environment gets ``low + (tanh(u) + 1) (high - low) / 2``, a fixed
squashing applied after the policy, so the score function is that of ``u``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.deep.networks import Network

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``log N(u; mu, diag(exp(log_std))^2)`` summed over the last axis: ``[B, D] -> [B]``."""
    z = (u - mu) * torch.exp(-log_std)
    return -(0.5 * z.pow(2) + log_std + 0.5 * LOG_2PI).sum(dim=-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of the diagonal Gaussian, ``sum_i (log sigma_i + (1 + log 2 pi) / 2)``: ``[..., D] -> [...]``."""
    return (log_std + 0.5 * (1.0 + LOG_2PI)).sum(dim=-1)


def squash(u: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map unbounded ``u`` into the box ``[low, high]`` with ``tanh``."""
    return low + (np.tanh(u) + 1.0) * 0.5 * (high - low)


class PolicyOutput(NamedTuple):
    """What the policy says about a batch of states."""

    action: torch.Tensor  # [B] int (categorical) or [B, D] unbounded sample u (Gaussian)
    log_prob: torch.Tensor  # [B] log pi(action | s)
    entropy: torch.Tensor  # [B]


class Policy(nn.Module):
    """``pi_theta(a | s)`` for the action space of an environment.

    ``forward(obs)`` samples; ``evaluate(obs, actions)`` scores given actions (for the gradient);
    ``mode(obs)`` is the greedy action (argmax, or the Gaussian mean); ``to_env(action)`` turns an
    action of this policy into one the environment accepts.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden: tuple[int, ...] = (64, 64),
                 log_std_init: float = 0.0) -> None:
        super().__init__()
        if isinstance(action_space, gym.spaces.Discrete):
            self.continuous = False
            self.net = Network(observation_space, int(action_space.n), hidden, nn.Tanh)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.continuous = True
            dim = action_space.shape[0]
            self.net = Network(observation_space, dim, hidden, nn.Tanh)
            self.log_std = nn.Parameter(torch.full((dim,), float(log_std_init)))
            self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))
        else:
            raise ValueError(f"policies handle Discrete or 1-D Box action spaces, got {action_space}")

    def _scores(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def forward(self, obs: torch.Tensor) -> PolicyOutput:
        out = self._scores(obs)
        if self.continuous:
            log_std = self.log_std.expand_as(out)
            u = out + torch.exp(log_std) * torch.randn_like(out)
            return PolicyOutput(u, gaussian_log_prob(u, out, log_std), gaussian_entropy(log_std))
        dist = torch.distributions.Categorical(logits=out)
        action = dist.sample()
        return PolicyOutput(action, dist.log_prob(action), dist.entropy())

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> PolicyOutput:
        out = self._scores(obs)
        if self.continuous:
            log_std = self.log_std.expand_as(out)
            return PolicyOutput(actions, gaussian_log_prob(actions, out, log_std), gaussian_entropy(log_std))
        dist = torch.distributions.Categorical(logits=out)
        return PolicyOutput(actions, dist.log_prob(actions.long()), dist.entropy())

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        out = self._scores(obs)
        return out if self.continuous else out.argmax(dim=-1)

    def to_env(self, action: torch.Tensor) -> np.ndarray:
        a = action.detach().cpu().numpy()
        if not self.continuous:
            return a.astype(np.int64)
        return squash(a, self.low.cpu().numpy(), self.high.cpu().numpy()).astype(np.float32)
