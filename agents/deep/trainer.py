"""The one training loop of the deep agents: iterate, evaluate every ``eval_every`` steps, log,
checkpoint atomically, resume, and stop cleanly on a NaN loss.

Run folder:
  ``metrics.csv``   step, episodes, train_return (mean of the episodes finished since the last row),
                    eval_mean, eval_std, and the mean of each loss
  ``checkpoint.pt`` the agent (networks, optimizers, random generators, replay buffer) and the loop
  ``best.pt``       the agent at its best periodic evaluation (as Stable-Baselines3's EvalCallback)
  ``tensorboard/``  the same scalars, with ``tensorboard=True``
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from agents.deep.base import DeepAgent
from agents.rollout import evaluate
from envs.io import atomic_torch_save, atomic_write_csv, load_torch_checkpoint

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


class TrainingDiverged(ValueError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunConfig:
    """How long to train and how to watch it."""

    steps: int
    """Environment steps to train for (in total, also when resuming)."""
    out: Path
    """Run folder."""
    eval_every: int = 5_000
    """Environment steps between evaluations (and checkpoints)."""
    eval_episodes: int = 10
    """Greedy episodes per evaluation."""
    final_episodes: int = 20
    """Greedy episodes of the final evaluation."""
    seed: int = 0
    """Seed of the evaluation episodes (the agent has its own)."""
    resume: bool = False
    """Continue from ``out/checkpoint.pt`` if it exists."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to ``out/tensorboard``."""
    progress: bool = True
    """Show a progress bar."""
    final: Literal["best", "last"] = "best"
    """Weights scored by the final evaluation: those of the best periodic evaluation, or the last ones."""


class RunResult(NamedTuple):
    """The final greedy evaluation and the logged rows."""

    mean_return: float  # final evaluation of the weights chosen by RunConfig.final
    std_return: float
    episodes: int  # training episodes finished
    rows: list[dict[str, float]]
    last_mean_return: float  # final evaluation of the last weights
    best_step: int  # step of the best periodic evaluation


def save_checkpoint(path: Path, agent: DeepAgent, loop: dict[str, Any]) -> None:
    atomic_torch_save(path, {"agent": agent.state_dict(), "loop": loop})


def train(agent: DeepAgent, make_eval_env: Callable[[], Any], run: RunConfig) -> RunResult:
    """Train ``agent`` for ``run.steps`` environment steps; see the module docstring for the outputs."""
    run.out.mkdir(parents=True, exist_ok=True)
    checkpoint = run.out / CHECKPOINT
    loop: dict[str, Any] = {"rows": [], "episodes": 0, "next_eval": run.eval_every, "best": -math.inf, "best_step": 0}
    if run.resume and checkpoint.exists():
        state = load_torch_checkpoint(checkpoint)
        agent.load_state_dict(state["agent"])
        loop = state["loop"]
    writer = None
    if run.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ValueError(f"tensorboard=True needs the tensorboard package (pip install tensorboard): {err}") from err
        writer = SummaryWriter(str(run.out / "tensorboard"))
    eval_env = make_eval_env()
    recent: list[float] = []
    losses: dict[str, list[float]] = {}
    bar = tqdm(total=run.steps, initial=agent.steps, desc=agent.name, unit="step", disable=not run.progress)
    start = time.perf_counter()
    while agent.steps < run.steps:
        result = agent.iterate()
        for key, value in result.losses.items():
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"{agent.name}: loss {key!r} became {value} at step {agent.steps}; stopped. "
                    f"The last good checkpoint is {checkpoint if checkpoint.exists() else 'not written yet'}."
                )
            losses.setdefault(key, []).append(value)
        recent += [r for r, _ in result.episodes]
        loop["episodes"] += len(result.episodes)
        bar.update(result.steps)
        if agent.steps >= loop["next_eval"] or agent.steps >= run.steps:
            returns = evaluate(eval_env, lambda o: agent.act(o, deterministic=True), run.eval_episodes,
                               seed=run.seed + 10_000 + agent.steps)
            row = {"step": agent.steps, "episodes": loop["episodes"],
                   "train_return": float(np.mean(recent)) if recent else float("nan"),
                   "eval_mean": float(returns.mean()), "eval_std": float(returns.std()),
                   "seconds": time.perf_counter() - start}
            row.update({k: float(np.mean(v)) for k, v in losses.items()})
            loop["rows"].append(row)
            loop["next_eval"] = agent.steps + run.eval_every
            recent, losses = [], {}
            atomic_write_csv(run.out / "metrics.csv", loop["rows"])
            if row["eval_mean"] >= loop["best"]:  # ties go to the later, longer-trained weights
                loop["best"], loop["best_step"] = row["eval_mean"], agent.steps
                save_checkpoint(run.out / BEST, agent, loop)
            save_checkpoint(checkpoint, agent, loop)
            if writer is not None:
                for key, value in row.items():
                    if key != "step":
                        writer.add_scalar(key, value, agent.steps)
            bar.set_postfix(eval=f"{row['eval_mean']:.1f}", train=f"{row['train_return']:.1f}")
    bar.close()
    if writer is not None:
        writer.close()
    def final_evaluation() -> np.ndarray:
        return evaluate(eval_env, lambda o: agent.act(o, deterministic=True), run.final_episodes, seed=run.seed + 1)

    last = final_evaluation()
    chosen = last
    if run.final == "best" and loop["best_step"] and loop["best_step"] != agent.steps:
        agent.load_state_dict(load_torch_checkpoint(run.out / BEST)["agent"])
        chosen = final_evaluation()
    return RunResult(float(chosen.mean()), float(chosen.std()), int(loop["episodes"]), loop["rows"],
                     float(last.mean()), int(loop["best_step"]))
