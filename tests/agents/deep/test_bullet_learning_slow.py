"""Learning on the PyBullet scenes (notes §11.3), run by ``make test-slow``, not by CI."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the mp/ ids)
from agents.deep.actor_critic import ActorCritic, ActorCriticConfig
from agents.deep.reinforce import REINFORCE, ReinforceConfig
from agents.deep.trainer import RunConfig, train
from agents.rollout import evaluate
from envs.bullet import ScriptedReacher

pytestmark = pytest.mark.slow
REACHER = "mp/BulletReacher-v0"


def reacher():
    return gym.wrappers.RecordEpisodeStatistics(gym.make(REACHER))


def references() -> tuple[float, float]:
    """Mean returns of random actions and of the scripted controller over the same 20 episodes."""
    env = gym.make(REACHER)
    rng = np.random.default_rng(0)
    random_return = evaluate(env, lambda o: rng.uniform(-1, 1, 2).astype(np.float32), 20, seed=1).mean()
    scripted_return = evaluate(env, ScriptedReacher().act, 20, seed=1).mean()
    return float(random_return), float(scripted_return)


@pytest.mark.parametrize(("agent_cls", "config", "steps"), [
    (ActorCritic, ActorCriticConfig(), 150_000),
    (REINFORCE, ReinforceConfig(baseline="value"), 300_000),
], ids=["actor-critic", "reinforce"])
def test_gaussian_policies_close_half_the_gap_to_the_scripted_reacher(agent_cls, config, steps, tmp_path):
    torch.set_num_threads(1)
    agent = agent_cls(reacher, config, seed=0)
    result = train(agent, lambda: gym.make(REACHER), RunConfig(steps=steps, out=tmp_path, eval_every=steps // 10, progress=False))
    random_return, scripted_return = references()
    print(f"{agent.name}: {result.mean_return:.2f}; random {random_return:.2f}; scripted {scripted_return:.2f}")
    assert result.mean_return >= random_return + 0.5 * (scripted_return - random_return)


def test_stable_baselines3_ppo_learns_on_the_bullet_cartpole():
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    env = gym.make("mp/BulletCartPole-v0")
    before = evaluate(gym.make("mp/BulletCartPole-v0"), lambda o: env.action_space.sample(), 10, seed=0).mean()
    model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0).learn(60_000)
    after = evaluate(gym.make("mp/BulletCartPole-v0"), lambda o: int(model.predict(o, deterministic=True)[0]), 10, seed=0).mean()
    print(f"PPO on mp/BulletCartPole-v0: random {before:.1f}, after 60k steps {after:.1f}")
    assert after >= 200 > 5 * before
