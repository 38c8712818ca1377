"""REINFORCE (notes §11.3): reward-to-go, the exact policy gradient on a bandit, the Gaussian score,
seeding, checkpoints and a short learning run."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from agents.deep.reinforce import REINFORCE, Episodes, ReinforceConfig, normalize, policy_gradient_loss, reward_to_go


def cartpole():
    return gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))


class Bandit(gym.Env):
    """One step, ``K`` arms, fixed rewards, a constant observation."""

    rewards = np.array([1.0, -2.0, 0.5, 3.0])
    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(len(rewards))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float(self.rewards[action]), True, False, {}


class Logits(nn.Module):
    """The policy's scores are free parameters ``theta``, whatever the state."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(len(obs), -1)


def test_reward_to_go_by_hand():
    # G_2 = 3, G_1 = 2 + 0.5 * 3, G_0 = 1 + 0.5 * 2 + 0.25 * 3
    np.testing.assert_allclose(reward_to_go(np.array([1.0, 2.0, 3.0]), 0.5), [2.75, 3.5, 3.0])
    np.testing.assert_allclose(reward_to_go(np.array([1.0, 0.0, -1.0, 2.0]), 1.0), [2.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(reward_to_go(np.array([5.0, 7.0]), 0.0), [5.0, 7.0])
    assert reward_to_go(np.array([]), 0.9).shape == (0,)
    with pytest.raises(ValueError, match="one episode"):
        reward_to_go(np.ones((2, 3)), 0.9)


@pytest.mark.parametrize("baseline", ["none", "mean", "value"])
def test_expected_gradient_on_a_bandit_is_the_analytic_one(baseline):
    """``E_a[grad log pi(a) R(a)] = pi_k (R_k - sum_j pi_j R_j)`` for logits ``theta``, by enumerating the
    arms through the agent's loss; an action-independent baseline leaves the expectation unchanged."""
    agent = REINFORCE(Bandit, ReinforceConfig(baseline=baseline, normalize_advantages=False), seed=0)
    theta = torch.tensor([0.2, 0.4, -0.3, -0.6])
    agent.policy.net = Logits(theta)
    agent.mean_return = 1.7  # the running mean baseline, if used
    pi = torch.softmax(theta, 0)
    R = torch.as_tensor(Bandit.rewards, dtype=torch.float32)
    expected = torch.zeros_like(theta)
    for a in range(len(R)):
        batch = Episodes(np.zeros((1, 1), np.float32), torch.tensor([a]), R[a : a + 1])
        loss = agent.losses(batch)["policy_loss"]
        (grad,) = torch.autograd.grad(-loss, agent.policy.net.theta)  # ascent direction of J
        expected += pi[a] * grad
    analytic = pi * (R - (pi * R).sum())
    torch.testing.assert_close(expected, analytic, rtol=1e-5, atol=1e-6)
    assert analytic.abs().min() > 0.05  # the check is not a comparison of zeros


def test_policy_gradient_loss_ignores_gradients_through_the_advantage():
    log_prob = torch.tensor([-0.5, -1.0], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0], requires_grad=True)
    loss = policy_gradient_loss(log_prob, advantages)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-(-0.5 * 2.0 + 1.0) / 2)
    torch.testing.assert_close(log_prob.grad, torch.tensor([-1.0, 0.5]))
    assert advantages.grad is None
    with pytest.raises(ValueError, match="differ"):
        policy_gradient_loss(log_prob, advantages[:1])


def test_normalize_gives_zero_mean_unit_std():
    x = normalize(torch.tensor([1.0, 2.0, 6.0]))
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-6)


def test_gaussian_log_prob_of_the_agent_equals_torch_normal():
    agent = REINFORCE(lambda: gym.make("Pendulum-v1"), ReinforceConfig(log_std_init=-0.7), seed=0)
    with torch.no_grad():
        agent.policy.log_std.copy_(torch.tensor([0.4]))
    obs = torch.randn(16, 3)
    actions = torch.randn(16, 1) * 2.0
    out = agent.policy.evaluate(obs, actions)
    mu = agent.policy.net(obs)
    normal = torch.distributions.Normal(mu, agent.policy.log_std.exp())
    torch.testing.assert_close(out.log_prob, normal.log_prob(actions).sum(-1))
    torch.testing.assert_close(out.entropy, normal.entropy().sum(-1))


def test_continuous_actions_stay_in_the_box():
    agent = REINFORCE(lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("Pendulum-v1")),
                      ReinforceConfig(episodes_per_update=1), seed=0)
    result = agent.iterate()
    assert result.steps == 200 and result.episodes[0][1] == 200  # truncated by the time limit
    assert all(np.isfinite(v) for v in result.losses.values())
    for obs in np.random.default_rng(0).normal(size=(20, 3)):
        assert -2.0 <= float(agent.act(obs, deterministic=False)[0]) <= 2.0


def run(agent: REINFORCE, iterations: int):
    return [agent.iterate() for _ in range(iterations)]


@pytest.mark.parametrize("baseline", ["value", "mean"])
def test_same_seed_same_numbers(baseline):
    config = ReinforceConfig(baseline=baseline)
    first, second = run(REINFORCE(cartpole, config, seed=3), 3), run(REINFORCE(cartpole, config, seed=3), 3)
    assert first == second
    assert run(REINFORCE(cartpole, config, seed=4), 3) != first


@pytest.mark.parametrize("baseline", ["value", "mean", "none"])
def test_checkpoint_round_trip_gives_the_same_next_update(baseline):
    config = ReinforceConfig(baseline=baseline)
    agent = REINFORCE(cartpole, config, seed=1)
    run(agent, 2)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    expected = agent.iterate()
    fresh = REINFORCE(cartpole, config, seed=7)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    assert fresh.iterate() == expected
    assert fresh.steps == agent.steps


def test_learns_cartpole_within_a_few_thousand_steps(first_and_last_returns):
    agent = REINFORCE(cartpole, ReinforceConfig(episodes_per_update=4), seed=0)  # more, noisier updates than the default
    first, last = first_and_last_returns(agent, 8_000)
    assert first < 40  # a random policy balances ~22 steps
    assert last > 80  # and mean returns of 88-180 over seeds 0-5
