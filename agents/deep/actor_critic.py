"""Synchronous advantage actor-critic, A2C (notes §11.3, "Actor-critic methods"; Mnih et al., 2016).

A critic ``V_phi`` replaces the Monte Carlo return of REINFORCE by a bootstrapped one. Every
:meth:`ActorCritic.iterate` steps ``n_envs`` environments ``n_steps`` times, then each step ``t`` of
the rollout gets the n-step return up to the end of the rollout (``n = n_steps - t``, cut at an
episode end):

    G_t = sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n}),     A_t = G_t - V(s_t),

and ``n_steps = 1`` gives the TD error ``delta = r + gamma V(s') - V(s)``. The loss is
``-mean(log pi(a_t | s_t) A_t) + vf_coef mean((V(s_t) - G_t)^2) - ent_coef mean(H[pi(. | s_t)])``.
A terminated episode does not bootstrap (``V = 0`` after it); a truncated one (time limit)
bootstraps from the value of its true final observation, ``infos["final_obs"]``.

Options that A2C implementations commonly have, all off by default (``agents/hyperparams/actor-critic.yml`` turns
them on where they were measured to help):

* ``gae_lambda < 1`` replaces ``G_t`` by the lambda-return, whose advantage ``G^lambda_t - V(s_t)`` is
  generalised advantage estimation (GAE; Schulman et al., 2016); ``lambda = 1`` is the n-step return above.
* ``normalize_observations`` feeds both networks ``clip((s - mean) / std, -10, 10)`` with running
  moments of the observations seen in training (as Stable-Baselines3's ``VecNormalize``), so that
  inputs measured in metres and in radians per second weigh alike.
* ``lr_decay_steps`` decays the learning rate linearly to 0 (the original A2C's schedule).
* ``ortho_init``: orthogonal initialisation with a 0.01-gain policy output, so the first actions are
  near zero rather than whatever a random network says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.deep.base import DeepAgent, EnvFactory, Iteration, StateAccess, finished_episodes
from agents.deep.distributions import Policy
from agents.deep.networks import Network, as_tensor
from agents.deep.reinforce import normalize, policy_gradient_loss


@dataclass
class ActorCriticConfig:
    """A2C hyperparameters; the defaults solve CartPole-v1 (see tests/agents/deep/test_learning_slow.py)."""

    n_envs: int = 8
    """Parallel environments."""
    vector: Literal["sync", "async"] = "sync"
    """Step the environments in this process one after another (sync), or each in its own process
    (async, Gymnasium's AsyncVectorEnv: worth it when one environment step is expensive)."""
    n_steps: int = 5
    """Steps of every environment per update; the longest n of the n-step returns."""
    learning_rate: float = 7e-4
    """Step size of the optimizer (actor and critic together)."""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """RMSprop (alpha 0.99, eps 1e-5, as in A2C) or Adam."""
    gamma: float = 0.99
    """Discount factor."""
    vf_coef: float = 0.5
    """Weight of the critic's squared error in the loss."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus (subtracted from the loss)."""
    max_grad_norm: float = 0.5
    """Gradient clipping by global norm (notes §4.3)."""
    normalize_advantages: bool = False
    """Scale the advantages to zero mean and unit variance within the rollout."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor and critic MLPs."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (Box actions)."""
    gae_lambda: float = 1.0
    """lambda of the lambda-returns (GAE); 1 gives the plain n-step returns, 0 the one-step TD targets."""
    normalize_observations: bool = False
    """Standardise (float vector) observations with their running mean and variance before both networks."""
    lr_decay_steps: int = 0
    """Decay the learning rate linearly to 0 over this many environment steps (A2C's "linear" schedule); 0 keeps
    it constant."""
    ortho_init: bool = False
    """Orthogonal weights and zero biases (A2C's and Stable-Baselines3's initialisation): hidden layers with
    gain sqrt(2), the policy's output layer with gain 0.01 (actions start near zero), the value's with 1."""


def td_error(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
             gamma: float) -> torch.Tensor:
    """``delta = r + gamma (1 - terminated) V(s') - V(s)``, all ``[...]`` of one shape.

    The notes print ``V(s) - (r + gamma V(s'))``, the negative; this sign makes ``delta > 0`` mean
    "better than expected", so the step ``grad log pi(a|s) delta`` makes ``a`` more likely.
    """
    return rewards + gamma * (1.0 - terminated.float()) * next_values - values


def n_step_returns(rewards: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
                   truncated: torch.Tensor, gamma: float, lam: float = 1.0) -> torch.Tensor:
    """n-step returns of a rollout, each looking ahead to the end of the rollout or of its episode.

    ``rewards``, ``terminated``, ``truncated``: ``[T, N]`` for ``T`` steps of ``N`` environments.
    ``next_values``: ``[T, N]``, ``V`` of the state after step ``t``: the true final observation
    where the episode ended (used only if truncated), ``s_T`` in the last row. Backwards,

        G_t = r_t + gamma * { (1 - terminated_t) next_values_t                 if the episode or the rollout ends at t
                            { (1 - lam) next_values_t + lam G_{t+1}            otherwise.

    With ``lam = 1`` (the default) these are the n-step returns, bit for bit; with ``lam < 1`` the
    lambda-returns, and ``G_t - V(s_t)`` is GAE's advantage ``sum_k (gamma lam)^k delta_{t+k}``
    (Schulman et al., 2016); ``lam = 0`` gives the TD targets ``r_t + gamma V(s_{t+1})``.
    Returns ``[T, N]``; with ``T = 1`` it is ``r + gamma (1 - terminated) V(s')``.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    shape = rewards.shape
    for name, x in (("next_values", next_values), ("terminated", terminated), ("truncated", truncated)):
        if x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, rewards {tuple(shape)}; both must be [T, N]")
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [T, N], got shape {tuple(shape)}")
    terminated, ends = terminated.bool(), terminated.bool() | truncated.bool()
    returns = torch.empty_like(rewards)
    following = torch.zeros_like(rewards[0])  # G_{t+1}
    for t in range(shape[0] - 1, -1, -1):
        bootstrap = torch.where(terminated[t], torch.zeros_like(following), next_values[t])
        # (1 - lam) V + lam G: with lam = 1 this is 0 * V + G, exactly G_{t+1}
        inside = following if lam == 1.0 else (1.0 - lam) * next_values[t] + lam * following
        tail = bootstrap if t == shape[0] - 1 else torch.where(ends[t], bootstrap, inside)
        following = returns[t] = rewards[t] + gamma * tail
    return returns


class RunningMoments(nn.Module):
    """Running mean and variance of observations ``[..., D]``; ``forward`` standardises and clips.

    Batches are merged with Chan et al.'s parallel update (exact: the moments of all observations
    seen so far, as if computed at once). Before any update it is the identity (mean 0, variance 1).
    The moments are buffers, so they travel with the checkpoint.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the batch ``x`` ``[B, *shape]`` into the moments."""
        if tuple(x.shape[1:]) != tuple(self.mean.shape):
            raise ValueError(f"x has shape {tuple(x.shape)}, expected [B, {', '.join(map(str, self.mean.shape))}]")
        x = x.double()
        n, mean, var = x.shape[0], x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta.pow(2) * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / torch.sqrt(self.var + self.eps)
        return z.clamp(-self.clip, self.clip).to(x.dtype)


def linear_decay(value: float, step: int, total: int) -> float:
    """``value (1 - step / total)``, and 0 from ``step = total`` on."""
    return value * max(0.0, 1.0 - step / total)


def orthogonal_init(layers: nn.Sequential, gain: float, out_gain: float) -> None:
    """Orthogonal weights (``W W^T = gain^2 I`` for wide, ``W^T W = gain^2 I`` for tall ``W``) and zero biases
    for the ``nn.Linear`` layers of ``layers``; the last one gets ``out_gain``."""
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, gain=out_gain if i == len(linears) - 1 else gain)
        nn.init.zeros_(layer.bias)


class Losses(NamedTuple):
    """The parts of the actor-critic loss (scalars)."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def actor_critic_loss(log_prob: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor, returns: torch.Tensor,
                      vf_coef: float, ent_coef: float, normalize_advantages: bool = False) -> Losses:
    """``-mean(log pi A) + vf_coef mean((V - G)^2) - ent_coef mean(H)`` with ``A = G - V`` detached; all ``[B]``."""
    advantages = (returns - values).detach()
    if normalize_advantages:
        advantages = normalize(advantages)
    policy = policy_gradient_loss(log_prob, advantages)
    value = nn.functional.mse_loss(values, returns.detach())
    mean_entropy = entropy.mean()
    return Losses(policy + vf_coef * value - ent_coef * mean_entropy, policy, value, mean_entropy)


