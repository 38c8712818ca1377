"""Long DQN training checks (notes §11.3), run by ``make test-slow``, not by CI."""

from pathlib import Path

import gymnasium as gym
import pytest
import torch

from agents.deep.dqn import DQN, DQNConfig
from agents.deep.trainer import RunConfig, train
from agents.tabular.dp import value_iteration

pytestmark = pytest.mark.slow


def learn(env_id: str, config: DQNConfig, steps: int, seed: int, out: Path, **env_kwargs):
    torch.set_num_threads(1)
    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, **env_kwargs))
    agent = DQN(make, config, seed=seed, total_steps=steps)
    return train(agent, lambda: gym.make(env_id, **env_kwargs),
                 RunConfig(steps=steps, out=out, eval_every=2_500, seed=seed, progress=False))


def test_dqn_reaches_475_on_cartpole_within_50k_steps_for_two_of_three_seeds(tmp_path, measured):
    reached = 0
    for seed in range(3):
        result = learn("CartPole-v1", DQNConfig(), 50_000, seed, tmp_path / str(seed))
        first = next((row["step"] for row in result.rows if row["eval_mean"] >= 475), None)
        measured(f"seed {seed}: greedy return {result.mean_return:.1f}, first evaluation >= 475 at step {first}")
        reached += max(row["eval_mean"] for row in result.rows) >= 475 and result.mean_return >= 475
    assert reached >= 2


def gridworld_optimum() -> float:
    env = gym.make("mp/GridWorld-v0").unwrapped
    solution = value_iteration(env.mdp.with_gamma(1.0))
    return float(solution.V[env.starts[0]])  # undiscounted optimal return from the start


GRID = DQNConfig(learning_rate=1e-3, buffer_size=20_000, learning_starts=500, train_freq=4, gradient_steps=1,
                 target_update_interval=500, exploration_fraction=0.3, hidden=(64, 64))


def test_dqn_finds_the_optimal_return_on_the_gridworld(tmp_path, measured):
    result = learn("mp/GridWorld-v0", GRID, 20_000, 0, tmp_path, obs_type="onehot")
    measured(f"greedy return {result.mean_return:.1f}, optimum {gridworld_optimum():.1f}")
    assert result.mean_return == pytest.approx(gridworld_optimum())


PIXELS = DQNConfig(learning_rate=5e-4, buffer_size=20_000, learning_starts=1_000, train_freq=4, gradient_steps=1,
                   target_update_interval=1_000, exploration_fraction=0.5, hidden=(64,))


def test_dqn_finds_the_optimal_return_on_the_gridworld_from_pixels(tmp_path, measured):
    """The CNN reads the 40x48 picture of the grid (obs_type="rgb"); about 8 minutes on one core."""
    result = learn("mp/GridWorld-v0", PIXELS, 30_000, 0, tmp_path, obs_type="rgb")
    measured(f"greedy return {result.mean_return:.1f}, optimum {gridworld_optimum():.1f}")
    assert result.mean_return == pytest.approx(gridworld_optimum())
