"""Temporal difference learning (notes §11.2): TD errors and targets, epsilon-greedy, and Sutton &
Barto's Example 6.6 (cliff walking: SARSA against Q-learning)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the mp/ ids
from agents.tabular.base import ControlAgent, TabularConfig
from agents.tabular.policies import epsilon_greedy, greedy_action
from agents.tabular.td import SARSA, TD0, QLearning, q_learning_target, sarsa_target, td_error

CLIFF = "mp/CliffWalking-v0"  # 4x12, -1 a step, -100 and back to the start on the cliff; 0 left 1 down 2 right 3 up
V = np.array([0.0, 2.0, 10.0])
Q = np.array([[0.0, 0.0], [1.0, 3.0], [-2.0, 5.0]])


def test_td_error_by_hand() -> None:
    # delta = r + gamma V(s') - V(s) = 1 + 0.9 * 10 - 2
    assert td_error(V, s=1, r=1.0, s_next=2, terminated=False, gamma=0.9) == pytest.approx(8.0)
    # terminated: V(s') counts as 0 whatever the table holds
    assert td_error(V, s=1, r=1.0, s_next=2, terminated=True, gamma=0.9) == pytest.approx(-1.0)
    assert td_error(V, s=0, r=-1.0, s_next=0, terminated=False, gamma=0.5) == pytest.approx(-1.0)


def test_sarsa_target_uses_the_action_taken_next() -> None:
    assert sarsa_target(Q, r=1.0, s_next=2, a_next=0, terminated=False, gamma=0.5) == pytest.approx(0.0)
    assert sarsa_target(Q, r=1.0, s_next=2, a_next=1, terminated=False, gamma=0.5) == pytest.approx(3.5)
    assert sarsa_target(Q, r=1.0, s_next=2, a_next=None, terminated=True, gamma=0.5) == 1.0
    with pytest.raises(ValueError, match="a_next"):
        sarsa_target(Q, r=1.0, s_next=2, a_next=None, terminated=False, gamma=0.5)


def test_q_learning_target_uses_the_greedy_action() -> None:
    assert q_learning_target(Q, r=1.0, s_next=1, terminated=False, gamma=0.5) == pytest.approx(2.5)
    assert q_learning_target(Q, r=1.0, s_next=2, terminated=False, gamma=1.0) == pytest.approx(6.0)
    assert q_learning_target(Q, r=1.0, s_next=2, terminated=True, gamma=1.0) == 1.0


def test_epsilon_greedy_picks_the_greedy_action_with_probability_1_minus_eps_plus_eps_over_A() -> None:
    """eps = 0.2, A = 4: greedy 0.85, each other action 0.05. With n = 40,000 draws the standard
    errors are 0.0018 and 0.0011; the tolerances are about 4.5 of them."""
    rng = np.random.default_rng(0)
    q = np.array([0.0, 1.0, 0.5, -1.0])
    n = 40_000
    counts = np.bincount([epsilon_greedy(q, 0.2, rng) for _ in range(n)], minlength=4) / n
    assert abs(counts[1] - 0.85) < 0.008
    np.testing.assert_allclose(counts[[0, 2, 3]], 0.05, atol=0.005)
    assert all(epsilon_greedy(q, 0.0, rng) == 1 for _ in range(100))


def test_greedy_ties_are_broken_uniformly_at_random() -> None:
    rng = np.random.default_rng(0)
    q = np.array([1.0, -1.0, 1.0, 1.0])
    counts = np.bincount([greedy_action(q, rng) for _ in range(30_000)], minlength=4) / 30_000
    np.testing.assert_allclose(counts, [1 / 3, 0.0, 1 / 3, 1 / 3], atol=0.015)


def test_td0_bootstraps_after_a_time_limit_but_not_after_termination() -> None:
    """Non-slippery FrozenLake, path 0 -> 4 -> 8 -> 9 -> 13 -> 14 -> 15 (goal, reward 1), alpha 1, gamma 0.5."""
    policy = np.zeros(16, dtype=np.int64)
    policy[[0, 4, 9]], policy[[8, 13, 14]] = 1, 2  # down at 0, 4, 9; right at 8, 13, 14
    agent = TD0(policy, TabularConfig(gamma=0.5, alpha=1.0))
    agent.fit(gym.make("FrozenLake-v1", is_slippery=False), 1, seed=0)
    np.testing.assert_array_equal(agent.V, np.eye(16)[14])  # V(14) = 1 + 0 * V(15): no bootstrap
    # five steps end 13 -> 14 truncated: 14 is not terminal, so V(13) = 0 + 0.5 * V(14)
    agent.fit(gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=5), 1, seed=0)
    np.testing.assert_array_equal(agent.V, np.eye(16)[14] + 0.5 * np.eye(16)[13])


def test_q_learning_bootstraps_after_a_time_limit() -> None:
    """One-step episodes on the cliff, each cut by the time limit; epsilon 1 explores every action
    and, being off-policy, Q-learning still learns Q(start, a) = r + gamma max_a' Q(s', a'), alpha 1."""
    agent = QLearning(TabularConfig(gamma=0.5, alpha=1.0, epsilon=1.0))
    agent.fit(gym.make(CLIFF, max_episode_steps=1), 200, seed=0)
    start = 36  # Q(24, .) stays 0: up gives -1; left and down bump (-1 + 0.5 * -1); right falls (-100 + 0.5 * -1)
    np.testing.assert_allclose(agent.Q[start], [-1.5, -1.5, -100.5, -1.0])
    assert np.count_nonzero(agent.Q) == 4


def greedy_rollout(agent: ControlAgent, env: gym.Env[Any, Any]) -> tuple[float, list[int]]:
    """Return and visited states of the greedy policy from the start, until the episode ends."""
    state, _ = env.reset(seed=0)
    total, path = 0.0, [int(state)]
    while True:
        state, reward, terminated, truncated, _ = env.step(agent.act(int(state)))
        total += float(reward)
        path.append(int(state))
        if terminated or truncated:
            return total, path


def test_cliff_walking_example_6_6() -> None:
    """Sutton & Barto Example 6.6: alpha 0.5, epsilon 0.1, gamma 1, 500 episodes.

    Q-learning learns the optimal path along the cliff edge (return -13) but, exploring, falls off
    more often, so SARSA earns more online (S&B Figure 6.4). SARSA's greedy policy keeps away from the cliff edge;
    after only 500 episodes it may still loop in a rarely visited top-row state (this seed does,
    others walk the top row for -17), so its greedy return is only bounded, not exact.
    """
    env = gym.make(CLIFF)
    config = TabularConfig(gamma=1.0, alpha=0.5, epsilon=0.1)
    q_learning, sarsa = QLearning(config), SARSA(config)
    q_log, sarsa_log = q_learning.fit(env, 500, seed=0), sarsa.fit(env, 500, seed=0)

    q_return, q_path = greedy_rollout(q_learning, env)
    assert q_return == -13.0
    assert q_path == [36, *range(24, 36), 47]  # up, eleven steps right along the edge, down
    sarsa_return, sarsa_path = greedy_rollout(sarsa, env)
    assert sarsa_return < -13.0
    assert not set(sarsa_path) & set(range(25, 35))  # never on the edge above the cliff
    # mean online return after the first 100 episodes: seed 0 gives SARSA -26, Q-learning -52; over
    # seeds 0-19 SARSA leads by 17 to 30 (Gymnasium's CliffWalking-v1: by 12 to 30)
    assert sarsa_log.returns[100:].mean() > q_log.returns[100:].mean() + 5