class Rollout(NamedTuple):
    """``T = n_steps`` steps of ``N = n_envs`` environments."""

    obs: np.ndarray  # [T * N, ...] observations s_t, time-major
    actions: torch.Tensor  # [T * N] (categorical) or [T * N, D] (unbounded Gaussian sample u)
    rewards: torch.Tensor  # [T, N]
    terminated: torch.Tensor  # [T, N] bool
    truncated: torch.Tensor  # [T, N] bool
    next_values: torch.Tensor  # [T, N] V of the state after step t (the true final observation at an episode end)


class ActorCritic(DeepAgent):
    """A2C over ``n_envs`` synchronous copies of the environment; ``Discrete`` or ``Box`` actions."""

    name = "actor-critic"

    def __init__(self, make_env: EnvFactory, config: ActorCriticConfig | None = None, seed: int = 0) -> None:
        super().__init__(make_env, seed)
        self.config = c = config or ActorCriticConfig()
        if c.n_envs < 1 or c.n_steps < 1:
            raise ValueError(f"n_envs and n_steps must be >= 1, got {c.n_envs} and {c.n_steps}")
        if c.lr_decay_steps < 0:
            raise ValueError(f"lr_decay_steps must be >= 0, got {c.lr_decay_steps}")
        if not 0.0 <= c.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {c.gae_lambda}")
        # SAME_STEP: the observation after an episode end is already the reset one; the true final
        # observation comes in infos["final_obs"] (needed to bootstrap truncated episodes).
        factories = [lambda: StateAccess(make_env())] * c.n_envs
        vector = gym.vector.AsyncVectorEnv if c.vector == "async" else gym.vector.SyncVectorEnv
        self.envs = vector(factories, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.obs_space = self.envs.single_observation_space
        self.obs_norm: RunningMoments | None = None
        if c.normalize_observations:
            space = self.obs_space
            if not (isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating)):
                raise ValueError(f"normalize_observations needs float Box observations, got {space}")
            self.obs_norm = RunningMoments(space.shape)
        self.actor = Policy(self.obs_space, self.envs.single_action_space, c.hidden, c.log_std_init)
        self.critic = Network(self.obs_space, 1, c.hidden, nn.Tanh)
        if c.ortho_init:
            orthogonal_init(self.actor.net.head, math.sqrt(2.0), 0.01)
            orthogonal_init(self.critic.head, math.sqrt(2.0), 1.0)
        params = [*self.actor.parameters(), *self.critic.parameters()]
        if c.optimizer == "rmsprop":
            self.optimizer: torch.optim.Optimizer = torch.optim.RMSprop(params, lr=c.learning_rate, alpha=0.99, eps=1e-5)
        else:
            self.optimizer = torch.optim.Adam(params, lr=c.learning_rate)
        self.obs, _ = self.envs.reset(seed=seed)  # environment i gets seed + i

    def modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        modules: dict[str, nn.Module | torch.optim.Optimizer] = {
            "actor": self.actor, "critic": self.critic, "optimizer": self.optimizer}
        if self.obs_norm is not None:  # only then, so checkpoints written without it still load
            modules["obs_norm"] = self.obs_norm
        return modules

    def inputs(self, obs: Any) -> torch.Tensor:
        """A batch of observations ``[B, ...]`` as the networks' input (standardised if configured)."""
        x = as_tensor(obs, self.obs_space)
        return x if self.obs_norm is None else self.obs_norm(x)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> Any:
        x = self.inputs(np.asarray(obs)[None])
        action = self.actor.mode(x) if deterministic else self.actor(x).action
        return self.actor.to_env(action)[0]

    def value(self, obs: Any) -> torch.Tensor:
        """``V_phi(s)`` of a batch of observations: ``[B]``."""
        return self.critic(self.inputs(obs)).squeeze(-1)

    def collect(self) -> tuple[Rollout, list[tuple[float, int]]]:
        """``n_steps`` steps of every environment with the stochastic policy, and the finished episodes."""
        T, N = self.config.n_steps, self.config.n_envs
        observations, actions, episodes = [], [], []
        rewards = np.zeros((T, N), dtype=np.float32)
        terminated, truncated = np.zeros((T, N), dtype=bool), np.zeros((T, N), dtype=bool)
        final_values = torch.zeros(T, N)  # V of the true final observation where an episode was truncated
        for t in range(T):
            with torch.no_grad():
                action = self.actor(self.inputs(self.obs)).action
            observations.append(self.obs)
            actions.append(action)
            self.obs, rewards[t], terminated[t], truncated[t], infos = self.envs.step(self.actor.to_env(action))
            done = terminated[t] | truncated[t]
            if done.any():
                episodes += finished_episodes(infos.get("final_info", {}), done)
                cut = np.flatnonzero(truncated[t] & ~terminated[t])
                if cut.size:
                    with torch.no_grad():
                        final_values[t, cut] = self.value(np.stack([infos["final_obs"][i] for i in cut]))
        self.steps += T * N
        obs = np.stack(observations)  # [T, N, ...]
        with torch.no_grad():  # V(s_1), ..., V(s_T): the next state's value inside an episode
            following = self.value(np.concatenate([obs[1:], self.obs[None]]).reshape(T * N, *obs.shape[2:]))
        ends = torch.as_tensor(terminated | truncated)
        rollout = Rollout(obs.reshape(T * N, *obs.shape[2:]), torch.cat(actions), torch.as_tensor(rewards),
                          torch.as_tensor(terminated), torch.as_tensor(truncated),
                          torch.where(ends, final_values, following.reshape(T, N)))
        return rollout, episodes

    def losses(self, rollout: Rollout) -> Losses:
        """The A2C loss of ``rollout`` under the current actor and critic."""
        c = self.config
        returns = n_step_returns(rollout.rewards, rollout.next_values, rollout.terminated, rollout.truncated, c.gamma,
                                 c.gae_lambda)
        obs = self.inputs(rollout.obs)
        out = self.actor.evaluate(obs, rollout.actions)
        values = self.critic(obs).squeeze(-1)
        return actor_critic_loss(out.log_prob, out.entropy, values, returns.reshape(-1), c.vf_coef, c.ent_coef,
                                 c.normalize_advantages)

    def iterate(self) -> Iteration:
        rollout, episodes = self.collect()
        losses = self.losses(rollout)
        if self.config.lr_decay_steps:
            for group in self.optimizer.param_groups:  # from the steps before this rollout: resumes the same way
                group["lr"] = linear_decay(self.config.learning_rate, self.steps - len(rollout.obs),
                                           self.config.lr_decay_steps)
        self.optimizer.zero_grad()
        losses.total.backward()
        nn.utils.clip_grad_norm_([*self.actor.parameters(), *self.critic.parameters()], self.config.max_grad_norm)
        self.optimizer.step()
        if self.obs_norm is not None:  # after the update: the rollout was collected and scored with the same moments
            self.obs_norm.update(as_tensor(rollout.obs, self.obs_space))
        values = {"loss": losses.total, "policy_loss": losses.policy, "value_loss": losses.value, "entropy": losses.entropy}
        return Iteration(len(rollout.obs), episodes, {k: float(v.detach()) for k, v in values.items()})

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> dict[str, Any]:
        return {"obs": self.obs, "envs": list(self.envs.get_attr("plain_state"))}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.envs.set_attr("plain_state", list(state["envs"]))
        self.obs = state["obs"]
