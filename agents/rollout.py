"""Running a policy in a Gymnasium env: single episodes, evaluation returns and MP4 videos
(written by the one video writer, :func:`envs.io.video.write_video`).

A policy here is any callable ``act(observation) -> action``; greedy tabular policies, epsilon-greedy
learners and neural networks all fit. Seeding follows Gymnasium: ``reset(seed=...)`` fixes the
environment's randomness; randomness inside ``act`` is the caller's business.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from envs.io.video import as_frame, write_video

Act = Callable[[Any], int]
"""A policy: maps one observation to one action."""


class Episode(NamedTuple):
    """One episode of ``T`` steps, as returned by :func:`rollout`."""

    observations: list[Any]
    """``T + 1`` observations: the one from ``reset`` and one after each step."""
    actions: np.ndarray
    """[T] the actions taken."""
    rewards: np.ndarray
    """[T] float, the reward after each action."""
    frames: list[np.ndarray] | None
    """``T + 1`` uint8 [H, W, 3] renders aligned with ``observations``, or None without rendering."""
    terminated: bool
    """True when the episode reached a terminal state of the MDP."""
    truncated: bool
    """True when it was cut short (the env's time limit or ``max_steps``)."""

    @property
    def return_(self) -> float:
        """Undiscounted return: the sum of the rewards."""
        return float(np.sum(self.rewards))

    @property
    def length(self) -> int:
        """Number of steps ``T``."""
        return len(self.rewards)


def rollout(
    env: gym.Env[Any, Any],
    act: Act,
    *,
    seed: int | None = None,
    render: bool = False,
    max_steps: int | None = None,
) -> Episode:
    """Run ``act`` in ``env`` from ``env.reset(seed=seed)`` until the episode ends.

    With ``render=True`` the env must have ``render_mode="rgb_array"``; a frame is taken after the
    reset and after every step. ``max_steps`` caps the episode; hitting the cap sets ``truncated``.
    """
    if render and getattr(env, "render_mode", None) != "rgb_array":
        mode = getattr(env, "render_mode", None)
        raise ValueError(f"render=True needs an env made with render_mode='rgb_array', got render_mode={mode!r}")
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
    obs, _ = env.reset(seed=seed)
    observations: list[Any] = [obs]
    actions: list[Any] = []
    rewards: list[float] = []
    frames = [as_frame(env.render(), "env.render()")] if render else None
    terminated = truncated = False
    while not (terminated or truncated):
        if max_steps is not None and len(actions) >= max_steps:
            truncated = True
            break
        action = act(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        if frames is not None:
            frames.append(as_frame(env.render(), "env.render()"))
    return Episode(
        observations=observations,
        actions=np.asarray(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        frames=frames,
        terminated=bool(terminated),
        truncated=bool(truncated),
    )


def evaluate(
    env: gym.Env[Any, Any],
    act: Act,
    episodes: int,
    *,
    seed: int | None = None,
    max_steps: int | None = None,
) -> np.ndarray:
    """Undiscounted returns [episodes] of ``act``; episode ``i`` is reset with ``seed + i``.

    With ``seed=None`` the env keeps its own random stream and the result is not reproducible.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    returns = np.empty(episodes, dtype=np.float64)
    for i in range(episodes):
        episode_seed = None if seed is None else seed + i
        returns[i] = rollout(env, act, seed=episode_seed, max_steps=max_steps).return_
    return returns


def record_video(
    env: gym.Env[Any, Any],
    act: Act,
    path: str | os.PathLike[str],
    *,
    episodes: int = 1,
    seed: int | None = None,
    fps: int | None = None,
    hold: int = 2,
    max_steps: int | None = None,
) -> list[Episode]:
    """Roll out ``episodes`` episodes (seeds ``seed + i``) into one MP4 at ``path``.

    ``fps`` defaults to the environment's ``metadata["render_fps"]`` (4 if it has none). The last
    frame of each episode is repeated ``hold`` extra times so its end can be seen.
    """
    if fps is None:
        fps = int(env.metadata.get("render_fps") or 4)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if hold < 0:
        raise ValueError(f"hold must be >= 0, got {hold}")
    runs = [
        rollout(env, act, seed=None if seed is None else seed + i, render=True, max_steps=max_steps)
        for i in range(episodes)
    ]
    write_video(_held_frames(runs, hold), path, fps=fps)
    return runs


def _held_frames(runs: Sequence[Episode], hold: int) -> Iterable[np.ndarray]:
    """Yield every episode's frames, the last one ``hold`` more times."""
    for run in runs:
        assert run.frames is not None  # rollout(render=True) always fills frames
        yield from run.frames
        yield from [run.frames[-1]] * hold
