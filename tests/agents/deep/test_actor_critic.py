"""Advantage actor-critic (notes §11.3): the TD error's sign, n-step returns on a hand-made rollout
and against a slow reference, bootstrapping from the final observation, seeding, checkpoints and a
short learning run."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.deep.actor_critic import ActorCritic, ActorCriticConfig, actor_critic_loss, n_step_returns, td_error


def cartpole():
    return gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))


class Count(gym.Env):
    """Observation = steps taken so far; reward 1 a step; never terminates (a time limit truncates it)."""

    observation_space = gym.spaces.Box(0.0, 100.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, False, False, {}


def test_td_error_sign_and_termination():
    r, v, v_next = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0]), torch.tensor([3.0, 3.0])
    delta = td_error(r, v, v_next, torch.tensor([False, True]), gamma=0.9)
    torch.testing.assert_close(delta, torch.tensor([1.0 + 0.9 * 3.0 - 2.0, 1.0 - 2.0]))
    # the notes print V(s) - (r + gamma V(s')): the same magnitude, the opposite sign
    torch.testing.assert_close(-delta[:1], v[:1] - (r[:1] + 0.9 * v_next[:1]))


@pytest.mark.parametrize("advantage_sign", [1.0, -1.0])
def test_a_step_on_the_loss_makes_better_than_expected_actions_more_likely(advantage_sign):
    theta = torch.zeros(3, requires_grad=True)
    value = torch.tensor([2.0], requires_grad=True)
    returns = value.detach() + advantage_sign  # G - V = +-1
    log_prob = torch.log_softmax(theta, 0)[1:2]
    loss = actor_critic_loss(log_prob, torch.zeros(1), value, returns, vf_coef=0.5, ent_coef=0.0)
    loss.total.backward()
    with torch.no_grad():
        after = torch.softmax(theta - 0.1 * theta.grad, 0)[1]
    assert float(after - 1.0 / 3.0) * advantage_sign > 1e-3
    assert float(value.grad) == pytest.approx(-advantage_sign)  # d/dV 0.5 (V - G)^2 = V - G, times vf_coef 2 * 0.5


def test_n_step_returns_by_hand():
    gamma = 0.5
    # env 0: terminated at t=1 (V after it ignored), truncated at t=3 with V(final obs) = 8
    # env 1: truncated at t=1 with V(final obs) = 6, running at the end of the rollout with V(s_T) = 4
    # env 2: terminated and truncated at t=0 (no bootstrap), then running, V(s_T) = 6
    rewards = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0], [3.0, 0.0, 1.0], [4.0, 2.0, 1.0]])
    next_values = torch.tensor([[99.0, 99.0, 50.0], [100.0, 6.0, 99.0], [99.0, 99.0, 99.0], [8.0, 4.0, 6.0]])
    terminated = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.bool)
    truncated = torch.tensor([[0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    returns = n_step_returns(rewards, next_values, terminated, truncated, gamma)
    expected = torch.tensor([
        [1 + 0.5 * 2, 1 + 0.5 * 3, 1.0],
        [2.0, 0 + 0.5 * 6, 1 + 0.5 * 3],  # env 0: terminated, G_1 = r_1; env 1: truncated, bootstraps V = 6
        [3 + 0.5 * 8, 0 + 0.5 * 4, 1 + 0.5 * 4],
        [4 + 0.5 * 8, 2 + 0.5 * 4, 1 + 0.5 * 6],  # env 0 truncated: V(final obs) = 8; envs 1, 2: V(s_T)
    ])
    torch.testing.assert_close(returns, expected)


def reference_returns(rewards, next_values, terminated, truncated, gamma):
    """Forward sums, one step at a time: obviously right, slow."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                total += discount * rewards[k, i]
                discount *= gamma
                if terminated[k, i]:
                    break
                if truncated[k, i] or k == T - 1:
                    total += discount * next_values[k, i]
                    break
            out[t, i] = total
    return out


def test_n_step_returns_match_the_reference(rng):
    T, N = 9, 5
    rewards, next_values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    terminated, truncated = rng.random((T, N)) < 0.2, rng.random((T, N)) < 0.2
    fast = n_step_returns(*(torch.as_tensor(x) for x in (rewards, next_values, terminated, truncated)), 0.9)
    np.testing.assert_allclose(fast.numpy(), reference_returns(rewards, next_values, terminated, truncated, 0.9))


def test_one_step_returns_are_the_td_target(rng):
    r, v, v_next = (torch.as_tensor(rng.normal(size=(1, 6))) for _ in range(3))
    terminated = torch.as_tensor(rng.random((1, 6)) < 0.5)
    returns = n_step_returns(r, v_next, terminated, torch.zeros_like(terminated), 0.9)
    torch.testing.assert_close(returns - v, td_error(r, v, v_next, terminated, 0.9))


def test_n_step_returns_check_shapes():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="next_values"):
        n_step_returns(x, torch.zeros(3, 1), x.bool(), x.bool(), 0.9)


def test_truncated_episodes_bootstrap_from_the_final_observation():
    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.wrappers.TimeLimit(Count(), 3))
    agent = ActorCritic(make, ActorCriticConfig(n_envs=2, n_steps=5), seed=0)
    rollout, episodes = agent.collect()
    assert episodes == [(3.0, 3), (3.0, 3)]
    np.testing.assert_array_equal(rollout.obs[:, 0], [0, 0, 1, 1, 2, 2, 0, 0, 1, 1])  # time-major, reset after 3
    assert rollout.truncated[2].all() and not rollout.terminated.any()
    with torch.no_grad():
        v = {s: float(agent.value(np.array([[s]], np.float32))[0]) for s in range(4)}
    expected = torch.tensor([[v[1]] * 2, [v[2]] * 2, [v[3]] * 2, [v[1]] * 2, [v[2]] * 2])
    torch.testing.assert_close(rollout.next_values, expected)  # V(3), not V of the reset observation 0
    assert abs(v[3] - v[0]) > 1e-4


def test_continuous_actions_and_time_limit():
    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("Pendulum-v1"))
    agent = ActorCritic(make, ActorCriticConfig(n_envs=2, n_steps=8), seed=0)
    episodes = [e for _ in range(25) for e in agent.iterate().episodes]  # 200 steps of each
    assert [n for _, n in episodes] == [200, 200]
    action = agent.act(np.zeros(3, np.float32), deterministic=False)
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0


def run(agent: ActorCritic, iterations: int):
    return [agent.iterate() for _ in range(iterations)]


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_same_seed_same_numbers(optimizer):
    config = ActorCriticConfig(optimizer=optimizer, n_envs=4)
    first = run(ActorCritic(cartpole, config, seed=3), 20)
    assert first == run(ActorCritic(cartpole, config, seed=3), 20)
    assert first != run(ActorCritic(cartpole, config, seed=4), 20)
    assert any(it.episodes for it in first)


def test_checkpoint_round_trip_gives_the_same_next_updates():
    config = ActorCriticConfig(n_envs=4)
    agent = ActorCritic(cartpole, config, seed=1)
    run(agent, 7)  # mid-episode
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    expected = run(agent, 10)
    fresh = ActorCritic(cartpole, config, seed=7)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    assert run(fresh, 10) == expected
    assert any(it.episodes for it in expected)


def test_learns_cartpole_within_a_few_thousand_steps(first_and_last_returns):
    agent = ActorCritic(cartpole, ActorCriticConfig(), seed=0)
    first, last = first_and_last_returns(agent, 12_000)
    assert first < 40  # a random policy balances ~22 steps
    assert last > 100  # and mean returns of 132-180 over seeds 0-5
