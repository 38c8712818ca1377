"""Policy-gradient agents solve CartPole-v1 (notes §11.3): minutes on a CPU, so marked slow (``make test-slow``).

The final evaluation scores the weights of the best periodic evaluation (the trainer's default).
"""

import time

import gymnasium as gym
import pytest

from agents.deep.actor_critic import ActorCritic, ActorCriticConfig
from agents.deep.reinforce import REINFORCE, ReinforceConfig
from agents.deep.trainer import RunConfig, train

pytestmark = pytest.mark.slow


def cartpole():
    return gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))


@pytest.mark.parametrize(("agent_cls", "config", "steps", "target"), [
    (ActorCritic, ActorCriticConfig(), 200_000, 475.0),
    (REINFORCE, ReinforceConfig(baseline="value"), 200_000, 400.0),
], ids=["actor-critic", "reinforce"])
def test_solves_cartpole(agent_cls, config, steps, target, tmp_path, measured):
    agent = agent_cls(cartpole, config, seed=0)
    start = time.perf_counter()
    result = train(agent, lambda: gym.make("CartPole-v1"), RunConfig(steps=steps, out=tmp_path, eval_every=20_000,
                                                                      final_episodes=20, progress=False))
    seconds = time.perf_counter() - start
    measured(f"{agent.name}: {steps} steps, {seconds:.0f} s, greedy return {result.mean_return:.1f} "
             f"+- {result.std_return:.1f} (weights of step {result.best_step}; last weights {result.last_mean_return:.1f}), "
             f"evaluations {[round(row['eval_mean']) for row in result.rows]}")
    assert result.mean_return >= target


@pytest.mark.parametrize(("agent_cls", "config"), [
    (ActorCritic, ActorCriticConfig()),
    (REINFORCE, ReinforceConfig()),
], ids=["actor-critic", "reinforce"])
def test_finds_the_optimal_return_on_the_gridworld(agent_cls, config, tmp_path, measured):
    import envs  # noqa: F401  (registers the mp/ ids)
    from agents.tabular.dp import value_iteration

    env = gym.make("mp/GridWorld-v0").unwrapped
    optimum = value_iteration(env.mdp.with_gamma(1.0)).V[env.starts[0]]  # undiscounted optimal return
    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("mp/GridWorld-v0", obs_type="onehot"))  # noqa: E731
    agent = agent_cls(make, config, seed=0)
    result = train(agent, lambda: gym.make("mp/GridWorld-v0", obs_type="onehot"),
                   RunConfig(steps=50_000, out=tmp_path, eval_every=5_000, progress=False))
    measured(f"{agent.name}: greedy return {result.mean_return:.1f}, optimum {optimum:.1f}")
    assert result.mean_return == pytest.approx(optimum)
