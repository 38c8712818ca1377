"""Gymnasium environments for the course: tabular gridworld MDPs and PyBullet scenes (notes §11).

Importing ``envs`` registers the ``mp/`` ids (see :data:`envs.registration.ENVIRONMENTS`) by
entry-point string, so external code can call ``gym.make("envs:mp/CliffWalking-v0")``. The classes
below load on first use (PEP 562): ``import envs`` costs Gymnasium's import and little more.
"""

from __future__ import annotations

import importlib
from typing import Any

from envs.registration import ENVIRONMENTS, all_environments, make_env, parse_env_kwargs, register_envs

register_envs()

_LAZY = {
    "GridMap": "envs.grid_map", "builtin_maps": "envs.grid_map", "load_map": "envs.grid_map",
    "ACTION_DELTAS": "envs.gridworld", "ACTION_NAMES": "envs.gridworld", "GridWorldEnv": "envs.gridworld",
    "MazeEnv": "envs.maze", "generate_maze": "envs.maze",
    "TabularMDP": "envs.mdp",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [  # noqa: PLE0604 - the lazily loaded names are strings too
    "ENVIRONMENTS", "all_environments", "make_env", "parse_env_kwargs", "register_envs", *_LAZY,
]
