"""Deep Q-networks (notes §11.3; Mnih et al., 2013/2015).

``Q_theta(s, a)`` is fitted to the target ``y = r + gamma (1 - terminated) max_a' Q_theta_bar(s', a')``
on minibatches from a replay buffer, where ``theta_bar`` is a target network that follows ``theta``
every ``target_update_interval`` steps (a copy, or Polyak averaging with ``tau < 1``). Double DQN
(van Hasselt et al., 2016) picks ``a'`` with ``theta`` and scores it with ``theta_bar``. The notes
write ``V_theta(s)`` for the network where they mean ``Q_theta(s, a)``; this is the Q form.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from agents.deep.base import DeepAgent, EnvFactory, Iteration, finished_episodes
from agents.deep.buffer import Batch, ReplayBuffer
from agents.deep.networks import Network, as_tensor
from agents.tabular.schedules import Linear
from envs.state import env_state, load_env_state


@dataclass
class DQNConfig:
    """DQN hyperparameters; the defaults are RL Zoo's tuned values for CartPole-v1."""

    learning_rate: float = 2.3e-3
    """Adam step size."""
    buffer_size: int = 100_000
    """Replay buffer capacity (observation slots)."""
    learning_starts: int = 1_000
    """Environment steps of random actions before the first update."""
    batch_size: int = 64
    """Minibatch size of an update."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 256
    """Environment steps between rounds of updates."""
    gradient_steps: int = 128
    """Updates per round."""
    target_update_interval: int = 10
    """Environment steps between target-network updates."""
    tau: float = 1.0
    """Target update: 1 copies theta into theta_bar, smaller values average (Polyak)."""
    exploration_fraction: float = 0.16
    """Fraction of the training steps over which epsilon falls linearly."""
    exploration_initial_eps: float = 1.0
    """Epsilon at the start."""
    exploration_final_eps: float = 0.04
    """Epsilon after the decay."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the MLP head."""
    loss: Literal["huber", "mse"] = "huber"
    """Regression loss on the TD error."""
    double: bool = False
    """Double DQN target."""
    max_grad_norm: float = 10.0
    """Gradient clipping by global norm (notes §4.3)."""


def linear_epsilon(step: int, total_steps: int, config: DQNConfig) -> float:
    """Epsilon falls linearly from the initial to the final value over ``exploration_fraction`` of training
    (the tabular agents' :class:`~agents.tabular.schedules.Linear` schedule, counted in steps)."""
    span = max(round(config.exploration_fraction * total_steps), 1)
    return Linear(config.exploration_initial_eps, config.exploration_final_eps, span)(step)


def dqn_targets(q_target_next: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor, gamma: float,
                q_online_next: torch.Tensor | None = None) -> torch.Tensor:
    """``y = r + gamma (1 - terminated) Q_bar(s', a')`` with ``a' = argmax Q_bar`` or, for Double DQN,
    ``argmax Q_online``. ``q_*_next`` are ``[B, A]``; returns ``[B]``."""
    if q_online_next is None:
        next_values = q_target_next.max(dim=1).values
    else:
        next_values = q_target_next.gather(1, q_online_next.argmax(dim=1, keepdim=True)).squeeze(1)
    return rewards + gamma * (1.0 - terminated) * next_values


class DQN(DeepAgent):
    """DQN on one environment with ``Discrete`` actions."""

    name = "dqn"

    def __init__(self, make_env: EnvFactory, config: DQNConfig, seed: int = 0, total_steps: int = 50_000) -> None:
        super().__init__(make_env, seed)
        self.config, self.total_steps = config, int(total_steps)
        self.env = make_env()
        space = self.env.action_space
        if not hasattr(space, "n"):
            raise ValueError(f"DQN needs a Discrete action space, got {space}")
        self.obs_space = self.env.observation_space
        self.q = Network(self.obs_space, int(space.n), config.hidden)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.learning_rate)
        self.buffer = ReplayBuffer(config.buffer_size, self.obs_space, space)
        self.env.action_space.seed(seed)
        self.obs, _ = self.env.reset(seed=seed)

    def modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"q": self.q, "q_target": self.q_target, "optimizer": self.optimizer}

    @property
    def epsilon(self) -> float:
        return linear_epsilon(self.steps, self.total_steps, self.config)

    def act(self, obs: Any, deterministic: bool = True) -> int:
        if not deterministic and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.env.action_space.n))
        with torch.no_grad():
            return int(self.q(as_tensor(np.asarray(obs)[None], self.obs_space)).argmax(dim=1)[0])

    def iterate(self) -> Iteration:
        c = self.config
        if self.steps < c.learning_starts:
            action = int(self.rng.integers(self.env.action_space.n))
        else:
            action = self.act(self.obs, deterministic=False)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.buffer.add(self.obs, action, float(reward), next_obs, terminated, truncated)
        self.steps += 1
        done = terminated or truncated
        episodes = finished_episodes(info, done) if done else []
        self.obs = self.env.reset()[0] if done else next_obs

        losses: dict[str, float] = {}
        if self.steps >= c.learning_starts and self.steps % c.train_freq == 0:
            values = [self.update(self.buffer.sample(c.batch_size, self.rng)) for _ in range(c.gradient_steps)]
            losses = {"loss": float(np.mean(values))}
        if self.steps % c.target_update_interval == 0:
            self.update_target()
        return Iteration(1, episodes, losses)

    def loss(self, batch: Batch) -> torch.Tensor:
        """The regression loss of ``Q_theta(s, a)`` on the targets computed with ``theta_bar``."""
        obs = as_tensor(batch.obs, self.obs_space)
        next_obs = as_tensor(batch.next_obs, self.obs_space)
        actions = torch.as_tensor(batch.actions, dtype=torch.long)
        with torch.no_grad():
            q_online_next = self.q(next_obs) if self.config.double else None
            y = dqn_targets(self.q_target(next_obs), torch.as_tensor(batch.rewards),
                            torch.as_tensor(batch.terminated), self.config.gamma, q_online_next)
        q_sa = self.q(obs).gather(1, actions[:, None]).squeeze(1)
        if self.config.loss == "huber":
            return nn.functional.smooth_l1_loss(q_sa, y)
        return nn.functional.mse_loss(q_sa, y)

    def update(self, batch: Batch) -> float:
        """One gradient step on a minibatch; returns the loss."""
        loss = self.loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def update_target(self) -> None:
        """``theta_bar <- tau theta + (1 - tau) theta_bar`` (a copy when ``tau = 1``)."""
        for target, online in zip(self.q_target.parameters(), self.q.parameters()):
            target.mul_(1.0 - self.config.tau).add_(online, alpha=self.config.tau)

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "obs": self.obs, "env": env_state(self.env),
                "action_rng": self.env.action_space.np_random.bit_generator.state}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        load_env_state(self.env, state["env"])  # the episode goes on where the checkpoint left it
        self.obs = state["obs"]
        self.env.action_space.np_random.bit_generator.state = state["action_rng"]
