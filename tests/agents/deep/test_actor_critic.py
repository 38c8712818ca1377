"""Advantage actor-critic (notes §11.3): the TD error's sign, n-step returns on a hand-made rollout
and against a slow reference, lambda-returns against GAE's sum of TD errors, the running observation
moments, the initialisation and the learning-rate schedule, bootstrapping from the final observation,
seeding, checkpoints and a short learning run."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.deep.actor_critic import (
    ActorCritic,
    ActorCriticConfig,
    RunningMoments,
    actor_critic_loss,
    linear_decay,
    n_step_returns,
    orthogonal_init,
    td_error,
)


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


def random_rollout(rng, T=9, N=5):
    """Rewards, V(s_t), V(s_{t+1}) and episode ends of a rollout whose values agree inside each episode."""
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    terminated, truncated = rng.random((T, N)) < 0.2, rng.random((T, N)) < 0.2
    next_values = rng.normal(size=(T, N))  # after an episode end (final observation) and after the rollout
    inside = ~(terminated | truncated)[:-1]
    next_values[:-1][inside] = values[1:][inside]  # V(s_{t+1}) is the next row's V(s_t) within an episode
    return rewards, values, next_values, terminated, truncated


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """GAE forwards (Schulman et al., 2016): A_t = sum_k (gamma lam)^k delta_{t+k} up to the episode's or rollout's end."""
    delta = rewards + gamma * (1.0 - terminated) * next_values - values
    T, N = rewards.shape
    out = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            for k in range(t, T):
                out[t, i] += (gamma * lam) ** (k - t) * delta[k, i]
                if terminated[k, i] or truncated[k, i]:
                    break
    return out


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_lambda_returns_minus_values_are_gae(rng, lam):
    rewards, values, next_values, terminated, truncated = random_rollout(rng)
    tensors = [torch.as_tensor(x) for x in (rewards, next_values, terminated, truncated)]
    returns = n_step_returns(*tensors, 0.9, lam).numpy()
    np.testing.assert_allclose(returns - values,
                               reference_gae(rewards, values, next_values, terminated, truncated, 0.9, lam), atol=1e-12)


def test_lambda_one_is_the_n_step_return_bit_for_bit_and_zero_the_td_target(rng):
    rewards, _, next_values, terminated, truncated = random_rollout(rng)
    tensors = [torch.as_tensor(x) for x in (rewards, next_values, terminated, truncated)]
    n_step = n_step_returns(*tensors, 0.9)
    assert torch.equal(n_step_returns(*tensors, 0.9, lam=1.0), n_step)
    np.testing.assert_allclose(n_step.numpy(), reference_returns(rewards, next_values, terminated, truncated, 0.9))
    torch.testing.assert_close(n_step_returns(*tensors, 0.9, lam=0.0),
                               tensors[0] + 0.9 * (1.0 - tensors[2].double()) * tensors[1])
    with pytest.raises(ValueError, match="lam"):
        n_step_returns(*tensors, 0.9, lam=1.5)


def test_running_moments_equal_the_moments_of_all_observations(rng):
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) * [1, 10, 0.01, 1] for n in (1, 7, 64)]
    moments = RunningMoments((4,))
    x = torch.tensor([[0.5, -2.0, 0.01, 3.0]])
    torch.testing.assert_close(moments(x), x)  # identity before the first update (inside the clip range)
    for batch in batches:
        moments.update(torch.as_tensor(batch))
    seen = np.concatenate(batches)
    np.testing.assert_allclose(moments.mean.numpy(), seen.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.var.numpy(), seen.var(0), rtol=1e-10)
    assert float(moments.count) == len(seen)
    z = moments(torch.as_tensor(seen, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(z, (seen - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8), rtol=1e-5, atol=1e-5)
    far = moments(torch.as_tensor(seen.mean(0) + 1e3 * seen.std(0))[None].float())
    torch.testing.assert_close(far, torch.full((1, 4), 10.0))  # clipped
    with pytest.raises(ValueError, match="shape"):
        moments.update(torch.zeros(3, 5))


def test_orthogonal_init_gains():
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                                 torch.nn.Linear(16, 2))
    orthogonal_init(layers, gain=2.0, out_gain=0.01)
    first, middle, last = layers[0].weight, layers[2].weight, layers[4].weight
    torch.testing.assert_close(first.T @ first, 4.0 * torch.eye(3))  # tall: orthonormal columns
    torch.testing.assert_close(middle @ middle.T, 4.0 * torch.eye(16))
    torch.testing.assert_close(last @ last.T, 1e-4 * torch.eye(2))  # wide: orthonormal rows
    assert all(not layers[i].bias.detach().any() for i in (0, 2, 4))


def test_linear_learning_rate_decay():
    assert [linear_decay(1e-3, s, 100) for s in (0, 25, 100, 150)] == pytest.approx([1e-3, 7.5e-4, 0.0, 0.0])
    config = ActorCriticConfig(n_envs=2, n_steps=5, learning_rate=1e-3, lr_decay_steps=40)
    agent = ActorCritic(cartpole, config, seed=0)
    rates = []
    for _ in range(5):
        agent.iterate()
        rates.append(agent.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0])  # from the steps before each rollout: 0, 10, ...


def test_observation_moments_are_those_of_the_training_observations_and_feed_both_networks():
    agent = ActorCritic(cartpole, ActorCriticConfig(n_envs=2, n_steps=5, normalize_observations=True), seed=0)
    seen, collect = [], agent.collect

    def recording():
        rollout, episodes = collect()
        seen.append(rollout.obs)
        return rollout, episodes

    agent.collect = recording
    for _ in range(3):
        agent.iterate()
    obs = np.concatenate(seen).astype(np.float64)
    np.testing.assert_allclose(agent.obs_norm.mean.numpy(), obs.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(agent.obs_norm.var.numpy(), obs.var(0), rtol=1e-5, atol=1e-7)
    x = np.array([[0.1, -0.2, 0.03, 0.4]], np.float32)
    z = torch.as_tensor((x - obs.mean(0)) / np.sqrt(obs.var(0) + 1e-8), dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(agent.value(x), agent.critic(z).squeeze(-1))
        torch.testing.assert_close(torch.as_tensor(agent.act(x[0])), agent.actor.mode(z)[0])
    assert "obs_norm" in agent.state_dict()["modules"]
    assert "obs_norm" not in ActorCritic(cartpole, ActorCriticConfig(n_envs=2), seed=0).state_dict()["modules"]
    with pytest.raises(ValueError, match="float Box"):
        ActorCritic(lambda: gym.make("FrozenLake-v1"), ActorCriticConfig(normalize_observations=True))


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


@pytest.mark.parametrize("config", [
    ActorCriticConfig(n_envs=4),
    ActorCriticConfig(n_envs=4, normalize_observations=True, gae_lambda=0.9, lr_decay_steps=1_000, ortho_init=True),
], ids=["default", "options"])
def test_checkpoint_round_trip_gives_the_same_next_updates(config):
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


def test_tuned_config_overrides_only_what_the_yaml_entry_lists(tmp_path):
    from agents.hyperparams import tuned_config, yaml_entry
    from envs.io.config import to_jsonable

    assert tuned_config("actor-critic", "CartPole-v1", ActorCriticConfig) == ActorCriticConfig()  # empty entry: defaults
    reacher = tuned_config("actor-critic", "mp/BulletReacher-v0", ActorCriticConfig)
    _, overrides = yaml_entry("actor-critic", "mp/BulletReacher-v0")
    assert overrides["ortho_init"] is True and to_jsonable({k: getattr(reacher, k) for k in overrides}) == overrides
    defaults = ActorCriticConfig()
    assert all(getattr(reacher, f) == getattr(defaults, f) for f in vars(defaults) if f not in overrides)
    (tmp_path / "actor-critic.yml").write_text("x-v0:\n  gama: 0.9\n")
    with pytest.raises(ValueError, match="gama"):
        tuned_config("actor-critic", "x-v0", ActorCriticConfig, directory=tmp_path)
