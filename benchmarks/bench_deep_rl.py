"""Our deep agents against Stable-Baselines3 on CartPole-v1, same machine, same run, same seeds.

Both sides are evaluated with the same protocol: every ``--eval-every`` steps, ``--eval-episodes``
greedy episodes on a separate CartPole-v1. Reported per seed: the first evaluated step where the
mean return reaches 475 ("steps to 475", ``None`` if never), the final evaluation, and the training
wall-clock with the evaluation time taken out. Both use one torch thread.

    python benchmarks/bench_deep_rl.py --algo dqn --seeds 0 1 2
    python benchmarks/bench_deep_rl.py --algo actor-critic --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from agents.rollout import evaluate

# RL Zoo's tuned DQN hyperparameters for CartPole-v1 (our DQNConfig defaults are the same values).
ZOO_DQN = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
               target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
               exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))


class Evaluator:
    """Greedy evaluations at fixed steps, timed separately from training."""

    def __init__(self, every: int, episodes: int, seed: int) -> None:
        self.every, self.episodes, self.seed = every, episodes, seed
        self.env = gym.make("CartPole-v1")
        self.rows: list[tuple[int, float]] = []
        self.seconds = 0.0

    def __call__(self, step: int, act: Callable) -> None:
        start = time.perf_counter()
        returns = evaluate(self.env, act, self.episodes, seed=self.seed + 10_000 + step)
        self.rows.append((step, float(returns.mean())))
        self.seconds += time.perf_counter() - start

    def summary(self, total_seconds: float) -> dict:
        reached = next((step for step, mean in self.rows if mean >= 475), None)
        return {"steps_to_475": reached, "final_eval": self.rows[-1][1], "train_seconds": total_seconds - self.seconds,
                "curve": self.rows}


def run_ours(algo: str, steps: int, seed: int, evaluator: Evaluator) -> dict:
    from agents.commands import build_deep_agent

    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))  # noqa: E731
    agent = build_deep_agent(algo, make, None, seed, steps)
    start = time.perf_counter()
    next_eval = evaluator.every
    while agent.steps < steps:
        agent.iterate()
        if agent.steps >= next_eval:
            evaluator(agent.steps, lambda o: agent.act(o))
            next_eval += evaluator.every
    return evaluator.summary(time.perf_counter() - start)


def run_sb3(algo: str, steps: int, seed: int, evaluator: Evaluator) -> dict:
    from stable_baselines3 import A2C, DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Every(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % evaluator.every < self.training_env.num_envs:
                evaluator(self.num_timesteps, lambda o: int(self.model.predict(o, deterministic=True)[0]))
            return True

    if algo == "dqn":
        model = DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", verbose=0, **ZOO_DQN)
    else:  # RL Zoo's A2C for CartPole-v1: 8 environments, ent_coef 0
        model = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=seed), seed=seed, device="cpu",
                    ent_coef=0.0, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Every())
    return evaluator.summary(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["dqn", "actor-critic"], default="dqn")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[dict]] = {"ours": [], "sb3": []}
    for seed in args.seeds:
        for side, runner in (("ours", run_ours), ("sb3", run_sb3)):
            result = runner(args.algo, args.steps, seed, Evaluator(args.eval_every, args.eval_episodes, seed))
            results[side].append(result)
            print(json.dumps({"side": side, "seed": seed, **{k: v for k, v in result.items() if k != "curve"}}), flush=True)
    ours_t = np.mean([r["train_seconds"] for r in results["ours"]])
    sb3_t = np.mean([r["train_seconds"] for r in results["sb3"]])
    print(json.dumps({
        "algo": args.algo, "steps": args.steps, "seeds": args.seeds,
        "ours_steps_to_475": [r["steps_to_475"] for r in results["ours"]],
        "sb3_steps_to_475": [r["steps_to_475"] for r in results["sb3"]],
        "ours_final": [r["final_eval"] for r in results["ours"]],
        "sb3_final": [r["final_eval"] for r in results["sb3"]],
        "ours_train_seconds": ours_t, "sb3_train_seconds": sb3_t, "wall_clock_ratio_ours_over_sb3": ours_t / sb3_t,
    }, indent=1))


if __name__ == "__main__":
    main()
