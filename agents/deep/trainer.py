"""The one training loop of the deep agents: iterate, evaluate every ``eval_every`` steps, log,
checkpoint atomically, resume, and stop cleanly on a NaN loss.

The run folder is :class:`envs.io.run.RunFolder` (lock, ``config.json``, atomic checkpoints that load
with ``torch.load(weights_only=True)``):

  ``metrics.csv``   step (environment steps), episodes, train_return (mean of the episodes finished
                    since the last row), eval_mean, eval_std, seconds (summed over resumes), the losses
  ``checkpoint.pt`` the agent (networks, optimizers, random generators, replay buffer, the live
                    environments' state as plain data) and the loop
  ``best.pt``       the agent at its best periodic evaluation (as Stable-Baselines3's EvalCallback)
  ``tensorboard/``  the same scalars (by default, when the tensorboard package is installed), and at each
                    evaluation the last frame of its last episode as the image ``eval/last_frame`` when the
                    evaluation environment renders ``rgb_array`` (one render call per evaluation)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from agents.deep.base import DeepAgent
from agents.rollout import evaluate
from envs.io.run import BEST, CHECKPOINT, RunFolder, TrainingDiverged, opened

FORMAT = "machine-perception/agent-1"
__all__ = ["RunConfig", "RunResult", "TrainingDiverged", "train"]


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
    """Continue the run in ``out`` from its checkpoint.pt."""
    tensorboard: bool | None = None
    """Also write TensorBoard scalars and images to ``out/tensorboard``; None: when the package is installed."""
    wandb: bool = False
    """Also log to Weights & Biases (:class:`envs.io.run.RunFolder`)."""
    progress: bool = True
    """Show a progress bar."""
    final: Literal["best", "last"] = "best"
    """Weights scored by the final evaluation: those of the best periodic evaluation, or the last ones."""

    def __post_init__(self) -> None:
        if min(self.steps, self.eval_every, self.eval_episodes, self.final_episodes) < 1:
            raise ValueError(f"steps, eval_every, eval_episodes and final_episodes must be >= 1, got {self.steps}, "
                             f"{self.eval_every}, {self.eval_episodes}, {self.final_episodes}")


class RunResult(NamedTuple):
    """The final greedy evaluation and the logged rows."""

    mean_return: float  # final evaluation of the weights chosen by RunConfig.final
    std_return: float
    episodes: int  # training episodes finished
    rows: list[dict[str, float]]
    last_mean_return: float  # final evaluation of the last weights
    best_step: int  # step of the best periodic evaluation


def _state(agent: DeepAgent, loop: dict[str, Any], folder: RunFolder) -> dict[str, Any]:
    return {"format": FORMAT, "agent": agent.state_dict(), "loop": dict(loop), "run": folder.state_dict()}


def restore(agent: DeepAgent, state: dict[str, Any], path: Path) -> None:
    """Load ``state`` (the agent part of a checkpoint) into ``agent``; a checkpoint of another agent,
    network or environment, or a malformed one, is a one-line ``ValueError`` naming ``path``."""
    try:
        agent.load_state_dict(state)
    except (KeyError, TypeError, IndexError, AttributeError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"checkpoint {path} does not fit this agent and environment ({type(err).__name__}: "
                         f"{reason[:200]})") from None


def load_agent_state(path: Path) -> dict[str, Any]:
    """The agent part of a checkpoint or best.pt written by :func:`train` (read safely)."""
    from envs.io.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if state.get("format") != FORMAT or "agent" not in state:
        raise ValueError(f"{path} is not a checkpoint of a deep agent (format {state.get('format')!r})")
    return state["agent"]


def last_frame(env: Any) -> np.ndarray | None:  # -> uint8 [H, W, 3]
    """What ``env`` shows now (after an evaluation: the end of its last episode), or None when it does not
    render ``rgb_array`` images."""
    if getattr(env, "render_mode", None) != "rgb_array":
        return None
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        return None
    return frame


def train(agent: DeepAgent, make_eval_env: Callable[[], Any], run: RunConfig,
          folder: RunFolder | None = None) -> RunResult:
    """Train ``agent`` for ``run.steps`` environment steps; see the module docstring for the outputs.

    ``folder`` is an open run folder of the caller (whose ``config.json`` describes the whole run);
    without one, ``run.out`` is opened with ``run`` as its config.
    """
    with opened(folder or run.out, config=run, resume=run.resume, tensorboard=run.tensorboard,
                wandb=run.wandb) as run_folder:
        return _train(agent, make_eval_env, run, run_folder)


def _train(agent: DeepAgent, make_eval_env: Callable[[], Any], run: RunConfig, folder: RunFolder) -> RunResult:
    checkpoint = folder.path / CHECKPOINT
    loop: dict[str, Any] = {"episodes": 0, "next_eval": run.eval_every, "best": -math.inf, "best_step": 0}
    if folder.resume:
        state = folder.load()
        if state.get("format") != FORMAT:
            raise ValueError(f"{checkpoint} is not a checkpoint of a deep agent (format {state.get('format')!r})")
        restore(agent, state["agent"], checkpoint)
        loop = dict(state["loop"])
        folder.load_state_dict(state["run"])
    eval_env = make_eval_env()
    recent: list[float] = []
    losses: dict[str, list[float]] = {}
    bar = tqdm(total=run.steps, initial=agent.steps, desc=agent.name, unit="step", disable=not run.progress)
    try:
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
                       "seconds": round(folder.seconds, 3)}
                row.update({k: float(np.mean(v)) for k, v in losses.items()})
                loop["next_eval"] = agent.steps + run.eval_every
                recent, losses = [], {}
                folder.log(row)
                frame = last_frame(eval_env) if folder.logs_images else None
                if frame is not None:
                    folder.log_image("eval/last_frame", frame, agent.steps)
                if row["eval_mean"] >= loop["best"]:  # ties go to the later, longer-trained weights
                    loop["best"], loop["best_step"] = row["eval_mean"], agent.steps
                    folder.save(_state(agent, loop, folder), BEST)
                folder.save(_state(agent, loop, folder))
                bar.set_postfix(eval=f"{row['eval_mean']:.1f}", train=f"{row['train_return']:.1f}")
    finally:
        bar.close()

    def final_evaluation() -> np.ndarray:
        return evaluate(eval_env, lambda o: agent.act(o, deterministic=True), run.final_episodes, seed=run.seed + 1)

    last = final_evaluation()
    chosen = last
    if run.final == "best" and loop["best_step"] and loop["best_step"] != agent.steps:
        restore(agent, load_agent_state(folder.path / BEST), folder.path / BEST)
        chosen = final_evaluation()
    eval_env.close()
    return RunResult(float(chosen.mean()), float(chosen.std()), int(loop["episodes"]), list(folder.rows),
                     float(last.mean()), int(loop["best_step"]))
