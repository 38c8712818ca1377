"""Replay buffer, networks, DQN targets, checkpoints and the training loop (notes §11.3)."""

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.deep.buffer import ReplayBuffer
from agents.deep.distributions import Policy, gaussian_log_prob, squash
from agents.deep.dqn import DQN, DQNConfig, dqn_targets, linear_epsilon
from agents.deep.networks import Network, as_tensor
from agents.deep.trainer import CHECKPOINT, RunConfig, TrainingDiverged, train

SMALL = DQNConfig(buffer_size=2_000, learning_starts=200, train_freq=4, gradient_steps=1, batch_size=32,
                  target_update_interval=100, hidden=(32, 32))


def cartpole():
    return gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))


# ---------------------------------------------------------------------- replay buffer
def test_buffer_pairs_every_state_with_its_own_next_state_across_episodes_and_wraparound():
    space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    buffer = ReplayBuffer(17, space, gym.spaces.Discrete(2))
    rng = np.random.default_rng(0)
    counter, truth = 0.0, {}
    for _ in range(12):
        obs = counter
        length = rng.integers(1, 6)
        for t in range(length):
            counter += 1
            last = t == length - 1
            terminated = last and rng.random() < 0.5
            buffer.add([obs], t % 2, obs * 10, [counter], terminated, last and not terminated)
            truth[obs] = (counter, obs * 10, float(terminated))
            obs = counter
            if last:
                break
        counter += 1  # the next episode starts from a fresh observation
    assert 0 < len(buffer) < 17
    batch = buffer.sample(500, rng)
    for s, r, s2, term in zip(batch.obs[:, 0], batch.rewards, batch.next_obs[:, 0], batch.terminated):
        assert truth[float(s)] == (float(s2), float(r), float(term))
    assert buffer.obs.shape == (17, 1)  # one copy of the observations, no next_obs array


def test_buffer_keeps_images_uint8_and_bootstraps_through_truncation():
    space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    buffer = ReplayBuffer(10, space, gym.spaces.Discrete(2))
    a, b = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 7, np.uint8)
    buffer.add(a, 1, 1.0, b, terminated=False, truncated=True)
    batch = buffer.sample(4, np.random.default_rng(0))
    assert buffer.obs.dtype == np.uint8 and batch.obs.dtype == np.uint8
    assert np.all(batch.terminated == 0.0) and np.all(batch.next_obs == 7)


# ---------------------------------------------------------------------- networks and policies
@pytest.mark.parametrize("space", [
    gym.spaces.Discrete(5),
    gym.spaces.Box(-1, 1, (4,), np.float32),
    gym.spaces.Box(0, 255, (40, 48, 3), np.uint8),
    gym.spaces.Box(0, 255, (2, 64, 64, 3), np.uint8),  # frame-stacked
])
def test_network_reads_every_supported_observation_space(space):
    net = Network(space, 3)
    batch = np.stack([space.sample() for _ in range(6)])
    assert net(as_tensor(batch, space)).shape == (6, 3)


def test_bad_observation_space_is_a_clear_error():
    with pytest.raises(ValueError, match="deep agents read Discrete, float Box or uint8 image"):
        Network(gym.spaces.MultiBinary(3), 2)


def test_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    u, mu, log_std = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3) * 0.5
    expected = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(u, mu, log_std), expected)
    policy = Policy(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Box(-2, 3, (3,), np.float32))
    out = policy(torch.randn(7, 4))
    env_action = policy.to_env(out.action)
    assert np.all(env_action >= -2) and np.all(env_action <= 3)
    np.testing.assert_allclose(squash(np.array([0.0]), np.array([-2.0]), np.array([3.0])), [0.5])


# ---------------------------------------------------------------------- DQN
def test_targets_and_double_dqn_by_hand():
    q_target = torch.tensor([[1.0, 5.0], [2.0, 0.0]])
    q_online = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    rewards, terminated = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(dqn_targets(q_target, rewards, terminated, 0.5), torch.tensor([1.0 + 2.5, 1.0]))
    # Double DQN: a' = argmax of the online net (action 0 in row 0), valued by the target net
    torch.testing.assert_close(dqn_targets(q_target, rewards, terminated, 0.5, q_online), torch.tensor([1.5, 1.0]))


