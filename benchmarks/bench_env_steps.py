"""Environment steps per second with random actions: mp/FrozenLake8x8-v0 against Gymnasium's
FrozenLake-v1 (map_name="8x8"), both through ``gym.make`` (same wrappers), same action sequence.

    python benchmarks/bench_env_steps.py [--steps 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers mp/ ids)


def steps_per_second(env: gym.Env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    step, reset = env.step, env.reset
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()
    return len(actions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    actions = np.random.default_rng(0).integers(0, 4, size=args.steps).tolist()
    makers = {
        "mp/FrozenLake8x8-v0": lambda: gym.make("mp/FrozenLake8x8-v0"),
        "FrozenLake-v1 8x8": lambda: gym.make("FrozenLake-v1", map_name="8x8"),
    }
    best = {name: 0.0 for name in makers}
    for _ in range(args.repeats):  # interleaved, best of N, so background load hits both alike
        for name, make in makers.items():
            best[name] = max(best[name], steps_per_second(make(), actions))
    ratio = best["mp/FrozenLake8x8-v0"] / best["FrozenLake-v1 8x8"]
    print(json.dumps({"steps_per_second": best, "ratio_ours_over_gymnasium": ratio}, indent=1))
    print(f"\nours {best['mp/FrozenLake8x8-v0']:,.0f} steps/s, Gymnasium {best['FrozenLake-v1 8x8']:,.0f} steps/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
