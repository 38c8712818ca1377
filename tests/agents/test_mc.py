"""Monte Carlo methods (notes §11.1) and the estimates of V^pi of all prediction agents.

The exact ``V^pi`` comes from a dense linear solve of the Bellman consistency equation,
``(I - gamma P_pi) v = r_pi``, built from Gymnasium's toy-text model ``env.unwrapped.P``, which the
agents themselves never read.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from agents.tabular.base import PredictionAgent, TabularConfig
from agents.tabular.mc import MonteCarloControl, MonteCarloPrediction, discounted_returns, first_visit_mask
from agents.tabular.schedules import Exponential
from agents.tabular.td import TD0

# A good deterministic policy for the slippery 4x4 FrozenLake (0 left, 1 down, 2 right, 3 up).
FROZEN_LAKE_POLICY = np.array([0, 3, 3, 3, 0, 0, 0, 0, 3, 1, 0, 0, 0, 2, 1, 0])


def exact_state_values(env: gym.Env[Any, Any], pi: np.ndarray, gamma: float) -> np.ndarray:
    """``V^pi`` [S] for ``pi`` [S, A] from ``(I - gamma P_pi) v = r_pi``; terminal successors count 0."""
    model = env.unwrapped.P  # type: ignore[attr-defined]
    n_states, n_actions = pi.shape
    P_pi, r_pi = np.zeros((n_states, n_states)), np.zeros(n_states)
    for s in range(n_states):
        for a in range(n_actions):
            for p, s_next, r, terminated in model[s][a]:
                r_pi[s] += pi[s, a] * p * r
                if not terminated:
                    P_pi[s, s_next] += pi[s, a] * p
    return np.linalg.solve(np.eye(n_states) - gamma * P_pi, r_pi)


def test_discounted_returns_by_hand_and_against_the_sum() -> None:
    # G_2 = 2, G_1 = 0 + 0.5 * 2 = 1, G_0 = 1 + 0.5 * 1 = 1.5
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 0.0, 2.0]), 0.5), [1.5, 1.0, 2.0])
    rewards = np.random.default_rng(0).normal(size=30)
    direct = [sum(0.9**k * r for k, r in enumerate(rewards[t:])) for t in range(30)]
    np.testing.assert_allclose(discounted_returns(rewards, 0.9), direct)
    assert discounted_returns(np.zeros(0), 0.9).shape == (0,)


def test_first_visit_mask_marks_first_occurrences() -> None:
    mask = first_visit_mask(np.array([3, 1, 3, 3, 2, 1]))
    np.testing.assert_array_equal(mask, [True, True, False, False, True, False])


class ScriptedEpisode(gym.Env[int, int]):
    """Plays back one fixed episode: states 0, 1, 0, 1, then terminal 2; rewards 1, 2, 3, 4."""

    states = (0, 1, 0, 1, 2)
    rewards = (1.0, 2.0, 3.0, 4.0)

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Discrete(3)
        self.action_space = gym.spaces.Discrete(1)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self.states[self.t], self.rewards[self.t - 1], self.t == 4, False, {}


# gamma = 0.5: G = [3.25, 4.5, 5.0, 4.0] at states [0, 1, 0, 1].
@pytest.mark.parametrize(
    ("first_visit", "alpha", "V", "N"),
    [
        (True, None, [3.25, 4.5, 0.0], [1, 1, 0]),  # first returns only
        (False, None, [(3.25 + 5.0) / 2, (4.5 + 4.0) / 2, 0.0], [2, 2, 0]),  # mean of both visits
        # constant alpha, backwards in t: V1 = 0.5*4 = 2, V0 = 0.5*5 = 2.5, V1 += 0.5*(4.5-2), V0 += 0.5*(3.25-2.5)
        (False, 0.5, [2.875, 3.25, 0.0], [2, 2, 0]),
    ],
)
def test_monte_carlo_update_by_hand(first_visit: bool, alpha: float | None, V: list[float], N: list[int]) -> None:
    config = TabularConfig(gamma=0.5, alpha=alpha)
    for episodes in (1, 3):  # the same episode again leaves a sample average unchanged
        prediction = MonteCarloPrediction(None, config, first_visit=first_visit)
        prediction.fit(ScriptedEpisode(), episodes, seed=0)
        control = MonteCarloControl(config, first_visit=first_visit)
        control.fit(ScriptedEpisode(), episodes, seed=0)
        if alpha is None or episodes == 1:
            np.testing.assert_allclose(prediction.V, V)
            np.testing.assert_array_equal(prediction.N, np.array(N) * episodes)
        np.testing.assert_array_equal(control.Q[:, 0], prediction.V)  # one action: Q(s, 0) = V(s)


@pytest.mark.parametrize(
    ("make_agent", "tolerance"),
    [
        (lambda pi: MonteCarloPrediction(pi, TabularConfig(gamma=0.9, alpha=None), first_visit=True), 0.03),
        (lambda pi: MonteCarloPrediction(pi, TabularConfig(gamma=0.9, alpha=None), first_visit=False), 0.03),
        (lambda pi: TD0(pi, TabularConfig(gamma=0.9, alpha=Exponential(0.1, 0.005, 0.998))), 0.05),
    ],
    ids=["mc-first-visit", "mc-every-visit", "td0"],
)
def test_prediction_agents_estimate_v_pi(make_agent: Any, tolerance: float) -> None:
    """Slippery FrozenLake, a deterministic policy, gamma 0.9: |V - V^pi| within tolerance (max V^pi 0.64)."""
    env = gym.make("FrozenLake-v1", is_slippery=True)
    agent: PredictionAgent = make_agent(FROZEN_LAKE_POLICY)
    agent.fit(env, 2000, seed=0)
    v_pi = exact_state_values(env, np.eye(4)[FROZEN_LAKE_POLICY], gamma=0.9)
    often = agent.visits.sum(1) >= 200
    assert often.sum() == 11  # every non-terminal state
    np.testing.assert_allclose(agent.V[often], v_pi[often], atol=tolerance, rtol=0)
    terminal = np.array([5, 7, 11, 12, 15])
    np.testing.assert_array_equal(agent.V[terminal], 0.0)


def test_first_visit_mc_is_within_its_confidence_interval() -> None:
    """Uniform random policy: first-visit returns from s are i.i.d. in [0, 1], so std <= 0.5 and the
    mean of N(s) of them lies within 4 standard errors, 2 / sqrt(N(s)), of V^pi(s)."""
    env = gym.make("FrozenLake-v1", is_slippery=False)
    agent = MonteCarloPrediction(None, TabularConfig(gamma=0.9, alpha=None))
    agent.fit(env, 3000, seed=0)
    v_pi = exact_state_values(env, np.full((16, 4), 0.25), gamma=0.9)
    seen = agent.N > 0
    assert seen.sum() == 11 and agent.N[seen].min() >= 50
    bound = 2.0 / np.sqrt(agent.N[seen])
    assert np.all(np.abs(agent.V[seen] - v_pi[seen]) <= bound)
    np.testing.assert_array_equal(agent.policy, np.full((16, 4), 0.25))


def test_monte_carlo_control_learns_the_shortest_path_on_frozen_lake() -> None:
    """Non-slippery FrozenLake: the uniform random policy reaches the goal 1.4% of the time (its V^pi
    at the start with gamma 1); after 500 episodes of MC control the greedy policy takes the 6-step
    shortest path and the epsilon-greedy one (epsilon 0.1) succeeds at least 80% of the time."""
    env = gym.make("FrozenLake-v1", is_slippery=False)
    random_success = exact_state_values(env, np.full((16, 4), 0.25), gamma=1.0)[0]
    assert random_success < 0.02
    agent = MonteCarloControl(TabularConfig(gamma=0.9, alpha=None, epsilon=0.1))
    log = agent.fit(env, 500, seed=0)
    assert log.returns[-100:].mean() >= 0.8
    state, _ = env.reset(seed=0)
    rewards = []
    for _ in range(100):
        state, reward, terminated, truncated, _ = env.step(agent.act(int(state)))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert rewards == [0.0] * 5 + [1.0]