def test_dqn_regresses_on_the_target_network_not_the_online_one():
    agent = DQN(cartpole, SMALL, seed=0)
    for _ in range(300):
        agent.iterate()
    with torch.no_grad():  # make theta_bar output a constant 7 for every action
        last = agent.q_target.head[-1]
        last.weight.zero_()
        last.bias.fill_(7.0)
    batch = agent.buffer.sample(32, np.random.default_rng(1))
    obs = torch.as_tensor(batch.obs)
    q_sa = agent.q(obs).gather(1, torch.as_tensor(batch.actions)[:, None]).squeeze(1)
    y = torch.as_tensor(batch.rewards) + 0.99 * (1 - torch.as_tensor(batch.terminated)) * 7.0
    expected = torch.nn.functional.smooth_l1_loss(q_sa, y)
    torch.testing.assert_close(agent.loss(batch), expected)
    # and the gradient flows into theta only
    agent.loss(batch).backward()
    assert all(p.grad is None for p in agent.q_target.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.q.parameters())


def test_target_network_follows_every_interval_or_by_polyak():
    agent = DQN(cartpole, DQNConfig(hidden=(8,), tau=0.5), seed=0)
    before = [p.clone() for p in agent.q_target.parameters()]
    with torch.no_grad():
        for p in agent.q.parameters():
            p.add_(1.0)
    agent.update_target()
    for old, new, online in zip(before, agent.q_target.parameters(), agent.q.parameters()):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * online)


def test_epsilon_schedule_is_linear_then_flat():
    c = DQNConfig(exploration_fraction=0.1, exploration_initial_eps=1.0, exploration_final_eps=0.1)
    assert linear_epsilon(0, 1000, c) == 1.0
    assert linear_epsilon(50, 1000, c) == pytest.approx(0.55)
    assert linear_epsilon(100, 1000, c) == pytest.approx(0.1) == linear_epsilon(900, 1000, c)


def test_checkpoint_round_trip_gives_the_same_next_update():
    agent = DQN(cartpole, SMALL, seed=3)
    for _ in range(400):
        agent.iterate()
    state = copy.deepcopy(agent.state_dict())
    clone = DQN(cartpole, SMALL, seed=99)
    clone.load_state_dict(state)
    for _ in range(50):  # the same environment steps, samples and gradient steps
        a, b = agent.iterate(), clone.iterate()
        assert a == b
    for p, q in zip(agent.q.parameters(), clone.q.parameters()):
        torch.testing.assert_close(p, q)


# ---------------------------------------------------------------------- the training loop
def run(out: Path, steps: int, resume: bool = False, agent=None):
    agent = agent or DQN(cartpole, SMALL, seed=0, total_steps=2000)
    config = RunConfig(steps=steps, out=out, eval_every=500, eval_episodes=2, final_episodes=2, resume=resume, progress=False)
    return train(agent, lambda: gym.make("CartPole-v1"), config)


def test_same_seed_same_curve_and_resume_continues_the_same_run(tmp_path):
    def numbers(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    full = run(tmp_path / "a", 2000)
    assert numbers(run(tmp_path / "b", 2000).rows) == numbers(full.rows)
    run(tmp_path / "c", 1000)
    resumed = run(tmp_path / "c", 2000, resume=True)
    assert numbers(resumed.rows) == numbers(full.rows)
    assert (tmp_path / "c" / "metrics.csv").read_text().count("\n") == 5  # header + 4 evaluations


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    class Exploding(DQN):
        def update(self, batch):
            return float("nan") if self.steps > 1200 else super().update(batch)

    agent = Exploding(cartpole, SMALL, seed=0, total_steps=2000)
    with pytest.raises(TrainingDiverged, match=r"loss 'loss' became nan at step 120\d.*last good checkpoint"):
        run(tmp_path, 2000, agent=agent)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert state["agent"]["steps"] == 1000  # written at the last evaluation before the NaN
    assert all(torch.isfinite(p).all() for p in state["agent"]["modules"]["q"].values())


def test_final_evaluation_scores_the_best_weights_and_reports_the_last(tmp_path):
    result = run(tmp_path, 2000)
    best_row = max(result.rows, key=lambda r: (r["eval_mean"], r["step"]))
    assert result.best_step == best_row["step"] and (tmp_path / "best.pt").exists()
    saved = torch.load(tmp_path / "best.pt", weights_only=False)
    assert saved["agent"]["steps"] == result.best_step
    if result.best_step == 2000:  # the last weights are the best: one and the same evaluation
        assert result.mean_return == result.last_mean_return
