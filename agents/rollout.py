"""Running a policy in a Gymnasium env: single episodes, evaluation returns and MP4 videos.

A policy here is any callable ``act(observation) -> action``; greedy tabular policies, epsilon-greedy
learners and neural networks all fit. Seeding follows Gymnasium: ``reset(seed=...)`` fixes the
environment's randomness; randomness inside ``act`` is the caller's business.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

from envs.io import atomic_path

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
    frames = [_frame(env.render())] if render else None
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
            frames.append(_frame(env.render()))
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


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike[str], *, fps: int = 4) -> Path:
    """Write uint8 [H, W, 3] frames to an H.264/yuv420p MP4 at ``path`` (atomically).

    All frames must share one shape. Odd heights/widths are padded by one row/column copied from
    the edge, since yuv420p needs even sizes. Frames are checked while writing, so a bad frame
    leaves any previous file at ``path`` untouched.
    """
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,  # we pad to even sizes ourselves; the default 16 would rescale
            ffmpeg_log_level="error",
        )
        try:
            count = _append_frames(writer, frames)
        finally:
            writer.close()
        if count == 0:
            raise ValueError("write_video got no frames")
    return path


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


def side_by_side(*videos: Sequence[np.ndarray], gap: int = 4) -> list[np.ndarray]:
    """Frames of several videos next to each other; a shorter video holds its last frame.

    All frames must share a height; a white strip of ``gap`` pixels separates the videos.
    """
    if not videos or any(len(v) == 0 for v in videos):
        raise ValueError("side_by_side needs at least one non-empty video")
    heights = {v[0].shape[0] for v in videos}
    if len(heights) != 1:
        raise ValueError(f"videos to put side by side must share a height, got heights {sorted(heights)}")
    strip = np.full((heights.pop(), gap, 3), 255, np.uint8)
    frames = []
    for t in range(max(len(v) for v in videos)):
        parts = [v[min(t, len(v) - 1)] for v in videos]
        frames.append(np.concatenate([p for part in parts for p in (part, strip)][:-1], axis=1))
    return frames


def pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad a [H, W, 3] frame with its last row/column so that H and W are even."""
    pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
    return np.pad(frame, pad, mode="edge") if any(p[1] for p in pad) else frame


def _held_frames(runs: Sequence[Episode], hold: int) -> Iterable[np.ndarray]:
    """Yield every episode's frames, the last one ``hold`` more times."""
    for run in runs:
        assert run.frames is not None  # rollout(render=True) always fills frames
        yield from run.frames
        yield from [run.frames[-1]] * hold


def _append_frames(writer: Any, frames: Iterable[np.ndarray]) -> int:
    """Check and pad each frame, hand it to ``writer``; return how many were written."""
    first_shape: tuple[int, ...] | None = None
    count = 0
    for i, frame in enumerate(frames):
        frame = _frame(frame, name=f"frames[{i}]")
        if first_shape is None:
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise ValueError(f"frames[{i}] has shape {frame.shape} but frames[0] has shape {first_shape}")
        writer.append_data(pad_even(frame))
        count += 1
    return count


def _frame(image: Any, name: str = "env.render()") -> np.ndarray:
    """Return ``image`` as a uint8 [H, W, 3] array, or raise ValueError naming what is wrong."""
    frame = np.asarray(image)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{name} must be an RGB image [H, W, 3], got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {frame.dtype}")
    return frame
