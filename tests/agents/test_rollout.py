"""Tests for agents.rollout: episode bookkeeping, seeding, evaluation and MP4 output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest

from agents.rollout import Episode, evaluate, record_video, rollout

# Non-slippery 4x4 FrozenLake ("SFFF", "FHFH", "FFFH", "HFFG"); actions 0 left, 1 down, 2 right, 3 up.
# Down, down, right, down, right, right walks 0 -> 4 -> 8 -> 9 -> 13 -> 14 -> 15 (goal).
TO_GOAL = {0: 1, 4: 1, 8: 2, 9: 1, 13: 2, 14: 2}
GOAL_STATES = [0, 4, 8, 9, 13, 14, 15]
# An optimal policy for the slippery lake (it still fails a quarter of the time), indexed by state.
SLIPPERY = [0, 3, 3, 3, 0, 0, 0, 0, 3, 1, 0, 0, 0, 2, 1, 0]
CELL = 5  # pixels per cell in CellFrames renders


class CellFrames(gym.Wrapper[Any, Any, Any, Any]):
    """FrozenLake whose render() is numpy only: grey board, agent cell coloured by its state id.

    Gymnasium's own rgb_array render needs pygame, which this project does not install.
    """

    def render(self) -> np.ndarray:
        nrow, ncol = self.env.unwrapped.desc.shape
        s = int(self.env.unwrapped.s)
        frame = np.full((nrow * CELL, ncol * CELL, 3), 60, dtype=np.uint8)
        r, c = divmod(s, ncol)
        frame[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = (10 * s + 50, 200, 0)
        return frame


def frozen_lake(slippery: bool, render_mode: str | None = None) -> gym.Env[Any, Any]:
    return gym.make("FrozenLake-v1", is_slippery=slippery, render_mode=render_mode)


def goal_policy(obs: int) -> int:
    return TO_GOAL.get(int(obs), 0)


def slippery_policy(obs: int) -> int:
    return SLIPPERY[int(obs)]


def test_rollout_matches_hand_driven_env() -> None:
    episode = rollout(frozen_lake(slippery=False), goal_policy, seed=0)

    hand = frozen_lake(slippery=False)
    obs, _ = hand.reset(seed=0)
    observations, rewards = [obs], []
    for action in [1, 1, 2, 1, 2, 2]:
        obs, reward, terminated, truncated, _ = hand.step(action)
        observations.append(obs)
        rewards.append(reward)
    assert terminated and not truncated

    assert episode.observations == observations == GOAL_STATES
    np.testing.assert_array_equal(episode.actions, [1, 1, 2, 1, 2, 2])
    np.testing.assert_array_equal(episode.rewards, rewards)
    assert episode.length == 6 and episode.return_ == 1.0
    assert episode.terminated and not episode.truncated
    assert episode.frames is None


def test_rollout_max_steps_truncates() -> None:
    episode = rollout(frozen_lake(slippery=False), goal_policy, seed=0, max_steps=3)
    assert episode.length == 3 and len(episode.observations) == 4
    assert episode.observations == GOAL_STATES[:4]
    assert episode.truncated and not episode.terminated and episode.return_ == 0.0


def test_env_time_limit_sets_truncated() -> None:
    # Always "left" from the start cell bumps into the wall until FrozenLake's 100-step limit.
    episode = rollout(frozen_lake(slippery=False), lambda obs: 0, seed=0)
    assert episode.length == 100 and episode.truncated and not episode.terminated


def test_render_collects_first_frame_and_one_per_step() -> None:
    env = CellFrames(frozen_lake(slippery=False, render_mode="rgb_array"))
    episode = rollout(env, goal_policy, seed=0, render=True)
    assert episode.frames is not None and len(episode.frames) == episode.length + 1
    for s, frame in zip(episode.observations, episode.frames, strict=True):
        r, c = divmod(int(s), 4)
        assert frame.dtype == np.uint8 and frame.shape == (20, 20, 3)
        assert frame[r * CELL, c * CELL, 0] == 10 * s + 50  # frame i shows the agent in state i


def test_render_without_rgb_array_mode_names_render_mode() -> None:
    with pytest.raises(ValueError, match="render_mode=None"):
        rollout(frozen_lake(slippery=False), goal_policy, seed=0, render=True)


def test_same_seed_same_episode_on_slippery_lake() -> None:
    env = frozen_lake(slippery=True)
    episodes = [rollout(env, slippery_policy, seed=seed) for seed in [7, 7, 8, 9, 10, 11]]
    first = episodes[0]
    assert episodes[1].observations == first.observations
    np.testing.assert_array_equal(episodes[1].actions, first.actions)
    # Different seeds must give at least one different trajectory, or the seed is ignored.
    assert any(e.observations != first.observations for e in episodes[2:])


def test_evaluate_count_reproducibility_and_per_episode_seeds() -> None:
    env = frozen_lake(slippery=True)
    returns = evaluate(env, slippery_policy, 12, seed=3)
    assert returns.shape == (12,) and returns.dtype == np.float64
    np.testing.assert_array_equal(returns, evaluate(env, slippery_policy, 12, seed=3))
    expected = [rollout(env, slippery_policy, seed=3 + i).return_ for i in range(12)]
    np.testing.assert_array_equal(returns, expected)
    assert 0 < returns.sum() < 12  # slippery: the policy wins some episodes and loses others


def test_evaluate_deterministic_lake_always_reaches_goal() -> None:
    np.testing.assert_array_equal(evaluate(frozen_lake(slippery=False), goal_policy, 3, seed=0), [1.0] * 3)
    with pytest.raises(ValueError, match="episodes"):
        evaluate(frozen_lake(slippery=False), goal_policy, 0)


def test_record_video_holds_last_frame(tmp_path: Path) -> None:
    env = CellFrames(frozen_lake(slippery=True, render_mode="rgb_array"))
    episodes = record_video(env, slippery_policy, tmp_path / "eval.mp4", episodes=2, seed=1, hold=3)
    assert len(episodes) == 2 and all(isinstance(e, Episode) for e in episodes)
    assert [e.observations for e in episodes] == [rollout(env, slippery_policy, seed=s).observations for s in (1, 2)]
    decoded = imageio.mimread(tmp_path / "eval.mp4", memtest=False)
    assert len(decoded) == sum(e.length + 1 + 3 for e in episodes)
    end = episodes[0].length  # index of episode 0's last frame in the video
    for k in range(1, 4):
        np.testing.assert_allclose(decoded[end + k], decoded[end], atol=3)


