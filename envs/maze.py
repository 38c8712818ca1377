"""Procedural mazes: a randomised depth-first search carves a perfect maze, then a few walls are
knocked out so that some places can be reached by more than one route."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.gridworld import GridWorldEnv
from envs.registration import check_integer, check_number


def generate_maze(size: int, seed: int = 0, loops: float = 0.1) -> list[str]:
    """A ``size x size`` maze as text rows: ``S`` top left, ``G`` in the far corner.

    Passages lie on odd coordinates; ``loops`` is the fraction of the remaining inner walls
    between two passages that are removed. The same ``(size, seed, loops)`` gives the same maze.
    """
    size = check_integer("size", size, 5)
    seed = check_integer("seed", seed, 0)
    loops = check_number("loops", loops, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    grid = np.full((size, size), "#")
    last = size - 2 if size % 2 else size - 3  # last odd coordinate that leaves a border
    grid[1, 1] = "."
    stack = [(1, 1)]
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc, dr, dc) for dr, dc in ((0, 2), (2, 0), (0, -2), (-2, 0))
                   if 1 <= r + dr <= last and 1 <= c + dc <= last and grid[r + dr, c + dc] == "#"]
        if not options:
            stack.pop()
            continue
        r2, c2, dr, dc = options[rng.integers(len(options))]
        grid[r + dr // 2, c + dc // 2] = "."
        grid[r2, c2] = "."
        stack.append((r2, c2))
    inner = np.zeros_like(grid, dtype=bool)
    inner[1:last + 1, 1:last + 1] = True
    rows, cols = np.indices(grid.shape)
    between_h = (rows % 2 == 1) & (cols % 2 == 0)  # wall between two passages in a row
    between_v = (rows % 2 == 0) & (cols % 2 == 1)
    candidates = np.argwhere(inner & (grid == "#") & (between_h | between_v))
    n_remove = int(round(loops * len(candidates)))
    for r, c in candidates[rng.permutation(len(candidates))[:n_remove]]:
        grid[r, c] = "."
    grid[1, 1], grid[last, last] = "S", "G"
    return ["".join(row) for row in grid]


class MazeEnv(GridWorldEnv):
    """``mp/Maze-v0``: a procedural maze (see :func:`generate_maze`), -1 per step including the last.

    ## Arguments
    ``size`` (side of the map in cells, an integer >= 5; ``size=100`` gives 10,000 states),
    ``seed`` (the maze layout, not the episode seed; an integer >= 0), ``loops`` (in ``[0, 1]``);
    everything else as :class:`GridWorldEnv`, whose ``step`` and state methods it inherits.
    """

    def __init__(self, size: int = 15, seed: int = 0, loops: float = 0.1, **kwargs: Any) -> None:
        kwargs = {"step_reward": -1.0, "goal_reward": -1.0, **kwargs}
        if "map" in kwargs:
            raise ValueError("MazeEnv makes its own map from size, seed and loops; use GridWorldEnv for map=")
        super().__init__(generate_maze(size, seed, loops), **kwargs)
        self.maze_size, self.maze_seed, self.loops = int(size), int(seed), float(loops)
