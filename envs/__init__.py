"""Gymnasium environments for the course: tabular gridworld MDPs (notes §11).

Importing ``envs`` registers the ``mp/`` ids (see :data:`envs.registration.ENVIRONMENTS`), so
external code can call ``gym.make("envs:mp/CliffWalking-v0")``.
"""

from envs.grid_map import GridMap, builtin_maps, load_map
from envs.gridworld import ACTION_DELTAS, ACTION_NAMES, GridWorldEnv
from envs.maze import MazeEnv, generate_maze
from envs.mdp import TabularMDP
from envs.registration import ENVIRONMENTS, all_environments, make_env, parse_env_kwargs, register_envs

register_envs()

__all__ = [
    "ACTION_DELTAS", "ACTION_NAMES", "ENVIRONMENTS", "GridMap", "GridWorldEnv", "MazeEnv",
    "TabularMDP", "all_environments", "builtin_maps", "generate_maze", "load_map", "make_env", "parse_env_kwargs",
    "register_envs",
]
