"""REINFORCE: Monte Carlo policy gradient with a baseline (notes §11.3, "Policy search methods";
Williams, 1992; Sutton et al., 1999).

The gradient of ``J(theta) = E_tau[sum_t gamma^t r_t]`` is estimated from whole episodes as

    grad J ~ mean_t  grad log pi_theta(a_t | s_t) (G_t - b_t),   G_t = sum_{k >= t} gamma^(k - t) r_k,

where the reward-to-go ``G_t`` stops where the episode stops (also at a time-limit cut: no bootstrap)
and the baseline ``b_t`` does not depend on the action, so the estimate stays unbiased: a learned
value ``V_phi(s_t)`` fitted by MSE to ``G_t``, a running mean of past returns, or nothing.
The notes write the baseline as the return collected before ``t``; subtracting it from the full
return gives exactly the reward-to-go used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from agents.deep.base import DeepAgent, EnvFactory, Iteration, finished_episodes
from agents.deep.distributions import Policy
from agents.deep.networks import Network, as_tensor
from agents.tabular.mc import discounted_returns as reward_to_go
from envs.state import env_state, load_env_state

Baseline = Literal["value", "mean", "none"]


@dataclass
class ReinforceConfig:
    """REINFORCE hyperparameters; the defaults solve CartPole-v1 (see tests/agents/deep/test_learning_slow.py)."""

    learning_rate: float = 2e-3
    """Adam step size of the policy."""
    episodes_per_update: int = 8
    """Whole episodes collected per update."""
    gamma: float = 0.99
    """Discount factor."""
    baseline: Baseline = "value"
    """b_t: a learned value network V_phi(s_t), a running mean of returns, or none."""
    value_learning_rate: float = 2e-3
    """Adam step size of the value network (baseline="value")."""
    value_steps: int = 5
    """Full-batch gradient steps of the value network per update (baseline="value")."""
    mean_decay: float = 0.9
    """Decay of the running (exponential) mean of returns (baseline="mean")."""
    normalize_advantages: bool = True
    """Scale G_t - b_t to zero mean and unit variance within the batch (also subtracts the batch mean)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and value MLPs."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (Box actions)."""
    max_grad_norm: float = 1.0
    """Gradient clipping of the policy by global norm (notes §4.3)."""


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` over the batch (unchanged when it holds one element)."""
    if x.numel() < 2:
        return x
    return (x - x.mean()) / (x.std() + eps)


def policy_gradient_loss(log_prob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """``-mean_t log pi(a_t | s_t) A_t``, whose gradient is minus the policy-gradient estimate; ``[B], [B] -> []``.

    ``advantages`` are treated as constants (detached): only the score function carries the gradient.
    """
    if log_prob.shape != advantages.shape:
        raise ValueError(f"log_prob {tuple(log_prob.shape)} and advantages {tuple(advantages.shape)} differ")
    return -(log_prob * advantages.detach()).mean()


class Episodes(NamedTuple):
    """The steps of some whole episodes, concatenated."""

    obs: np.ndarray  # [B, ...] observations s_t
    actions: torch.Tensor  # [B] (categorical) or [B, D] (unbounded Gaussian sample u)
    returns: torch.Tensor  # [B] reward-to-go G_t


class REINFORCE(DeepAgent):
    """REINFORCE on one environment, ``Discrete`` or ``Box`` actions (through :class:`Policy`)."""

    name = "reinforce"

    def __init__(self, make_env: EnvFactory, config: ReinforceConfig | None = None, seed: int = 0) -> None:
        super().__init__(make_env, seed)
        self.config = c = config or ReinforceConfig()
        if c.episodes_per_update < 1:
            raise ValueError(f"episodes_per_update must be >= 1, got {c.episodes_per_update}")
        self.env = make_env()
        self.obs_space = self.env.observation_space
        self.policy = Policy(self.obs_space, self.env.action_space, c.hidden, c.log_std_init)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.learning_rate)
        self.value: Network | None = None
        if c.baseline == "value":
            self.value = Network(self.obs_space, 1, c.hidden, nn.Tanh)
            self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=c.value_learning_rate)
        self.mean_return: float | None = None  # running mean of G_t (baseline="mean")
        self.next_reset_seed: int | None = seed  # the first episode is seeded, later ones continue the stream

    def modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        modules: dict[str, nn.Module | torch.optim.Optimizer] = {"policy": self.policy, "optimizer": self.optimizer}
        if self.value is not None:
            modules.update(value=self.value, value_optimizer=self.value_optimizer)
        return modules

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> Any:
        x = as_tensor(np.asarray(obs)[None], self.obs_space)
        action = self.policy.mode(x) if deterministic else self.policy(x).action
        return self.policy.to_env(action)[0]

    # ------------------------------------------------------------------ interaction
    def run_episode(self) -> tuple[list[Any], list[torch.Tensor], list[float], dict[str, Any]]:
        """One whole episode with the stochastic policy: observations, actions, rewards, final info."""
        obs, _ = self.env.reset(seed=self.next_reset_seed)
        self.next_reset_seed = None
        observations, actions, rewards = [], [], []
        while True:
            with torch.no_grad():
                action = self.policy(as_tensor(np.asarray(obs)[None], self.obs_space)).action
            next_obs, reward, terminated, truncated, info = self.env.step(self.policy.to_env(action)[0])
            observations.append(obs)
            actions.append(action[0])
            rewards.append(float(reward))
            if terminated or truncated:  # a time-limit cut ends the return too: G_t does not bootstrap
                return observations, actions, rewards, info
            obs = next_obs

    def collect(self) -> tuple[Episodes, list[tuple[float, int]]]:
        """``episodes_per_update`` whole episodes as one :class:`Episodes`, and their (return, length)."""
        observations, actions, returns, episodes = [], [], [], []
        for _ in range(self.config.episodes_per_update):
            obs, acts, rewards, info = self.run_episode()
            self.steps += len(rewards)
            episodes += finished_episodes(info, True) or [(float(sum(rewards)), len(rewards))]
            observations += obs
            actions += acts
            returns.append(reward_to_go(np.asarray(rewards), self.config.gamma))
        batch = Episodes(np.asarray(observations), torch.stack(actions),
                        torch.as_tensor(np.concatenate(returns), dtype=torch.float32))
        return batch, episodes

    # ------------------------------------------------------------------ learning
    def baselines(self, obs: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """``b_t`` for every step, ``[B]``; it never depends on the actions taken (unbiasedness)."""
        if self.config.baseline == "value":
            assert self.value is not None
            with torch.no_grad():
                return self.value(obs).squeeze(-1)
        if self.config.baseline == "mean":
            # Past batches only; the very first update has no past and uses its own mean.
            mean = float(returns.mean()) if self.mean_return is None else self.mean_return
            return torch.full_like(returns, mean)
        return torch.zeros_like(returns)

    def losses(self, batch: Episodes) -> dict[str, torch.Tensor]:
        """The policy-gradient loss on ``batch`` (before any update) and the policy entropy."""
        obs = as_tensor(batch.obs, self.obs_space)
        advantages = batch.returns - self.baselines(obs, batch.returns)
        if self.config.normalize_advantages:
            advantages = normalize(advantages)
        out = self.policy.evaluate(obs, batch.actions)
        return {"policy_loss": policy_gradient_loss(out.log_prob, advantages), "entropy": out.entropy.mean()}

    def update(self, batch: Episodes) -> dict[str, float]:
        """One policy step, then the baseline catches up with the new returns; returns the losses."""
        c = self.config
        losses = self.losses(batch)
        self.optimizer.zero_grad()
        losses["policy_loss"].backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        result = {k: float(v.detach()) for k, v in losses.items()}
        if self.value is not None:
            obs = as_tensor(batch.obs, self.obs_space)
            for i in range(c.value_steps):
                value_loss = nn.functional.mse_loss(self.value(obs).squeeze(-1), batch.returns)
                self.value_optimizer.zero_grad()
                value_loss.backward()
                self.value_optimizer.step()
                if i == 0:
                    result["value_loss"] = float(value_loss.detach())
        elif c.baseline == "mean":
            batch_mean = float(batch.returns.mean())
            old = batch_mean if self.mean_return is None else self.mean_return
            self.mean_return = c.mean_decay * old + (1.0 - c.mean_decay) * batch_mean
        return result

    def iterate(self) -> Iteration:
        batch, episodes = self.collect()
        losses = self.update(batch)
        return Iteration(len(batch.returns), episodes, losses)

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> dict[str, Any]:
        return {"env": env_state(self.env), "mean_return": self.mean_return, "next_reset_seed": self.next_reset_seed}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.mean_return = state["mean_return"]
        self.next_reset_seed = state["next_reset_seed"]
        load_env_state(self.env, state["env"])
