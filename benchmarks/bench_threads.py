"""How many torch threads? The same short workloads with 1 and 2 threads, on a quiet machine and
with one CPU-bound process beside them (a shared 2-core machine, as CI and many laptops are).

Workloads (each timed in a fresh process, so thread pools start cold as they do for a user):
  occupancy   100 steps of the occupancy network (vision3d) on a torus dataset
  cnn         300 steps of the §2 CNN on the 8x8 digits (generative)
  dqn         3,000 environment steps of DQN on CartPole-v1 (agents)

    python benchmarks/bench_threads.py [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKLOADS = {
    "occupancy": """
import sys, time, torch
from vision3d.dataset import ExportConfig, export_dataset
from vision3d.occupancy import OccupancyConfig, fit_occupancy
from generative.training import FitConfig
data = export_dataset("torus", sys.argv[2] + "/data", config=ExportConfig(views=2, size=16, val_views=1, test_views=1))
config = OccupancyConfig(fit=FitConfig(steps=100, progress=False, threads=int(sys.argv[1])))
start = time.perf_counter()
fit_occupancy(data, sys.argv[2] + "/run", config)
print(time.perf_counter() - start)
""",
    "cnn": """
import sys, time, dataclasses
from generative.tasks.classification import CNNConfig, train_cnn
config = CNNConfig()
config = dataclasses.replace(config, fit=dataclasses.replace(config.fit, steps=300, progress=False, threads=int(sys.argv[1])))
start = time.perf_counter()
train_cnn(config, sys.argv[2] + "/run")
print(time.perf_counter() - start)
""",
    "dqn": """
import sys, time, torch, gymnasium as gym
from agents.deep import DQN, DQNConfig, RunConfig, train
torch.set_num_threads(int(sys.argv[1]))
make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))
agent = DQN(make, DQNConfig(), seed=0, total_steps=3000)
start = time.perf_counter()
train(agent, lambda: gym.make("CartPole-v1"), RunConfig(steps=3000, out=sys.argv[2] + "/run", eval_every=3000,
      eval_episodes=2, final_episodes=2, progress=False))
print(time.perf_counter() - start)
""",
}


def time_workload(code: str, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("OMP_NUM_THREADS", None)
        out = subprocess.run([sys.executable, "-c", code, str(threads), tmp], capture_output=True, text=True, env=env,
                             check=True)
        return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    for load in ("quiet", "busy"):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
        try:
            time.sleep(0.5 if hog else 0.0)
            for name, code in WORKLOADS.items():
                for threads in (1, 2):
                    key = f"{name}/{load}/{threads}"
                    results[key] = [time_workload(code, threads) for _ in range(args.repeats)]
                    print(f"{key:>22}: median {statistics.median(results[key]):6.2f} s  {results[key]}", flush=True)
        finally:
            if hog is not None:
                hog.kill()
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
