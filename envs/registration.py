"""The ``mp/`` ids, registered when ``envs`` is imported: the gridworlds below and the PyBullet
scenes of :mod:`envs.bullet`."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

GRIDWORLD = "envs.gridworld:GridWorldEnv"

# id -> (entry point, max_episode_steps, kwargs)
ENVIRONMENTS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "mp/GridWorld-v0": (GRIDWORLD, 100, dict(map="gridworld", step_reward=-1.0, goal_reward=10.0, hole_reward=-10.0)),
    "mp/CliffWalking-v0": (GRIDWORLD, 500, dict(map="cliff", step_reward=-1.0, goal_reward=-1.0, cliff_reward=-100.0, gamma=1.0)),
    "mp/FrozenLake8x8-v0": (GRIDWORLD, 200, dict(map="frozenlake8x8", slip=2.0 / 3.0, step_reward=0.0, goal_reward=1.0, hole_reward=0.0)),
    "mp/WindyGridWorld-v0": (GRIDWORLD, 1000, dict(map="windy", step_reward=-1.0, goal_reward=-1.0, gamma=1.0)),
    "mp/FourRooms-v0": (GRIDWORLD, 500, dict(map="fourrooms", step_reward=0.0, goal_reward=1.0)),
    "mp/Maze-v0": ("envs.maze:MazeEnv", 1000, {}),
}


def all_environments() -> dict[str, tuple[str, int, dict[str, Any]]]:
    """Every ``mp/`` id: the gridworlds of :data:`ENVIRONMENTS` and the PyBullet scenes."""
    from envs.bullet import BULLET_ENVIRONMENTS

    return {**ENVIRONMENTS, **BULLET_ENVIRONMENTS}


def register_envs() -> None:
    """Register every id of :func:`all_environments` (idempotent; PyBullet loads only when one is made)."""
    for env_id, (entry_point, steps, kwargs) in all_environments().items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=steps, kwargs=kwargs)


def parse_env_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["size=30", "slip=0.2", "map=cliff"]`` -> ``{"size": 30, "slip": 0.2, "map": "cliff"}``.

    Values are Python literals where they parse as one, strings otherwise.
    """
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"environment option {item!r} must look like key=value, e.g. size=30")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with the ``mp/`` ids registered and a clear error for an unknown id."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, DeprecatedEnv, ...
        ours = ", ".join(all_environments())
        raise ValueError(f"cannot make environment {env_id!r}: {err} (this package registers: {ours})") from err
